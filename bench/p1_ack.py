"""P1: signed Slack event → HTTP 200 against real `clawback web` processes.

One process on SQLite at 50, 100 and 200 events/s (the original P1); then several processes (the load
generator round-robins across their ports, as a load balancer would) at 500 and 1,000 events/s, on SQLite and
on PostgreSQL when one is reachable. Reports p50/p99 ack latency, lost events (no task), duplicated events (more
than one task; Slack's retries go to another process than the first delivery) and errors, with the p99 as a
ratio of Slack's 3 s acknowledgement limit (the baseline). The load generator runs on the same machine and
cores as the web processes and the database.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.common import SIGNING_SECRET, BenchEnv, make_env, pg_scratch, save
from bench.loadgen import run_load
from bot.db import Task

SLACK_LIMIT_MS = 3000.0
RATES = (50, 100, 200)  # one web process, SQLite
SCALE_RATES = (500, 1000)  # WEB_PROCESSES web processes, SQLite and PostgreSQL
WEB_PROCESSES = 2
PG_DATABASE = "clawback_p1bench"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web(env: BenchEnv, processes: int, threads: int = 16) -> tuple[list[subprocess.Popen], list[str]]:
    """Start ``processes`` `clawback web` processes on their own ports; returns them and their event URLs."""
    child_env = env.child_env()
    procs, urls = [], []
    for _ in range(processes):
        port = _free_port()
        cmd = [sys.executable, "-m", "bot.ops.cli", "web", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--threads", str(threads)]
        procs.append(
            subprocess.Popen(cmd, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        urls.append(f"http://127.0.0.1:{port}/slack/events")
    for url in urls:
        health = url.replace("/slack/events", "/healthz")
        for _ in range(300):
            try:
                urllib.request.urlopen(health, timeout=1).close()  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
    return procs, urls


def stop_web(procs: list[subprocess.Popen]) -> None:
    """Stop the web processes (SIGTERM, then wait)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def _cpu_s(pid: int | str) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_s() -> float:
    """CPU seconds of every local process named postgres* (the server and its backends), 0 without /proc."""
    total = 0.0
    proc = Path("/proc")
    if not proc.is_dir():
        return 0.0
    for d in proc.iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().startswith("postgres"):
                    total += _cpu_s(d.name)
            except OSError:
                continue
    return total


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(
    env: BenchEnv, urls: list[str], rate: int, seconds: float, web: list[subprocess.Popen] | None = None
) -> dict[str, Any]:
    """One measured run at ``rate``; counts lost and duplicated events in the ledger, and where the CPU went
    (ms per request: the web processes, PostgreSQL when the database is a local one, the load generator)."""
    prefix = f"EvR{rate}x"
    pg = not env.db.is_sqlite
    web_before = [_cpu_s(p.pid) for p in web or []]
    pg_before, own_before = (_postgres_cpu_s() if pg else 0.0), _own_cpu_s()
    result = run_load(
        urls, SIGNING_SECRET, rate=rate, seconds=seconds, prefix=prefix, threads=32 if rate > 200 else 16
    )
    requests = max(1, result.sent + result.retries_sent)
    cpu = {
        "web_ms_per_request": round(
            1000 * sum(_cpu_s(p.pid) - b for p, b in zip(web or [], web_before, strict=True)) / requests, 2
        ),
        "load_generator_ms_per_request": round(1000 * (_own_cpu_s() - own_before) / requests, 2),
    }
    if pg:
        cpu["postgresql_ms_per_request"] = round(1000 * (_postgres_cpu_s() - pg_before) / requests, 2)
    time.sleep(0.5)  # let the last requests' transactions land
    with env.db.session() as s:
        rows = dict(
            s.execute(
                select(Task.idempotency_key, func.count())
                .where(Task.idempotency_key.like(f"slack:{prefix}%"))
                .group_by(Task.idempotency_key)
            ).all()
        )
    lost = sum(1 for e in result.event_ids if rows.get(f"slack:{e}", 0) == 0)
    dup = sum(1 for n in rows.values() if n > 1)
    summary = result.summary()
    summary.update(lost=lost, duplicated=dup, p99_vs_slack_limit=round(summary["p99_ms"] / SLACK_LIMIT_MS, 4))
    if web:
        summary["cpu"] = cpu
    return summary


def _series(
    database_url: str | None, processes: int, rates: tuple[int, ...], seconds: float
) -> dict[str, Any]:
    env = make_env(database_url=database_url)
    procs, urls = start_web(env, processes)
    try:
        run_load(urls, SIGNING_SECRET, rate=20, seconds=1, prefix="EvWARM")
        return {str(rate): measure(env, urls, rate, seconds, procs) for rate in rates}
    finally:
        stop_web(procs)
        env.close()


def run(
    seconds: float = 20.0,
    rates: tuple[int, ...] = RATES,
    scale_rates: tuple[int, ...] = SCALE_RATES,
    processes: int = WEB_PROCESSES,
    pg_url: str | None = None,
    scale_seconds: float = 10.0,
) -> dict[str, Any]:
    """Run the single-process rates, then the scaled ones on SQLite and (``pg_url``) PostgreSQL."""
    out: dict[str, Any] = {
        "target": "p99 <= 25 ms at 200/s and at 500/s, 0 lost, 0 duplicated",
        "baseline": "Slack's 3 s ack limit",
        "cpus": os.cpu_count(),
        "rates": _series(None, 1, rates, seconds),
        "scaled": {"web_processes": processes, "threads_per_process": 16, "backends": {}},
    }
    if scale_rates:
        out["scaled"]["backends"]["sqlite"] = _series(None, processes, scale_rates, scale_seconds)
        if pg_url:
            scratch, drop = pg_scratch(pg_url, PG_DATABASE)
            try:
                out["scaled"]["backends"]["postgresql"] = _series(
                    scratch, processes, scale_rates, scale_seconds
                )
            finally:
                drop()
        else:
            out["scaled"]["postgresql"] = "skipped: no PostgreSQL reachable"
    return out


def _row(label: str, rate: str, r: dict[str, Any]) -> str:
    cpu = r.get("cpu", {})
    return (
        f"{label:>16} {rate:>7} {r['sent']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['p99_vs_slack_limit']:>8} "
        f"{r['lost']:>5} {r['duplicated']:>4} {r['errors']:>6} {r['achieved_rate_per_s']:>8} "
        f"{cpu.get('web_ms_per_request', '-'):>6} {cpu.get('postgresql_ms_per_request', '-'):>5} "
        f"{cpu.get('load_generator_ms_per_request', '-'):>5}"
    )


def main() -> None:
    """Print the table and save the result (``--quick``: 5 s runs; ``--no-pg``: SQLite only).

    The last three columns are CPU milliseconds per request (retries included): the web processes, local
    PostgreSQL's processes, the load generator.
    """
    from bench.run_all import local_postgres

    seconds = 5.0 if "--quick" in sys.argv else 20.0
    pg = None if "--no-pg" in sys.argv else local_postgres()
    result = run(seconds=seconds, pg_url=pg, scale_seconds=min(seconds, 10.0))
    print(
        f"{'web':>16} {'rate/s':>7} {'sent':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99/3s':>8} {'lost':>5} {'dup':>4} "
        f"{'errors':>6} {'sent/s':>8} {'web':>6} {'pg':>5} {'gen':>5}"
    )
    for rate, r in result["rates"].items():
        print(_row("1 x sqlite", rate, r))
    n = result["scaled"]["web_processes"]
    for backend, rows in result["scaled"]["backends"].items():
        for rate, r in rows.items():
            print(_row(f"{n} x {backend}", rate, r))
    save("P1", result)


if __name__ == "__main__":
    main()
