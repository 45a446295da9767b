"""Earned autonomy on triage, the owner's clicks: ``mail_apply`` (Apply a proposal made at ``suggest``) and
``mail_undo`` (Undo an automatic move). Each is a task of its own, created by the listener for the owner's
click; it acts through the ``MailboxActuator`` with every scope check at that moment, judges the decision and
announces any offer or demotion."""

from __future__ import annotations

from typing import Any

from bot import ledger
from bot.db import AutonomyDecision, Task
from bot.errors import Denied, UserFacingError
from bot.mail import messages as mail_messages
from bot.mail.autonomy import decisions_for, settle
from bot.mail.config import CATEGORY_LABELS, LABEL_CATEGORIES, MailboxConfig
from bot.mail.models import MailItem
from workers.autonomy import announce
from workers.mail.actuator import MailboxActuator
from workers.mail.digest import refresh_message
from workers.mail.items import config_for, fetch, load_item, mailbox_for, save_item
from workers.runtime import WorkerDeps

NOTHING_TO_APPLY = (
    "There is nothing left to apply on that email (it was applied, dismissed or corrected already)."
)


def _item(deps: WorkerDeps, task: Task) -> tuple[MailItem, MailboxConfig]:
    item = load_item(deps, task.payload["triage_task"])
    if item is None:
        raise UserFacingError(mail_messages.RELABEL_UNKNOWN, reason="no triage record")
    cfg = config_for(deps, item.mailbox)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {item.mailbox}")
    return item, cfg


def _decision(deps: WorkerDeps, parent_id: str, action: str, level: str) -> AutonomyDecision | None:
    found = [
        d for d in decisions_for(deps.db, [parent_id])[parent_id] if d.action == action and d.level == level
    ]
    return found[0] if found else None


def _refresh(deps: WorkerDeps, parent_id: str) -> None:
    item = load_item(deps, parent_id)
    if item is not None and item.slack_channel and item.slack_ts:
        refresh_message(deps, item.slack_channel, item.slack_ts)


def apply_proposal(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Perform exactly the proposed action (the owner's Apply), then judge the proposal accepted."""
    item, cfg = _item(deps, task)
    parent_id, action = item.task_id, task.payload.get("action")
    decision = _decision(deps, parent_id, str(action), "suggest")
    if decision is None or decision.verdict not in (None, "none"):
        if decision is not None and decision.verdict == "accepted":
            return {"applied": action, "already": True}
        raise UserFacingError(NOTHING_TO_APPLY, reason=f"no open {action} proposal")
    mailbox = mailbox_for(deps, item.mailbox)
    msg = fetch(mailbox, cfg.address, item.current_item_id)
    if msg is None:
        return {"skipped": "the message is no longer in the mailbox"}
    actuator = MailboxActuator(mailbox, cfg, deps.db, deps.policy)
    detail = decision.detail or {}
    if action == "mail.categorize":
        label = CATEGORY_LABELS.get(decision.category) or str(detail.get("label"))
        keep = [c for c in msg.categories if c.lower() not in LABEL_CATEGORIES]
        actuator.categorize(task, msg.item_id, [*keep, label], level="suggest")
        save_item(deps, parent_id, label=label)
    elif action == "mail.move":
        folder = str(detail.get("folder") or "")
        new_id = actuator.move(task, msg.item_id, folder, level="suggest")
        save_item(deps, parent_id, current_item_id=new_id or msg.item_id, folder=folder)
    elif action == "mail.draft":
        if item.draft_status != "proposed" or not item.draft_text:
            raise UserFacingError(NOTHING_TO_APPLY, reason=f"draft is {item.draft_status}")
        draft_id = actuator.draft_reply(
            task,
            msg.item_id,
            item.draft_text,
            source=msg,
            internet_message_id=msg.internet_message_id or None,
            level="suggest",
        )
        save_item(deps, parent_id, draft_id=draft_id, draft_status="open")
    else:
        raise UserFacingError(NOTHING_TO_APPLY, reason=f"unknown action {action!r}")
    outcome = ledger.record_outcome(
        deps.db,
        parent_id,
        "suggestion_applied",
        source="explicit",
        actor=task.requester,
        detail={"action": action, "decision_id": decision.id, "apply_task": task.id},
    )
    changes = settle(
        deps.db, deps.policy.current, [decision], "accepted", outcome_id=outcome.id, actor=task.requester,
        why="applied",
    )  # fmt: skip
    announced = [announce(deps, c) for c in changes]
    _refresh(deps, parent_id)
    return {"applied": action, "decision_id": decision.id, "outcome_id": outcome.id, "announced": announced}


def undo_move(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Move an automatically moved message back to the Inbox (the owner's Undo move; judged by the listener)."""
    item, cfg = _item(deps, task)
    if item.folder == "inbox":
        return {"undone": item.task_id, "already": True}
    mailbox = mailbox_for(deps, item.mailbox)
    msg = fetch(mailbox, cfg.address, item.current_item_id)
    if msg is None:
        return {"skipped": "the message is no longer in the mailbox"}
    new_id = MailboxActuator(mailbox, cfg, deps.db, deps.policy).move(task, msg.item_id, "inbox")
    save_item(deps, item.task_id, current_item_id=new_id or msg.item_id, folder="inbox")
    _refresh(deps, item.task_id)
    return {"undone": item.task_id, "folder": "inbox"}
