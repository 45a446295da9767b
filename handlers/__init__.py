"""Slack listeners, one module per surface. They verify identity, create the task, ack and enqueue.

No LLM calls and no slow I/O happen here: the work is done by ``workers/``.
"""

from __future__ import annotations

from slack_bolt import App

from handlers.context import HandlerContext


def register_handlers(app: App, ctx: HandlerContext) -> None:
    """Register every surface's listeners on ``app``."""
    from handlers import actions, deploy, dms, home, mail, mentions, usage

    mentions.register(app, ctx)  # @mentions in channels
    dms.register(app, ctx)  # direct messages
    actions.register(app, ctx)  # feedback buttons under answers
    mail.register(app, ctx)  # email triage buttons in the owner's DM
    deploy.register(app, ctx)  # /deploy and its buttons
    home.register(app, ctx)  # App Home: the person's own week
    usage.register(app, ctx)  # /usage: the person's own numbers
