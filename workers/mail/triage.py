"""The ``triage`` job: one email, leading a batch of short queued emails of its mailbox when it runs first."""

from __future__ import annotations

import logging
from typing import Any

from bot.db import Task
from bot.errors import Denied
from bot.mail import messages as mail_messages
from workers.mail.act import conclude
from workers.mail.batch import (
    DECIDED,
    gather,
    hold_status,
    limits_for,
    may_join,
    release,
    store_verdicts,
    take_own,
)
from workers.mail.decide import Entry, decide_batch
from workers.mail.items import config_for, ensure_item, fetch, mailbox_for, prepare, skip_email
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)


def triage(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Triage one email (with other short queued emails of the mailbox when it leads a batch) and act."""
    address = task.payload["mailbox"]
    cfg = config_for(deps, address)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {address}")
    item = ensure_item(deps, task)
    mailbox = mailbox_for(deps, address)
    limits = limits_for(deps)
    if take_own(deps, task, item.id, limits) == DECIDED:
        return conclude(deps, task, cfg, mailbox)
    own = hold_status(item.id)
    try:
        msg = fetch(mailbox, address, item.current_item_id)
        if msg is None:
            return skip_email(deps, task, "the message is no longer in the mailbox")
        prepared = prepare(deps, msg)
        lead = Entry(task.id, item.id, msg, prepared)
        if prepared.is_empty:
            reason = "attachments only, no subject or text" if msg.has_attachments else "empty message"
            return skip_email(deps, task, reason, **lead.sizes)
        entries = [lead]
        if limits.max_emails > 1 and may_join(limits, 0, prepared):
            entries += gather(deps, task, cfg, mailbox, lead, limits)
        verdicts = decide_batch(deps, task, entries, f"<@{cfg.owner}>")
        store_verdicts(deps, task, entries, verdicts)
    except BaseException:
        released = release(deps, own)
        if released:
            log.info("task %s: gave back %d claimed email(s)", task.id, released)
        raise
    return conclude(deps, task, cfg, mailbox, msg)
