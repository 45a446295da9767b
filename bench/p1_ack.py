"""P1: signed Slack event → HTTP 200 at 50, 100, 200 events/s against a real `clawback web` process.

Reports p50/p99 ack latency, lost events (no task) and duplicated events (more than one task), with the
p99 as a ratio of Slack's 3 s acknowledgement limit (the baseline).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from sqlalchemy import func, select

from bench.common import SIGNING_SECRET, make_env, save
from bench.loadgen import run_load
from bot.db import Task

SLACK_LIMIT_MS = 3000.0
RATES = (50, 100, 200)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(seconds: float = 20.0, rates: tuple[int, ...] = RATES) -> dict:
    """Run the three rates; returns the summary."""
    out: dict = {
        "target": "p99 <= 25 ms at 200/s, 0 lost, 0 duplicated",
        "baseline": "Slack's 3 s ack limit",
        "rates": {},
    }
    for rate in rates:
        env = make_env()
        port = _free_port()
        child_env = {
            **os.environ,
            "SLACK_BOT_TOKEN": env.settings.slack_bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": env.settings.slack_api_url,
            "REDIS_URL": env.settings.redis_url,
            "DATABASE_URL": env.settings.database_url,
            "CLAWBACK_HOME": str(env.home),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.ops.cli", "web", "--host", "127.0.0.1", "--port", str(port)],
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()  # noqa: S310
                    break
                except OSError:
                    time.sleep(0.1)
            # warm-up, then the measured run
            run_load(
                f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, rate=20, seconds=1, prefix="EvWARM"
            )
            result = run_load(
                f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, rate=rate, seconds=seconds
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        with env.db.session() as s:
            rows = dict(
                s.execute(
                    select(Task.idempotency_key, func.count())
                    .where(Task.idempotency_key.like("slack:EvLOAD%"))
                    .group_by(Task.idempotency_key)
                ).all()
            )
        lost = sum(1 for e in result.event_ids if rows.get(f"slack:{e}", 0) == 0)
        dup = sum(1 for n in rows.values() if n > 1)
        summary = result.summary()
        summary.update(
            lost=lost, duplicated=dup, p99_vs_slack_limit=round(summary["p99_ms"] / SLACK_LIMIT_MS, 4)
        )
        out["rates"][str(rate)] = summary
        env.close()
    return out


def main() -> None:
    """Print the table and save the result."""
    result = run()
    print(
        f"{'rate/s':>7} {'sent':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99/3s':>8} {'lost':>5} {'dup':>4} {'errors':>6}"
    )
    for rate, r in result["rates"].items():
        print(
            f"{rate:>7} {r['sent']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['p99_vs_slack_limit']:>8} "
            f"{r['lost']:>5} {r['duplicated']:>4} {r['errors']:>6}"
        )
    save("P1", result)


if __name__ == "__main__":
    main()
