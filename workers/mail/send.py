"""Sending a reply draft on the owner's click: the preview of its exact text (``mail_preview``) and the send
bound to that preview's fingerprint (``mail_send``)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from bot import ledger
from bot.db import Task
from bot.errors import Denied, UserFacingError
from bot.mail import messages as mail_messages
from bot.mail import text as mail_text
from bot.mail.base import Mailbox, MailMessage
from bot.mail.blocks import build_send_preview_blocks, escape
from bot.mail.config import MailboxConfig
from bot.mail.drafts import draft_fingerprint
from bot.mail.models import MailItem
from workers.actuators import SlackActuator
from workers.mail.actuator import MailboxActuator, mail_errors, post_owner_dm
from workers.mail.digest import refresh_message
from workers.mail.items import config_for, load_item, mailbox_for, save_item
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)


def _open_draft(deps: WorkerDeps, task: Task) -> tuple[MailItem, MailboxConfig, Mailbox, MailMessage | None]:
    """The triage record, mailbox and draft a send or its preview is about (owner and draft state checked)."""
    parent_id = task.payload["triage_task"]
    item = load_item(deps, parent_id)
    if item is None or not item.draft_id:
        raise UserFacingError(mail_messages.DRAFT_GONE, reason="no draft recorded")
    cfg = config_for(deps, item.mailbox)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {item.mailbox}")
    if item.draft_status not in ("open", "sending"):
        raise UserFacingError(mail_messages.DRAFT_NOT_OPEN, reason=f"draft is {item.draft_status}")
    mailbox = mailbox_for(deps, item.mailbox)
    with mail_errors(item.mailbox):
        draft = mailbox.get_draft(item.draft_id)
    if draft is None and item.draft_status == "open":
        raise UserFacingError(mail_messages.DRAFT_GONE, reason="draft not in Drafts")
    return item, cfg, mailbox, draft


def preview_send(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """The owner clicked "Send draft": show the draft's exact text and recipients as the mailbox holds them,
    with a "Confirm send" button bound to their fingerprint. Nothing is sent here."""
    item, cfg, _mailbox, draft = _open_draft(deps, task)
    if draft is None:  # "sending": a send is under way
        raise UserFacingError(mail_messages.DRAFT_NOT_OPEN, reason="draft is being sent")
    fp = draft_fingerprint(draft)
    blocks = build_send_preview_blocks(
        item.task_id, fp, to=draft.to, cc=draft.cc, subject=draft.subject, text=draft.body_text
    )
    text = mail_messages.SEND_PREVIEW_TEXT.format(to=escape(", ".join(draft.to), cfg.owner))
    channel, ts = post_owner_dm(deps.slack, deps.db, task, key="mail.preview", text=text, blocks=blocks)
    return {"preview": ts, "channel": channel, "fingerprint": fp, "to": draft.to, "cc": draft.cc}


def _close_preview(deps: WorkerDeps, parent_id: str, confirmed: str, draft: MailMessage, owner: str) -> None:
    """Show the confirmed preview as sent, without its button (best effort: the mail is already sent)."""
    with deps.db.session() as s:
        previews = list(
            s.execute(
                select(Task).where(
                    Task.intent == "mail_preview", Task.parent_id == parent_id, Task.status == "done"
                )
            ).scalars()
        )
    for preview in previews:
        shown = preview.result or {}
        if shown.get("fingerprint") != confirmed or not shown.get("channel") or not shown.get("preview"):
            continue
        blocks = build_send_preview_blocks(
            parent_id, confirmed, to=draft.to, cc=draft.cc, subject=draft.subject, text=draft.body_text
        )
        blocks = [b for b in blocks if b["type"] not in ("actions", "context")]
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": mail_messages.DRAFT_SENT.format(user=owner)}],
            }
        )
        try:
            deps.slack.chat_update(
                channel=shown["channel"],
                ts=shown["preview"],
                text=mail_messages.DRAFT_SENT.format(user=owner),
                blocks=blocks,
            )
        except Exception as exc:  # noqa: BLE001 - cosmetic: the reply is sent and recorded
            log.warning("draft of %s sent but its preview was not updated (%s)", parent_id, exc)


def send_draft(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Send the reply draft of a triaged email because its owner confirmed its exact text ("Confirm send").

    The send is bound to the fingerprint of the text and recipients the owner was shown: a draft that
    changed since is not sent, and the owner is told why."""
    confirmed = task.payload.get("confirm")
    if not isinstance(confirmed, str) or not confirmed:
        raise UserFacingError(mail_messages.DRAFT_UNCONFIRMED, reason="send without a confirmed preview")
    item, cfg, mailbox, draft = _open_draft(deps, task)
    parent_id = item.task_id
    if draft is not None and draft_fingerprint(draft) != confirmed:
        raise UserFacingError(mail_messages.DRAFT_CHANGED, reason="draft differs from the confirmed preview")
    edited = draft is not None and not mail_text.same_reply(draft.body_text, item.draft_text)
    save_item(deps, parent_id, draft_status="sending")
    MailboxActuator(mailbox, cfg, deps.db, deps.policy).send_draft(task, item.draft_id)
    save_item(deps, parent_id, draft_status="sent")
    ledger.record_outcome(
        deps.db,
        parent_id,
        "draft_sent_edited" if edited else "draft_sent_unchanged",
        source="explicit",
        actor=task.requester,
        detail={"edited": edited, "draft_id": item.draft_id},
    )
    if item.slack_channel and item.slack_ts:
        refresh_message(deps, item.slack_channel, item.slack_ts)
    if draft is not None:
        _close_preview(deps, parent_id, confirmed, draft, cfg.owner)
    to = ", ".join(draft.to) if draft is not None else item.sender or "the sender"
    # The subject and addresses come from mail: shown as text, never as links or mentions.
    SlackActuator(deps.slack, deps.db, deps.policy).notify(
        task,
        mail_messages.SENT_CONFIRMATION.format(
            to=escape(to, cfg.owner), subject=escape(item.subject or "", cfg.owner)
        ),
    )
    return {"sent": item.draft_id, "edited": edited}
