"""P2: per-task overhead end to end (signed mention → HTTP ack → RQ → LLM → reply posted), zero-latency LLM.

Baseline: a bare RQ job making the same two HTTP calls (a chat completion and a chat.postMessage) with
urllib, enqueued directly. Both are drained by the same kind of RQ worker (SimpleWorker, Clawback's
default) in this process. A run's time is from the first request to the last reply posted (the Slack
stand-in's timestamp of that message): the worker's shutdown after its burst (a pub/sub thread it joins
with a one-second timeout, now and then hit) is not per-task work.

One more run of each, instrumented (``bench.phases``), gives the per-phase breakdown: SQL, Redis, HTTP and
Python, in time and counts per task, for the pipeline's ingress and worker and for the bare job.

A second, informative baseline (the headline ratio stays the one above): the same bare job behind the least a
Slack event pays before any job runs — the same signed event over HTTP to a minimal WSGI app under the same
server (waitress), which checks Slack's signature and the timestamp and enqueues the bare job. The pipeline's
ratio to it is what Clawback adds on top of receiving the event at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import openai
from rq import Queue, SimpleWorker

from bench import phases
from bench.common import SIGNING_SECRET, BenchEnv, ServedWeb, make_env, save, stats
from bot.standins.slack_events import SlackEventSender

N = 150
RUNS = 5
BARE_JOB = "bench.p2_overhead.bare_job"  # by name: this module may run as __main__


def bare_job(llm_url: str, slack_url: str, token: str, channel: str, text: str) -> str:
    """The baseline: the same two HTTP calls, nothing else."""
    body = json.dumps(
        {"model": "x", "messages": [{"role": "user", "content": text}], "max_tokens": 800}
    ).encode()
    req = urllib.request.Request(
        llm_url + "/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer bench"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback stand-in
        answer = json.loads(resp.read())["choices"][0]["message"]["content"]
    post = json.dumps({"channel": channel, "text": answer}).encode()
    req = urllib.request.Request(
        slack_url + "chat.postMessage",
        data=post,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read())["ts"]


def signed_enqueue_app(secret: str, queue: Queue, llm_url: str, slack_url: str, token: str) -> Callable:
    """The least a Slack event pays before a job runs: a WSGI app that checks Slack's v0 signature and the
    timestamp, reads the event and enqueues the bare job (no Bolt, no ledger, no audit, no dedupe)."""

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        ts = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        expected = (
            "v0=" + hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        )
        if (
            not ts.isdigit()
            or abs(time.time() - int(ts)) > 300
            or not hmac.compare_digest(expected, environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        ):
            start_response("401 Unauthorized", [("Content-Length", "0")])
            return [b""]
        event = json.loads(body)["event"]
        queue.enqueue(BARE_JOB, llm_url, slack_url, token, event["channel"], event["text"])
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    return app


def _metered(env: BenchEnv, meter: phases.PhaseMeter | None) -> BenchEnv:
    """The environment with its SQL and Redis metered (when ``meter`` is given)."""
    if meter is not None:
        assert env.settings.redis_url
        env.redis = phases.metered_redis(env.settings.redis_url, meter)
        env.db = phases.MeteredDatabase(env.db, meter)
        phases.install_urllib(meter)
    return env


def _last_post(env: BenchEnv, n: int) -> float:
    """Wall-clock time of the last of ``n`` replies (all must be there)."""
    posted = [float(m.ts) for m in env.slack.bot_messages()]
    assert len(posted) == n, f"{len(posted)} of {n} answers posted"
    return max(posted)


def _pipeline_run(n: int, meter: phases.PhaseMeter | None = None) -> dict[str, Any]:
    from bot.ops.worker import run_worker
    from workers.runtime import build_deps

    env = _metered(make_env(clawback_job_retries=0), meter)
    web = ServedWeb(env)
    deps = build_deps(env.settings, db=env.db, redis_conn=env.redis)
    if meter is not None:
        s = env.settings
        deps.llm.client = openai.OpenAI(
            base_url=s.openai_base_url,
            api_key=s.openai_api_key,
            timeout=s.clawback_llm_timeout,
            max_retries=s.clawback_llm_max_retries,
            http_client=openai.DefaultHttpxClient(transport=phases.MeteredTransport(meter)),
        )
    sender = SlackEventSender(web.url, SIGNING_SECRET)
    try:
        start = meter.snapshot() if meter else None
        t0, w0 = time.perf_counter(), time.time()
        for i in range(n):
            assert (
                sender.mention("U0ALICE", "C0GENERAL", f"question {i}", event_id=f"EvP2{i:06d}").status == 200
            )
        t1 = time.perf_counter()
        acked = meter.snapshot() if meter else None
        run_worker(deps, burst=True, fork=False)
        end = _last_post(env, n)
        out: dict[str, Any] = {"ms_per_task": 1000 * (end - w0) / n}
        if meter is not None:
            worker_wall = end - w0 - (t1 - t0)
            out["ingress"] = phases.per_task(start, acked, t1 - t0, n)
            out["worker"] = phases.per_task(acked, meter.snapshot(), worker_wall, n)
        return out
    finally:
        phases.uninstall_urllib()
        sender.close()
        web.close()
        env.close()


def _baseline_run(n: int, meter: phases.PhaseMeter | None = None) -> dict[str, Any]:
    env = _metered(make_env(), meter)
    q = Queue("bench-bare", connection=env.redis)
    try:
        start = meter.snapshot() if meter else None
        w0 = time.time()
        for i in range(n):
            q.enqueue(
                BARE_JOB,
                env.llm.base_url,
                env.settings.slack_api_url,
                env.settings.slack_bot_token,
                "C0GENERAL",
                f"question {i}",
            )
        SimpleWorker([q], connection=env.redis).work(burst=True, logging_level="WARNING")
        end = _last_post(env, n)
        out: dict[str, Any] = {"ms_per_task": 1000 * (end - w0) / n}
        if meter is not None:
            out["job"] = phases.per_task(start, meter.snapshot(), end - w0, n)
        return out
    finally:
        phases.uninstall_urllib()
        env.close()


def _signed_http_run(n: int) -> dict[str, Any]:
    """The bare job behind a minimal signed-HTTP ingress (see the module's docstring)."""
    from bot.slack.app import BackgroundWeb

    env = make_env()
    q = Queue("bench-bare-http", connection=env.redis)
    s = env.settings
    assert s.slack_bot_token
    web = BackgroundWeb(
        signed_enqueue_app(SIGNING_SECRET, q, env.llm.base_url, s.slack_api_url, s.slack_bot_token),
        threads=16,
    )
    sender = SlackEventSender(web.url + "/slack/events", SIGNING_SECRET)
    try:
        w0 = time.time()
        for i in range(n):
            assert (
                sender.mention("U0ALICE", "C0GENERAL", f"question {i}", event_id=f"EvB{i:06d}").status == 200
            )
        SimpleWorker([q], connection=env.redis).work(burst=True, logging_level="WARNING")
        return {"ms_per_task": 1000 * (_last_post(env, n) - w0) / n}
    finally:
        sender.close()
        web.close()
        env.close()


def run(n: int = N, runs: int = RUNS) -> dict:
    """Alternate pipeline and baseline runs; report per-task medians, their ratio and the breakdown."""
    _baseline_run(10)  # warm-up (imports, first connections)
    _signed_http_run(10)
    _pipeline_run(10)
    pipe, base, floor, ratios = [], [], [], []
    for _ in range(runs):
        base.append(_baseline_run(n)["ms_per_task"])
        floor.append(_signed_http_run(n)["ms_per_task"])
        pipe.append(_pipeline_run(n)["ms_per_task"])
        ratios.append(pipe[-1] / base[-1])
    metered_pipe = _pipeline_run(n, phases.PhaseMeter())
    metered_base = _baseline_run(n, phases.PhaseMeter())
    return {
        "target": "<= 1.5x a bare RQ job making the same two HTTP calls",
        "tasks_per_run": n,
        "pipeline_ms_per_task": stats(pipe),
        "baseline_ms_per_task": stats(base),
        "ratio": round(statistics.median(pipe) / statistics.median(base), 3),
        "ratio_per_run": stats(ratios),
        "signed_http_baseline_ms_per_task": stats(floor),
        "signed_http_baseline_vs_bare": round(statistics.median(floor) / statistics.median(base), 3),
        "ratio_vs_signed_http_baseline": round(statistics.median(pipe) / statistics.median(floor), 3),
        "breakdown_per_task": {
            "note": "one instrumented run each (metering adds time); ms and counts per task",
            "pipeline_ingress": metered_pipe["ingress"],
            "pipeline_worker": metered_pipe["worker"],
            "bare_job": metered_base["job"],
        },
    }


def _row(name: str, b: dict[str, Any]) -> str:
    return (
        f"  {name:<17} {b['wall_ms']:6.2f} ms = SQL {b['sql_ms']:5.2f} ({b.get('sql_transactions', 0):g} tx, "
        f"{b.get('sql_statements', 0):g} stmts) + Redis {b['redis_ms']:5.2f} ({b.get('redis_round_trips', 0):g} "
        f"round trips, {b.get('redis_commands', 0):g} cmds) + HTTP {b['http_ms']:5.2f} "
        f"({b.get('http_requests', 0):g} req) + Python {b['python_ms']:5.2f}"
    )


def main() -> None:
    """Print the figures and the breakdown, and save the result."""
    r = run()
    print(
        f"pipeline {r['pipeline_ms_per_task']['median']:.2f} ms/task, bare RQ job "
        f"{r['baseline_ms_per_task']['median']:.2f} ms/task, ratio {r['ratio']:.2f}x "
        f"(per run {r['ratio_per_run']['min']:.2f}–{r['ratio_per_run']['max']:.2f}; target <= 1.5x)"
    )
    print(
        f"bare job behind a minimal signed-HTTP ingress {r['signed_http_baseline_ms_per_task']['median']:.2f} ms/task "
        f"({r['signed_http_baseline_vs_bare']:.2f}x the bare job); pipeline / that: "
        f"{r['ratio_vs_signed_http_baseline']:.2f}x"
    )
    bd = r["breakdown_per_task"]
    print("per task, instrumented:")
    for name in ("pipeline_ingress", "pipeline_worker", "bare_job"):
        print(_row(name, bd[name]))
    save("P2", r)


if __name__ == "__main__":
    main()
