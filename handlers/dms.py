"""``message`` events in DMs: questions asked privately."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from handlers import payloads
from handlers.context import HandlerContext
from handlers.questions import ingest_question


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the DM listener (other message events are acknowledged and dropped)."""

    @app.event("message")
    def on_message(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        if not payloads.is_user_dm(event) and not (event.get("channel_type") == "im" and event.get("bot_id")):
            return
        ingest_question(
            ctx.ingress,
            ctx.metrics,
            body,
            event,
            surface="dm",
            bot_user_id=context.get("bot_user_id"),
            bot_id=context.get("bot_id"),
        )
