"""Answer a question asked by mention or DM, using the thread as context."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

import prompts
from bot import ledger, messages
from bot.db import Task
from bot.ingress import redactor_for
from bot.llm import LLMResult
from bot.measure import outcomes
from bot.text.safety import sanitize, urls_in
from bot.text.tokens import ContextLine, estimate_messages, trim_context
from workers import chat_reply
from workers.actuators import SlackActuator, _classify
from workers.runtime import WorkerDeps
from workers.tools import run_tool_call, scopes_in_task, tools_for

log = logging.getLogger(__name__)

PROMPT = "answer"
MAX_TOOL_ROUNDS = 2
MAX_TOOL_CALLS = 4
MAX_THREAD_MESSAGES = 400
NOT_READ_CONTEXT = "(earlier messages not shown: reading this thread is not allowed in this channel)"


def has_earlier_messages(task: Task) -> bool:
    """True when the question is a reply in a thread, so there are earlier messages one could read."""
    return bool(task.thread_ts and task.channel_id and task.thread_ts != task.message_ts)


def fetch_thread(deps: WorkerDeps, task: Task) -> list[dict[str, Any]]:
    """The thread's messages before the question (bounded, oldest first); nothing where reading is not allowed."""
    if "chat.read_thread" not in scopes_in_task(deps, task):
        return []  # the person's scopes intersected with the channel's rule, checked before any Slack read
    if not has_earlier_messages(task):
        return []  # a top-level message starts its thread: there is nothing earlier to read
    out: list[dict[str, Any]] = []
    cursor = None
    for _page in range(MAX_THREAD_MESSAGES // 200):
        try:
            resp = deps.slack.conversations_replies(
                channel=task.channel_id, ts=task.thread_ts, limit=200, cursor=cursor
            )
        except SlackApiError as exc:
            if exc.response.get("error") == "thread_not_found":
                return []
            raise _classify(exc) from exc
        out.extend(resp.get("messages", []))
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not resp.get("has_more") or not cursor:
            break
    return [m for m in out if m.get("ts") != task.message_ts]


def build_context(
    deps: WorkerDeps, task: Task, thread: list[dict[str, Any]]
) -> tuple[list[ContextLine], int]:
    """Thread messages as redacted context lines; returns (lines, redactions)."""
    redactor = redactor_for(deps.policy)
    lines, redactions = [], 0
    for m in thread:
        text, counts = redactor.redact(m.get("text") or "")
        redactions += sum(counts.values())
        author = "(bot)" if m.get("bot_id") else f"<@{m.get('user', 'unknown')}>"
        lines.append(ContextLine(author, " ".join(text.split())))
    return lines, redactions


def _converse(
    deps: WorkerDeps,
    task: Task,
    prompt: prompts.RenderedPrompt,
    max_tokens: int,
    rounds: list[LLMResult] | None = None,
) -> LLMResult:
    """Call the model, letting it use the requester's tools for a bounded number of rounds.

    Each call reserves its own worst case from the budget and settles its real usage, so a conversation
    can never overshoot the daily budget by more than one call's maximum. Each round's result is appended
    to ``rounds`` when given.
    """
    policy = deps.policy.current
    offered = tools_for(scopes_in_task(deps, task), surface=task.surface)  # the channel's rule applies
    specs = [t.spec() for t in offered] or None
    # The request's rate was taken once, before any Slack read (``answer``): model rounds do not count again.
    limits = replace(policy.limits_for(task.requester), requests_per_minute=0)
    conversation: list[dict[str, Any]] = prompt.messages()
    for round_no in range(MAX_TOOL_ROUNDS + 1):
        last_round = round_no == MAX_TOOL_ROUNDS
        reservation = deps.budget.reserve(
            task.requester, estimate_messages(conversation) + max_tokens, limits
        )
        result = None
        try:
            result = deps.llm.complete(
                task_id=task.id,
                step="answer" if round_no == 0 else f"answer.{round_no}",
                prompt=prompt,
                max_tokens=max_tokens,
                messages=conversation,
                tools=None if last_round else specs,
                reuse=task.attempts > 1,
            )  # only a retried job can have paid already
        finally:
            deps.budget.settle(reservation, 0 if result is None or result.reused else result.total_tokens)
        if rounds is not None:
            rounds.append(result)
        if not result.tool_calls or last_round:
            return result
        conversation.append(
            {
                "role": "assistant",
                "content": result.content or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in result.tool_calls
                ],
            }
        )
        for n, call in enumerate(result.tool_calls):
            output = (
                run_tool_call(deps, task, call, offered) if n < MAX_TOOL_CALLS else "refused: too many calls"
            )
            conversation.append({"role": "tool", "tool_call_id": call.id, "content": output})
    raise AssertionError("unreachable")


def _usage(deps: WorkerDeps, task: Task, rounds: list[LLMResult]) -> tuple[int, int, float]:
    """(prompt tokens, completion tokens, cost) of all the task's model calls, as reported.

    On a first attempt those are this attempt's rounds (each one recorded as it returned; a failed call
    ends the attempt); a retry also counts earlier attempts' calls, which only the ledger knows.
    """
    if task.attempts > 1:
        return ledger.task_usage(deps.db, task.id)
    return (
        sum(r.prompt_tokens for r in rounds),
        sum(r.completion_tokens for r in rounds),
        sum(r.cost for r in rounds),
    )


def answer(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Run the answer pipeline for ``task``; returns the result stored on the task."""
    policy = deps.policy.current
    if task.attempts <= 1:  # a retry is the same request: its rate was taken on the first attempt
        # Before any Slack read or post: a person over their rate costs no Slack call beyond one notice.
        deps.budget.take_request(task.requester, policy.limits_for(task.requester))
    question = task.payload.get("text") or ""
    # Asking again in the same thread soon after an answer is a weak "not resolved" for that answer.
    outcomes.note_followup(deps.db, task, within=timedelta(minutes=deps.settings.clawback_followup_minutes))
    if not question.strip():
        SlackActuator(deps.slack, deps.db, deps.policy).notify(task, messages.EMPTY_QUESTION)
        return {"empty": True}
    # Reads are the person's scopes intersected with the channel's rule, checked before anything is fetched.
    may_read = "chat.read_thread" in scopes_in_task(deps, task)
    blocked = (
        not may_read and has_earlier_messages(task) and policy.has_scope(task.requester, "chat.read_thread")
    )
    thread = fetch_thread(deps, task) if may_read else []
    lines, redactions = build_context(deps, task, thread)
    kept, dropped = trim_context(lines, deps.settings.clawback_context_tokens)
    boundary = "<<" + hashlib.sha256(task.id.encode()).hexdigest()[:16] + ">>"
    context_text = "\n".join(line.render().replace(boundary, "") for line in kept) or (
        NOT_READ_CONTEXT if blocked else "(no earlier messages)"
    )
    prompt = prompts.render(
        PROMPT,
        requester_name=f"<@{task.requester}>",
        boundary=boundary,
        context=context_text,
        question=question.replace(boundary, ""),
    )
    rounds: list[LLMResult] = []
    result = _converse(deps, task, prompt, deps.settings.clawback_max_answer_tokens, rounds)
    sources = [question, *(line.text for line in lines)]
    people = {task.requester, *(m.get("user") for m in thread if m.get("user"))}
    text, defanged = sanitize(result.content, allowed_urls=urls_in(*sources), allowed_users=people)
    prompt_tokens, completion_tokens, cost = _usage(deps, task, rounds)
    footer = messages.footer(result.model, prompt_tokens, completion_tokens, cost, task.id)
    if blocked:
        footer = f"{messages.THREAD_NOT_READ_IN_CHANNEL}\n{footer}"
    # In the thread, or privately first: the asker's earned-autonomy level for channel answers decides.
    delivered = chat_reply.deliver(deps, task, text=text, footer=footer)
    return {
        **delivered,
        "context_messages": len(kept),
        "thread_read": may_read and has_earlier_messages(task),
        "context_dropped": dropped,
        "context_redactions": redactions,
        "links_neutralised": defanged,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }
