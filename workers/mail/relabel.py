"""The ``mail_relabel`` job: the owner's chosen category after "Wrong category"."""

from __future__ import annotations

from typing import Any

from bot.db import Task
from bot.errors import Denied, UserFacingError
from bot.mail import messages as mail_messages
from bot.mail.autonomy import governs
from bot.mail.config import CATEGORIES, CATEGORY_LABELS, LABEL_CATEGORIES
from workers.mail.actuator import MailboxActuator
from workers.mail.items import config_for, fetch, load_item, mailbox_for, save_item
from workers.runtime import WorkerDeps


def relabel(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Put the owner's chosen category on the message in Exchange (their own categories are kept)."""
    parent_id = task.payload["triage_task"]
    category = task.payload.get("category")
    item = load_item(deps, parent_id)
    if item is None or category not in CATEGORIES:
        raise UserFacingError(mail_messages.RELABEL_UNKNOWN, reason="no triage record or unknown category")
    cfg = config_for(deps, item.mailbox)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {item.mailbox}")
    mailbox = mailbox_for(deps, item.mailbox)
    msg = fetch(mailbox, cfg.address, item.current_item_id)
    if msg is None:
        return {"skipped": "the message is no longer in the mailbox"}
    label = CATEGORY_LABELS[category]
    categories = [c for c in msg.categories if c.lower() not in LABEL_CATEGORIES] + [label]
    actuator = MailboxActuator(mailbox, cfg, deps.db, deps.policy)
    actuator.categorize(task, msg.item_id, categories)
    save_item(deps, parent_id, label=label, corrected=1)
    result: dict[str, Any] = {"relabelled": parent_id, "category": category, "categories": categories}
    # With earned autonomy, a message Clawback moved goes where the right category goes (or back to the Inbox).
    target = cfg.folder_for(category) or "inbox"
    if (
        governs(deps.policy.current)
        and item.folder != target
        and deps.policy.current.has_scope(task.requester, "mail.move")
    ):
        new_id = actuator.move(task, msg.item_id, target)
        save_item(deps, parent_id, current_item_id=new_id or msg.item_id, folder=target)
        result["moved_to"] = target
    return result
