"""The ``mail_discard`` job: the owner clicked "Discard draft", so the reply draft Clawback saved for that email
is deleted from the mailbox (EWS: moved to Deleted Items; Graph: DELETE).

Only the draft Clawback saved for that email (an ``actions`` row of the triage task or of its Apply records the
draft id), only for the mailbox owner, audited before the effect (``MailboxActuator.delete_draft``, scope
``mail.draft``), idempotent (a draft already gone is no error), and refused when the draft was sent already —
by Clawback (a ``mail.send`` action) or from Outlook (the item left Drafts: nothing is deleted).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from bot.db import Action, Task
from bot.errors import Denied, UserFacingError
from bot.mail import messages as mail_messages
from workers.mail.actuator import MailboxActuator
from workers.mail.items import config_for, load_item, mailbox_for
from workers.runtime import WorkerDeps


def _draft_actions(deps: WorkerDeps, triage_id: str, kind: str) -> list[dict[str, Any]]:
    """Detail and result of the done ``kind`` actions of the triage task and of the tasks its clicks made."""
    with deps.db.read() as s:
        rows = s.execute(
            select(Action.detail, Action.result)
            .join(Task, Task.id == Action.task_id)
            .where(
                Action.kind == kind,
                Action.status == "done",
                or_(Task.id == triage_id, Task.parent_id == triage_id),
            )
        ).all()
    return [{**(detail or {}), **(result or {})} for detail, result in rows]


def discard_draft(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Delete the reply draft Clawback saved for the triage task ``task.payload["triage_task"]``."""
    parent_id = task.payload["triage_task"]
    item = load_item(deps, parent_id)
    if item is None:
        raise UserFacingError(mail_messages.RELABEL_UNKNOWN, reason="no triage record")
    cfg = config_for(deps, item.mailbox)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {item.mailbox}")
    draft_id = item.draft_id
    if not draft_id or not any(
        a.get("draft_id") == draft_id for a in _draft_actions(deps, parent_id, "mail.draft")
    ):
        raise Denied(mail_messages.DRAFT_NOT_OURS, reason=f"no draft Clawback saved for {parent_id}")
    if item.draft_status == "sent" or any(
        a.get("draft_id") == draft_id for a in _draft_actions(deps, parent_id, "mail.send")
    ):
        raise Denied(mail_messages.DRAFT_ALREADY_SENT, reason="the draft was sent already")
    mailbox = mailbox_for(deps, item.mailbox)
    outcome = MailboxActuator(mailbox, cfg, deps.db, deps.policy).delete_draft(task, draft_id)
    if outcome == "not a draft":
        raise Denied(mail_messages.DRAFT_ALREADY_SENT, reason="the draft left Drafts (sent or moved): kept")
    return {"discarded": parent_id, "draft_id": draft_id, "draft": outcome}
