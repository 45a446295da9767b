"""Interactivity on promotion offers: "Yes" and "Not now" (only the person offered; others are refused).

The answer is recorded here in one SQL transaction (``bot.autonomy``: the level change and the audit entry); a
worker updates the DM, or tells someone else privately that the offer is not theirs.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot import autonomy
from bot.queue import INTERACTIVE
from bot.slack.blocks import AUTONOMY_NOT_NOW, AUTONOMY_YES
from handlers.context import HandlerContext

log = logging.getLogger(__name__)


def answer_offer(ctx: HandlerContext, action_id: str, value: Any, user: str, channel: str | None) -> str:
    """Record Yes / Not now from the verified ``user`` and enqueue the visible update; returns what happened."""
    db = ctx.ingress.db
    if action_id == AUTONOMY_YES:
        result = autonomy.accept_offer(db, ctx.ingress.policy.current, value, actor=user)
    else:
        result = autonomy.decline_offer(db, value, actor=user)
    if result in ("malformed", "unknown"):
        return result
    ref = f"deny:{user}:{channel or ''}" if result == "not yours" else result
    try:
        ctx.ingress.queue.queues[INTERACTIVE].enqueue(
            autonomy.SHOW_OFFER_ANSWER, int(value), ref, job_timeout=60, result_ttl=60, failure_ttl=86400
        )
    except Exception:  # the answer is recorded; the visible update is best effort
        log.warning("autonomy offer %s answered (%s) but the message update was not enqueued", value, result)
    return result


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the offer buttons' listeners."""

    def on_answer(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get("id")
        answer_offer(ctx, action["action_id"], action.get("value"), body["user"]["id"], channel)
        ack()

    app.action(AUTONOMY_YES)(on_answer)
    app.action(AUTONOMY_NOT_NOW)(on_answer)
