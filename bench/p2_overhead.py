"""P2: per-task overhead end to end (signed mention → HTTP ack → RQ → LLM → reply posted), zero-latency LLM.

Baseline: a bare RQ job making the same two HTTP calls (a chat completion and a chat.postMessage) with
urllib, enqueued directly. Both are drained by the same kind of RQ worker (SimpleWorker, Clawback's
default) in this process.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request

from rq import Queue, SimpleWorker

from bench.common import SIGNING_SECRET, ServedWeb, make_env, save, stats
from bot.standins.slack_events import SlackEventSender

N = 150
RUNS = 3


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


def _pipeline_run(n: int) -> float:
    from bot.ops.worker import run_worker
    from workers.runtime import build_deps

    env = make_env(clawback_job_retries=0)
    web = ServedWeb(env)
    deps = build_deps(env.settings, db=env.db, redis_conn=env.redis)
    sender = SlackEventSender(web.url, SIGNING_SECRET)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            assert (
                sender.mention("U0ALICE", "C0GENERAL", f"question {i}", event_id=f"EvP2{i:06d}").status == 200
            )
        run_worker(deps, burst=True, fork=False)
        elapsed = time.perf_counter() - t0
        posted = len([m for m in env.slack.bot_messages() if m.metadata])
        assert posted == n, f"{posted} of {n} answers posted"
        return elapsed / n
    finally:
        sender.close()
        web.close()
        env.close()


def _baseline_run(n: int) -> float:
    env = make_env()
    q = Queue("bench-bare", connection=env.redis)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            q.enqueue(
                bare_job,
                env.llm.base_url,
                env.settings.slack_api_url,
                env.settings.slack_bot_token,
                "C0GENERAL",
                f"question {i}",
            )
        SimpleWorker([q], connection=env.redis).work(burst=True, logging_level="WARNING")
        elapsed = time.perf_counter() - t0
        assert len(env.slack.bot_messages()) == n
        return elapsed / n
    finally:
        env.close()


def run(n: int = N, runs: int = RUNS) -> dict:
    """Alternate pipeline and baseline runs; report per-task medians and their ratio."""
    _baseline_run(10)  # warm-up (imports, first fork)
    _pipeline_run(10)
    pipe, base = [], []
    for _ in range(runs):
        base.append(_baseline_run(n) * 1000)
        pipe.append(_pipeline_run(n) * 1000)
    ratio = statistics.median(pipe) / statistics.median(base)
    return {
        "target": "<= 1.5x a bare RQ job making the same two HTTP calls",
        "tasks_per_run": n,
        "pipeline_ms_per_task": stats(pipe),
        "baseline_ms_per_task": stats(base),
        "ratio": round(ratio, 3),
    }


def main() -> None:
    """Print the table and save the result."""
    r = run()
    print(
        f"pipeline {r['pipeline_ms_per_task']['median']:.1f} ms/task, bare RQ job "
        f"{r['baseline_ms_per_task']['median']:.1f} ms/task, ratio {r['ratio']:.2f}x (target <= 1.5x)"
    )
    save("P2", r)


if __name__ == "__main__":
    main()
