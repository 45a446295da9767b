"""Usage reports from the ledger: totals, grouped by surface and intent (aggregates, never a ranking)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from bot.db import Database, LLMCall, Outcome, Task

ACCEPTED = (
    "resolved",
    "label_kept",
    "draft_sent",
    "draft_sent_unchanged",
    "draft_sent_edited",
    "deploy_succeeded",
)


@dataclass(frozen=True)
class Totals:
    """Sums over a set of tasks."""

    tasks: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    accepted: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with cost per accepted outcome."""
        return {
            "tasks": self.tasks,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost": round(self.cost, 6),
            "accepted_outcomes": self.accepted,
            "cost_per_accepted_outcome": round(self.cost / self.accepted, 6) if self.accepted else None,
        }


def _totals(db: Database, since: datetime | None, group: list[Any]) -> list[tuple[tuple, Totals]]:
    usage = (
        select(
            LLMCall.task_id,
            func.sum(LLMCall.prompt_tokens).label("p"),
            func.sum(LLMCall.completion_tokens).label("c"),
            func.sum(LLMCall.cost).label("cost"),
        )
        .group_by(LLMCall.task_id)
        .subquery()
    )
    accepted = (
        select(Outcome.task_id, func.max(case((Outcome.kind.in_(ACCEPTED), 1), else_=0)).label("ok"))
        .group_by(Outcome.task_id)
        .subquery()
    )
    stmt = (
        select(
            *group,
            func.count(Task.id),
            func.coalesce(func.sum(usage.c.p), 0),
            func.coalesce(func.sum(usage.c.c), 0),
            func.coalesce(func.sum(usage.c.cost), 0.0),
            func.coalesce(func.sum(accepted.c.ok), 0),
        )
        .select_from(Task)
        .outerjoin(usage, usage.c.task_id == Task.id)
        .outerjoin(accepted, accepted.c.task_id == Task.id)
    )
    if since is not None:
        stmt = stmt.where(Task.created_at >= since)
    if group:
        stmt = stmt.group_by(*group).order_by(*group)
    with db.session() as s:
        rows = s.execute(stmt).all()
    out = []
    for row in rows:
        keys, (n, p, c, cost, acc) = tuple(row[: len(group)]), row[len(group) :]
        out.append((keys, Totals(int(n), int(p), int(c), int(p) + int(c), float(cost), int(acc))))
    return out


def build_report(db: Database, *, since: datetime | None = None) -> dict[str, Any]:
    """The report document: totals, by surface, by intent."""
    totals = _totals(db, since, [])[0][1]
    return {
        "since": since.isoformat() if since else None,
        "totals": totals.as_dict(),
        "by_surface": [{"surface": k[0], **t.as_dict()} for k, t in _totals(db, since, [Task.surface])],
        "by_intent": [{"intent": k[0], **t.as_dict()} for k, t in _totals(db, since, [Task.intent])],
    }
