"""Pure checks and extractors over Slack payloads (no I/O; unit-tested without servers)."""

from __future__ import annotations

import re
from typing import Any

_LEADING_MENTION = re.compile(r"^\s*<@[UW][A-Z0-9]+(?:\|[^>]*)?>[\s,:]*")
MAX_QUESTION_CHARS = 8000


def is_bot_message(event: dict[str, Any], bot_user_id: str | None = None) -> bool:
    """True for messages written by any bot (ours included): they are never answered."""
    return bool(
        event.get("bot_id")
        or event.get("subtype") == "bot_message"
        or event.get("bot_profile")
        or (bot_user_id and event.get("user") == bot_user_id)
    )


def is_own_message(event: dict[str, Any], bot_user_id: str | None, bot_id: str | None = None) -> bool:
    """True when the message is the bot's own."""
    return bool(
        (bot_user_id and event.get("user") == bot_user_id) or (bot_id and event.get("bot_id") == bot_id)
    )


def bot_identity(event: dict[str, Any]) -> dict[str, str]:
    """Which integration wrote a bot message: its ``bot_id`` and ``app_id`` (top level or ``bot_profile``)."""
    profile = event.get("bot_profile") if isinstance(event.get("bot_profile"), dict) else {}
    found = {
        "bot_id": event.get("bot_id") or profile.get("id"),
        "app_id": event.get("app_id") or profile.get("app_id"),
    }
    return {k: v for k, v in found.items() if isinstance(v, str) and v}


def thread_of(event: dict[str, Any]) -> str | None:
    """The thread a reply belongs in: the event's thread, or the message itself starts one."""
    return event.get("thread_ts") or event.get("ts")


def question_text(event: dict[str, Any]) -> str:
    """The question without the leading bot mention, whitespace-trimmed and bounded."""
    text = event.get("text") or ""
    return _LEADING_MENTION.sub("", text, count=1).strip()[:MAX_QUESTION_CHARS]


def is_user_dm(event: dict[str, Any]) -> bool:
    """True for a plain user message in a DM (not edits, joins or other subtypes)."""
    return event.get("channel_type") == "im" and event.get("subtype") in (
        None,
        "file_share",
        "thread_broadcast",
    )


def event_id(body: dict[str, Any]) -> str | None:
    """The Events API delivery id (stable across Slack's retries)."""
    value = body.get("event_id")
    return value if isinstance(value, str) and value else None


def is_well_formed_event(event: Any) -> bool:
    """True if an event has the fields every handler relies on, with the right types."""
    return (
        isinstance(event, dict)
        and isinstance(event.get("channel"), str)
        and isinstance(event.get("ts"), str)
        and isinstance(event.get("text", ""), str)
        and bool(_text(event.get("user")) or _text(event.get("bot_id")))  # an author: a person or a bot
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def requester_id(body: dict[str, Any]) -> str | None:
    """The verified Slack user id behind a request: event author, clicker or command user."""
    event = body.get("event")
    if isinstance(event, dict):
        return _text(event.get("user"))
    user = body.get("user")
    if isinstance(user, dict):
        return _text(user.get("id"))
    return _text(body.get("user_id"))


def requester_team(body: dict[str, Any]) -> str | None:
    """The requester's own team as Slack delivers it, which in a Slack Connect channel is their organisation.

    Events: the inner event's ``user_team`` (set in shared channels), else its ``team``, else the envelope's
    ``team_id``. Interactivity: ``user.team_id``, else ``team.id``. Slash commands: ``team_id`` (the
    workspace the person invoked it from).
    """
    event = body.get("event")
    if isinstance(event, dict):
        return _text(event.get("user_team")) or _text(event.get("team")) or _text(body.get("team_id"))
    user = body.get("user")
    if isinstance(user, dict):
        team = body.get("team")
        return _text(user.get("team_id")) or (_text(team.get("id")) if isinstance(team, dict) else None)
    return _text(body.get("team_id"))


def installed_teams(body: dict[str, Any]) -> tuple[str, ...]:
    """The installation a request was delivered to, from the payload (used only when ``auth.test`` failed).

    Events name it in ``authorizations`` (then the envelope's ``team_id``); interactivity in ``team.id``;
    slash commands in ``team_id``.
    """
    auths = body.get("authorizations")
    if isinstance(auths, list):
        teams = tuple(t for a in auths if isinstance(a, dict) and (t := _text(a.get("team_id"))))
        if teams:
            return teams
    team = body.get("team")
    found = _text(team.get("id")) if isinstance(team, dict) else _text(body.get("team_id"))
    return (found,) if found else ()


def command_channel(body: dict[str, Any]) -> str | None:
    """The channel a slash command was used in, for its channel rule; None in a DM (DMs have no rule)."""
    channel = _text(body.get("channel_id"))
    if channel is None or channel.startswith("D") or body.get("channel_name") == "directmessage":
        return None
    return channel
