"""Earned autonomy on triage, the outcome window's end: judge every mail decision nobody judged by a click.

Run as a job (``judge_past_window``) that the workers' housekeeping enqueues every five minutes while the policy
has an ``[autonomy]`` section, for decisions older than ``CLAWBACK_OUTCOME_WINDOW_HOURS``:

- ``auto`` (Clawback acted): a correction recorded on the email (``label_corrected`` from "Wrong category" or from
  the owner relabelling or moving it in Outlook, ``move_undone``, ``draft_discarded``) = rejected; otherwise the
  action was kept = accepted (outcome ``auto_kept``, unless an accepted outcome of it exists already).
- ``suggest``: no Apply and no Dismiss within the window = ``none``.
- ``shadow`` (nothing was done or shown): what the owner did themselves, looked up now by Internet Message-ID
  (``Mailbox.find_message``): their move into the folder Clawback would have chosen, or the same triage label =
  accepted (``shadow_agreed``); a move into another folder or another triage label = rejected
  (``shadow_disagreed``); for a reply draft, a reply in Sent Items = accepted; anything else (still in the Inbox
  unlabelled, not found, no reply) = ``none``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot import ledger
from bot.db import AutonomyDecision, Outcome, utcnow
from bot.errors import Denied
from bot.mail.autonomy import GOVERNED, settle
from bot.mail.base import MailError, MailMessage
from bot.mail.config import LABEL_CATEGORIES
from bot.mail.models import MailItem
from workers import runtime
from workers.autonomy import announce
from workers.mail.items import config_for, mailbox_for
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)
MAX_PER_SWEEP = 2000  # decisions judged per sweep; the rest wait for the next one
# Outcome kinds on the email that reject an automatic action, and those that already accept it.
REJECTS = {
    "mail.categorize": {"label_corrected"},
    "mail.move": {"label_corrected", "move_undone"},
    "mail.draft": {"draft_discarded"},
}
ACCEPTS = {
    "mail.categorize": {"label_kept"},
    "mail.move": {"label_kept"},
    "mail.draft": {"draft_sent", "draft_sent_unchanged", "draft_sent_edited"},
}


def _auto(action: str, outcomes: list[tuple[int, str]]) -> tuple[str, int | None]:
    """(verdict, outcome id) for an automatic action from the email's outcomes; (accepted, None) = kept."""
    for oid, kind in outcomes:
        if kind in REJECTS[action]:
            return "rejected", oid
    for oid, kind in outcomes:
        if kind in ACCEPTS[action]:
            return "accepted", oid
    return "accepted", None


def _shadow(d: AutonomyDecision, msg: MailMessage | None, replied: bool) -> str:
    """accepted, rejected or none: what the owner did compared with what Clawback would have done."""
    detail = d.detail or {}
    if d.action == "mail.draft":
        return "accepted" if replied else "none"
    if msg is None:
        return "none"
    if d.action == "mail.move":
        folder, want = msg.folder.lower(), str(detail.get("folder") or "").lower()
        if folder == want:
            return "accepted"
        return "none" if folder == "inbox" else "rejected"
    labels = {c.lower() for c in msg.categories if c.lower() in LABEL_CATEGORIES}
    if not labels:
        return "none"
    return "accepted" if str(detail.get("label") or "").lower() in labels else "rejected"


def _looked_up(deps: WorkerDeps, item: MailItem, decisions: list[AutonomyDecision]) -> tuple[Any, bool]:
    """(the message as the owner left it, whether they replied) for shadow decisions; raises MailError."""
    if not item.internet_message_id:
        return None, False
    cfg = config_for(deps, item.mailbox)
    mailbox = mailbox_for(deps, item.mailbox)
    msg = None
    if any(d.action != "mail.draft" for d in decisions):
        msg = mailbox.find_message(item.internet_message_id, sorted(set(cfg.folders.values())))
    replied = False
    if any(d.action == "mail.draft" for d in decisions):
        replied = mailbox.find_sent_reply(item.internet_message_id) is not None
    return msg, replied


def judge_past_window() -> int:
    """RQ entry, enqueued by the workers' housekeeping: ``sweep`` with this worker's deps (offers and demotions
    it causes are announced with their queue)."""
    return sweep(runtime.current())


def sweep(deps: WorkerDeps, *, now: datetime | None = None) -> int:
    """Judge mail decisions past the outcome window; returns how many were judged."""
    cutoff = (now or utcnow()) - timedelta(hours=deps.settings.clawback_outcome_window_hours)
    with deps.db.read() as s:
        rows = list(
            s.execute(
                select(AutonomyDecision)
                .where(
                    AutonomyDecision.verdict.is_(None),
                    AutonomyDecision.action.in_(GOVERNED),
                    AutonomyDecision.created_at < cutoff,
                )
                .order_by(AutonomyDecision.id)
                .limit(MAX_PER_SWEEP)
            ).scalars()
        )
    by_task: dict[str, list[AutonomyDecision]] = {}
    for d in rows:
        by_task.setdefault(d.task_id, []).append(d)
    policy = deps.policy.current
    judged = 0
    for task_id, decisions in by_task.items():
        with deps.db.read() as s:
            item = s.execute(select(MailItem).where(MailItem.task_id == task_id)).scalar_one_or_none()
            outcomes = [
                (o.id, o.kind)
                for o in s.execute(
                    select(Outcome).where(Outcome.task_id == task_id).order_by(Outcome.id)
                ).scalars()
            ]
        owner = decisions[0].user
        shadow = [d for d in decisions if d.level == "shadow"]
        msg, replied = None, False
        if shadow and item is not None:
            try:
                msg, replied = _looked_up(deps, item, shadow)
            except (MailError, Denied) as exc:  # judged at the next sweep
                log.warning("autonomy sweep: cannot look up task %s in %s: %s", task_id, item.mailbox, exc)
                decisions = [d for d in decisions if d.level != "shadow"]
        kept: int | None = None
        for d in decisions:
            outcome_id: int | None = None
            if d.level == "auto":
                verdict, outcome_id = _auto(d.action, outcomes)
                if verdict == "accepted" and outcome_id is None:
                    if kept is None:
                        kept = ledger.record_outcome(
                            deps.db, task_id, "auto_kept", source="implicit", actor=owner,
                            detail={"window_hours": deps.settings.clawback_outcome_window_hours},
                        ).id  # fmt: skip
                    outcome_id = kept
            elif d.level == "shadow":
                verdict = _shadow(d, msg, replied)
                if verdict != "none":
                    kind = "shadow_agreed" if verdict == "accepted" else "shadow_disagreed"
                    outcome_id = ledger.record_outcome(
                        deps.db, task_id, kind, source="implicit", actor=owner,
                        detail={"action": d.action, "decision_id": d.id, "folder": msg.folder if msg else None},
                    ).id  # fmt: skip
            else:
                verdict = "none"
            for change in settle(
                deps.db, policy, [d], verdict, outcome_id=outcome_id, actor="clawback", why="outcome window"
            ):
                announce(deps, change)
            judged += 1
    if judged:
        log.info("autonomy sweep: judged %d mail decision(s) past the outcome window", judged)
    return judged
