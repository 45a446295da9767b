"""The owner's digest DM (``mail_digest``) and the rebuild of a digest or priority-1 message after a click."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from bot import ledger
from bot.db import Task
from bot.mail import messages as mail_messages
from bot.mail.blocks import MAX_BLOCKS, PER_ITEM, build_digest_pages, build_item_blocks, overflow_text
from bot.mail.models import MailItem
from workers import runtime
from workers.actuators import _classify
from workers.mail.actuator import post_owner_dm
from workers.mail.items import config_for, views_of
from workers.runtime import WorkerDeps

MAX_DIGEST_ITEMS = 32  # shown one by one; the rest are summed up in one line


def _digest_order(item: MailItem) -> tuple:
    return (
        0 if item.status == "needs_human" else 1,
        item.priority or 3,
        -(item.received_at.timestamp() if item.received_at else 0),
    )


def digest(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Post the owner one digest of everything triaged since the last one (priority 1 went out already)."""
    address = task.payload["mailbox"]
    cfg = config_for(deps, address)
    with deps.db.session() as s:
        s.execute(
            update(MailItem)
            .where(
                MailItem.mailbox == address,
                MailItem.digest_key.is_(None),
                MailItem.slack_ts.is_(None),
                MailItem.status.in_(("triaged", "needs_human")),
            )
            .values(digest_key=task.id)
        )
    with deps.db.session() as s:
        items = list(s.execute(select(MailItem).where(MailItem.digest_key == task.id)).scalars())
    if not items:
        return {"items": 0}
    items.sort(key=_digest_order)
    shown, rest = items[:MAX_DIGEST_ITEMS], items[MAX_DIGEST_ITEMS:]
    views = views_of(deps, shown, cfg.owner)
    overflow = overflow_text(views_of(deps, rest, cfg.owner)) if rest else None
    header = mail_messages.DIGEST_HEADER.format(mailbox=address, count=len(items))
    pages = build_digest_pages(header, views, overflow)
    per_page = (MAX_BLOCKS - 2) // PER_ITEM  # as build_digest_pages lays them out
    page_ts: list[str] = []
    for n, blocks in enumerate(pages):
        channel, ts = post_owner_dm(
            deps.slack, deps.db, task, key=f"mail.digest:{n}", text=header, blocks=blocks
        )
        page_ts.append(ts)
        ids = [v.task_id for v in views[n * per_page : (n + 1) * per_page]]
        with deps.db.session() as s:
            s.execute(
                update(MailItem).where(MailItem.task_id.in_(ids)).values(slack_channel=channel, slack_ts=ts)
            )
    ledger.update_result(deps.db, task.id, header=header, overflow=overflow, pages=page_ts)
    return {
        "items": len(items),
        "shown": len(shown),
        "pages": page_ts,
        "header": header,
        "overflow": overflow,
    }


def refresh_message(deps: WorkerDeps, channel: str, ts: str) -> str:
    """Rebuild a digest or priority-1 message from the records after a click."""
    with deps.db.session() as s:
        items = list(
            s.execute(
                select(MailItem).where(MailItem.slack_channel == channel, MailItem.slack_ts == ts)
            ).scalars()
        )
    if not items:
        return "skipped"
    items.sort(key=_digest_order)
    owner = ledger.get_task(deps.db, items[0].task_id).requester  # type: ignore[union-attr]
    views = views_of(deps, items, owner)
    if items[0].digest_key:
        info = ledger.get_task(deps.db, items[0].digest_key).result or {}  # type: ignore[union-attr]
        pages = info.get("pages") or []
        header = info.get("header") or ""
        blocks = build_digest_pages(header, views, None)[0]
        if pages and ts != pages[0]:
            blocks = [b for b in blocks if b.get("type") != "header"]
        if pages and ts == pages[-1] and info.get("overflow"):
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": info["overflow"]}]})
    else:
        header = mail_messages.URGENT_HEADER.format(mailbox=items[0].mailbox)
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            *build_item_blocks(views[0]),
        ]
    try:
        deps.slack.chat_update(channel=channel, ts=ts, text=header or "Email triage", blocks=blocks)
    except Exception as exc:
        from slack_sdk.errors import SlackApiError

        if isinstance(exc, SlackApiError):
            raise _classify(exc) from exc
        raise
    return "updated"


def refresh_mail_message(channel: str, ts: str) -> str:
    """RQ entry: rebuild a triage message after a button click."""
    return refresh_message(runtime.current(), channel, ts)
