"""Earned autonomy on triage: the decisions of one triaged email and their verdicts (pure SQL, no Slack, no mail).

Triage records one ``autonomy_decisions`` row per governed action it would take (``mail.categorize``,
``mail.move``, ``mail.draft``) when the policy has an ``[autonomy]`` section; ``detail`` holds the proposal
(``label``, ``folder``, ``draft``). Listeners and workers settle them here (``settle``: ``bot.autonomy.judge``
plus an audit entry) and then announce the returned changes with their own queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from bot import audit, autonomy
from bot.db import AutonomyDecision, Database
from bot.policy import Policy

GOVERNED = ("mail.categorize", "mail.move", "mail.draft")
APPLY_INTENT = "mail_apply"
UNDO_INTENT = "mail_undo"


def governs(policy: Policy) -> bool:
    """Whether triage's side effects go by earned autonomy (an ``[autonomy]`` section exists)."""
    return bool(policy.autonomy.configured)


def proposal_text(action: str, detail: dict[str, Any]) -> str:
    """``Would move to Newsletters``, ``Would label Newsletter``, ``Draft ready to save``."""
    if action == "mail.move":
        return f"Would move to {detail.get('folder', '?')}"
    if action == "mail.categorize":
        return f"Would label {detail.get('label', '?')}"
    return "Draft ready to save"


def decisions_for(db: Database, task_ids: Iterable[str]) -> dict[str, list[AutonomyDecision]]:
    """The mail decisions of these triage tasks, oldest first, by task id."""
    ids = list(task_ids)
    out: dict[str, list[AutonomyDecision]] = {i: [] for i in ids}
    if not ids:
        return out
    with db.read() as s:
        rows = s.execute(
            select(AutonomyDecision)
            .where(AutonomyDecision.task_id.in_(ids), AutonomyDecision.action.in_(GOVERNED))
            .order_by(AutonomyDecision.id)
        ).scalars()
        for row in rows:
            out[row.task_id].append(row)
    return out


def pending(
    db: Database, task_id: str, action: str | None = None, level: str | None = None
) -> list[AutonomyDecision]:
    """Unjudged decisions of a triage task (optionally of one action and level)."""
    return [
        d
        for d in decisions_for(db, [task_id])[task_id]
        if d.verdict is None
        and (action is None or d.action == action)
        and (level is None or d.level == level)
    ]


def settle(
    db: Database,
    policy: Policy,
    decisions: Iterable[AutonomyDecision],
    verdict: str,
    *,
    outcome_id: int | None,
    actor: str,
    why: str,
) -> list[autonomy.Change]:
    """Judge each decision (audited with its outcome id); returns the changes to announce."""
    changes: list[autonomy.Change] = []
    for d in decisions:
        change = autonomy.judge(db, policy, d.id, verdict, outcome_id=outcome_id, actor=actor)
        audit.record(
            db,
            actor=actor,
            on_behalf_of=d.user,
            action="autonomy.verdict",
            decision="info",
            task_id=d.task_id,
            target=f"{d.action}:{d.category}" if d.category else d.action,
            details={
                "decision_id": d.id,
                "level": d.level,
                "verdict": verdict,
                "outcome_id": outcome_id,
                "why": why,
            },
        )
        if change is not None:
            changes.append(change)
    return changes
