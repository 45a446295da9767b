"""Tools the model may call while answering — offered only when the requester holds the tool's scope *in the
channel*: the person's scopes intersected with the channel's rule (``Policy.scopes_in``).

Every tool is read-only. A call to a tool that was not offered (a compromised or confused model), or with
arguments that fail validation, is refused in code, audited as a denial, and answered with a refusal the
model can read; the job carries on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import audit, ledger
from bot.db import Task
from bot.llm import ToolCall
from workers.runtime import WorkerDeps

MAX_RESULT_CHARS = 4000


@dataclass(frozen=True)
class Tool:
    """A read-only capability: its scope, its JSON schema, and the code that runs it."""

    name: str
    scope: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[WorkerDeps, Task, dict[str, Any]], str]

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def _channel_history(deps: WorkerDeps, task: Task, args: dict[str, Any]) -> str:
    query = str(args.get("query", "")).lower()
    limit = max(1, min(int(args.get("limit", 50)), 200))
    try:
        resp = deps.slack.conversations_history(channel=task.channel_id, limit=limit)
    except SlackApiError as exc:
        return f"error: {exc.response.get('error')}"
    from bot.ingress import redactor_for

    redactor = redactor_for(deps.policy)
    hits = []
    for m in resp.get("messages", []):
        text = m.get("text") or ""
        if query and query not in text.lower():
            continue
        clean, _ = redactor.redact(text)
        hits.append(f"<@{m.get('user', 'bot')}>: {' '.join(clean.split())}")
    return "\n".join(hits)[:MAX_RESULT_CHARS] or "no matching messages"


def _my_usage(deps: WorkerDeps, task: Task, args: dict[str, Any]) -> str:
    used, reserved = deps.budget.used_today(task.requester)
    limits = deps.policy.current.limits_for(task.requester)
    return json.dumps(
        {"tokens_used_today": used, "tokens_reserved": reserved, "daily_token_budget": limits.daily_tokens}
    )


CATALOG: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "search_channel_history",
            "chat.read_channel",
            "Search recent messages of the channel the question was asked in.",
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "query": {"type": "string", "maxLength": 200},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 200},
                },
                "required": ["query"],
            },
            _channel_history,
        ),
        Tool(
            "get_my_usage",
            "usage.self",
            "The requester's own token usage today and their budget.",
            {"type": "object", "additionalProperties": False, "properties": {}},
            _my_usage,
        ),
    )
}


def rule_channel(task: Task) -> str | None:
    """The channel whose rule governs ``task`` (None in DMs and email: channel rules govern channels)."""
    return None if task.surface in ("dm", "email") else task.channel_id


def scopes_in_task(deps: WorkerDeps, task: Task) -> frozenset[str]:
    """The requester's scopes where the task was asked: their scopes intersected with the channel's rule."""
    return deps.policy.current.scopes_in(task.requester, rule_channel(task))


def tools_for(scopes: frozenset[str], *, surface: str) -> list[Tool]:
    """The tools for ``scopes`` (pass ``scopes_in_task``: the channel's rule applies); channel tools not in DMs."""
    return [
        t
        for t in CATALOG.values()
        if t.scope in scopes and not (surface == "dm" and t.scope == "chat.read_channel")
    ]


def _valid(tool: Tool, args: dict[str, Any] | None) -> bool:
    if args is None:
        return False
    props = tool.parameters.get("properties", {})
    if tool.parameters.get("additionalProperties") is False and set(args) - set(props):
        return False
    if any(r not in args for r in tool.parameters.get("required", [])):
        return False
    for key, value in args.items():
        kind = props[key].get("type")
        if kind == "string" and (
            not isinstance(value, str) or len(value) > props[key].get("maxLength", 10_000)
        ):
            return False
        if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            return False
    return True


def _refuse(deps: WorkerDeps, task: Task, call: ToolCall, scope: str | None, reason: str) -> str:
    """Record and audit a refused tool call (target: the channel); the model reads the refusal."""
    target = task.channel_id
    audit.record(
        deps.db,
        actor="model",
        on_behalf_of=task.requester,
        action=f"tool.{call.name[:40]}",
        decision="deny",
        task_id=task.id,
        scope=scope,
        target=target,
        details={"reason": reason, "arguments": call.arguments[:500]},
    )
    key = f"{task.id}:tool:{call.id}"
    ledger.begin_action(
        deps.db,
        task_id=task.id,
        key=key,
        kind=f"tool.{call.name[:40]}",
        scope=scope,
        target=target,
        detail={"arguments": call.arguments[:500]},
    )
    ledger.complete_action(deps.db, key, "denied", {"reason": reason})
    return f"refused: {reason}. Answer with what you have."


def run_tool_call(deps: WorkerDeps, task: Task, call: ToolCall, offered: list[Tool]) -> str:
    """Execute one tool call if it was offered, is valid and is still allowed here; otherwise refuse and audit it.

    The authoritative re-check happens here, at the side of the effect: the requester must hold the tool's
    scope *and* the channel's rule must allow it now, whatever list the model was offered.
    """
    tool = next((t for t in offered if t.name == call.name), None)
    args = call.parsed_arguments()
    scope = CATALOG[call.name].scope if call.name in CATALOG else None
    if tool is None:
        return _refuse(deps, task, call, scope, "tool not offered to this requester")
    if not _valid(tool, args):
        return _refuse(deps, task, call, scope, "arguments failed validation")
    policy = deps.policy.current
    channel = rule_channel(task)
    if not policy.has_scope(task.requester, tool.scope):
        return _refuse(deps, task, call, scope, f"missing scope {tool.scope}")
    if tool.scope not in policy.scopes_in(task.requester, channel):
        return _refuse(deps, task, call, scope, f"{tool.scope} not allowed in channel {channel}")
    audit.record(
        deps.db,
        actor="model",
        on_behalf_of=task.requester,
        action=f"tool.{tool.name}",
        decision="allow",
        task_id=task.id,
        scope=tool.scope,
        target=task.channel_id,
        details={"arguments": args},
    )
    return tool.run(deps, task, args or {})
