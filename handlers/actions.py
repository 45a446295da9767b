"""Interactivity: the feedback buttons under answers."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot import audit
from bot.db import Task
from bot.measure import outcomes
from bot.queue import INTERACTIVE
from bot.slack.blocks import FEEDBACK_NOT_HELPFUL, FEEDBACK_RESOLVED
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

APPLY_FEEDBACK = "workers.apply_feedback"
_KINDS = {FEEDBACK_RESOLVED: "resolved", FEEDBACK_NOT_HELPFUL: "not_helpful"}


def record_feedback(ctx: HandlerContext, action_id: str, task_id: Any, user: str) -> str:
    """Record a click as an explicit outcome (the requester's own answer only) and enqueue the message update."""
    kind = _KINDS[action_id]
    if not isinstance(task_id, str) or len(task_id) > 32:
        return "malformed"
    db = ctx.ingress.db
    with db.session() as s:
        task = s.get(Task, task_id)
        if task is None:
            return "unknown task"
        refusal = outcomes.click_refusal(task, user, kind)
        row = (
            outcomes.record_click(s, task, kind, user, {"action_id": action_id}) if refusal is None else None
        )
        audit.append(
            s,
            actor=user,
            action="outcome.feedback",
            task_id=task_id,
            decision="allow" if row is not None else "deny",
            target=task.channel_id,
            details={"kind": kind, "intent": task.intent, "reason": refusal},
        )
    # The worker shows the result: the outcome in the message, or a private note saying why not.
    why = "not-yours" if refusal == outcomes.NOT_REQUESTER else "not-an-answer"
    ref = f"{row.id}" if row is not None else f"deny:{user}:{why}"
    try:
        ctx.ingress.queue.queues[INTERACTIVE].enqueue(
            APPLY_FEEDBACK, task_id, ref, job_timeout=60, result_ttl=60, failure_ttl=86400
        )
    except Exception:  # the outcome is recorded; the visible update is best effort
        log.warning("feedback for task %s recorded but the message update was not enqueued", task_id)
    if row is not None:
        return kind
    return "not requester" if refusal == outcomes.NOT_REQUESTER else "not an answer"


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the button listeners."""

    def on_feedback(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        record_feedback(ctx, action["action_id"], action.get("value"), body["user"]["id"])
        ack()

    app.action(FEEDBACK_RESOLVED)(on_feedback)
    app.action(FEEDBACK_NOT_HELPFUL)(on_feedback)
