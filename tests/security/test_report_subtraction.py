"""Attacks on the operator's k-anonymous report (issue 11, item 6): reading one person's numbers from totals, and
recovering a suppressed group by subtracting the published cells of one report from its margins.

Each test builds a ledger, runs the real `clawback report --format json` (Typer's runner, settings from the
environment, a policy file), and computes the subtraction from the published JSON the way the reviewer did.
"""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import combinations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.db import AuditEntry, utcnow
from bot.ops.cli import app
from tests.measure.test_report import _task

K = 5
POLICY = """
[defaults]
roles = ["member"]
[roles.member]
scopes = ["chat.reply", "usage.self"]
[roles.auditor]
scopes = ["usage.self", "audit.read"]
[users.U0AUDIT]
roles = ["auditor"]
[groups.team-a]
members = [{team_a}]
[groups.team-b]
members = [{team_b}]
[privacy]
k_anonymity = {k}
"""


def _ids(prefix: str, n: int) -> list[str]:
    return [f"U0{prefix}{i}" for i in range(n)]


@pytest.fixture
def policy_path(tmp_path):
    path = tmp_path / "policy.toml"
    quote = lambda ids: ", ".join(f'"{u}"' for u in ids)  # noqa: E731
    path.write_text(POLICY.format(team_a=quote(_ids("A", 6)), team_b=quote(_ids("B", 3)), k=K))
    return path


def _report(db, policy_path, tmp_path, *args: str) -> dict:
    env = {"DATABASE_URL": db.url, "CLAWBACK_POLICY": str(policy_path), "CLAWBACK_HOME": str(tmp_path)}
    out = CliRunner().invoke(app, ["report", "--format", "json", *args], env=env)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def _visible(cell: dict) -> bool:
    return not cell.get("suppressed")


def _equations(doc: dict) -> list[tuple[tuple, dict, tuple, list[dict]]]:
    """Every published margin with the published cells that partition it (what a reader can subtract):
    (margin dims, margin, cell dims, cells)."""
    tables = {("intent",): doc["by_intent"], ("surface",): doc["by_surface"], ("day",): doc["timeline"]}
    if doc["by"]:
        tables[tuple(doc["by"])] = doc["rows"]
    out = []
    for dims, rows in tables.items():
        out.append(((), doc["totals"], dims, rows))
        for n in range(1, len(dims)):
            for sub in combinations(dims, n):
                for margin in tables.get(sub, []):
                    under = [r for r in rows if all(r[d] == margin[d] for d in sub)]
                    out.append((sub, margin, dims, under))
    return out


def _assert_no_single_unknown(doc: dict, people=None, k: int = K) -> None:
    """No published equation (margin = sum of its cells) has exactly one suppressed member; with ``people``
    (dims → cell key → set of people, the ground truth) the suppressed cells under a shown margin cover ≥ k."""
    for sub, margin, dims, cells in _equations(doc):
        name = f"{sub}={[margin[d] for d in sub]} over {dims}"
        hidden = [c for c in [margin, *cells] if not _visible(c)]
        assert len(hidden) != 1, f"{name}: one suppressed cell is recoverable by subtraction"
        if people is not None and hidden and _visible(margin):
            union = set().union(*(people[dims][tuple(c[d] for d in dims)] for c in hidden))
            assert len(union) >= k, f"{name}: the suppressed cells together are {len(union)} people"


def test_totals_of_one_person_are_suppressed(db, policy_path, tmp_path):
    """`--since 1h` with one active person used to print their tokens and outcomes with `people: 1`."""
    now = utcnow()
    _task(db, "old", "U0OLD", at=now - timedelta(days=3))
    _task(
        db,
        "s1",
        "U0SOLO",
        at=now - timedelta(minutes=20),
        tokens=(700, 70),
        outcomes=[("resolved", "explicit")],
    )
    _task(db, "s2", "U0SOLO", at=now - timedelta(minutes=10), tokens=(300, 30))
    doc = _report(db, policy_path, tmp_path, "--since", "1h")
    totals = doc["totals"]
    # Before the fix: totals == {"tasks": 2, "total_tokens": 1100, "accepted_outcomes": 1, "people": 1, ...}
    assert totals["suppressed"] is True
    assert totals["tasks"] is None and totals["total_tokens"] is None and totals["people"] is None
    assert doc["outcome_mix"] is None  # the mix is the totals broken down: hidden with them
    assert all(not _visible(r) for r in doc["by_intent"] + doc["by_surface"] + doc["timeline"])
    _assert_no_single_unknown(doc)


def test_team_view_cannot_be_subtracted_from_totals(db, policy_path, tmp_path):
    """totals − team-a = team-b (3 people < k): now team-a is suppressed too, and the totals stay."""
    n = 0
    for who in _ids("A", 6) + _ids("B", 3):
        for _ in range(3 if who.startswith("U0A") else 4):
            n += 1
            _task(db, f"t{n}", who, at=utcnow() - timedelta(hours=1), outcomes=[("resolved", "explicit")])
    doc = _report(db, policy_path, tmp_path, "--by", "team")
    rows = {r["team"]: r for r in doc["rows"]}
    assert rows["team-b"]["suppressed"] is True
    recovered = doc["totals"]["tasks"] - sum(r["tasks"] for r in rows.values() if _visible(r))
    # Before the fix team-a (18 tasks) was shown: 30 − 18 = 12, team-b's tasks exactly. Now nothing is shown
    # under the totals, so the subtraction gives team-a + team-b, which the totals already say.
    assert rows["team-a"]["suppressed"] is True and recovered == doc["totals"]["tasks"] == 30
    _assert_no_single_unknown(doc)


def test_two_way_view_cannot_be_subtracted_from_its_margins(db, policy_path, tmp_path):
    """by intent × day: by_intent[answer] − visible (answer, day) cells = the suppressed (answer, day 2) cell."""
    day1, day2 = utcnow() - timedelta(days=2), utcnow() - timedelta(days=1)
    n = 0

    def add(who: str, intent: str, at, tokens=(100, 50)) -> None:
        nonlocal n
        n += 1
        _task(db, f"t{n}", who, intent=intent, at=at, tokens=tokens)

    for who in _ids("A", 6):
        add(who, "answer", day1)
    add("U0A0", "answer", day2, tokens=(4000, 321))  # one person's day: must stay hidden
    for who in _ids("B", 3) + ["U0C0", "U0C1"]:
        add(who, "summarize", day1)
        add(who, "summarize", day2)
    doc = _report(db, policy_path, tmp_path, "--by", "intent,day", "--since", "30d")
    cells = {(r["intent"], r["day"]): r for r in doc["rows"]}
    answer = next(r for r in doc["by_intent"] if r["intent"] == "answer")
    hidden = [key for key, r in cells.items() if key[0] == "answer" and not _visible(r)]
    assert hidden, "the one-person cell is suppressed"
    if _visible(answer):
        shown = sum(r["total_tokens"] for key, r in cells.items() if key[0] == "answer" and _visible(r))
        # Before the fix this equalled the one person's 4,321 tokens.
        assert len(hidden) >= 2, f"{answer['total_tokens'] - shown} tokens recovered for {hidden}"
    _assert_no_single_unknown(doc)


def test_report_as_an_auditor_records_the_operating_system_user(db, policy_path, tmp_path):
    """`--as` is typed at the CLI and cannot be verified: the audit entry also names the OS account."""
    import getpass

    _task(db, "a", "U0A0", at=utcnow() - timedelta(hours=1))
    _report(db, policy_path, tmp_path, "--by", "user", "--as", "U0AUDIT")
    with db.session() as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "report.per_person")).scalar_one()
    details = json.loads(entry.details)
    assert entry.actor == "U0AUDIT" and details["os_user"] == getpass.getuser()


def test_no_published_subtraction_recovers_a_small_group_on_a_generated_ledger(db, tmp_path):
    """On the generated ledger (≈13k tasks, 20+ people, heavy users, bots), for several groupings, every margin
    of the operator's report has zero or at least two suppressed cells under it, covering at least k people."""
    from collections import defaultdict

    from bot.measure.outcomes import sweep_none
    from bot.measure.report import Viewer, build_report
    from bot.policy import parse_policy
    from tests.measure.workload import END, HONEST, build

    build().insert(db)
    sweep_none(db, window=timedelta(hours=72), now=END)
    quote = lambda ids: ", ".join(f'"{u}"' for u in ids)  # noqa: E731
    policy = parse_policy(POLICY.format(team_a=quote(HONEST[:7]), team_b=quote(HONEST[7:10]), k=K))
    since, until = END - timedelta(days=30), END

    def truth(dims: tuple) -> dict[tuple, set]:
        doc = build_report(
            db, since=since, until=until, by=["user", *dims], viewer=Viewer.auditor("U0TEST"),
            policy=policy, include_flags=False, refresh=False,
        )  # fmt: skip
        out: dict[tuple, set] = defaultdict(set)
        for r in doc["rows"]:
            out[tuple(r[d] for d in dims)].add(r["user"])
        return out

    for by in (None, "team", "intent,day", "surface,day", "intent,surface", "channel"):
        doc = build_report(
            db, since=since, until=until, by=by, viewer=Viewer.operator(), policy=policy, include_flags=False
        )
        tables = {(), ("intent",), ("surface",), ("day",), *([tuple(doc["by"])] if by else [])}
        _assert_no_single_unknown(doc, {dims: truth(dims) for dims in tables})
        assert (
            doc["privacy"]["suppressed_groups"] > 0
        )  # the ledger has small groups: the check is not vacuous
