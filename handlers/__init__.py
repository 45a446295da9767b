"""Slack listeners, one module per surface. They verify identity, create the task, ack and enqueue.

No LLM calls and no slow I/O happen here: the work is done by ``workers/``.
"""

from __future__ import annotations

from slack_bolt import App

from handlers.context import HandlerContext


def register_handlers(app: App, ctx: HandlerContext) -> None:
    """Register every surface's listeners on ``app``."""
    from handlers import actions, dms, mentions

    mentions.register(app, ctx)
    dms.register(app, ctx)
    actions.register(app, ctx)
    __import__("handlers.mail", fromlist=["register"]).register(app, ctx)  # email triage buttons
    __import__("handlers.deploy", fromlist=["register"]).register(app, ctx)  # /deploy and its buttons
    __import__("handlers.home", fromlist=["register"]).register(app, ctx)  # App Home: own week
    __import__("handlers.usage", fromlist=["register"]).register(app, ctx)  # /usage: own numbers
