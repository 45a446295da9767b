"""``make bench``: run P1–P10, print one summary table, write ``bench/results.json``.

Each benchmark reports its figure against a baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback

from bench.common import RESULTS, machine, save

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"


def local_postgres() -> str | None:
    """TEST_DATABASE_URL, else a PostgreSQL on 127.0.0.1:5432 if one answers (P5 runs on both backends)."""
    import os

    if os.environ.get("TEST_DATABASE_URL"):
        return os.environ["TEST_DATABASE_URL"]
    try:
        import psycopg

        psycopg.connect(LOCAL_PG, connect_timeout=2).close()
        return LOCAL_PG
    except Exception:
        return None


BENCHES = [
    ("P1", "bench.p1_ack", {"pg_url": local_postgres}),
    ("P2", "bench.p2_overhead", {}),
    ("P3", "bench.p3_drain", {}),
    ("P4", "bench.p4_triage_tokens", {}),
    ("P5", "bench.p5_report", {"pg_url": local_postgres}),
    ("P6", "bench.p6_idle_poll", {}),
    ("P6g", "bench.p6g_graph_poll", {}),
    ("P7", "bench.p7_hostile_html", {}),
    ("P8", "bench.p8_crash_recovery", {}),
    ("P9", "bench.p9_signals", {}),
    ("P10", "bench.p10_scale", {"pg_url": local_postgres}),
]


def headline(name: str, r: dict) -> str:
    """One line per benchmark for the summary table."""
    if name == "P1":
        top = r["rates"][max(r["rates"], key=int)]
        line = (
            f"1 process at {max(r['rates'], key=int)}/s: p50 {top['p50_ms']} ms, p99 {top['p99_ms']} ms "
            f"({top['p99_vs_slack_limit']:.3%} of Slack's 3 s), lost {top['lost']}, dup {top['duplicated']}"
        )
        scaled = r.get("scaled") or {}
        for backend, rows in (scaled.get("backends") or {}).items():
            line += f"; {scaled['web_processes']} x {backend}: " + ", ".join(
                f"{rate}/s p99 {x['p99_ms']} ms (sent {x['achieved_rate_per_s']}/s, lost {x['lost']}, "
                f"dup {x['duplicated']}, errors {x['errors']})"
                for rate, x in rows.items()
            )
        return line
    if name == "P10":
        if "skipped" in r:
            return r["skipped"]
        e2e = r["end_to_end"]
        ceiling = "; ".join(
            f"{row['mode']}: " + "/".join(str(v) for k, v in row.items() if k.isdigit())
            for row in r["chain_ceiling_appends_per_s"]
        )
        return (
            "tasks/s "
            + ", ".join(
                f"W={x['workers']}: {x['tasks_per_s']} (ideal {x['ideal_tasks_per_s']})" for x in e2e["runs"]
            )
            + f", verify ok {e2e['verify_ok']}; appends/s with 1/4/16 appenders: {ceiling}"
        )
    if name == "P2":
        return (
            f"{r['pipeline_ms_per_task']['median']} ms/task vs bare RQ job {r['baseline_ms_per_task']['median']}"
            f" ms/task = {r['ratio']}x"
        )
    if name == "P3":
        return "; ".join(
            f"W={x['workers']}: {x['drain_s']} s vs ideal {x['ideal_s']} s = {x['efficiency']:.0%}, "
            f"{x['pss_mb_per_in_flight_task']} MB PSS/in-flight task{' (fork)' if x['fork'] else ''}"
            for x in r["runs"]
        )
    if name == "P5":
        parts = [
            f"{x['backend']}: {x['report']['median_s']} s (naive join {x['naive_join']['median_s']} s)"
            for x in r.get("results", [])
        ]
        if isinstance(r.get("postgresql"), str):
            parts.append(f"postgresql {r['postgresql']}")
        return "; ".join(parts)
    if name == "P6":
        return f"{r['requests_per_idle_poll']} EWS request(s) per idle poll of {r['messages']:,} messages"
    if name == "P6g":
        return "; ".join(
            f"{x['backend']} {x['messages']:,}: full sync {x['full_sync_requests']} req {x['full_sync_seconds']} s,"
            f" first sync {x['first_sync_requests']} req, idle {x['idle_poll_requests']} req"
            for x in r["rows"]
        )
    if name == "P9":
        held, tuned = r["heldout_seeds"], r["tuning_seeds"]
        pipe = r.get("pipeline") or {}
        return (
            f"held-out seeds {held['seeds']}: precision {held['precision_min']}–{held['precision_max']}, recall "
            f"{held['recall_min']}–{held['recall_max']} (tuning seeds: {tuned['precision_min']}–"
            f"{tuned['precision_max']} / {tuned['recall_min']}–{tuned['recall_max']}); real pipeline, seed "
            f"{pipe.get('seed')}: precision {pipe.get('precision')}, recall {pipe.get('recall')}"
        )
    if name == "P7":
        return (
            f"worst hostile HTML ({r['worst_shape']}) {r['ratio']}x a benign email of {r['size']:,} chars "
            f"(bound {r['bound']}x)"
        )
    if name == "P8":
        return (
            f"SIGKILL → answer p100 over {r['kills_per_mode']} kills: in-process {r['in_process']['p100_s']} s, "
            f"--fork {r['fork']['p100_s']} s (goal ≤ {r['goal_s']:.0f} s; unkilled answer "
            f"{r['baseline_answer_p100_s']} s; before leases up to {r['before_leases_bound_s']:.0f} s)"
        )
    if name == "P4":
        other = r.get("without_draft_scope") or {}
        return (
            f"{r['tokens_per_email']} tokens/email vs naive {r['naive_tokens_per_email']} = {r['ratio']} "
            f"(owner holds mail.draft; without it {other.get('ratio')}), "
            f"same decisions {r['same_decisions']}/{r['emails']}"
            + (
                f"; labelled corpus: retention {lab['retention']:.1%}, {lab['ratio_plain']} of the plain-text-body"
                f" prompt, {lab['ratio_raw']} of the raw one (with mail.draft {lab['ratio_plain_draft_scope']} /"
                f" {lab['ratio_raw_draft_scope']})"
                if (lab := r.get("labelled"))
                else ""
            )
        )
    keys = [
        k
        for k in (
            "ratio",
            "ratio_vs_naive",
            "idle_poll_requests",
            "requests",
            "median_s",
            "sqlite",
            "postgresql",
            "decisions_identical",
        )
        if k in r
    ]
    return ", ".join(f"{k}={json.dumps(r[k])[:80]}" for k in keys) or json.dumps(r)[:160]


def main() -> int:
    """Run every benchmark (a failure in one does not stop the others)."""
    only = set(sys.argv[1:])
    started = time.perf_counter()
    failed = []
    print(f"machine: {machine()}")
    for name, module, kwargs in BENCHES:
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        print(f"== {name} ({module}) ...", flush=True)
        try:
            args = {k: v() if callable(v) else v for k, v in kwargs.items()}
            result = importlib.import_module(module).run(**args)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        save(name, {**result, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"   {name}: {headline(name, result)}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    print(f"all done in {time.perf_counter() - started:.0f} s; results in {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
