"""A bounded load test on loopback against a real ``clawback web`` process: every event → exactly one task."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from sqlalchemy import func, select

from bench.loadgen import run_load
from bot.db import Task
from tests.conftest import SIGNING_SECRET


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web(settings, tmp_path, port: int) -> subprocess.Popen:
    """Start `clawback web` as its own process and wait for /healthz."""
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": settings.slack_bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": settings.slack_api_url,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "CLAWBACK_HOME": str(settings.clawback_home),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.ops.cli",
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            "16",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "web.log", "w"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:  # noqa: S310
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("clawback web did not start: " + (tmp_path / "web.log").read_text()[-2000:])


@pytest.mark.slow
def test_200_events_per_second_for_15_seconds_each_one_task(settings, deps, tmp_path):
    """3,000 signed mentions (+10% Slack retries) at 200/s: all acked 200, exactly one task per event."""
    port = free_port()
    proc = start_web(settings, tmp_path, port)
    try:
        result = run_load(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, rate=200, seconds=15)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    summary = result.summary()
    print("load:", summary)
    assert result.errors == 0, summary
    assert result.sent == 3000 and result.retries_sent == 300
    with deps.db.session() as s:
        tasks = s.execute(select(func.count()).select_from(Task)).scalar_one()
        distinct = s.execute(select(func.count(func.distinct(Task.idempotency_key)))).scalar_one()
    assert tasks == distinct == 3000
    assert sum(q.count for q in deps.queue.ordered) == 3000
