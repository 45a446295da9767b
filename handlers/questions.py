"""Shared ingress for questions asked by mention or DM: record, check, enqueue — then ack."""

from __future__ import annotations

import logging
from typing import Any

from bot.ingress import IngressDeps, message_key, record_ignored, redactor_for, submit
from bot.ledger import NewTask
from bot.ops.metrics import IngressMetrics
from handlers import payloads

log = logging.getLogger(__name__)


def ingest_question(
    deps: IngressDeps,
    metrics: IngressMetrics | None,
    body: dict[str, Any],
    event: dict[str, Any],
    *,
    surface: str,
    bot_user_id: str | None,
    bot_id: str | None = None,
) -> str:
    """Handle one question event; returns what happened (for logs and metrics)."""
    eid = payloads.event_id(body)
    if not eid or not payloads.is_well_formed_event(event):
        return "malformed"
    if payloads.is_own_message(event, bot_user_id, bot_id):
        if metrics:
            metrics.ignored.labels("self").inc()
        return "own message"
    channel = event["channel"]
    base = dict(
        idempotency_key=f"slack:{eid}",
        surface=surface,
        intent="answer",
        team_id=body.get("team_id"),
        channel_id=channel,
        thread_ts=payloads.thread_of(event),
        message_ts=event["ts"],
    )
    if payloads.is_bot_message(event, bot_user_id):
        if metrics:
            metrics.ignored.labels("bot").inc()
        requester = event.get("user") or event.get("bot_id") or "unknown-bot"
        # Name the integration as well as the identity it used, so an auditor knows which app to stop.
        new = NewTask(requester=requester, payload=payloads.bot_identity(event), **base)
        record_ignored(deps, new, "message from another bot")
        return "bot message"
    text, counts = redactor_for(deps.policy).redact(payloads.question_text(event))
    new = NewTask(
        requester=event["user"],
        payload={"text": text, "redacted": dict(counts)},
        redactions=sum(counts.values()),
        # Shared channels and org-wide installs deliver one message once per workspace or authorization, each
        # under its own event_id; a message and its ``file_share`` variant share the ts.
        message_key=message_key(payloads.requester_team(body), channel, event["ts"]),
        **base,
    )
    result = submit(deps, new, scope="chat.reply", channel=channel if surface != "dm" else None)
    if not result.created:
        return "duplicate"
    return "denied" if result.denied else "queued"
