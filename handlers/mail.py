"""Interactivity on triage messages: "Right", "Wrong category", "Send draft", "Discard draft".

Only the mailbox owner's clicks count (the verified Slack user id, never text). Feedback is recorded as an
explicit outcome here (one SQL transaction); sending is a task with the ``mail.send`` scope, and relabelling
the message in Exchange after "Wrong category" a task with the ``mail.categorize`` scope (only when the owner
holds it), both run by a worker.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from sqlalchemy import select

from bot import audit, outcomes
from bot.db import Outcome, Task
from bot.ingress import submit
from bot.ledger import NewTask
from bot.mail.blocks import MAIL_DISCARD_DRAFT, MAIL_RIGHT, MAIL_SEND_DRAFT, MAIL_WRONG
from bot.mail.config import CATEGORIES, CATEGORY_LABELS
from bot.mail.models import MailItem
from bot.queue import INTERACTIVE
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

REFRESH = "workers.triage.refresh_mail_message"
_OUTCOME_OF = {"right": "label_kept", "wrong": "label_corrected", "discard": "draft_discarded"}


def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(channel, message ts) of the clicked message."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return channel, container.get("message_ts") or (body.get("message") or {}).get("ts")


def _refresh(ctx: HandlerContext, channel: str | None, ts: str | None) -> None:
    if not channel or not ts:
        return
    try:
        ctx.ingress.queue.queues[INTERACTIVE].enqueue(
            REFRESH, channel, ts, job_timeout=60, result_ttl=60, failure_ttl=86400
        )
    except Exception:  # the outcome is recorded; the visible update is best effort
        log.warning("mail feedback recorded but the message refresh was not enqueued (%s %s)", channel, ts)


def record_mail_feedback(
    ctx: HandlerContext, kind: str, task_id: Any, user: str, category: str | None = None
) -> str:
    """Record "right", "wrong:<category>" or "discard" from the owner; returns what happened."""
    if not isinstance(task_id, str) or len(task_id) > 32:
        return "malformed"
    if kind == "wrong" and category not in CATEGORIES:
        return "malformed"
    with ctx.ingress.db.session() as s:
        task = s.get(Task, task_id)
        item = s.execute(select(MailItem).where(MailItem.task_id == task_id)).scalar_one_or_none()
        if task is None or item is None or task.intent != "triage":
            return "unknown task"
        allowed = outcomes.click_refusal(task, user, _OUTCOME_OF[kind]) is None
        outcome, detail = None, {}
        if allowed and kind == "right" and item.feedback is None:
            outcome, item.feedback = "label_kept", "right"
            detail = {"category": item.category}
        elif allowed and kind == "wrong" and item.feedback is None:
            outcome, item.feedback = "label_corrected", f"wrong:{category}"
            item.corrected = 1  # recorded explicitly: later syncs must not count it again
            detail = {"from": item.category, "to": category, "label": CATEGORY_LABELS.get(category or "")}
        elif allowed and kind == "discard" and item.draft_status == "open":
            outcome, item.draft_status = "draft_discarded", "discarded"
            detail = {"draft_id": item.draft_id}
        if outcome:
            s.add(Outcome(task_id=task_id, kind=outcome, source="explicit", actor=user, detail=detail))
        audit.append(
            s,
            actor=user,
            action=f"outcome.mail.{kind}",
            task_id=task_id,
            decision="allow" if allowed else "deny",
            target=item.mailbox,
            details={"outcome": outcome, "reason": None if allowed else "not the mailbox owner"},
        )
    if not allowed:
        return "not owner"
    return outcome or "already recorded"


def request_send(ctx: HandlerContext, task_id: Any, user: str, channel: str | None) -> str:
    """The owner clicked "Send draft": create the ``mail_send`` task (scope checked at ingress and worker)."""
    if not isinstance(task_id, str) or len(task_id) > 32:
        return "malformed"
    with ctx.ingress.db.session() as s:
        task = s.get(Task, task_id)
        owner = task.requester if task is not None and task.intent == "triage" else None
        if owner is not None and user != owner:
            audit.append(
                s,
                actor=user,
                action="mail.send.request",
                task_id=task_id,
                decision="deny",
                scope="mail.send",
                details={"reason": "not the mailbox owner"},
            )
    if owner is None:
        return "unknown task"
    if user != owner:
        return "not owner"
    sub = submit(
        ctx.ingress,
        NewTask(
            idempotency_key=f"mail-send:{task_id}",
            requester=user,
            surface="dm",
            intent="mail_send",
            trigger="human",
            channel_id=channel,
            parent_id=task_id,
            payload={"triage_task": task_id},
        ),
        scope="mail.send",
        queue=INTERACTIVE,
    )
    return "denied" if sub.denied else ("queued" if sub.created else "duplicate")


def request_relabel(ctx: HandlerContext, task_id: str, user: str, category: str, channel: str | None) -> str:
    """After "Wrong category": relabel the message in Exchange, if the owner holds ``mail.categorize``."""
    if not ctx.ingress.policy.current.has_scope(user, "mail.categorize"):
        audit.record(
            ctx.ingress.db,
            actor=user,
            action="mail.categorize",
            decision="deny",
            task_id=task_id,
            scope="mail.categorize",
            details={
                "reason": "missing scope mail.categorize",
                "effect": "the label in Exchange is unchanged",
            },
        )
        return "no scope"
    sub = submit(
        ctx.ingress,
        NewTask(
            idempotency_key=f"mail-relabel:{task_id}",
            requester=user,
            surface="dm",
            intent="mail_relabel",
            trigger="human",
            channel_id=channel,
            parent_id=task_id,
            payload={"triage_task": task_id, "category": category},
        ),
        scope="mail.categorize",
        queue=INTERACTIVE,
    )
    return "denied" if sub.denied else ("queued" if sub.created else "duplicate")


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the triage buttons' listeners."""

    def on_right(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        if record_mail_feedback(ctx, "right", action.get("value"), body["user"]["id"]) == "label_kept":
            _refresh(ctx, *_where(body))
        ack()

    def on_wrong(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        value = str((action.get("selected_option") or {}).get("value") or "")
        task_id, _, category = value.partition(":")
        user = body["user"]["id"]
        if record_mail_feedback(ctx, "wrong", task_id, user, category) == "label_corrected":
            request_relabel(ctx, task_id, user, category, _where(body)[0])
            _refresh(ctx, *_where(body))
        ack()

    def on_discard(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        if record_mail_feedback(ctx, "discard", action.get("value"), body["user"]["id"]) == "draft_discarded":
            _refresh(ctx, *_where(body))
        ack()

    def on_send(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        request_send(ctx, action.get("value"), body["user"]["id"], _where(body)[0])
        ack()

    app.action(MAIL_RIGHT)(on_right)
    app.action(MAIL_WRONG)(on_wrong)
    app.action(MAIL_DISCARD_DRAFT)(on_discard)
    app.action(MAIL_SEND_DRAFT)(on_send)
