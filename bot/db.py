"""The ledger's SQL layer: engine set-up, sessions, and the ORM models of the core (schema checks: ``bot.migrate``).

SQLite is the embedded default; PostgreSQL is used by URL. On SQLite every transaction starts with
``BEGIN IMMEDIATE`` so that writers (the audit chain above all) serialise instead of failing late.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from bot.errors import ServiceUnavailable


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A short random id for tasks and requests (80 bits)."""
    return secrets.token_hex(10)


class UTCDateTime(DateTime):
    """DateTime stored as UTC; always returns aware datetimes (SQLite forgets the zone)."""

    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        parent = super().result_processor(dialect, coltype)

        def process(value: Any) -> Any:
            if parent is not None:
                value = parent(value)
            if isinstance(value, datetime) and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            return value

        return process


class Base(DeclarativeBase):
    """Declarative base shared by all Clawback models."""


class Task(Base):
    """One piece of requested work: the unit of attribution."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    requester: Mapped[str] = mapped_column(String(64), index=True)
    on_behalf_of: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(32))
    surface: Mapped[str] = mapped_column(String(16))  # mention, dm, command, email, deploy
    intent: Mapped[str] = mapped_column(String(32))  # answer, triage, deploy_plan, ...
    trigger: Mapped[str] = mapped_column(String(16), default="human")  # human, automation, schedule, bot
    parent_id: Mapped[str | None] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    # A person's Slack message as (team, channel, ts): unique, so one message is one task however many
    # deliveries (event_ids) Slack makes of it. NULL for everything else.
    message_key: Mapped[str | None] = mapped_column(String(160))
    status: Mapped[str] = mapped_column(
        String(16), default="queued"
    )  # queued running done failed denied ignored
    status_reason: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    redactions: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_tasks_status_created", "status", "created_at"),
        Index("uq_tasks_message_key", "message_key", unique=True),  # one message, several deliveries
    )


class LLMCall(Base):
    """One call to the model, with its usage as the API reported it."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(32), ForeignKey("tasks.id"), index=True)
    step: Mapped[str] = mapped_column(String(32), default="main")
    model: Mapped[str] = mapped_column(String(128))
    prompt_name: Mapped[str] = mapped_column(String(64))
    prompt_version: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    usage_reported: Mapped[bool] = mapped_column(Boolean, default=True)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    request_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok, error
    error: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)  # kept so a retried job reuses the answer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Action(Base):
    """A side effect attempted for a task; the idempotency key makes actuators exactly-once."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(32), ForeignKey("tasks.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(48))  # slack.post, mail.move, deploy.trigger, ...
    scope: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending done failed denied
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    autonomy_level: Mapped[str | None] = mapped_column(String(8))  # shadow suggest auto; None = not governed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Outcome(Base):
    """What came of a task: explicit feedback or an implicit signal."""

    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(32), ForeignKey("tasks.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # explicit, implicit, timeout, system
    actor: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class AuditEntry(Base):
    """One append-only, hash-chained audit entry."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))  # ISO-8601 text: hashed exactly as stored
    actor: Mapped[str] = mapped_column(String(64))
    on_behalf_of: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    scope: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(8))  # allow, deny, info
    task_id: Mapped[str | None] = mapped_column(String(32), index=True)
    details: Mapped[str] = mapped_column(Text)  # canonical JSON text
    prev_hash: Mapped[str] = mapped_column(String(64))  # the previous entry's hash *in the same chain*
    hash: Mapped[str] = mapped_column(String(64))
    chain: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # which audit_head row


class AuditHead(Base):
    """One row per chain (``id`` = chain number) holding its head; an append locks one row, so each chain stays
    linear. ``next_seq`` and ``step`` hand out sequence numbers no other chain uses (null ``next_seq``: seq + 1)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    next_seq: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class AuditCheckpoint(Base):
    """A signed (seq, hash) of the chain head, made with a key the workers do not hold.

    With several chains, ``heads`` is the JSON list of every chain's [chain, seq, hash], ``hash`` the SHA-256 of
    that list's canonical JSON and ``seq`` the highest of the heads' seqs (one chain: ``heads`` is null)."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))
    heads: Mapped[str | None] = mapped_column(Text)


class Pause(Base):
    """Kill switch: while active, side effects stop for everyone, a user, or an intent."""

    __tablename__ = "pauses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str | None] = mapped_column(String(64))
    intent: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


# -- earned autonomy (bot/autonomy.py) ------------------------------------------------------------------------


class AutonomyLevel(Base):
    """The level in force for one (person, action, category); no row = the policy's start level."""

    __tablename__ = "autonomy_levels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32), default="")  # '' = the action as a whole
    level: Mapped[str] = mapped_column(String(8))
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Decisions up to this id were made before the change: the rules count only later ones.
    since_decision: Mapped[int] = mapped_column(Integer, default=0)
    set_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))  # promotion demotion admin

    __table_args__ = (UniqueConstraint("user", "action", "category", name="uq_autonomy_levels_key"),)


class AutonomyChange(Base):
    """History of level changes (promotions, demotions, admin changes), with the evidence that justified each."""

    __tablename__ = "autonomy_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32), default="")
    from_level: Mapped[str] = mapped_column(String(8))
    to_level: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))  # promotion demotion admin
    actor: Mapped[str] = mapped_column(String(64))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AutonomyDecision(Base):
    """One governed decision at the level then in force, and how the person judged it."""

    __tablename__ = "autonomy_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(32), ForeignKey("tasks.id"), index=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32), default="")
    level: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    verdict: Mapped[str | None] = mapped_column(String(8))  # None (not yet), accepted, rejected, none
    outcome_id: Mapped[int | None] = mapped_column(Integer)
    judged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_autonomy_decisions_key", "user", "action", "category", "level", "id"),)


class AutonomyOffer(Base):
    """A promotion offered to a person: pending, accepted or declined (``judged`` when it was made)."""

    __tablename__ = "autonomy_offers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32), default="")
    from_level: Mapped[str] = mapped_column(String(8))
    to_level: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending accepted declined expired
    judged: Mapped[int] = mapped_column(Integer)  # judged decisions at from_level when the offer was made
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_by: Mapped[str | None] = mapped_column(String(64))
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_autonomy_offers_key", "user", "action", "category", "status"),
        # One pending offer per key, whoever races to open it (migration 0008).
        Index(
            "uq_autonomy_offers_pending",
            "user",
            "action",
            "category",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite's lazy BEGIN.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front (no late SQLITE_BUSY); readers use a deferred BEGIN.
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("clawback_read") else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with the settings Clawback relies on."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_pre_ping=False
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """Engine plus session factory; ``session()`` is a unit of work that commits or rolls back."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(
            self.engine.execution_options(clawback_read=True), expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        """True when the backend is SQLite."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Open a session; commit on success, roll back on error; 503-worthy errors become ServiceUnavailable."""
        with self._unit(self._sessions) as sess:
            yield sess

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only (on SQLite it does not take the write lock)."""
        with self._unit(self._readers) as sess:
            yield sess

    @contextmanager
    def _unit(self, factory: sessionmaker) -> Iterator[Session]:
        sess = factory()
        try:
            yield sess
            sess.commit()
        except OperationalError as exc:
            sess.rollback()
            raise ServiceUnavailable(f"database unavailable: {exc.orig}") from exc
        except BaseException:
            sess.rollback()
            raise
        finally:
            sess.close()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def after_fork(self) -> None:
        """Drop pooled connections inherited from the parent process without closing them."""
        self.engine.dispose(close=False)

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()
