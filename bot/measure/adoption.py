"""Adoption KPIs of earned autonomy, joined to cost: governed decisions by intent, action, level and team.

Per group (``KPI_COLUMNS``): governed decisions; judged ones (accepted + rejected); task success rate
(accepted / judged); error rate (rejected / judged); estimated minutes saved (for each accepted decision, the
``minutes_saved`` of its outcome's kind in ``CLAWBACK_OUTCOME_KINDS``, defaults in
``bot.measure.outcomes.DEFAULT_KINDS``; an accepted decision without an outcome row saves nothing); cost (the model
cost of the decisions' tasks, a task's cost split evenly over its governed decisions); cost per minute saved.

Private exactly as the main report is (``bot.measure.report.protect``): for the team view, every published cell
covers at least k people, across the totals and the four tables together; a person's own view and auditors see
everything.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot.db import AutonomyDecision, Database, LLMCall, Outcome, Task
from bot.measure.outcomes import OutcomeConfig
from bot.measure.report import NO_TEAM, Viewer, _Acc, _key_sort, _teams, protect
from bot.policy import Policy

TABLES = (("intent",), ("action",), ("level",), ("team",))
KPI_COLUMNS = [
    "decisions",
    "judged",
    "accepted",
    "rejected",
    "success_rate",
    "error_rate",
    "minutes_saved",
    "cost",
    "cost_per_minute_saved",
]


class _Kpi(_Acc):
    """People (for suppression) plus the adoption sums of one group."""

    def __init__(self) -> None:
        super().__init__()
        self.sums: Counter = Counter()


def _rows(db: Database, since: datetime | None, until: datetime | None, user: str | None) -> list[tuple]:
    """(task, user, intent, action, level, verdict, outcome kind) for every decision in the window."""
    stmt = (
        select(
            AutonomyDecision.task_id,
            AutonomyDecision.user,
            Task.intent,
            AutonomyDecision.action,
            AutonomyDecision.level,
            AutonomyDecision.verdict,
            Outcome.kind,
        )
        .join(Task, Task.id == AutonomyDecision.task_id)
        .outerjoin(Outcome, Outcome.id == AutonomyDecision.outcome_id)
    )
    if since is not None:
        stmt = stmt.where(AutonomyDecision.created_at >= since)
    if until is not None:
        stmt = stmt.where(AutonomyDecision.created_at < until)
    if user is not None:
        stmt = stmt.where(AutonomyDecision.user == user)
    with db.read() as s:
        return list(s.execute(stmt).all())


def _costs(db: Database, task_ids: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    ids = sorted(task_ids)
    with db.read() as s:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            stmt = select(LLMCall.task_id, func.sum(LLMCall.cost)).where(LLMCall.task_id.in_(chunk))
            out.update({t: float(c or 0.0) for t, c in s.execute(stmt.group_by(LLMCall.task_id)).all()})
    return out


def _metrics(k: _Kpi) -> dict[str, Any]:
    judged = k.sums["accepted"] + k.sums["rejected"]
    minutes = round(k.sums["minutes"], 2)
    cost = round(k.sums["cost"], 6)
    return {
        "decisions": int(k.sums["decisions"]),
        "judged": int(judged),
        "accepted": int(k.sums["accepted"]),
        "rejected": int(k.sums["rejected"]),
        "success_rate": round(k.sums["accepted"] / judged, 4) if judged else None,
        "error_rate": round(k.sums["rejected"] / judged, 4) if judged else None,
        "minutes_saved": minutes,
        "cost": cost,
        "cost_per_minute_saved": round(cost / minutes, 6) if minutes else None,
    }


def build_adoption(
    db: Database,
    *,
    since: datetime | None,
    until: datetime | None,
    viewer: Viewer,
    policy: Policy,
    config: OutcomeConfig,
) -> dict[str, Any]:
    """The adoption section of a report: totals and rows by intent, action, level and team (see module doc)."""
    rows = _rows(db, since, until, viewer.user if viewer.self_only else None)
    per_task = Counter(r[0] for r in rows)
    costs = _costs(db, set(per_task))
    teams = _teams(policy)
    tables: dict[tuple[str, ...], dict[tuple, _Kpi]] = {(): defaultdict(_Kpi)}
    for dims in TABLES:
        tables[dims] = defaultdict(_Kpi)
    for task_id, user, intent, action, level, verdict, kind in rows:
        accepted, rejected = verdict == "accepted", verdict == "rejected"
        found = config.kinds.get(kind) if kind else None
        minutes = found.minutes_saved if accepted and found is not None else 0.0
        cost = costs.get(task_id, 0.0) / per_task[task_id]
        keys = {(): [()], ("intent",): [(intent,)], ("action",): [(action,)], ("level",): [(level,)]}
        keys[("team",)] = [(t,) for t in teams.get(user) or [NO_TEAM]]
        for dims, ks in keys.items():
            for key in ks:
                acc = tables[dims][key]
                acc.people.add(user)
                acc.sums.update(
                    {"decisions": 1, "accepted": int(accepted), "rejected": int(rejected), "minutes": minutes}
                )
                acc.sums["cost"] += cost
    tables[()].setdefault((), _Kpi())
    private = not viewer.per_person and not viewer.self_only
    hidden = protect({d: (g, None) for d, g in tables.items()}, policy.k_anonymity) if private else set()

    def rows_of(dims: Sequence[str]) -> list[dict[str, Any]]:
        out = []
        for key in sorted(tables[tuple(dims)], key=_key_sort):
            row: dict[str, Any] = dict(zip(dims, key, strict=True))
            if (tuple(dims), key) in hidden:
                row.update({"suppressed": True, "people": None, **{c: None for c in KPI_COLUMNS}})
            else:
                acc = tables[tuple(dims)][key]
                row.update({"suppressed": False, "people": acc.npeople, **_metrics(acc)})
            out.append(row)
        return out

    return {
        "columns": KPI_COLUMNS,
        "totals": rows_of(())[0],
        **{f"by_{dims[0]}": rows_of(dims) for dims in TABLES},
        "suppressed_groups": len(hidden),
        "minutes_saved_by_kind": {
            n: k.minutes_saved for n, k in sorted(config.kinds.items()) if k.minutes_saved
        },
    }


def print_adoption(section: dict[str, Any] | None, console: Any) -> None:
    """The adoption KPIs as a Rich table within 80 columns (by action and by level; nothing when empty)."""
    from rich.table import Table

    if not section or not section["totals"].get("decisions"):
        return
    table = Table(title="Earned autonomy: adoption", expand=False)
    for name in ("group", "judged", "success", "errors", "min saved", "$/min"):
        table.add_column(name, justify="left" if name == "group" else "right")

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.0%}"

    for label, rows in (("total", [section["totals"]]), ("action", section["by_action"]),
                        ("level", section["by_level"])):  # fmt: skip
        for r in rows:
            name = label if label == "total" else f"{label} {r.get(label)}"
            if r["suppressed"]:
                table.add_row(name, "(fewer than k people)", "", "", "", "")
                continue
            per = r["cost_per_minute_saved"]
            table.add_row(
                name,
                str(r["judged"]),
                pct(r["success_rate"]),
                pct(r["error_rate"]),
                f"{r['minutes_saved']:g}",
                "—" if per is None else f"{per:.4f}",
            )
    console.print(table, width=min(console.width, 80))
