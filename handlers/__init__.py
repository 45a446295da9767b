"""Slack listeners, one module per surface. They verify identity, create the task, ack and enqueue.

No LLM calls and no slow I/O happen here: the work is done by ``workers/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App

from handlers.context import HandlerContext


def register_handlers(app: App, ctx: HandlerContext) -> None:
    """Register every surface's listeners on ``app``."""
    from handlers import actions, autonomy, deploy, dms, home, mail, mentions, payloads, suggested, usage

    @app.middleware
    def note_requester_team(body: dict[str, Any], next: Callable[[], Any]) -> Any:  # noqa: A002 - Bolt's name
        """Before any listener: bind the requester's own team, so every scope check sees other organisations."""
        user = payloads.requester_id(body)
        if user:
            homes = ctx.ingress.home_teams or payloads.installed_teams(body)
            ctx.ingress.policy.note_team(user, payloads.requester_team(body), homes)
        return next()

    mentions.register(app, ctx)  # @mentions in channels
    dms.register(app, ctx)  # direct messages
    actions.register(app, ctx)  # feedback buttons under answers
    mail.register(app, ctx)  # email triage buttons in the owner's DM
    autonomy.register(app, ctx)  # Yes / Not now on promotion offers
    suggested.register(app, ctx)  # Post to thread / Dismiss on an answer sent privately
    deploy.register(app, ctx)  # /deploy and its buttons
    home.register(app, ctx)  # App Home: the person's own week
    usage.register(app, ctx)  # /usage: the person's own numbers
