"""Adoption KPIs joined to cost: success and error rates, minutes saved, cost per minute; k-anonymous."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bot import autonomy
from bot.db import LLMCall, Outcome
from bot.measure.adoption import build_adoption
from bot.measure.outcomes import parse_kinds
from bot.measure.report import Viewer
from bot.ops.cli import app
from tests.autonomy.conftest import POLICY, policy, task

MOVERS = [f"U0MOVER{i}" for i in range(5)]


def _decision(db, user, action, level, verdict, kind, cost=0.01):
    tid = task(db, user)
    with db.session() as s:
        s.add(LLMCall(task_id=tid, model="m", prompt_name="p", prompt_version="v", cost=cost))
        out = Outcome(task_id=tid, kind=kind, source="explicit", actor=user)
        s.add(out)
        s.flush()
        oid = out.id
    did = autonomy.record_decision(db, task_id=tid, user=user, action=action, category=None, level=level)
    autonomy.judge(db, policy(), did, verdict, outcome_id=oid, actor=user)


def _workload(db):
    for user in MOVERS:
        _decision(db, user, "mail.move", "suggest", "accepted", "label_kept")
        _decision(db, user, "mail.move", "suggest", "rejected", "label_corrected")
    _decision(db, "U0DRAFTER", "mail.draft", "auto", "accepted", "draft_sent")


def test_kpis_for_an_auditor(db):
    """Totals and the split by action and level, with documented minutes per kind (0.5 label, 3 draft)."""
    _workload(db)
    doc = build_adoption(
        db,
        since=None,
        until=None,
        viewer=Viewer.auditor("U0ADMIN"),
        policy=policy(),
        config=parse_kinds(None),
    )
    t = doc["totals"]
    assert (t["decisions"], t["judged"], t["accepted"], t["rejected"]) == (11, 11, 6, 5)
    assert (t["success_rate"], t["error_rate"]) == (round(6 / 11, 4), round(5 / 11, 4))
    assert t["minutes_saved"] == 5.5 and t["cost"] == 0.11 and t["cost_per_minute_saved"] == 0.02
    by_level = {r["level"]: r for r in doc["by_level"]}
    assert by_level["auto"]["minutes_saved"] == 3.0 and by_level["suggest"]["success_rate"] == 0.5
    assert [r["intent"] for r in doc["by_intent"]] == ["triage"]
    assert {r["team"] for r in doc["by_team"]} == {"(no team)"}


def test_minutes_come_from_outcome_kinds_config(db):
    """CLAWBACK_OUTCOME_KINDS can set minutes_saved per kind."""
    _workload(db)
    config = parse_kinds(json.dumps({"label_kept": {"minutes_saved": 2}}))
    doc = build_adoption(db, since=None, until=None, viewer=Viewer.auditor(), policy=policy(), config=config)
    assert doc["totals"]["minutes_saved"] == 13.0


def test_small_groups_are_suppressed_for_the_team_view(db):
    """One drafter alone at auto: the auto row is hidden, and so is its complement (suggest), not the totals."""
    _workload(db)
    doc = build_adoption(
        db, since=None, until=None, viewer=Viewer.operator(), policy=policy(), config=parse_kinds(None)
    )
    assert doc["totals"]["suppressed"] is False and doc["totals"]["people"] == 6
    assert all(r["suppressed"] and r["success_rate"] is None for r in doc["by_level"])
    assert doc["suppressed_groups"] >= 4


def test_cli_report_carries_adoption(db, tmp_path):
    """`clawback report --format json` has the adoption section."""
    _workload(db)
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    env = {"DATABASE_URL": db.url, "CLAWBACK_POLICY": str(path), "CLAWBACK_HOME": str(tmp_path / "home")}
    out = CliRunner().invoke(app, ["report", "--format", "json"], env=env)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["adoption"]["totals"]["decisions"] == 11
    table = CliRunner().invoke(app, ["report"], env={**env, "COLUMNS": "80"})
    assert table.exit_code == 0 and "Earned autonomy: adoption" in table.output
