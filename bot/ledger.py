"""The ledger: tasks, LLM calls, actions and outcomes in SQL (the source of truth)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bot.db import Action, Database, LLMCall, Outcome, Task, utcnow

TERMINAL = frozenset({"done", "failed", "denied", "ignored"})

# The (task id, attempt) this thread executes; begin_action refuses to start a side effect for that task
# once a newer attempt has taken it over (a paused worker whose lease expired, woken after the re-run).
_fence: ContextVar[tuple[str, int] | None] = ContextVar("clawback_fence", default=None)


@dataclass(frozen=True)
class NewTask:
    """What ingress knows about a request when it creates the task."""

    idempotency_key: str
    requester: str
    surface: str
    intent: str
    trigger: str = "human"
    team_id: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    message_ts: str | None = None
    on_behalf_of: str | None = None
    parent_id: str | None = None
    payload: dict[str, Any] | None = None
    redactions: int = 0

    def to_task(self, *, status: str = "queued", reason: str | None = None) -> Task:
        """The ORM row for this request in ``status`` (terminal statuses get their finish time)."""
        return Task(
            idempotency_key=self.idempotency_key,
            requester=self.requester,
            surface=self.surface,
            intent=self.intent,
            trigger=self.trigger,
            team_id=self.team_id,
            channel_id=self.channel_id,
            thread_ts=self.thread_ts,
            message_ts=self.message_ts,
            on_behalf_of=self.on_behalf_of,
            parent_id=self.parent_id,
            payload=self.payload or {},
            redactions=self.redactions,
            status=status,
            status_reason=reason,
            finished_at=utcnow() if status in TERMINAL else None,
        )


def create_task(
    db: Database, new: NewTask, *, status: str = "queued", reason: str | None = None
) -> tuple[Task, bool]:
    """Insert a task; on a duplicate idempotency key return the existing one and False."""
    task = new.to_task(status=status, reason=reason)
    try:
        with db.session() as s:
            s.add(task)
        return task, True
    except IntegrityError:
        with db.session() as s:
            existing = s.execute(select(Task).where(Task.idempotency_key == new.idempotency_key)).scalar_one()
        return existing, False


def get_task(db: Database, task_id: str) -> Task | None:
    """Load a task by id."""
    with db.read() as s:
        return s.get(Task, task_id)


def mark_running(db: Database, task_id: str) -> Task | None:
    """Move a non-terminal task to running (counting the attempt); None if it is already finished."""
    with db.session() as s:
        task = s.get(Task, task_id)
        if task is None or task.status in TERMINAL:
            return None
        task.status = "running"
        task.attempts += 1
        task.started_at = task.started_at or utcnow()
        return task


@contextmanager
def fenced(task_id: str, attempt: int) -> Iterator[None]:
    """Within this block, side effects for ``task_id`` start only while ``attempt`` is its newest attempt."""
    token = _fence.set((task_id, attempt))
    try:
        yield
    finally:
        _fence.reset(token)


def _check_fence(s: Any, task_id: str) -> None:
    fence = _fence.get()
    if fence is None or fence[0] != task_id:
        return
    current = s.execute(select(Task.attempts).where(Task.id == task_id)).scalar_one_or_none()
    if current != fence[1]:
        from bot.errors import Superseded

        raise Superseded(f"task {task_id}: attempt {fence[1]} superseded by attempt {current}")


def finish(
    db: Database,
    task_id: str,
    status: str,
    *,
    reason: str | None = None,
    result: dict | None = None,
    audit_entry: dict[str, Any] | None = None,
) -> None:
    """Set a terminal status (only from a non-terminal one: finishing is idempotent), with its audit entry."""
    from bot import audit  # local: audit imports the db layer too

    if status not in TERMINAL:
        raise ValueError(f"{status!r} is not terminal")
    values: dict[str, Any] = {"status": status, "status_reason": reason, "finished_at": utcnow()}
    if result is not None:
        values["result"] = result
    with db.session() as s:
        s.execute(update(Task).where(Task.id == task_id, Task.status.not_in(TERMINAL)).values(**values))
        if audit_entry is not None:
            audit.append(s, task_id=task_id, **audit_entry)


def update_result(db: Database, task_id: str, **fields: Any) -> None:
    """Merge fields into a task's result document."""
    with db.session() as s:
        task = s.get(Task, task_id)
        if task is not None:
            task.result = {**(task.result or {}), **fields}


def record_llm_call(db: Database, **fields: Any) -> LLMCall:
    """Insert one LLM call row."""
    row = LLMCall(**fields)
    with db.session() as s:
        s.add(row)
    return row


def find_llm_call(db: Database, task_id: str, step: str) -> LLMCall | None:
    """The successful call already made for (task, step), so a retried job does not pay twice."""
    with db.read() as s:
        return s.execute(
            select(LLMCall)
            .where(LLMCall.task_id == task_id, LLMCall.step == step, LLMCall.status == "ok")
            .order_by(LLMCall.id.desc())
            .limit(1)
        ).scalar_one_or_none()


def task_usage(db: Database, task_id: str) -> tuple[int, int, float]:
    """(prompt tokens, completion tokens, cost) over all of a task's calls."""
    with db.read() as s:
        row = s.execute(
            select(
                func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
                func.coalesce(func.sum(LLMCall.completion_tokens), 0),
                func.coalesce(func.sum(LLMCall.cost), 0.0),
            ).where(LLMCall.task_id == task_id)
        ).one()
    return int(row[0]), int(row[1]), float(row[2])


def tokens_since(db: Database, user: str, since: datetime) -> int:
    """Tokens a user's tasks used since ``since`` (rebuilds budget counters)."""
    with db.read() as s:
        return int(
            s.execute(
                select(func.coalesce(func.sum(LLMCall.total_tokens), 0))
                .join(Task, Task.id == LLMCall.task_id)
                .where(Task.requester == user, LLMCall.created_at >= since)
            ).scalar_one()
        )


def record_outcome(
    db: Database,
    task_id: str,
    kind: str,
    *,
    source: str,
    actor: str | None = None,
    detail: dict | None = None,
) -> Outcome:
    """Record what came of a task."""
    row = Outcome(task_id=task_id, kind=kind, source=source, actor=actor, detail=detail or {})
    with db.session() as s:
        s.add(row)
    return row


def get_action(db: Database, key: str) -> Action | None:
    """An action by idempotency key."""
    with db.read() as s:
        return s.execute(select(Action).where(Action.idempotency_key == key)).scalar_one_or_none()


def begin_action(
    db: Database,
    *,
    task_id: str,
    key: str,
    kind: str,
    scope: str | None,
    target: str | None,
    detail: dict | None = None,
    audit_entry: dict[str, Any] | None = None,
    autonomy_level: str | None = None,
) -> tuple[Action, bool]:
    """Create a pending action (with its audit entry, in one transaction), or return the existing one and False.

    ``autonomy_level`` is the earned-autonomy level the action ran at (None: not governed).

    Raises Superseded when the calling execution of the task has been replaced by a newer attempt.
    """
    from bot import audit

    row = Action(
        task_id=task_id,
        idempotency_key=key,
        kind=kind,
        scope=scope,
        target=target,
        detail=detail or {},
        autonomy_level=autonomy_level,
    )
    with db.session() as s:
        _check_fence(s, task_id)
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            if audit_entry is not None:
                audit.append(s, task_id=task_id, scope=scope, target=target, **audit_entry)
        return row, True
    except IntegrityError:
        existing = get_action(db, key)
        assert existing is not None
        return existing, False


def complete_action(db: Database, key: str, status: str, result: dict | None = None) -> None:
    """Mark an action done, failed or denied."""
    with db.session() as s:
        s.execute(
            update(Action).where(Action.idempotency_key == key).values(status=status, result=result or {})
        )
