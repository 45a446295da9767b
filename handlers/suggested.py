"""Interactivity on an answer sent privately (``chat.reply.channel`` below auto): Post to thread and Dismiss.

Only the asker may click (the verified Slack user id against the decision's person); anyone else is refused
privately and audited. The listener records the click in the audit log and enqueues the job that acts
(``workers.chat_reply.on_click``): posting happens there, with every check made again.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot import audit
from bot.db import AutonomyDecision
from bot.queue import INTERACTIVE
from bot.slack.blocks import DISMISS_ANSWER, POST_TO_THREAD
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

ON_CLICK = "workers.chat_reply.on_click"
ACTION = "chat.reply.channel"
_CHOICES = {POST_TO_THREAD: "post", DISMISS_ANSWER: "dismiss"}


def answer_click(ctx: HandlerContext, action_id: str, value: Any, user: str, channel: str | None) -> str:
    """Check the clicker is the asker, audit the click and enqueue its job; returns what happened."""
    if not isinstance(value, str) or not value.isdigit() or len(value) > 12:
        return "malformed"
    choice = _CHOICES[action_id]
    with ctx.ingress.db.session() as s:
        d = s.get(AutonomyDecision, int(value))
        if d is None or d.action != ACTION:
            return "unknown"
        allowed = d.user == user
        audit.append(
            s,
            actor=user,
            on_behalf_of=d.user,
            action=f"answer.{choice}",
            decision="allow" if allowed else "deny",
            task_id=d.task_id,
            target=ACTION,
            details={"decision_id": d.id, "reason": None if allowed else "only the person who asked"},
        )
    try:
        ctx.ingress.queue.queues[INTERACTIVE].enqueue(
            ON_CLICK,
            int(value),
            choice if allowed else "deny",
            user,
            channel or "",
            job_timeout=60,
            result_ttl=60,
            failure_ttl=86400,
        )
    except Exception:  # the click is audited; nothing was done, the person may click again
        log.warning("answer click %s on decision %s was not enqueued", choice, value)
    return choice if allowed else "not yours"


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the Post to thread / Dismiss listeners."""

    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
        answer_click(ctx, action["action_id"], action.get("value"), body["user"]["id"], channel)
        ack()

    app.action(POST_TO_THREAD)(on_click)
    app.action(DISMISS_ANSWER)(on_click)
