"""The triage record of one email (``MailItem``) and the email it is about: the mailbox's configuration and
client, load and save of the record, fetching and cleaning the message, and the record's digest view."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from bot.db import AutonomyDecision, Task
from bot.errors import Denied
from bot.mail import messages as mail_messages
from bot.mail import text as mail_text
from bot.mail.autonomy import decisions_for, proposal_text
from bot.mail.base import Mailbox, MailMessage, MailNotFound
from bot.mail.blocks import ItemView
from bot.mail.config import MailboxConfig, mailbox_config
from bot.mail.config import mailbox_factory as default_mailbox_factory
from bot.mail.models import MailItem
from workers.mail.actuator import mail_errors
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)


def config_for(deps: WorkerDeps, address: str) -> MailboxConfig:
    """The mailbox's configuration from the current policy, or Denied when it is gone."""
    cfg = mailbox_config(deps.policy.current.section("mailboxes"), address)
    if cfg is None or not cfg.enabled:
        raise Denied(mail_messages.MAILBOX_GONE, reason=f"mailbox {address} not configured")
    return cfg


def mailbox_for(deps: WorkerDeps, address: str) -> Mailbox:
    """The mailbox client from ``deps.extras["mailboxes"]`` (built from the policy on first use)."""
    factory = deps.extras.get("mailboxes")
    if factory is None:
        factory = deps.extras["mailboxes"] = default_mailbox_factory(deps.settings, deps.policy)
    return factory(address)


def ensure_item(deps: WorkerDeps, task: Task) -> MailItem:
    """The task's triage record (the poller creates it; created here if the poller crashed before)."""
    with deps.db.session() as s:
        item = s.execute(select(MailItem).where(MailItem.task_id == task.id)).scalar_one_or_none()
        if item is None:
            p = task.payload
            item = MailItem(
                task_id=task.id,
                mailbox=p["mailbox"],
                item_id=p["item_id"],
                current_item_id=p["item_id"],
                internet_message_id=p.get("internet_message_id"),
                subject=(p.get("subject") or "")[:255],
                sender=(p.get("sender") or "")[:255],
                status="pending",
                folder="inbox",
                corrected=0,
                body_tokens=0,
                raw_tokens=0,
                prompt_tokens=0,
                completion_tokens=0,
            )
            s.add(item)
        return item


def save_item(deps: WorkerDeps, task_id: str, **fields: Any) -> None:
    """Update a triage record's fields."""
    with deps.db.session() as s:
        s.execute(update(MailItem).where(MailItem.task_id == task_id).values(**fields))


def load_item(deps: WorkerDeps, task_id: str) -> MailItem | None:
    with deps.db.session() as s:
        return s.execute(select(MailItem).where(MailItem.task_id == task_id)).scalar_one_or_none()


def _autonomy_view(item: MailItem, decisions: list[AutonomyDecision]) -> dict[str, Any]:
    """What earned autonomy adds to a record's view: pending proposals, Undo move, applied/dismissed notes."""
    proposals, notes, undo = [], [], False
    for d in decisions:
        if d.level == "suggest" and d.verdict is None:
            proposals.append((d.action, proposal_text(d.action, d.detail or {})))
        elif d.level == "suggest" and d.verdict == "accepted":
            notes.append(f"Applied: {proposal_text(d.action, d.detail or {}).removeprefix('Would ')}")
        elif d.level == "suggest" and d.verdict == "rejected":
            notes.append(f"Dismissed: {proposal_text(d.action, d.detail or {}).removeprefix('Would ')}")
        elif d.level == "auto" and d.action == "mail.move" and d.verdict is None:
            undo = item.folder != "inbox" and not item.corrected
    if item.status != "triaged":
        proposals = []
    return {"proposals": tuple(proposals), "undo_move": undo, "autonomy_notes": tuple(notes)}


def views_of(deps: WorkerDeps, items: list[MailItem], owner: str) -> list[ItemView]:
    """The digest views of records, with their earned-autonomy proposals and buttons."""
    decided = decisions_for(deps.db, [i.task_id for i in items])
    return [view_of(i, owner, decided.get(i.task_id)) for i in items]


def view_of(item: MailItem, owner: str, decisions: list[AutonomyDecision] | None = None) -> ItemView:
    """The digest view of a record (``decisions``: its earned-autonomy decisions, if any)."""
    return ItemView(
        task_id=item.task_id,
        owner=owner,
        subject=item.subject or "",
        sender=item.sender or "",
        status=item.status,
        category=item.category,
        priority=item.priority,
        summary=item.summary or "",
        draft_status=item.draft_status,
        feedback=item.feedback,
        prompt_tokens=item.prompt_tokens,
        completion_tokens=item.completion_tokens,
        draft_note=(item.reason or "") if item.draft_status == "refused" else "",
        **(_autonomy_view(item, decisions) if decisions else {}),
    )


def fetch(mailbox: Mailbox, address: str, item_id: str) -> MailMessage | None:
    with mail_errors(address):
        try:
            return mailbox.get_message(item_id)
        except MailNotFound:
            return None


def prepare(deps: WorkerDeps, msg: MailMessage) -> mail_text.PreparedEmail:
    return mail_text.prepare(
        msg.subject,
        msg.body_text,
        msg.body_html,
        budget_tokens=deps.settings.clawback_mail_body_tokens,
        attachments=msg.has_attachments,
    )


def skip_email(deps: WorkerDeps, task: Task, reason: str, **fields: Any) -> dict[str, Any]:
    log.info("task %s: email skipped: %s", task.id, reason)
    save_item(deps, task.id, status="skipped", reason=reason, **fields)
    return {"skipped": reason}
