"""Report arithmetic, outcome precedence, privacy (k-anonymity, no ranking), JSON and CSV schemas."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from bot.audit import checkpoint, verify
from bot.db import AuditEntry, LLMCall, Outcome, Task
from bot.errors import Denied
from bot.measure import facts
from bot.measure.facts import bucket_of, bucket_value
from bot.measure.outcomes import parse_kinds
from bot.measure.report import (
    METRIC_COLUMNS,
    SCHEMA,
    Viewer,
    build_report,
    csv_columns,
    parse_by,
    to_csv,
    viewer_for,
)
from bot.policy import parse_policy

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _task(
    db,
    tid,
    who,
    *,
    intent="answer",
    surface="mention",
    status="done",
    at=T0,
    latency_ms=1000.0,
    tokens=(100, 50),
    cost=0.001,
    outcomes=(),
    model="gpt-4o-mini",
    channel="C0GENERAL",
):
    with db.session() as s:
        s.execute(
            insert(Task),
            [
                {
                    "id": tid,
                    "idempotency_key": f"k:{tid}",
                    "requester": who,
                    "surface": surface,
                    "intent": intent,
                    "trigger": "human",
                    "status": status,
                    "payload": {},
                    "result": {},
                    "redactions": 0,
                    "attempts": 1,
                    "channel_id": channel,
                    "created_at": at,
                    "finished_at": at + timedelta(milliseconds=latency_ms)
                    if status in ("done", "failed")
                    else None,
                }
            ],
        )
        if tokens:
            s.execute(
                insert(LLMCall),
                [
                    {
                        "task_id": tid,
                        "step": "main",
                        "model": model,
                        "prompt_name": intent,
                        "prompt_version": "v1",
                        "prompt_tokens": tokens[0],
                        "completion_tokens": tokens[1],
                        "cached_tokens": 0,
                        "total_tokens": sum(tokens),
                        "usage_reported": True,
                        "cost": cost,
                        "latency_ms": latency_ms,
                        "status": "ok",
                        "created_at": at,
                    }
                ],
            )
        for n, (kind, source) in enumerate(outcomes):
            s.execute(
                insert(Outcome),
                [
                    {
                        "task_id": tid,
                        "kind": kind,
                        "source": source,
                        "actor": who,
                        "detail": {},
                        "created_at": at + timedelta(minutes=n + 1),
                    }
                ],
            )


@pytest.fixture
def small(db):
    """Six tasks with hand-checkable numbers."""
    _task(db, "a", "U0ALICE", outcomes=[("resolved", "explicit")], latency_ms=1000)
    # two explicit outcomes: the later one wins
    _task(
        db,
        "b",
        "U0ALICE",
        tokens=(200, 100),
        cost=0.002,
        outcomes=[("resolved", "explicit"), ("not_helpful", "explicit")],
        latency_ms=2000,
    )
    # explicit beats a later weak follow-up
    _task(
        db,
        "c",
        "U0BOB",
        tokens=(300, 0),
        cost=0.003,
        outcomes=[("resolved", "explicit"), ("followup_question", "implicit")],
        latency_ms=3000,
    )
    # mail: label kept, then corrected → corrected
    _task(
        db,
        "d",
        "U0BOB",
        intent="triage",
        surface="email",
        tokens=(400, 100),
        cost=0.004,
        outcomes=[("label_kept", "implicit"), ("label_corrected", "implicit")],
        latency_ms=4000,
    )
    _task(
        db,
        "e",
        "U0CAROL",
        intent="triage",
        surface="email",
        tokens=(500, 0),
        cost=0.005,
        outcomes=[("label_kept", "implicit")],
        latency_ms=5000,
    )
    _task(db, "f", "U0CAROL", status="failed", tokens=(10, 0), cost=0.0001, latency_ms=100)
    return db


def test_metric_arithmetic(small):
    """Totals and per-intent metrics match hand-computed values."""
    doc = build_report(small, viewer=Viewer.auditor("U0AUDIT"))
    t = doc["totals"]
    assert (t["tasks"], t["prompt_tokens"], t["completion_tokens"], t["total_tokens"]) == (6, 1510, 250, 1760)
    assert t["cost"] == pytest.approx(0.0151)
    assert (t["accepted_outcomes"], t["rejected_outcomes"], t["failed"]) == (3, 2, 1)  # a, c, e | b, d | f
    assert t["acceptance_rate"] == pytest.approx(0.6)
    assert t["tokens_per_accepted_outcome"] == pytest.approx(1760 / 3, abs=0.1)
    assert t["cost_per_accepted_outcome"] == pytest.approx(0.0151 / 3, abs=1e-6)
    assert t["tokens_with_outcome_share"] == pytest.approx(1750 / 1760, abs=1e-4)
    assert t["correction_rate"] == pytest.approx(0.5) and t["draft_use_rate"] is None
    assert t["latency_p50_ms"] == pytest.approx(2000, rel=0.05)  # 100, 1000, ..., 5000 → 3rd of 6
    assert t["latency_p95_ms"] == pytest.approx(5000, rel=0.05)
    answer, triage = doc["by_intent"]
    assert (answer["intent"], answer["tasks"], answer["accepted_outcomes"], answer["failed"]) == (
        "answer",
        4,
        2,
        1,
    )
    assert triage["cost_per_accepted_outcome"] == pytest.approx(0.009)
    assert doc["outcome_mix"] == {
        "failed": 1,
        "label_corrected": 1,
        "label_kept": 1,
        "not_helpful": 1,
        "resolved": 2,
    }


def test_weights_enter_the_weighted_acceptance_rate(db):
    """An edited draft is accepted but weighs 0.7; a weak follow-up weighs 0.5; weights are configurable."""
    _task(db, "x", "U0ALICE", intent="draft", outcomes=[("draft_sent_edited", "implicit")])
    _task(db, "y", "U0ALICE", intent="draft", outcomes=[("followup_question", "implicit")])
    t = build_report(db, viewer=Viewer.auditor())["totals"]
    assert t["acceptance_rate"] == 0.5 and t["weighted_acceptance_rate"] == pytest.approx(0.7 / 1.2, abs=1e-4)
    assert t["draft_use_rate"] == 1.0

    class S:
        clawback_outcome_kinds = '{"draft_sent_edited": {"weight": 0.5}}'

    t = build_report(db, viewer=Viewer.auditor(), settings=S())["totals"]
    assert t["weighted_acceptance_rate"] == 0.5


def test_deploy_rates(db):
    """A deploy that succeeded and was then rolled back counts as rolled back."""
    _task(
        db, "d1", "U0ALICE", intent="deploy_plan", surface="deploy", outcomes=[("deploy_succeeded", "system")]
    )
    _task(
        db,
        "d2",
        "U0ALICE",
        intent="deploy_plan",
        surface="deploy",
        outcomes=[("deploy_succeeded", "system"), ("deploy_rolled_back", "implicit")],
    )
    _task(db, "d3", "U0ALICE", intent="deploy_plan", surface="deploy", outcomes=[("deploy_failed", "system")])
    _task(
        db, "d4", "U0ALICE", intent="deploy_plan", surface="deploy", outcomes=[("deploy_succeeded", "system")]
    )
    t = build_report(db, viewer=Viewer.auditor())["totals"]
    assert t["deploy_success_rate"] == 0.5 and t["rollback_rate"] == 0.25


def test_latency_buckets_stay_within_five_percent():
    """Every latency maps to a bucket whose middle is within 5% (exact below 100 ms)."""
    for ms in [0, 7, 99, 100, 101, 149, 199, 234, 499, 500, 999, 1000, 1234, 4999, 12345, 98765, 3_600_000]:
        assert bucket_value(bucket_of(ms)) == pytest.approx(ms, rel=0.05, abs=0.5)
    assert [bucket_of(x) for x in (150, 250, 600)] == sorted(bucket_of(x) for x in (150, 250, 600))


def _team_policy(k: int = 5):
    team_a = ", ".join(f'"U0A{i}"' for i in range(6))
    team_b = ", ".join(f'"U0B{i}"' for i in range(3))
    return parse_policy(f"""
[defaults]
roles = ["member"]
[roles.member]
scopes = ["chat.reply", "usage.self"]
[roles.lead]
scopes = ["chat.reply", "usage.self", "usage.team"]
[roles.auditor]
scopes = ["usage.self", "audit.read"]
[users.U0LEAD]
roles = ["lead"]
[users.U0AUDIT]
roles = ["auditor"]
[groups.team-a]
members = [{team_a}]
[groups.team-b]
members = [{team_b}]
[privacy]
k_anonymity = {k}
""")


@pytest.fixture
def teams(db):
    """Six people in team-a, three in team-b; intent 'rare' used by two people of team-a only."""
    n = 0
    for who in [f"U0A{i}" for i in range(6)] + [f"U0B{i}" for i in range(3)]:
        for _ in range(3):
            n += 1
            _task(db, f"t{n}", who, outcomes=[("resolved", "explicit")])
    for who in ("U0A0", "U0A1"):
        n += 1
        _task(db, f"t{n}", who, intent="rare")
    return db


def test_team_view_suppresses_groups_under_k(teams):
    """By team: team-b (3 people) is suppressed; team-a (6 people) too, since totals − team-a would be team-b
    (complementary suppression, issue 11 item 6: team-a used to be shown); the totals stay."""
    policy = _team_policy()
    doc = build_report(teams, by="team", viewer=viewer_for(policy, "U0LEAD"), policy=policy)
    rows = {r["team"]: r for r in doc["rows"]}
    assert rows["team-a"]["suppressed"] is True and rows["team-a"]["tasks"] is None
    assert rows["team-b"]["suppressed"] is True and rows["team-b"]["tasks"] is None
    assert rows["team-b"]["people"] is None
    assert doc["totals"]["tasks"] == 29 and doc["privacy"]["k_anonymity"] == 5


def test_complementary_suppression_protects_small_groups_from_subtraction(teams):
    """'rare' has two people, so 'answer' would reveal it as total minus answer: both are suppressed."""
    policy = _team_policy()
    doc = build_report(teams, by="intent", viewer=Viewer.operator(), policy=policy)
    assert [r["suppressed"] for r in doc["rows"]] == [True, True]
    policy3 = _team_policy(k=2)
    doc = build_report(teams, by="intent", viewer=Viewer.operator(), policy=policy3)
    assert [r["suppressed"] for r in doc["rows"]] == [False, False]


def test_by_user_needs_audit_read_and_is_sorted_by_user_id(teams):
    """Per-person rows need audit.read; then they are sorted by user id, and the read is audited."""
    policy = _team_policy()
    with pytest.raises(Denied):
        build_report(teams, by="user", viewer=viewer_for(policy, "U0LEAD"), policy=policy)
    with pytest.raises(Denied):
        build_report(teams, by="user", viewer=Viewer.operator(), policy=policy)
    doc = build_report(teams, by="user", viewer=viewer_for(policy, "U0AUDIT"), policy=policy)
    users = [r["user"] for r in doc["rows"]]
    assert users == sorted(users) and len(users) == 9
    with teams.session() as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "report.per_person")).scalar_one()
    assert entry.actor == "U0AUDIT"
    checkpoint(teams, "k")
    assert verify(teams, key="k").ok


def test_self_viewer_sees_only_own_numbers(teams):
    """A member's report covers only their own tasks, whatever they group by, and carries no flags."""
    policy = _team_policy()
    viewer = viewer_for(policy, "U0B1")
    assert viewer.self_only
    doc = build_report(teams, by="user", viewer=viewer, policy=policy)
    assert [r["user"] for r in doc["rows"]] == ["U0B1"] and doc["totals"]["tasks"] == 3
    assert "flags" not in doc


def test_no_view_ranks_by_tokens(teams):
    """Rows are in key order even when token use would order them differently."""
    _task(teams, "big", "U0A5", intent="aaa", tokens=(90000, 0))
    policy = _team_policy(k=2)
    doc = build_report(teams, by="intent", viewer=Viewer.operator(), policy=policy)
    assert [r["intent"] for r in doc["rows"]] == sorted(r["intent"] for r in doc["rows"])


def test_viewer_without_usage_scope_is_denied():
    """Someone with no usage scope gets no report at all."""
    policy = parse_policy('[roles.x]\nscopes = ["chat.reply"]\n[users.U0X]\nroles = ["x"]\n')
    with pytest.raises(Denied):
        viewer_for(policy, "U0X")


def test_json_schema(small):
    """The JSON document has its documented keys and types (totals keep the first version's keys)."""
    doc = build_report(small, by="model", viewer=Viewer.auditor())
    assert doc["schema"] == SCHEMA
    for key in (
        "generated_at",
        "since",
        "until",
        "by",
        "viewer",
        "privacy",
        "totals",
        "rows",
        "by_intent",
        "by_surface",
        "timeline",
        "outcome_mix",
        "definitions",
        "flags",
        "flags_summary",
    ):
        assert key in doc, key
    for key in ("tasks", "prompt_tokens", "completion_tokens", "total_tokens", "cost"):
        assert isinstance(doc["totals"][key], int | float)
    assert set(METRIC_COLUMNS) <= set(doc["totals"])
    for row in doc["rows"] + doc["by_intent"] + doc["by_surface"]:
        assert set(METRIC_COLUMNS) <= set(row) and isinstance(row["suppressed"], bool)
    assert doc["rows"][0]["model"] == "gpt-4o-mini" and doc["rows"][0]["tasks"] == 6
    assert {"day", "tasks", "total_tokens", "accepted_outcomes"} <= set(doc["timeline"][0])
    assert isinstance(doc["flags"], list)


def test_csv_schema(small):
    """CSV has a fixed header (dimensions, suppressed, people, metrics) and one line per row."""
    doc = build_report(small, by="intent,surface", viewer=Viewer.auditor())
    text = to_csv(doc)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == csv_columns(["intent", "surface"])
    lines = list(reader)
    assert [(r["intent"], r["surface"], r["tasks"]) for r in lines] == [
        ("answer", "mention", "4"),
        ("triage", "email", "2"),
    ]


def test_prompt_dimension(small):
    """By prompt groups LLM calls by name@version."""
    doc = build_report(small, by="prompt", viewer=Viewer.auditor())
    assert [r["prompt"] for r in doc["rows"]] == ["answer@v1", "triage@v1"]


def test_parse_by_rejects_unknown_dimensions():
    """Unknown or repeated dimensions are refused."""
    assert parse_by("user, intent") == ["user", "intent"]
    with pytest.raises(ValueError):
        parse_by("colour")
    with pytest.raises(ValueError):
        parse_by("day,day")


def test_facts_refresh_is_incremental_and_catches_late_outcomes(small):
    """A feedback click after the first report changes the next report (only touched tasks recomputed)."""
    config = parse_kinds(None)
    facts.refresh(small, config)
    assert build_report(small, viewer=Viewer.auditor())["totals"]["accepted_outcomes"] == 3
    with small.session() as s:
        s.add(Outcome(task_id="f", kind="resolved", source="explicit", actor="U0CAROL"))
    assert facts.refresh(small, config) == 1
    assert build_report(small, viewer=Viewer.auditor())["totals"]["accepted_outcomes"] == 4


def test_facts_rebuild_when_outcome_kinds_change(small):
    """Changing the outcome table rebuilds the facts so precedence follows the new strengths."""
    config = parse_kinds('{"followup_question": {"strength": "explicit"}}')
    n = facts.refresh(small, config)
    assert n == 6
    with small.session() as s:
        state = s.get(facts.TaskFact, "c").state
    assert state == "followup_question"
