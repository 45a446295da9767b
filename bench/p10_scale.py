"""P10 (issue 15's "P7"): scale on PostgreSQL — audited tasks per second end to end, and the audit chain's ceiling.

End to end: 2 `clawback web` processes and 1, then 4, then 16 `clawback worker` processes (added to the running
ones) against one PostgreSQL database and one Redis, the LLM stand-in answering in 300 ms. Signed Slack
mentions go to the web processes (round-robin) at twice what the workers can answer; the figure is answered
tasks per second from the first event to the last answer posted, against the ideal W / 0.3 s. The log is run as
``CHAINS`` chains; at the end a checkpoint is signed and ``audit.verify`` must pass.

Chain ceiling: N processes (1, 4, 16) each appending audit entries in their own transactions for a few seconds,
with one chain and with ``CHAINS`` chains, against the same processes inserting the same rows with no chain
(the baseline: what the database does without the head lock).

Everything — database, Redis, stand-ins, web, workers and the load generator — shares this machine's cores.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import func, select

from bench.common import SIGNING_SECRET, make_env, pg_scratch, save
from bench.loadgen import run_load
from bench.p1_ack import start_web, stop_web
from bot import audit
from bot.db import AuditEntry, Database, Task

LATENCY = 0.3
CHAINS = 16
WORKERS = (1, 4, 16)
APPENDERS = (1, 4, 16)
KEY = "p10-bench-key"


# -- the chain's own ceiling ------------------------------------------------------------------------------------
def _appender(url: str, mode: str, seconds: float, start: float, me: int, out: Any) -> None:
    db = Database(url)
    table = AuditEntry.__table__.insert()
    n = 0
    while time.time() < start:
        time.sleep(0.01)
    end = time.time() + seconds
    while time.time() < end:
        if mode == "bare":  # the same row, no head: what the database does without the chain
            with db.session() as s:
                s.execute(
                    table,
                    {
                        "seq": (me + 1) * 1_000_000 + n,
                        "ts": "x",
                        "actor": f"A{me}",
                        "action": "bench",
                        "decision": "info",
                        "task_id": f"a{me}-{n}",
                        "details": "{}",
                        "prev_hash": "0" * 64,
                        "hash": "1" * 64,
                        "on_behalf_of": None,
                        "target": None,
                        "scope": None,
                        "chain": 0,
                    },
                )
        else:
            audit.record(db, actor=f"A{me}", action="bench.append", task_id=f"a{me}-{n}", details={"n": n})
        n += 1
    out.put(n)
    db.dispose()


def ceiling(admin_url: str, seconds: float = 3.0) -> list[dict[str, Any]]:
    """Appends per second with N concurrent appender processes: bare inserts, one chain, ``CHAINS`` chains."""
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for mode in ("bare", "1 chain", f"{CHAINS} chains"):
        url, drop = pg_scratch(admin_url, "clawback_p10chain")
        try:
            env_db = Database(url)
            from bot.migrate import upgrade

            upgrade(env_db)
            if mode != "1 chain" and mode != "bare":
                audit.set_chains(env_db, CHAINS)
            row: dict[str, Any] = {"mode": mode}
            for n in APPENDERS:
                out = ctx.Queue()
                start = time.time() + 3.0  # spawned interpreters start first
                procs = [
                    ctx.Process(target=_appender, args=(url, mode, seconds, start, n * 100 + i, out))
                    for i in range(n)
                ]
                for p in procs:
                    p.start()
                total = sum(out.get(timeout=seconds + 60) for _ in procs)
                for p in procs:
                    p.join(30)
                row[str(n)] = round(total / seconds)
            if mode != "bare":
                audit.checkpoint(env_db, KEY)
                row["verify_ok"] = audit.verify(env_db, key=KEY).ok
            env_db.dispose()
            rows.append(row)
        finally:
            drop()
    return rows


# -- end to end --------------------------------------------------------------------------------------------------
def _answers(env: Any) -> int:
    return len([m for m in env.slack.bot_messages() if m.metadata])


def end_to_end(admin_url: str, workers: tuple[int, ...] = WORKERS, web: int = 2) -> dict[str, Any]:
    """Tasks per second with ``workers`` worker processes (added cumulatively) behind ``web`` web processes."""
    from rq import Worker

    url, drop = pg_scratch(admin_url, "clawback_p10bench")
    env = make_env(llm_latency=LATENCY, database_url=url)
    audit.set_chains(env.db, CHAINS)
    webs, urls = start_web(env, web)
    procs: list[subprocess.Popen] = []
    runs = []
    try:
        for w in workers:
            for i in range(len(procs), w):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bot.ops.cli", "worker", "--no-fork", "--name", f"p10-{i}"],
                        env=env.child_env(),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            deadline = time.monotonic() + 180
            while len(Worker.all(connection=env.redis)) < w and time.monotonic() < deadline:
                time.sleep(0.2)
            ideal = w / LATENCY
            tasks = max(30, round(ideal * 6))  # about 6 s of work at the ideal rate
            before_answers = _answers(env)
            with env.db.session() as s:
                before_audit = s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
            t0 = time.perf_counter()
            load = run_load(
                urls,
                SIGNING_SECRET,
                rate=min(2 * ideal, 300),
                seconds=tasks / min(2 * ideal, 300),
                prefix=f"EvP10w{w}x",
            )
            deadline = time.monotonic() + 120
            while _answers(env) - before_answers < load.sent and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            answered = _answers(env) - before_answers
            with env.db.session() as s:
                entries = s.execute(select(func.count()).select_from(AuditEntry)).scalar_one() - before_audit
                done = s.execute(
                    select(func.count())
                    .select_from(Task)
                    .where(Task.idempotency_key.like(f"slack:EvP10w{w}x%"))
                ).scalar_one()
            runs.append(
                {
                    "workers": w,
                    "web_processes": web,
                    "tasks": load.sent,
                    "answered": answered,
                    "task_rows": done,
                    "seconds": round(elapsed, 2),
                    "tasks_per_s": round(answered / elapsed, 1),
                    "ideal_tasks_per_s": round(ideal, 1),
                    "efficiency": round(answered / elapsed / ideal, 3),
                    "audit_entries_per_task": round(entries / max(answered, 1), 2),
                    "audit_appends_per_s": round(entries / elapsed),
                    "ack_p99_ms": load.summary()["p99_ms"],
                    "errors": load.errors,
                }
            )
        audit.checkpoint(env.db, KEY)
        verified = audit.verify(env.db, key=KEY)
        return {"chains": CHAINS, "runs": runs, "verify_ok": verified.ok, "verify_entries": verified.entries}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        stop_web(webs)
        env.close()
        drop()


def run(pg_url: str | None = None) -> dict[str, Any]:
    """Both parts against PostgreSQL (skipped, saying so, without one)."""
    if not pg_url:
        return {"skipped": "no PostgreSQL reachable (TEST_DATABASE_URL or 127.0.0.1:5432)"}
    return {
        "target": f"tasks/s close to W / {LATENCY} s; the chain not the limit at 16 workers",
        "llm_latency_s": LATENCY,
        "end_to_end": end_to_end(pg_url),
        "chain_ceiling_appends_per_s": ceiling(pg_url),
    }


def main() -> None:
    """Print the tables and save the result."""
    from bench.run_all import local_postgres

    r = run(local_postgres())
    if "skipped" in r:
        print(r["skipped"])
        return
    e2e = r["end_to_end"]
    print(f"end to end, {e2e['chains']} chains, verify ok: {e2e['verify_ok']}")
    print(
        f"{'W':>3} {'tasks':>6} {'s':>7} {'tasks/s':>8} {'ideal':>6} {'eff.':>6} {'audit/task':>10} {'appends/s':>9}"
    )
    for x in e2e["runs"]:
        print(
            f"{x['workers']:>3} {x['tasks']:>6} {x['seconds']:>7} {x['tasks_per_s']:>8} {x['ideal_tasks_per_s']:>6} "
            f"{x['efficiency']:>6} {x['audit_entries_per_task']:>10} {x['audit_appends_per_s']:>9}"
        )
    print("audit appends/s with N concurrent appender processes")
    for row in r["chain_ceiling_appends_per_s"]:
        print(f"{row['mode']:>10}: " + ", ".join(f"N={n}: {row[str(n)]}" for n in APPENDERS))
    save("P10", r)


if __name__ == "__main__":
    main()
