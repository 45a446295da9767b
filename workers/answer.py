"""Answer a question asked by mention or DM, using the thread as context."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from slack_sdk.errors import SlackApiError

import prompts
from bot import ledger, messages
from bot.blocks import split_answer_messages
from bot.db import Task
from bot.ingress import redactor_for
from bot.safety import sanitize, urls_in
from bot.tokens import ContextLine, estimate_messages, trim_context
from workers.actuators import SlackActuator, _classify
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

PROMPT = "answer"
MAX_THREAD_MESSAGES = 400


def fetch_thread(deps: WorkerDeps, task: Task) -> list[dict[str, Any]]:
    """The thread's messages before the question (bounded, oldest first)."""
    if (
        not task.thread_ts
        or not task.channel_id
        or task.thread_ts == task.message_ts
        and task.surface == "dm"
    ):
        return []
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


def answer(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Run the answer pipeline for ``task``; returns the result stored on the task."""
    policy = deps.policy.current
    question = task.payload.get("text") or ""
    if not question.strip():
        SlackActuator(deps.slack, deps.db, deps.policy).notify(task, messages.EMPTY_QUESTION)
        return {"empty": True}
    thread = fetch_thread(deps, task) if policy.has_scope(task.requester, "chat.read_thread") else []
    lines, redactions = build_context(deps, task, thread)
    kept, dropped = trim_context(lines, deps.settings.clawback_context_tokens)
    boundary = "<<" + hashlib.sha256(task.id.encode()).hexdigest()[:16] + ">>"
    context_text = "\n".join(line.render().replace(boundary, "") for line in kept) or "(no earlier messages)"
    prompt = prompts.render(
        PROMPT,
        requester_name=f"<@{task.requester}>",
        boundary=boundary,
        context=context_text,
        question=question.replace(boundary, ""),
    )
    max_tokens = deps.settings.clawback_max_answer_tokens
    reservation = deps.budget.reserve(
        task.requester, estimate_messages(prompt.messages()) + max_tokens, policy.limits_for(task.requester)
    )
    result = None
    try:
        result = deps.llm.complete(task_id=task.id, step="answer", prompt=prompt, max_tokens=max_tokens)
    finally:
        deps.budget.settle(reservation, 0 if result is None or result.reused else result.total_tokens)
    sources = [question, *(line.text for line in lines)]
    people = {task.requester, *(m.get("user") for m in thread if m.get("user"))}
    text, defanged = sanitize(result.content, allowed_urls=urls_in(*sources), allowed_users=people)
    footer = messages.footer(
        result.model, result.prompt_tokens, result.completion_tokens, result.cost, task.id
    )
    pages = split_answer_messages(text, footer, task.id)
    timestamps = SlackActuator(deps.slack, deps.db, deps.policy).post_reply(
        task, text=text, blocks_pages=pages
    )
    ledger.update_result(deps.db, task.id, reply_ts=timestamps[-1])
    return {
        "reply_ts": timestamps[-1],
        "messages": len(timestamps),
        "context_messages": len(kept),
        "context_dropped": dropped,
        "context_redactions": redactions,
        "links_neutralised": defanged,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }
