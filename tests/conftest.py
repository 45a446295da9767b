"""Shared fixtures: real Redis (embedded or REDIS_URL), real SQL (SQLite or TEST_DATABASE_URL), stand-ins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from bot.db import Base, Database
from bot.ingress import IngressDeps
from bot.migrate import ensure_schema
from bot.ops import embedded_redis
from bot.policy import policy_store
from bot.settings import Settings
from bot.slack.app import BackgroundWeb
from bot.standins.llm import LLMStandIn
from bot.standins.slack import SlackStandIn
from bot.standins.slack_events import SlackEventSender
from workers.runtime import WorkerDeps, build_deps

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: REDIS_URL when set, otherwise an embedded server for this test session."""
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    home = tmp_path_factory.mktemp("redis")
    url = embedded_redis.ensure(home)
    yield url
    embedded_redis.stop(home)


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A connection to a flushed Redis database."""
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def _clean(db: Database) -> None:
    with db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64})


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated database: a fresh SQLite file, or TEST_DATABASE_URL (PostgreSQL) emptied."""
    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'clawback.db'}"
    database = Database(url)
    ensure_schema(database, auto_upgrade_sqlite=True) if database.is_sqlite else _upgrade(database)
    if not database.is_sqlite:
        _clean(database)
    yield database
    database.dispose()


def _upgrade(db: Database) -> None:
    from bot import migrate

    migrate.upgrade(db)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    """The Slack Web API stand-in with the demo workspace."""
    standin = SlackStandIn(token=BOT_TOKEN)
    standin.seed_demo()
    with standin:
        yield standin


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    """The OpenAI-compatible stand-in."""
    with LLMStandIn(api_key="sk-test-key") as standin:
        yield standin


@pytest.fixture
def policy_file(tmp_path: Path) -> Path | None:
    """No policy file by default (the built-in default applies); tests override this fixture."""
    return None


@pytest.fixture
def settings(
    tmp_path: Path,
    slack: SlackStandIn,
    llm: LLMStandIn,
    redis_url: str,
    db: Database,
    policy_file: Path | None,
) -> Settings:
    """Settings pointing at the stand-ins, with fast retries."""
    return Settings(
        _env_file=None,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.url + "/api/",
        openai_api_key="sk-test-key",
        openai_base_url=llm.base_url,
        clawback_model="clawback-standin",
        clawback_llm_max_retries=1,
        clawback_llm_timeout=2,
        clawback_job_retries=2,
        clawback_retry_intervals="0,0",
        redis_url=redis_url,
        database_url=db.url,
        clawback_home=tmp_path / "home",
        clawback_policy=policy_file,
        clawback_audit_key="test-audit-key",
    )


@pytest.fixture
def deps(settings: Settings, db: Database, redis_conn: redis.Redis) -> Iterator[WorkerDeps]:
    """Worker dependencies on the real parts."""
    from workers import runtime

    built = build_deps(settings, db=db, redis_conn=redis_conn)
    runtime.install(built)
    yield built
    runtime.install(None)


@pytest.fixture
def ingress(deps: WorkerDeps) -> IngressDeps:
    """Ingress dependencies sharing the worker's database, queue and policy."""
    return IngressDeps(db=deps.db, queue=deps.queue, policy=policy_store(deps.settings, deps.db, deps.redis))


WebServer = BackgroundWeb  # ``with WebServer(wsgi) as web: web.url``


@pytest.fixture
def web(settings: Settings, deps: WorkerDeps, ingress: IngressDeps) -> Iterator[WebServer]:
    """The web app on real HTTP."""
    from bot.slack.app import build_web
    from handlers.context import HandlerContext

    wsgi = build_web(settings, db=deps.db, queue_conn=deps.redis, ctx=HandlerContext(ingress))
    with WebServer(wsgi) as server:
        yield server


@pytest.fixture
def sender(web: WebServer) -> Iterator[SlackEventSender]:
    """Sends signed Slack requests to the web app."""
    s = SlackEventSender(web.url + "/slack/events", SIGNING_SECRET)
    yield s
    s.close()


def drain(deps: WorkerDeps, max_wait: float = 30.0) -> None:
    """Run an in-process worker until the queues (and due retries) are empty."""
    from bot.ops.worker import run_worker

    run_worker(deps, burst=True, fork=False, max_wait=max_wait)
