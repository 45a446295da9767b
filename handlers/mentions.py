"""``app_mention``: questions asked by mentioning the bot in a channel."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from handlers.context import HandlerContext
from handlers.questions import ingest_question


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the mention listener."""

    @app.event("app_mention")
    def on_app_mention(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        ingest_question(
            ctx.ingress,
            ctx.metrics,
            body,
            event,
            surface="mention",
            bot_user_id=context.get("bot_user_id"),
            bot_id=context.get("bot_id"),
        )
