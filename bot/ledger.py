"""The ledger: tasks, LLM calls, actions and outcomes in SQL (the source of truth)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import Action, Database, LLMCall, Outcome, Task, utcnow

TERMINAL = frozenset({"done", "failed", "denied", "ignored"})

# The (task id, attempt) this thread executes; begin_action refuses to start a side effect for that task
# once a newer attempt has taken it over (a paused worker whose lease expired, woken after the re-run).
_fence: ContextVar[tuple[str, int] | None] = ContextVar("clawback_fence", default=None)


# The hot path's statements, built once: building a statement costs several times more than running it on
# SQLite. Parameter names end in "_" where a column of the same name is being set.
_tasks, _calls, _actions = Task.__table__, LLMCall.__table__, Action.__table__
_START = (
    _tasks.update()
    .where(_tasks.c.id == bindparam("task_id_"), _tasks.c.status.not_in(TERMINAL))
    .values(
        status="running",
        attempts=_tasks.c.attempts + 1,
        started_at=func.coalesce(_tasks.c.started_at, bindparam("now_", type_=_tasks.c.started_at.type)),
    )
    .returning(*_tasks.c)
)
_ATTEMPTS = select(_tasks.c.attempts).where(_tasks.c.id == bindparam("task_id_"))
_FINISH = _tasks.update().where(_tasks.c.id == bindparam("task_id_"), _tasks.c.status.not_in(TERMINAL))
_INSERT_LLM_CALL = _calls.insert().returning(*_calls.c)
_TASK_USAGE = select(
    func.coalesce(func.sum(_calls.c.prompt_tokens), 0),
    func.coalesce(func.sum(_calls.c.completion_tokens), 0),
    func.coalesce(func.sum(_calls.c.cost), 0.0),
).where(_calls.c.task_id == bindparam("task_id_"))
_INSERT_ACTION = _actions.insert().returning(*_actions.c)
_COMPLETE_ACTION = _actions.update().where(_actions.c.idempotency_key == bindparam("key_"))

_T = TypeVar("_T", Task, LLMCall, Action)


def _row_to(model: type[_T], row: Any) -> _T:
    """A (detached) ORM object from a row of all its table's columns, as RETURNING gives it."""
    return model(**{c.key: v for c, v in zip(model.__table__.c, row, strict=True)})


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
    message_key: str | None = None  # a person's Slack message (``bot.ingress.message_key``): one task per key
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
            message_key=self.message_key,
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
        return start_attempt(s, task_id)


def start_attempt(session: Session, task_id: str) -> Task | None:
    """``mark_running`` inside the caller's transaction: one UPDATE … RETURNING, the task as it is now."""
    row = session.execute(_START, {"task_id_": task_id, "now_": utcnow()}).first()
    return None if row is None else _row_to(Task, row)


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
    current = s.execute(_ATTEMPTS, {"task_id_": task_id}).scalar_one_or_none()
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
        s.execute(_FINISH, {"task_id_": task_id, **values})
        if audit_entry is not None:
            audit.append(s, task_id=task_id, **audit_entry)


def update_result(db: Database, task_id: str, **fields: Any) -> None:
    """Merge fields into a task's result document."""
    with db.session() as s:
        task = s.get(Task, task_id)
        if task is not None:
            task.result = {**(task.result or {}), **fields}


def record_llm_call(db: Database, **fields: Any) -> LLMCall:
    """Insert one LLM call row (one plain INSERT … RETURNING: every model call passes here)."""
    with db.session() as s:
        row = s.execute(_INSERT_LLM_CALL, fields).one()
    return _row_to(LLMCall, row)


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
        row = s.execute(_TASK_USAGE, {"task_id_": task_id}).one()
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
    check: Callable[[Session], None] | None = None,
    autonomy_level: str | None = None,
) -> tuple[Action, bool]:
    """Create a pending action (with its audit entry, in one transaction), or return the existing one and False.

    One transaction, in this order: the fence (raises Superseded when the calling execution of the task has
    been replaced by a newer attempt), ``check(session)`` (the caller's last guard, e.g. the kill switch:
    whatever it raises aborts), the action row, its audit entry. ``autonomy_level``: the earned-autonomy level
    the action runs at (None = not governed), for reports.
    """
    from bot import audit

    values = dict(
        task_id=task_id,
        idempotency_key=key,
        kind=kind,
        scope=scope,
        target=target,
        detail=detail or {},
        autonomy_level=autonomy_level,
    )
    try:
        with db.session() as s:
            _check_fence(s, task_id)
            if check is not None:
                check(s)
            row = s.execute(_INSERT_ACTION, values).one()
            if audit_entry is not None:
                audit.append(s, task_id=task_id, scope=scope, target=target, **audit_entry)
        return _row_to(Action, row), True
    except IntegrityError:
        existing = get_action(db, key)
        assert existing is not None
        return existing, False


def complete_action(db: Database, key: str, status: str, result: dict | None = None) -> None:
    """Mark an action done, failed or denied."""
    with db.session() as s:
        s.execute(_COMPLETE_ACTION, {"key_": key, "status": status, "result": result or {}})
