"""Running RQ workers for Clawback's queues, including a burst mode that waits for scheduled retries."""

from __future__ import annotations

import logging
import threading
import time

from rq import SimpleWorker, Worker

from workers import runtime
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

RECONCILE_LOCK = "clawback:reconciler"


def reconcile_once(deps: WorkerDeps) -> list[str]:
    """One reconciler pass, under a Redis lock so several workers do not race each other."""
    lock_key = f"{deps.settings.clawback_queue_prefix}:reconciler"
    if not deps.redis.set(lock_key, "1", nx=True, ex=55):
        return []
    try:
        return deps.queue.reconcile(deps.db)
    finally:
        deps.redis.delete(lock_key)


def housekeeping_once(deps: WorkerDeps) -> dict[str, int]:
    """Periodic upkeep (one worker at a time): outcome sweep, expired deploys, lost deploy followers."""
    from bot.deploy import service as deploy_service
    from workers import deploy as deploy_jobs
    from workers import measure

    lock_key = f"{deps.settings.clawback_queue_prefix}:housekeeping"
    if not deps.redis.set(lock_key, "1", nx=True, ex=300):
        return {}
    from bot import usergroups

    groups = sorted(deps.policy.current.usergroups)
    done = {
        "usergroups_synced": usergroups.sync(
            deps.slack, deps.redis, deps.settings.clawback_queue_prefix, groups
        ),
        "outcomes_none": measure.sweep(deps.db, deps.settings),
        "deploys_expired": len(deploy_service.expire_stale(deps.db)),
        "deploys_resumed": deploy_jobs.resume_lost_followers(deps),
    }
    log.info("housekeeping: %s", done)
    return done


def _reconciler_loop(deps: WorkerDeps, stop: threading.Event, interval: float) -> None:
    rounds = 0
    while not stop.wait(interval):
        rounds += 1
        try:
            reconcile_once(deps)
            if rounds % 5 == 1:  # every ~5 minutes with the default interval
                housekeeping_once(deps)
        except Exception:
            log.exception("reconciler pass failed")


def run_worker(
    deps: WorkerDeps,
    *,
    burst: bool = False,
    fork: bool = False,
    max_wait: float = 300.0,
    reconcile_interval: float = 60.0,
    name: str | None = None,
    max_jobs: int | None = None,
) -> int:
    """Work the queues (interactive first); in burst mode drain them, scheduled retries included, and return."""
    runtime.install(deps)
    worker_class = Worker if fork else SimpleWorker
    # Heartbeats every 10 s let the reconciler tell a dead worker's job from a slow one.
    from workers import _intents

    _intents()  # import every job core in the parent once, not in each forked work horse
    worker = worker_class(deps.queue.ordered, connection=deps.redis, name=name, job_monitoring_interval=10)
    if not burst:
        stop = threading.Event()
        thread = threading.Thread(target=_reconciler_loop, args=(deps, stop, reconcile_interval), daemon=True)
        thread.start()
        try:
            worker.work(with_scheduler=True, logging_level="INFO", max_jobs=max_jobs)
        finally:
            stop.set()
        return 0
    deadline = time.monotonic() + max_wait
    while True:
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
        wait = deps.queue.pending_scheduled()
        if wait is None:
            return 0
        if time.monotonic() + wait > deadline:
            log.warning(
                "burst: retries still scheduled after %.0f s; leaving them for a long-running worker",
                max_wait,
            )
            return 0
        time.sleep(min(max(wait, 0.05), 1.0))
