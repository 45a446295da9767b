"""P5: ``clawback report`` over 1,000,000 LLM-call rows, 30 days, by user × intent (target ≤ 1 s).

Builds the ledger inside the database with one INSERT … SELECT per table (a recursive CTE on SQLite,
``generate_series`` on PostgreSQL), so generation takes seconds, not minutes. Then it times:

- ``facts_build_s``: the one-off build of the facts table (``bot.measure.facts.refresh`` from empty);
- ``report_s``: ``build_report(by="user,intent")`` as ``clawback report --by user,intent --as <auditor>``
  runs it
  (incremental facts refresh, totals, rows, by intent, by surface, timeline), median of several runs after a
  warm-up — the P5 figure;
- ``naive_join_s``: the baseline, the same grouping as one direct join of tasks, LLM calls and outcomes (what
  the
  first report version did), median of fewer runs because it is slow.

PostgreSQL runs when ``TEST_DATABASE_URL`` (or ``--pg URL``) points at a reachable server; the benchmark
creates
and drops its own scratch database there (``clawback_p5bench``) and never touches the test database's tables.

    python -m bench.p5_report [--calls 1000000] [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import pg_scratch
from bot import migrate
from bot.db import Database
from bot.measure import facts
from bot.measure.outcomes import parse_kinds
from bot.measure.report import Viewer, build_report

USERS = 300
DAYS = 30
INTENTS = ("answer", "summarize", "triage", "draft", "deploy_plan", "digest")
SURFACES = ("mention", "dm", "email", "email", "deploy", "email")
KINDS = ("resolved", "not_helpful", "label_kept", "label_corrected", "draft_sent", "deploy_succeeded", "none")
CALLS_PER_TASK = 2.5


def _sqlite_sql(n_tasks: int, n_calls: int, start: datetime) -> list[str]:
    s0 = start.strftime("%Y-%m-%d %H:%M:%S")
    span = DAYS * 86400
    intents = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(INTENTS))
    surfaces = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(SURFACES))
    kinds = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(KINDS))
    series = "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})"
    created = f"datetime('{s0}', '+' || ((i * 7919) % {span}) || ' seconds')"
    return [
        series.format(n=n_tasks - 1)
        + ' INSERT INTO tasks (id, idempotency_key, requester, surface, intent, "trigger", channel_id,'
        " status,"
        " payload, result, redactions, attempts, created_at, started_at, finished_at)"
        f" SELECT printf('p5%018d', i), 'p5:' || i, printf('U%05d', (i * 48271) % {USERS}),"
        f" CASE i % 6 {surfaces} END, CASE i % 6 {intents} END, 'human', printf('C%03d', i % 40),"
        " CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'done' END, '{}', '{}', 0, 1,"
        f" {created} || '.000000', {created} || '.000000',"
        f" strftime('%Y-%m-%d %H:%M:%f', {created}, '+' || ((500 + (i * 37) % 20000) / 1000.0) || ' seconds')"
        " || '000' FROM seq",
        series.format(n=n_calls - 1)
        + " INSERT INTO llm_calls (task_id, step, model, prompt_name, prompt_version, prompt_tokens,"
        " completion_tokens, cached_tokens, total_tokens, usage_reported, cost, latency_ms, status, "
        "created_at)"
        f" SELECT printf('p5%018d', i * 2 / 5), 's' || (i % 3), CASE i % 4 WHEN 0 THEN 'gpt-4o' ELSE"
        " 'gpt-4o-mini' END, 'answer', 'abc123def456', 300 + (i * 13) % 2000, 50 + (i * 7) % 400, 0,"
        " 350 + (i * 13) % 2000 + (i * 7) % 400, 1, ((300 + (i * 13) % 2000) * 0.4 + (50 + (i * 7) % 400) * "
        "1.6)"
        f" / 1000000.0, 200 + (i * 17) % 5000, 'ok', datetime('{s0}', '+' || (((i * 2 / 5) * 7919) % {span})"
        " || ' seconds') || '.000000' FROM seq",
        series.format(n=n_tasks - 1)
        + " INSERT INTO outcomes (task_id, kind, source, actor, detail, created_at)"
        f" SELECT printf('p5%018d', i), CASE (i * 13) % 7 {kinds} END,"
        " CASE (i * 13) % 7 WHEN 6 THEN 'timeout' WHEN 0 THEN 'explicit' WHEN 1 THEN 'explicit'"
        f" ELSE 'implicit' END, NULL, '{{}}', {created} || '.000000' FROM seq WHERE i % 10 < 6",
    ]


def _pg_sql(n_tasks: int, n_calls: int, start: datetime) -> list[str]:
    s0 = start.strftime("%Y-%m-%d %H:%M:%S+00")
    span = DAYS * 86400
    arr = lambda vals: "(ARRAY[" + ",".join(f"'{v}'" for v in vals) + "])"  # noqa: E731
    created = f"(TIMESTAMPTZ '{s0}' + ((i::bigint * 7919) % {span}) * INTERVAL '1 second')"
    return [
        'INSERT INTO tasks (id, idempotency_key, requester, surface, intent, "trigger", channel_id, status, '
        "payload,"
        " result, redactions, attempts, created_at, started_at, finished_at)"
        " SELECT 'p5' || lpad(i::text, 18, '0'), 'p5:' || i, 'U' || lpad(((i::bigint * 48271) % "
        f"{USERS})::text, 5,"
        f" '0'), {arr(SURFACES)}[i % 6 + 1], {arr(INTENTS)}[i % 6 + 1], 'human', 'C' || lpad((i % "
        "40)::text, 3, '0'),"
        " CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'done' END, '{}', '{}', 0, 1, "
        f"{created}, {created}, {created} + ((500 + (i::bigint * 37) % 20000) * INTERVAL '1 millisecond')"
        f" FROM generate_series(0, {n_tasks - 1}) AS i",
        "INSERT INTO llm_calls (task_id, step, model, prompt_name, prompt_version, prompt_tokens, "
        "completion_tokens,"
        " cached_tokens, total_tokens, usage_reported, cost, latency_ms, status, created_at)"
        " SELECT 'p5' || lpad((i::bigint * 2 / 5)::text, 18, '0'), 's' || (i % 3), CASE i % 4 WHEN 0 THEN "
        "'gpt-4o'"
        " ELSE 'gpt-4o-mini' END, 'answer', 'abc123def456', 300 + (i::bigint * 13) % 2000, 50 + (i::bigint "
        "* 7) % 400,"
        " 0, 350 + (i::bigint * 13) % 2000 + (i::bigint * 7) % 400, true,"
        " ((300 + (i::bigint * 13) % 2000) * 0.4 + (50 + (i::bigint * 7) % 400) * 1.6) / 1000000.0,"
        f" 200 + (i::bigint * 17) % 5000, 'ok', TIMESTAMPTZ '{s0}' + (((i::bigint * 2 / 5) * 7919) % {span})"
        f" * INTERVAL '1 second' FROM generate_series(0, {n_calls - 1}) AS i",
        "INSERT INTO outcomes (task_id, kind, source, actor, detail, created_at)"
        f" SELECT 'p5' || lpad(i::text, 18, '0'), {arr(KINDS)}[(i::bigint * 13) % 7 + 1],"
        " CASE (i::bigint * 13) % 7 WHEN 6 THEN 'timeout' WHEN 0 THEN 'explicit' WHEN 1 THEN 'explicit'"
        f" ELSE 'implicit' END, NULL, '{{}}', {created} FROM generate_series(0, {n_tasks - 1}) AS i WHERE i "
        "% 10 < 6",
    ]


_NAIVE = """
SELECT t.requester, t.intent, COUNT(*), SUM(u.p), SUM(u.c), SUM(u.cost), SUM(o.ok)
FROM tasks t
LEFT JOIN (SELECT task_id, SUM(prompt_tokens) p, SUM(completion_tokens) c, SUM(cost) cost
           FROM llm_calls GROUP BY task_id) u ON u.task_id = t.id
LEFT JOIN (SELECT task_id, MAX(CASE WHEN kind IN ('resolved', 'label_kept', 'draft_sent', 'deploy_succeeded')
           THEN 1 ELSE 0 END) ok FROM outcomes GROUP BY task_id) o ON o.task_id = t.id
WHERE t.created_at >= :since GROUP BY t.requester, t.intent
"""


def _timed(fn, runs: int, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {
        "median_s": round(statistics.median(samples), 4),
        "min_s": round(min(samples), 4),
        "max_s": round(max(samples), 4),
        "runs": runs,
    }


def bench_database(url: str, *, calls: int, runs: int, naive_runs: int) -> dict[str, Any]:
    """Populate ``url`` (an empty database) and time the report on it."""
    db = Database(url)
    migrate.upgrade(db)
    n_tasks = int(calls / CALLS_PER_TASK)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    statements = _sqlite_sql(n_tasks, calls, start) if db.is_sqlite else _pg_sql(n_tasks, calls, start)
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))
    populate_s = time.perf_counter() - t0
    with db.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
        counts = {
            t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
            for t in ("tasks", "llm_calls", "outcomes")
        }
    config = parse_kinds(None)
    t0 = time.perf_counter()
    facts.refresh(db, config, full=True)
    facts_build_s = time.perf_counter() - t0
    if db.is_sqlite:
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    since = now - timedelta(days=DAYS)
    viewer = Viewer.auditor("U0BENCH")

    def report() -> None:
        doc = build_report(db, since=since, by="user,intent", viewer=viewer, include_flags=False)
        assert doc["totals"]["tasks"] > 0

    def report_no_refresh() -> None:
        build_report(db, since=since, by="user,intent", viewer=viewer, include_flags=False, refresh=False)

    def naive() -> None:
        with db.engine.connect() as conn:
            conn.execute(
                text(_NAIVE), {"since": since if not db.is_sqlite else since.strftime("%Y-%m-%d %H:%M:%S")}
            )

    result = {
        "backend": db.engine.dialect.name,
        "rows": counts,
        "populate_s": round(populate_s, 2),
        "facts_build_s": round(facts_build_s, 2),
        "report": _timed(report, runs),
        "report_without_refresh": _timed(report_no_refresh, runs),
        "naive_join": _timed(naive, naive_runs, warmup=0),
    }
    result["speedup_vs_naive"] = round(result["naive_join"]["median_s"] / result["report"]["median_s"], 1)
    result["target_met"] = result["report"]["median_s"] <= 1.0
    db.dispose()
    return result


def run(
    calls: int = 1_000_000, runs: int = 5, naive_runs: int = 2, pg_url: str | None = None
) -> dict[str, Any]:
    """Run P5 on SQLite (and PostgreSQL when reachable); returns the results document."""
    out: dict[str, Any] = {
        "id": "P5",
        "what": f"clawback report by user x intent over {calls:,} LLM-call rows, {DAYS} days",
        "target": "<= 1 s on SQLite and PostgreSQL",
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        out["results"].append(
            bench_database(f"sqlite:///{Path(tmp) / 'p5.db'}", calls=calls, runs=runs, naive_runs=naive_runs)
        )
    pg_url = pg_url or os.environ.get("TEST_DATABASE_URL")
    if pg_url:
        try:
            scratch, drop = pg_scratch(pg_url, "clawback_p5bench")
        except Exception as exc:  # unreachable or no rights: say so, do not fail the run
            out["postgresql"] = f"skipped: {type(exc).__name__}: {exc}"
        else:
            try:
                out["results"].append(bench_database(scratch, calls=calls, runs=runs, naive_runs=naive_runs))
            finally:
                drop()
    else:
        out["postgresql"] = "skipped: TEST_DATABASE_URL is not set"
    return out


def _print(doc: dict[str, Any]) -> None:
    print(f"P5 — {doc['what']} (target {doc['target']})")
    print(
        f"{'backend':<12}{'rows':>12}{'facts build':>13}{'report p50':>12}{'(min–max)':>16}"
        f"{'naive join':>12}{'ratio':>8}"
    )
    for r in doc["results"]:
        rep = r["report"]
        spread = f"({rep['min_s']:.3f}–{rep['max_s']:.3f})"
        print(
            f"{r['backend']:<12}{r['rows']['llm_calls']:>12,}{r['facts_build_s']:>12.2f}s{rep['median_s']:>11.3f}s"
            f"{spread:>16}{r['naive_join']['median_s']:>11.3f}s"
            f"{r['speedup_vs_naive']:>7.1f}×"
        )
    if "postgresql" in doc:
        print(f"postgresql: {doc['postgresql']}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--naive-runs", type=int, default=2)
    ap.add_argument("--pg", default=None, help="PostgreSQL admin URL (default TEST_DATABASE_URL)")
    ap.add_argument("--json", type=Path, default=None, help="Also write the results here")
    args = ap.parse_args(argv)
    doc = run(args.calls, args.runs, args.naive_runs, args.pg)
    _print(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    return 0 if all(r["target_met"] for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
