"""The HTML report: self-contained, and rendered with its charts by a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from bot.measure.report import Viewer, build_report
from bot.measure.report_html import render_html
from tests.measure.workload import END

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@pytest.fixture
def report_html(db, ledger, measure_settings, tmp_path) -> Path:
    """The ground-truth ledger's report, as an auditor sees it, written to a file."""
    doc = build_report(
        db,
        since=END - timedelta(days=30),
        until=END,
        by="intent",
        viewer=Viewer.auditor("U0AUD"),
        settings=measure_settings,
    )
    path = tmp_path / "report.html"
    path.write_text(render_html(doc), encoding="utf-8")
    return path


def test_html_is_self_contained(report_html):
    """No scripts, no external URLs, a CSP that forbids fetching; the four sections are there."""
    html = report_html.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "default-src 'none'" in html
    for chart in ("chart-timeline", "chart-cost-per-intent", "chart-outcome-mix"):
        assert f'id="{chart}"' in html
    assert 'id="flags"' in html and "near_duplicate_prompts" in html


def test_html_escapes_untrusted_text(tmp_path):
    """Intent names and flag text are escaped (no markup injection through the ledger)."""
    doc = {
        "totals": {},
        "by_intent": [{"intent": "<img src=x>", "suppressed": False, "cost_per_accepted_outcome": 0.1}],
        "timeline": [],
        "outcome_mix": {},
        "flags": [
            {"kind": "k", "subject": "<b>", "explanation": "<i>x</i>", "evidence": ["t1"], "details": {}}
        ],
    }
    html = render_html(doc)
    assert "<img src=x>" not in html and "&lt;img src=x&gt;" in html and "<i>x</i>" not in html


def test_html_renders_in_headless_chromium(report_html, tmp_path):
    """Chromium renders the file offline: the DOM has the three SVG charts and the screenshot is not blank."""
    binary = _chromium()
    if binary is None:
        pytest.skip(
            "no chromium binary (.ci/ensure-chromium installs it as root: apt-get install -y chromium)"
        )
    profile = tmp_path / "profile"
    base = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    url = report_html.as_uri()
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in ("chart-timeline", "chart-cost-per-intent", "chart-outcome-mix"):
        assert f'id="{chart}"' in dom.stdout
    assert dom.stdout.count("<svg") >= 3 and "bar-tokens" in dom.stdout and "mix-part" in dom.stdout
    png = tmp_path / "report.png"
    shot = subprocess.run(
        [*base, f"--screenshot={png}", "--window-size=1200,2400", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 40_000  # a blank page of this size compresses to a few kB


def test_html_shows_adoption_kpis_and_hides_small_groups():
    """The adoption section of `clawback report --html`: totals and groups, a suppressed group shows no figures."""
    adoption = {
        "columns": ["decisions", "judged", "success_rate"],
        "totals": {"suppressed": False, "decisions": 12, "judged": 10, "success_rate": 0.9},
        "by_action": [
            {"action": "mail.move", "suppressed": False, "decisions": 12, "judged": 10, "success_rate": 0.9}
        ],
        "by_level": [
            {"level": "auto", "suppressed": True, "decisions": None, "judged": None, "success_rate": None}
        ],
        "by_intent": [],
        "by_team": [],
    }
    doc = {"totals": {}, "timeline": [], "outcome_mix": {}, "adoption": adoption}
    html = render_html(doc)
    assert "Earned autonomy: adoption" in html and "<h3>By action</h3>" in html and "mail.move" in html
    assert '<tr class="suppressed"><td>auto</td>' in html
    assert "Earned autonomy" not in render_html({"totals": {}, "timeline": [], "outcome_mix": {}})
