"""A person sees their own levels: App Home "What Clawback may do for you" and /usage in brief."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import autonomy
from tests.autonomy.conftest import POLICY, decide
from tests.conftest import drain


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The autonomy test policy."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def test_home_shows_levels_records_and_next_steps(slack, llm, sender, deps):
    """Per action and category: the level, accepted/judged, and what would change it."""
    pol = deps.policy.current
    decide(deps.db, pol, "accepted", category="newsletter")
    autonomy.set_level(
        deps.db, pol, user="U0ALICE", action="mail.move", category="fyi", level="auto", actor="x"
    )
    sender.home_opened("U0ALICE")
    drain(deps)
    view = json.dumps(slack.views["U0ALICE"])
    assert "What Clawback may do for you" in view
    assert "*mail.move (newsletter)*: suggests, you apply \\u00b7 1/1 accepted" in view
    assert "2 more judged to be offered auto" in view
    assert "*mail.move (fyi)*: acts, you can correct or undo" in view
    assert "back to suggest at 2 corrections in the last 4" in view
    assert "*mail.categorize*" in view and "at the cap your admin set" in view


def test_usage_lists_levels_briefly(slack, llm, sender, deps):
    """/usage adds one line per action and category."""
    decide(deps.db, deps.policy.current, "rejected")
    text = sender.command("U0ALICE", "/usage", "").json()["text"]
    assert "What Clawback may do for you" in text
    assert "• mail.move: *suggest*, 0/1 accepted" in text


def test_home_without_section_is_unchanged(slack, llm, sender, deps, tmp_path, policy_file):
    """No [autonomy] section: no autonomy lines at all."""
    policy_file.write_text(POLICY.split("[autonomy]")[0])
    deps.policy.reload()
    sender.home_opened("U0ALICE")
    drain(deps)
    assert "What Clawback may do for you" not in json.dumps(slack.views["U0ALICE"])
