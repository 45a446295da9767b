"""Shared set-up for the benchmarks: embedded Redis, SQLite, the stand-ins, timing and result helpers."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bot.db import Database
from bot.ingress import IngressDeps
from bot.migrate import ensure_schema, upgrade
from bot.ops import embedded_redis
from bot.settings import Settings
from bot.standins.llm import LLMStandIn
from bot.standins.slack import SlackStandIn

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench-token"
RESULTS = Path(__file__).with_name("results.json")
BENCH_POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self"]
daily_tokens = 1000000000
requests_per_minute = 1000000
"""


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the same cores while measuring
    }


def stats(samples: list[float]) -> dict[str, float]:
    """Median, spread and extremes of repeated measurements."""
    return {
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "runs": len(samples),
        "stdev": round(statistics.stdev(samples), 4) if len(samples) > 1 else 0.0,
    }


@dataclass
class BenchEnv:
    """A throw-away Clawback installation on embedded parts."""

    home: Path
    settings: Settings
    db: Database
    redis: redis.Redis
    slack: SlackStandIn
    llm: LLMStandIn

    def ingress(self) -> IngressDeps:
        """Ingress dependencies on this environment."""
        from bot.policy import policy_store
        from bot.queue import TaskQueue

        return IngressDeps(
            db=self.db, queue=TaskQueue(self.redis), policy=policy_store(self.settings, self.db)
        )

    def child_env(self) -> dict[str, str]:
        """Environment for `clawback web` / `clawback worker` processes on this installation."""
        return {
            **os.environ,
            "SLACK_BOT_TOKEN": self.settings.slack_bot_token or "",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.settings.slack_api_url,
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": self.settings.openai_base_url or "",
            "CLAWBACK_MODEL": "clawback-standin",
            "REDIS_URL": self.settings.redis_url or "",
            "DATABASE_URL": self.settings.database_url,
            "CLAWBACK_HOME": str(self.home),
            "CLAWBACK_POLICY": str(self.settings.clawback_policy),
        }

    def close(self) -> None:
        """Stop everything and delete the data."""
        self.slack.stop()
        self.llm.stop()
        self.db.dispose()
        embedded_redis.stop(self.home / "redis")
        shutil.rmtree(self.home, ignore_errors=True)


def pg_scratch(admin_url: str, name: str) -> tuple[str, Any]:
    """Create (or re-create) the scratch database ``name`` next to ``admin_url``; returns its URL and a drop function."""
    from sqlalchemy import create_engine, text

    base = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    scratch = admin_url.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()

    return scratch, drop


def make_env(*, llm_latency: float = 0.0, database_url: str | None = None, **overrides: Any) -> BenchEnv:
    """Start embedded Redis, the stand-ins and a migrated database in a temporary directory.

    A PostgreSQL ``database_url`` is migrated to the head revision (give it a scratch database).
    """
    home = Path(tempfile.mkdtemp(prefix="clawback-bench-"))
    url = embedded_redis.ensure(home / "redis")
    slack = SlackStandIn(token=BOT_TOKEN)
    slack.seed_demo()
    slack.start()
    llm = LLMStandIn(latency=llm_latency)
    llm.start()
    (home / "policy.toml").write_text(BENCH_POLICY)
    values = dict(
        clawback_policy=home / "policy.toml",
        _env_file=None,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.url + "/api/",
        openai_base_url=llm.base_url,
        openai_api_key="bench",
        clawback_model="clawback-standin",
        redis_url=url,
        database_url=database_url or f"sqlite:///{home / 'clawback.db'}",
        clawback_home=home,
        clawback_retry_intervals="1,1",
    )
    values.update(overrides)
    settings = Settings(**values)
    db = Database(settings.database_url)
    if db.is_sqlite:
        ensure_schema(db)
    else:
        upgrade(db)
    return BenchEnv(home, settings, db, redis.Redis.from_url(url), slack, llm)


class ServedWeb:
    """The production WSGI app under waitress on a loopback port, in this process."""

    def __init__(self, env: BenchEnv, threads: int = 16) -> None:
        from bot.slack.app import BackgroundWeb, build_web
        from handlers.context import HandlerContext

        wsgi = build_web(env.settings, db=env.db, queue_conn=env.redis, ctx=HandlerContext(env.ingress()))
        self.web = BackgroundWeb(wsgi, threads=threads)
        self.url = self.web.url + "/slack/events"

    def close(self) -> None:
        """Stop serving."""
        self.web.close()


def save(name: str, result: dict[str, Any]) -> None:
    """Merge one benchmark's result into ``bench/results.json``."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[name] = {
        **result,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
