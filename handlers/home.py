"""The App Home tab: opening it enqueues a job that publishes the person's own week (nothing slow here)."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import App

from bot.queue import INTERACTIVE
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

PUBLISH_HOME = "workers.measure.publish_home"
_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def on_home_opened(ctx: HandlerContext, event: dict[str, Any]) -> str:
    """Enqueue the Home tab publish for the verified user who opened it; returns what happened."""
    user = event.get("user")
    if event.get("tab", "home") != "home":
        return "not home"
    if not isinstance(user, str) or not _USER.fullmatch(user):
        return "malformed"
    try:
        ctx.ingress.queue.queues[INTERACTIVE].enqueue(
            PUBLISH_HOME, user, job_timeout=60, result_ttl=60, failure_ttl=86400
        )
    except Exception:  # the tab simply keeps its previous content; Slack will send the event again next time
        log.warning("home tab for %s not enqueued: queue unavailable", user)
        return "queue unavailable"
    return "enqueued"


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the ``app_home_opened`` listener."""

    @app.event("app_home_opened")
    def _home(event: dict[str, Any]) -> None:
        on_home_opened(ctx, event)
