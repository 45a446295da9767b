"""P3: 1,000 tasks with 300 ms LLM latency, drained by W `clawback worker --burst` processes.

Workers are started first (process start-up is not part of the drain); then 1,000 tasks are submitted and
timed until every answer is posted. The baseline is ideal concurrency: 1,000 × 0.3 s / W. Memory per
in-flight task is the peak memory of the worker processes (and work horses), divided by W: RSS, and PSS
(shared pages split between processes), sampled every 0.5 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from bench.common import make_env, save
from bot.ingress import submit
from bot.ledger import NewTask

LATENCY = 0.3


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pids: list[int]) -> list[int]:
    """The given pids and all their descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them (honest per-process memory)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return _rss_kb(pid)


def drain(tasks: int, workers: int, *, fork: bool = False) -> dict:
    """Start ``workers`` workers, then time them draining ``tasks`` answer tasks (process start-up excluded)."""
    from rq import Worker

    env = make_env(llm_latency=LATENCY)
    procs: list[subprocess.Popen] = []
    try:
        ingress = env.ingress()
        child_env = env.child_env()
        mode = "--fork" if fork else "--no-fork"
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bot.ops.cli", "worker", mode, "--name", f"p3-{w}"],
                env=child_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for w in range(workers)
        ]
        deadline = time.monotonic() + 120
        while len(Worker.all(connection=env.redis)) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        samples: list[tuple[int, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                pids = _tree([p.pid for p in procs])
                samples.append((sum(_rss_kb(p) for p in pids), sum(_pss_kb(p) for p in pids)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        for i in range(tasks):
            submit(
                ingress,
                NewTask(
                    idempotency_key=f"p3:{i}",
                    requester="U0ALICE",
                    surface="mention",
                    intent="answer",
                    channel_id="C0GENERAL",
                    message_ts=f"1.{i}",
                    thread_ts=f"1.{i}",
                    payload={"text": f"question {i}"},
                ),
                scope="chat.reply",
            )
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if len([m for m in env.slack.bot_messages() if m.metadata]) >= tasks:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        stop.set()
        posted = len([m for m in env.slack.bot_messages() if m.metadata])
        ideal = tasks * LATENCY / workers
        peak_rss = max((r for r, _ in samples), default=0)
        peak_pss = max((p for _, p in samples), default=0)
        return {
            "workers": workers,
            "fork": fork,
            "tasks": tasks,
            "posted": posted,
            "drain_s": round(elapsed, 2),
            "ideal_s": round(ideal, 2),
            "efficiency": round(ideal / elapsed, 3),
            "peak_rss_mb": round(peak_rss / 1024, 1),
            "peak_pss_mb": round(peak_pss / 1024, 1),
            "rss_mb_per_in_flight_task": round(peak_rss / 1024 / workers, 1),
            "pss_mb_per_in_flight_task": round(peak_pss / 1024 / workers, 1),
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        env.close()


def run(tasks: int = 1000, workers: tuple[int, ...] = (4, 8)) -> dict:
    """Drain with each worker count (in-process jobs, Clawback's default), and W=8 with a work horse per job."""
    drain(40, 2)  # warm-up
    return {
        "target": ">= 80% of ideal concurrency; report memory",
        "llm_latency_s": LATENCY,
        "runs": [*(drain(tasks, w) for w in workers), drain(tasks, max(workers), fork=True)],
    }


def main() -> None:
    """Print the table and save the result."""
    r = run()
    print(f"{'W':>3} {'tasks':>6} {'drain s':>8} {'ideal s':>8} {'eff.':>6} {'PSS MB/in-flight':>17}")
    for x in r["runs"]:
        print(
            f"{x['workers']:>3} {x['tasks']:>6} {x['drain_s']:>8} {x['ideal_s']:>8} {x['efficiency']:>6} "
            f"{x['pss_mb_per_in_flight_task']:>17}  {'fork' if x['fork'] else 'in-process'}"
        )
    save("P3", r)


if __name__ == "__main__":
    main()
