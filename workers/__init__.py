"""RQ job entry points: thin, importable functions taking small ids.

``run_task(task_id)`` loads the task, re-checks scopes and the kill switch (authoritative), and runs the
intent's core with explicit dependencies. Denials and over-budget refusals end the task as ``denied``
with a note to the requester; transient failures are retried by RQ and, once retries are exhausted,
end the task as ``failed`` with a short message in the thread.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from rq import get_current_job

from bot import audit, controls, ledger, messages
from bot.db import Outcome, Task
from bot.errors import BudgetExceeded, Denied, RateLimited, Superseded, TransientError, UserFacingError
from bot.policy import OTHER_TEAM_REASON
from bot.queue import LEASE_META
from bot.slack.blocks import build_feedback_done_blocks
from workers import runtime
from workers.actuators import SlackActuator

log = logging.getLogger(__name__)
DENIAL_NOTICE_SECONDS = 60  # one refusal notice of a kind per person in this many seconds

Core = Callable[[runtime.WorkerDeps, Task], dict[str, Any]]


@functools.cache
def _intents() -> dict[str, tuple[str, Core]]:
    """Intent → (scope it needs, core function), across every surface (built once per process)."""
    from workers import answer, deploy, mail

    return {"answer": ("chat.reply", answer.answer), **mail.INTENTS, **deploy.INTENTS}


def _is_last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left


def run_task(task_id: str) -> str:
    """RQ entry: run one task."""
    deps = runtime.current()
    _bind_lease(deps)
    return execute(deps, task_id, last_attempt=_is_last_attempt())


def _bind_lease(deps: runtime.WorkerDeps) -> None:
    """Tell the reconciler which worker lease this job lives by (before the task is marked running)."""
    job = get_current_job()
    if job is not None and deps.lease is not None:
        job.meta[LEASE_META] = deps.lease.key
        job.save_meta()


def execute(deps: runtime.WorkerDeps, task_id: str, *, last_attempt: bool = True) -> str:
    """Run a task with explicit dependencies; returns its final (or current) status."""
    with deps.db.session() as s:  # the attempt and the kill switch's state, in one transaction
        task = ledger.start_attempt(s, task_id)
        paused = task is not None and controls.is_paused(s, user=task.requester, intent=task.intent)
    if task is None:
        log.info("task %s: already finished or unknown; nothing to do", task_id)
        return "skipped"
    intents = _intents()
    if task.intent not in intents:
        ledger.finish(deps.db, task.id, "failed", reason=f"unknown intent {task.intent}")
        return "failed"
    scope, core = intents[task.intent]
    actuator = SlackActuator(deps.slack, deps.db, deps.policy)
    _note_team(deps, task)
    try:
        deps.policy.current.require(
            task.requester, scope, channel=task.channel_id if task.surface not in ("dm", "email") else None
        )
        if paused:
            raise Denied(messages.PAUSED, reason="paused by an administrator")
        with ledger.fenced(task.id, task.attempts):
            result = core(deps, task)
    except Superseded as exc:
        # Our worker was presumed dead (its lease expired) and a newer attempt owns the task: it answers.
        log.warning("task %s: %s; leaving the task to it", task.id, exc)
        return "superseded"
    except (Denied, BudgetExceeded) as exc:
        log.info("task %s denied: %s", task.id, exc.reason)
        audit.record(
            deps.db,
            actor="clawback",
            on_behalf_of=task.requester,
            action=f"worker.{task.intent}",
            decision="deny",
            task_id=task.id,
            scope=getattr(exc, "scope", None) or scope,
            details={"reason": exc.reason},
        )
        ledger.finish(deps.db, task.id, "denied", reason=exc.reason)
        if not isinstance(exc, RateLimited) or exc.notify:  # one "slow down" per window, not per request
            _tell(actuator, task, messages.task_denied(task.id, exc.user_message))
        return "denied"
    except UserFacingError as exc:
        log.warning("task %s failed: %s", task.id, exc.reason)
        _fail(deps, actuator, task, exc.user_message, exc.reason)
        return "failed"
    except TransientError as exc:
        if not last_attempt:
            log.warning("task %s: transient failure, will retry: %s", task.id, exc)
            raise
        _fail(deps, actuator, task, f"{exc} and retries are used up", str(exc))
        return "failed"
    except Exception as exc:
        log.exception("task %s: unexpected error (attempt %s)", task.id, task.attempts)
        if not last_attempt:
            raise
        _fail(deps, actuator, task, "something went wrong on our side", f"{type(exc).__name__}: {exc}")
        return "failed"
    ledger.finish(
        deps.db,
        task.id,
        "done",
        result=result,
        audit_entry={
            "actor": "clawback",
            "on_behalf_of": task.requester,
            "action": f"worker.{task.intent}.done",
            "decision": "info",
            "details": {k: v for k, v in result.items() if k != "answer"},
        },
    )
    return "done"


def _note_team(deps: runtime.WorkerDeps, task: Task) -> None:
    """Bind the requester's team as ingress stored it, so this re-check and every later one see it."""
    stored = (task.payload or {}).get("home_teams")
    homes = tuple(stored) if isinstance(stored, list) else ((task.team_id,) if task.team_id else ())
    deps.policy.note_team(task.requester, task.team_id, homes)


def _fail(
    deps: runtime.WorkerDeps, actuator: SlackActuator, task: Task, user_reason: str, reason: str
) -> None:
    ledger.finish(deps.db, task.id, "failed", reason=reason)
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=task.requester,
        action=f"worker.{task.intent}.failed",
        decision="info",
        task_id=task.id,
        details={"reason": reason},
    )
    _tell(actuator, task, messages.task_failed(task.id, user_reason))


def _tell(actuator: SlackActuator, task: Task, text: str) -> None:
    """Best-effort note to the requester; a failure to notify never hides the task's real status."""
    if task.surface == "email":
        return
    try:
        actuator.tell(task, text)
    except Exception:
        log.exception("task %s: could not notify the requester", task.id)


def notify_denied(task_id: str) -> str:
    """RQ entry: tell the requester why ingress refused their request."""
    deps = runtime.current()
    task = ledger.get_task(deps.db, task_id)
    if task is None or task.status != "denied":
        return "skipped"
    text = _denial_text(task)
    if not _first_notice(deps, task.requester, text):
        return "already told"  # the refusal is on record (task + audit); one notice a minute is enough
    SlackActuator(deps.slack, deps.db, deps.policy).notify(task, messages.task_denied(task.id, text))
    return "notified"


def _first_notice(deps: runtime.WorkerDeps, user: str, text: str) -> bool:
    """True for the first refusal notice of this kind to ``user`` in a minute: a person repeating a refused
    request cannot make the bot spend its Slack rate limit on answering each one."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    key = f"{deps.settings.clawback_queue_prefix}:denial-told:{user}:{digest}"
    return bool(deps.redis.set(key, b"1", nx=True, ex=DENIAL_NOTICE_SECONDS))


def _denial_text(task: Task) -> str:
    reason = task.status_reason or ""
    if reason.startswith("missing scope "):
        return messages.missing_scope(reason.removeprefix("missing scope "))
    if "not allowed in channel" in reason:
        return messages.CHANNEL_NOT_ALLOWED
    if reason.startswith(OTHER_TEAM_REASON):
        return messages.OTHER_TEAM
    return reason


def apply_feedback(task_id: str, ref: str) -> str:
    """RQ entry: make a feedback click visible (or tell a non-requester they cannot rate)."""
    return show_feedback(runtime.current(), task_id, ref)


def show_feedback(deps: runtime.WorkerDeps, task_id: str, ref: str) -> str:
    """Update the answer message after a click; ``ref`` is an outcome id or ``deny:<user>[:<why>]``."""
    task = ledger.get_task(deps.db, task_id)
    if task is None:
        return "skipped"
    actuator = SlackActuator(deps.slack, deps.db, deps.policy)
    if ref.startswith("deny:"):
        user, _, why = ref.removeprefix("deny:").partition(":")
        text = messages.FEEDBACK_ONLY_ANSWERS if why == "not-an-answer" else messages.FEEDBACK_NOT_YOURS
        if task.channel_id:
            actuator.client.chat_postEphemeral(
                channel=task.channel_id, user=user, text=text, thread_ts=task.thread_ts
            )
        return "told"
    with deps.db.session() as s:
        outcome = s.get(Outcome, int(ref))
    if outcome is not None:
        from workers import chat_reply

        # An answer posted at auto: Resolved accepts its decision, Not helpful rejects it.
        chat_reply.judge_feedback(deps, task, outcome)
    ts = (task.result or {}).get("reply_ts")
    if outcome is None or not ts:
        return "skipped"
    template = (
        messages.FEEDBACK_THANKS_RESOLVED
        if outcome.kind == "resolved"
        else messages.FEEDBACK_THANKS_NOT_HELPFUL
    )
    note = template.format(user=outcome.actor)
    current = _message_blocks(actuator, task, ts)
    actuator.update_message(task, ts=ts, text=note, blocks=build_feedback_done_blocks(current, note))
    return "updated"


def _message_blocks(actuator: SlackActuator, task: Task, ts: str) -> list[dict[str, Any]]:
    resp = actuator.client.conversations_replies(channel=task.channel_id, ts=task.thread_ts or ts, limit=200)
    for m in resp.get("messages", []):
        if m.get("ts") == ts:
            return list(m.get("blocks") or [])
    return []
