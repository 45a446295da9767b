"""Worker dependencies: built once per worker process from settings, or injected by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import redis
from slack_sdk import WebClient

from bot import ledger
from bot.budget import Budget
from bot.db import Database
from bot.llm import LLMGateway, make_client
from bot.migrate import ensure_schema
from bot.policy import PolicyStore, policy_store
from bot.queue import Lease, TaskQueue, connect_redis
from bot.settings import Settings, load_settings


@dataclass
class WorkerDeps:
    """Everything a job needs; passed explicitly to every job core."""

    settings: Settings
    db: Database
    redis: redis.Redis
    queue: TaskQueue
    policy: PolicyStore
    llm: LLMGateway
    slack: WebClient
    budget: Budget
    extras: dict[str, Any] = field(default_factory=dict)  # surface-specific clients (mailboxes, CI)
    pid: int = field(default_factory=os.getpid)
    lease: Lease | None = None  # the worker process's liveness lease (set by run_worker)

    def after_fork(self) -> None:
        """Called in a forked work horse: never share pooled SQL connections with the parent."""
        if self.pid != os.getpid():
            self.db.after_fork()
            self.pid = os.getpid()


def build_deps(
    settings: Settings,
    *,
    slack: WebClient | None = None,
    db: Database | None = None,
    redis_conn: redis.Redis | None = None,
) -> WorkerDeps:
    """Build worker dependencies from settings (clients may be injected)."""
    from bot.slack.app import make_slack_client

    db = db or Database(settings.database_url)
    ensure_schema(db)
    conn = redis_conn or connect_redis(settings)
    queue = TaskQueue(
        conn,
        prefix=settings.clawback_queue_prefix,
        retries=settings.clawback_job_retries,
        retry_intervals=settings.retry_intervals,
    )
    client = make_client(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        timeout=settings.clawback_llm_timeout,
        max_retries=settings.clawback_llm_max_retries,
    )
    llm = LLMGateway(client, db, model=settings.clawback_model, prices=settings.prices)
    budget = Budget(
        conn,
        prefix=settings.clawback_queue_prefix,
        ledger_tokens=lambda user, since: ledger.tokens_since(db, user, since),
    )
    return WorkerDeps(
        settings=settings,
        db=db,
        redis=conn,
        queue=queue,
        policy=policy_store(settings, db, conn),
        llm=llm,
        slack=slack or make_slack_client(settings),
        budget=budget,
    )


_current: WorkerDeps | None = None


def install(deps: WorkerDeps | None) -> None:
    """Make ``deps`` the process's worker dependencies (the worker command and tests do this)."""
    global _current
    _current = deps


def current() -> WorkerDeps:
    """This process's dependencies, built from the environment on first use."""
    global _current
    if _current is None:
        _current = build_deps(load_settings())
    _current.after_fork()
    return _current
