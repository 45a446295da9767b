"""Running RQ workers for Clawback's queues, including a burst mode that waits for scheduled retries."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from rq import SimpleWorker, Worker

from workers import runtime
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

RECONCILE_LOCK = "clawback:reconciler"
FULL_PASS_SECONDS = 60.0  # queued tasks whose job Redis lost: checked this often (the lease pass runs more)
HOUSEKEEPING_SECONDS = 300.0
MAIL_VERDICTS = "workers.mail.verdicts.judge_past_window"  # RQ job by name


def reconcile_once(deps: WorkerDeps, *, running_only: bool = False) -> list[str]:
    """One reconciler pass, under a Redis lock so several workers do not race each other.

    The lock expires after 20 s, so a worker killed mid-pass delays the next pass by at most that much.
    """
    lock_key = f"{deps.settings.clawback_queue_prefix}:reconciler"
    token = uuid.uuid4().hex
    if not deps.redis.set(lock_key, token, nx=True, ex=20):
        return []
    try:
        return deps.queue.reconcile(deps.db, running_only=running_only)
    finally:
        if deps.redis.get(lock_key) == token.encode():
            deps.redis.delete(lock_key)


def _enqueue_mail_verdicts(deps: WorkerDeps) -> int:
    """Earned autonomy on triage: the sweep that judges mail decisions past the outcome window looks messages up
    in mailboxes, so it runs as a bulk job rather than here (1 when enqueued, 0 without ``[autonomy]``)."""
    from bot.queue import BULK

    if not deps.policy.current.autonomy.configured:
        return 0
    try:
        deps.queue.queues[BULK].enqueue(MAIL_VERDICTS, job_timeout=900, result_ttl=60, failure_ttl=86400)
    except Exception:  # the next housekeeping tries again
        log.warning("housekeeping: the mail verdict sweep was not enqueued")
        return 0
    return 1


def housekeeping_once(deps: WorkerDeps) -> dict[str, int]:
    """Periodic upkeep (one worker at a time): outcome sweep (its offers and demotions announced), the mail
    verdict sweep (enqueued), expired deploys, lost deploy followers."""
    from bot.deploy import service as deploy_service
    from workers import deploy as deploy_jobs
    from workers import measure

    lock_key = f"{deps.settings.clawback_queue_prefix}:housekeeping"
    if not deps.redis.set(lock_key, "1", nx=True, ex=300):
        return {}
    from bot.slack import usergroups

    groups = sorted(deps.policy.current.usergroups)
    done = {
        "usergroups_synced": usergroups.sync(
            deps.slack, deps.redis, deps.settings.clawback_queue_prefix, groups
        ),
        "outcomes_none": measure.sweep(deps.db, deps.settings, policy=deps.policy.current, queue=deps.queue),
        "mail_verdict_sweeps": _enqueue_mail_verdicts(deps),
        "deploys_expired": len(deploy_service.expire_stale(deps.db)),
        "deploys_resumed": deploy_jobs.resume_lost_followers(deps),
    }
    log.info("housekeeping: %s", done)
    return done


def _reconciler_loop(deps: WorkerDeps, stop: threading.Event, interval: float) -> None:
    """Every ``interval``: re-enqueue running tasks whose worker's lease expired (cheap: running tasks only);
    every minute also tasks whose queued job Redis lost; every five minutes the housekeeping."""
    full_every = max(1, round(FULL_PASS_SECONDS / interval))
    housekeeping_every = max(1, round(HOUSEKEEPING_SECONDS / interval))
    rounds = 0
    while not stop.wait(interval):
        rounds += 1
        try:
            reconcile_once(deps, running_only=rounds % full_every != 0)
            if rounds % housekeeping_every == 1 or housekeeping_every == 1:
                housekeeping_once(deps)
        except Exception:
            log.exception("reconciler pass failed")


def run_worker(
    deps: WorkerDeps,
    *,
    burst: bool = False,
    fork: bool = False,
    max_wait: float = 300.0,
    reconcile_interval: float | None = None,
    name: str | None = None,
    max_jobs: int | None = None,
) -> int:
    """Work the queues (interactive first); in burst mode drain them, scheduled retries included, and return.

    The process holds a liveness lease for as long as it runs (see ``bot.queue.Lease``); its jobs are
    handed to another worker by the reconciler once the lease expires.
    """
    from workers import _intents

    _intents()  # import every job core in the parent once, not in each forked work horse
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class(deps.queue.ordered, connection=deps.redis, name=name, job_monitoring_interval=10)
    # The lease thread lives in this (parent) process; a forked work horse's jobs name the parent's lease.
    lease = deps.queue.lease(worker.name, deps.settings.clawback_lease_ttl).start()
    deps.lease = lease
    runtime.install(deps)
    try:
        return _work(
            deps, worker, burst=burst, max_wait=max_wait, interval=reconcile_interval, max_jobs=max_jobs
        )
    finally:
        lease.stop()
        deps.lease = None


def _work(
    deps: WorkerDeps,
    worker: Worker,
    *,
    burst: bool,
    max_wait: float,
    interval: float | None,
    max_jobs: int | None,
) -> int:
    reconcile_interval = interval or deps.settings.clawback_reconcile_interval
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
