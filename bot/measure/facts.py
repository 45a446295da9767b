"""The measurement facts table: one narrow row per task, so reports aggregate in SQL in well under a second.

Joining a million LLM-call rows to their tasks and outcomes on every report takes seconds on SQLite. Instead,
``refresh(db)`` keeps ``measure_task_facts`` up to date incrementally: it recomputes only the tasks touched
since the last refresh (created, finished, or given an LLM call or an outcome), with an overlap of
``OVERLAP`` so rows committed late by slow transactions are not missed. Recomputing a task is idempotent, so
the overlap costs nothing but a little work. The table is rebuilt from scratch when the outcome kind table
changes (its digest is stored) or on ``refresh(db, full=True)``.

Each fact holds the task's dimensions, its token and cost sums, its latency (created → finished, for
done and failed tasks) with a histogram bucket, and its **state**: the decisive outcome kind (see
``bot.measure.outcomes``) or, without one, ``~<status>``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Index,
    Integer,
    String,
    Text,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    union,
)
from sqlalchemy.orm import Mapped, aliased, mapped_column

from bot.db import Base, Database, LLMCall, Outcome, Task, UTCDateTime, utcnow
from bot.measure.outcomes import OutcomeConfig, strength_case

OVERLAP = timedelta(minutes=15)
CHUNK = timedelta(days=1)  # a full rebuild works through task creation time a day per transaction
_RANK = 10**12  # decisive outcome rank = strength * _RANK + outcome id
_BATCH = 2000  # touched task ids recomputed per statement
_LOCK_ID = 7_461_001  # PostgreSQL advisory lock: one refresher at a time


# Per-dimension indexes (surface, day) that let the GROUP BYs of a report stream instead of sorting.
_DIM_INDEX = {
    "state": ("state", "created_at", "prompt_tokens", "completion_tokens", "cost"),
    "latency": ("latency_bucket", "created_at"),
    "people": ("requester", "created_at", "state"),
}


class TaskFact(Base):
    """One task, as reports see it."""

    __tablename__ = "measure_task_facts"

    task_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    day: Mapped[str] = mapped_column(String(10))
    requester: Mapped[str] = mapped_column(String(64))
    intent: Mapped[str] = mapped_column(String(32))
    surface: Mapped[str] = mapped_column(String(16))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(40))
    outcome_strength: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    latency_bucket: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index(
            "ix_measure_facts_user_intent",
            "requester",
            "intent",
            "state",
            "created_at",
            "prompt_tokens",
            "completion_tokens",
            "cost",
        ),
        Index("ix_measure_facts_latency", "requester", "intent", "latency_bucket", "created_at"),
        *(
            Index(f"ix_measure_facts_{dim}_{suffix}", dim, *cols)
            for dim in ("surface", "day")
            for suffix, cols in _DIM_INDEX.items()
        ),
        Index(
            "ix_measure_facts_created",
            "created_at",
            "requester",
            "intent",
            "surface",
            "channel_id",
            "day",
            "state",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "latency_bucket",
        ),
    )


class MeasureState(Base):
    """Small key → JSON state of the measurement jobs (the facts watermark)."""

    __tablename__ = "measure_state"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# -- dialect helpers ------------------------------------------------------------------------------------


def _latency_ms(db: Database) -> Any:
    if db.is_sqlite:
        return (func.julianday(Task.finished_at) - func.julianday(Task.created_at)) * 86400000.0
    return func.extract("epoch", Task.finished_at - Task.created_at) * 1000.0


def bucket_sql(db: Database, ms: Any) -> Any:
    """SQL: the latency histogram bucket of ``ms`` (same rule as ``bucket_of``)."""
    from sqlalchemy import case

    # round, not truncate: julianday arithmetic turns 2000 ms into 1999.9999
    whole = cast(func.round(ms), Integer) if db.is_sqlite else cast(func.round(ms), BigInteger)
    digits = cast(whole, String)
    lead = cast(func.substr(digits, 1, 2), Integer)
    width = func.length(digits)
    q = case(
        ((width <= 2) | (lead < 20), lead),
        (lead < 50, lead - lead % 2),
        else_=lead - lead % 5,
    )
    return width * 100 + q


def day_expr(db: Database, column: Any) -> Any:
    """SQL: the UTC calendar day (YYYY-MM-DD) of a timestamp column."""
    if db.is_sqlite:
        return func.substr(column, 1, 10)
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")


def _width(lead: int) -> int:
    return 1 if lead < 20 else 2 if lead < 50 else 5


def bucket_of(ms: float) -> int:
    """Latency histogram bucket: digits × 100 + the leading two digits rounded down to steps of 1 (10–19),
    2 (20–49) or 5 (50–99): 35 buckets per decade, ≤ 5% error at a bucket's middle; exact below 100 ms."""
    s = str(round(max(ms, 0)))
    lead = int(s[:2])
    if len(s) > 2:
        lead -= lead % _width(lead)
    return len(s) * 100 + lead


def bucket_value(bucket: int) -> float:
    """A bucket's representative latency in ms (its middle)."""
    digits, lead = divmod(bucket, 100)
    if digits <= 2:
        return float(lead)
    return (lead + _width(lead) / 2) * 10 ** (digits - 2)


# -- refresh --------------------------------------------------------------------------------------------


def _select_facts(db: Database, config: OutcomeConfig, ids: Any | None) -> Any:
    usage_q = select(
        LLMCall.task_id.label("task_id"),
        func.sum(LLMCall.prompt_tokens).label("p"),
        func.sum(LLMCall.completion_tokens).label("c"),
        func.sum(LLMCall.cost).label("cost"),
        func.count().label("n"),
    ).group_by(LLMCall.task_id)
    rank = strength_case(config) * literal(_RANK, BigInteger) + Outcome.id
    best_q = select(Outcome.task_id.label("task_id"), func.max(rank).label("r")).group_by(Outcome.task_id)
    if ids is not None:
        usage_q = usage_q.where(LLMCall.task_id.in_(ids))
        best_q = best_q.where(Outcome.task_id.in_(ids))
    usage, best = usage_q.subquery(), best_q.subquery()
    chosen = aliased(Outcome)
    ms = _latency_ms(db)
    timed = Task.status.in_(("done", "failed")) & Task.finished_at.is_not(None)
    from sqlalchemy import case

    latency = case((timed, func.max(ms, 0.0) if db.is_sqlite else func.greatest(ms, 0.0)), else_=None)
    bucket = case((timed, bucket_sql(db, latency)), else_=None)
    stmt = (
        select(
            Task.id,
            Task.created_at,
            day_expr(db, Task.created_at),
            Task.requester,
            Task.intent,
            Task.surface,
            Task.channel_id,
            Task.trigger,
            Task.status,
            func.coalesce(chosen.kind, literal("~") + Task.status),
            case((best.c.r.is_not(None), cast(best.c.r / _RANK, Integer)), else_=None),
            func.coalesce(usage.c.p, 0),
            func.coalesce(usage.c.c, 0),
            func.coalesce(usage.c.cost, 0.0),
            func.coalesce(usage.c.n, 0),
            latency,
            bucket,
        )
        .select_from(Task)
        .outerjoin(usage, usage.c.task_id == Task.id)
        .outerjoin(best, best.c.task_id == Task.id)
        .outerjoin(chosen, chosen.id == best.c.r % literal(_RANK, BigInteger))
    )
    if ids is not None:
        stmt = stmt.where(Task.id.in_(ids))
    return stmt


_COLUMNS = [
    "task_id",
    "created_at",
    "day",
    "requester",
    "intent",
    "surface",
    "channel_id",
    "trigger",
    "status",
    "state",
    "outcome_strength",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "calls",
    "latency_ms",
    "latency_bucket",
]


def _lock(db: Database, s: Any) -> None:
    if not db.is_sqlite:
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})


def _rebuild(db: Database, config: OutcomeConfig) -> int:
    """Recompute every fact, one ``CHUNK`` of task creation time per transaction.

    Short transactions matter on SQLite, where a write transaction blocks every other writer (ingress
    included): a month of a million LLM calls takes ~30 s to rebuild, but no lock is held for more than a
    second or so.
    """
    facts = TaskFact.__table__
    with db.session() as s:
        lo, hi = s.execute(select(func.min(Task.created_at), func.max(Task.created_at))).one()
    with db.session() as s:
        _lock(db, s)
        if lo is None:
            s.execute(delete(facts))
            return 0
        s.execute(delete(facts).where((facts.c.created_at < lo) | (facts.c.created_at > hi)))
    cur = lo
    while cur <= hi:
        nxt = cur + CHUNK
        with db.session() as s:
            _lock(db, s)
            s.execute(delete(facts).where(facts.c.created_at >= cur, facts.c.created_at < nxt))
            ids = select(Task.id).where(Task.created_at >= cur, Task.created_at < nxt)
            s.execute(insert(facts).from_select(_COLUMNS, _select_facts(db, config, ids)))
        cur = nxt
    with db.session() as s:
        return int(s.execute(select(func.count()).select_from(facts)).scalar_one())


def refresh(db: Database, config: OutcomeConfig, *, full: bool = False, now: datetime | None = None) -> int:
    """Bring the facts up to date (incrementally when possible); returns how many tasks were recomputed."""
    started = now or utcnow()
    facts = TaskFact.__table__
    value = json.dumps({"refreshed_at": started.isoformat(), "digest": config.digest})
    with db.session() as s:
        _lock(db, s)
        row = s.get(MeasureState, "facts")
        state = json.loads(row.value) if row else {}
        rebuild = full or state.get("digest") != config.digest or "refreshed_at" not in state
        if not rebuild:
            mark = datetime.fromisoformat(state["refreshed_at"]) - OVERLAP
            touched = union(
                select(Task.id).where(Task.created_at >= mark),
                select(Task.id).where(Task.finished_at >= mark),
                select(Outcome.task_id).where(Outcome.created_at >= mark),
                select(LLMCall.task_id).where(LLMCall.created_at >= mark),
            )
            # Concrete ids (not a subquery) let both planners use the task_id indexes.
            ids = list(s.execute(touched).scalars())
            for i in range(0, len(ids), _BATCH):
                batch = ids[i : i + _BATCH]
                s.execute(delete(facts).where(facts.c.task_id.in_(batch)))
                s.execute(insert(facts).from_select(_COLUMNS, _select_facts(db, config, batch)))
            row.value = value
            return len(ids)
    n = _rebuild(db, config)
    with db.session() as s:
        _lock(db, s)
        row = s.get(MeasureState, "facts")
        if row is None:
            s.add(MeasureState(key="facts", value=value))
        else:
            row.value = value
    with db.engine.connect() as conn:
        conn.execute(text("ANALYZE measure_task_facts"))
        conn.commit()
    return n
