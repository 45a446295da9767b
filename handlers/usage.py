"""``/usage``: the person's own numbers, answered ephemerally in the ack (one indexed query, no LLM)."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App

from bot import autonomy
from bot.db import utcnow
from bot.errors import Denied, ServiceUnavailable
from bot.measure.report import own_usage
from bot.measure.usage import build_usage_text
from handlers import payloads
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

DEFAULT_DAYS = 7
MAX_DAYS = 90
USAGE_HELP = "Usage: `/usage` (last 7 days) or `/usage 30d` (1–90 days). Only you see the answer."
USAGE_UNAVAILABLE = "Usage numbers are unavailable right now; try again in a minute."


def parse_days(text: str) -> int | None:
    """``""`` → 7, ``"30d"``/``"30"`` → 30; None when malformed or out of range."""
    text = (text or "").strip().lower()
    if not text:
        return DEFAULT_DAYS
    m = re.fullmatch(r"(\d{1,3})\s*d?", text)
    if not m or not 1 <= int(m.group(1)) <= MAX_DAYS:
        return None
    return int(m.group(1))


def handle_usage(
    ctx: HandlerContext, user: str, text: str, settings: Any | None = None, *, channel: str | None = None
) -> str:
    """The ephemeral answer to ``/usage`` for the verified ``user`` (in ``channel``; None for a DM)."""
    try:
        ctx.ingress.policy.current.require(user, "usage.self", channel=channel)
    except Denied as exc:
        return exc.user_message
    days = parse_days(text)
    if days is None:
        return USAGE_HELP
    try:
        numbers = own_usage(ctx.ingress.db, user, since=utcnow() - timedelta(days=days), settings=settings)
    except ServiceUnavailable:
        log.warning("/usage for %s: database unavailable", user)
        return USAGE_UNAVAILABLE
    policy = ctx.ingress.policy.current
    if policy.autonomy.configured:
        lines = autonomy.build_standing_lines(autonomy.standings(ctx.ingress.db, policy, user))
        if lines:
            return build_usage_text(numbers, days, autonomy=lines)
    return build_usage_text(numbers, days)


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the ``/usage`` command."""

    @app.command("/usage")
    def _usage(ack: Ack, command: dict[str, Any]) -> None:
        ack(
            response_type="ephemeral",
            text=handle_usage(
                ctx,
                command["user_id"],
                command.get("text") or "",
                ctx.settings,
                channel=payloads.command_channel(command),
            ),
        )
