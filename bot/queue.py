"""The job queue: RQ on Redis. Job ids are task ids; SQL stays the source of truth.

Two queues keep interactive work (mentions, DMs, commands, clicks) ahead of bulk work (mail triage):
workers always take from ``interactive`` first.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import select

from bot.db import Database, Task, utcnow
from bot.errors import ServiceUnavailable
from bot.ops import embedded_redis
from bot.settings import Settings

log = logging.getLogger(__name__)

INTERACTIVE = "interactive"
BULK = "bulk"
JOB_FUNC = "workers.run_task"
LEASE_META = "clawback_lease"  # job meta: the lease key of the worker running the job


def connect_redis(settings: Settings) -> redis.Redis:
    """Redis from ``REDIS_URL``, or the embedded server when it is unset."""
    url = settings.redis_url or embedded_redis.ensure(settings.clawback_home)
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


class Lease:
    """A worker's liveness lease: a short-TTL Redis key that a thread of the worker process keeps renewing.

    The thread runs beside the job (a long LLM call does not stop it), so the key expires only when the
    process is dead or frozen. ``lapses`` counts renewals that found the key gone (the process was paused
    longer than the TTL): the reconciler may have handed its job to another worker by then.
    """

    def __init__(self, connection: redis.Redis, key: str, ttl: int) -> None:
        self.connection = connection
        self.key = key
        self.ttl = ttl
        self.token = uuid.uuid4().hex
        self.lapses = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> bool:
        """Extend the lease; False (and re-taken) when it had expired meanwhile."""
        if self.connection.set(self.key, self.token, ex=self.ttl, xx=True):
            return True
        self.lapses += 1
        log.warning("lease %s had expired (process paused?); taking it again", self.key)
        self.connection.set(self.key, self.token, ex=self.ttl)
        return False

    def start(self) -> Lease:
        """Take the lease and renew it every third of its TTL until ``stop``."""
        self.connection.set(self.key, self.token, ex=self.ttl)
        self._thread = threading.Thread(target=self._run, name="clawback-lease", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except redis.RedisError as exc:  # keep trying: the key outlives a short Redis hiccup
                log.warning("lease %s: renewal failed: %s", self.key, exc)

    def stop(self) -> None:
        """Stop renewing and give the lease up (a clean shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self.connection.get(self.key) == self.token.encode():
                self.connection.delete(self.key)
        except redis.RedisError:
            pass


class TaskQueue:
    """Enqueues tasks as RQ jobs (job id = task id) with retries, and finds lost ones."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        prefix: str = "clawback",
        retries: int = 3,
        retry_intervals: Sequence[int] = (5, 20, 60),
        job_timeout: int = 300,
    ) -> None:
        self.connection = connection
        self.prefix = prefix
        self.retries = retries
        self.retry_intervals = list(retry_intervals)
        self.job_timeout = job_timeout
        self.queues = {name: Queue(f"{prefix}-{name}", connection=connection) for name in (INTERACTIVE, BULK)}

    def lease_key(self, worker_name: str) -> str:
        """The Redis key of a worker's liveness lease."""
        return f"{self.prefix}:lease:{worker_name}"

    def lease(self, worker_name: str, ttl: int) -> Lease:
        """A (not yet started) liveness lease for the named worker."""
        return Lease(self.connection, self.lease_key(worker_name), ttl)

    @property
    def ordered(self) -> list[Queue]:
        """Queues in the order workers take from them."""
        return [self.queues[INTERACTIVE], self.queues[BULK]]

    def enqueue(self, task_id: str, *, queue: str = INTERACTIVE, func: str = JOB_FUNC) -> Job:
        """Enqueue ``func(task_id)`` under job id ``task_id``; raises ServiceUnavailable if Redis is down."""
        retry = Retry(max=self.retries, interval=self.retry_intervals) if self.retries else None
        try:
            # One MULTI/EXEC: without a pipeline RQ sends the queue-set update in a round trip of its own.
            with self.connection.pipeline() as pipe:
                job = self.queues[queue].enqueue(
                    func,
                    task_id,
                    job_id=task_id,
                    retry=retry,
                    job_timeout=self.job_timeout,
                    result_ttl=600,
                    failure_ttl=7 * 86400,
                    description=f"{func}({task_id})",
                    pipeline=pipe,
                )
                pipe.execute()
            return job
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"queue unavailable: {exc}") from exc

    def job_status(self, task_id: str) -> JobStatus | None:
        """The RQ status of a task's job, or None when Redis has no such job."""
        try:
            return Job.fetch(task_id, connection=self.connection).get_status(refresh=False)
        except NoSuchJobError:
            return None

    def pending_scheduled(self) -> float | None:
        """Seconds until the earliest scheduled retry (0 if due), or None when none is scheduled."""
        earliest = None
        for q in self.ordered:
            reg = ScheduledJobRegistry(queue=q)
            for job_id in reg.get_job_ids(0, 0):
                when = reg.get_scheduled_time(job_id)
                wait = max(0.0, (when - utcnow()).total_seconds())
                earliest = wait if earliest is None else min(earliest, wait)
        return earliest

    def _is_lost(
        self, task_id: str, stale_after: timedelta, *, dead_worker_only: bool = False
    ) -> tuple[bool, str]:
        """Whether a task's job is gone: missing, off every queue and registry, or started by a dead worker.

        The registries are asked rather than the job's status field, which a killed worker can leave stale.
        ``dead_worker_only``: only a started job whose worker is dead counts (a job between queue and worker,
        or between a failure and its retry, is not mistaken for a lost one).
        """
        try:
            job = Job.fetch(task_id, connection=self.connection)
        except NoSuchJobError:
            return not dead_worker_only, "missing"
        for q in self.ordered:
            started = StartedJobRegistry(queue=q)
            if task_id in started:
                if not self._worker_is_dead(job, stale_after):
                    return False, "started"
                started.remove_executions(job)
                job.delete()
                return True, "started by a worker that died"
        if dead_worker_only:
            return False, "not started"
        for q in self.ordered:
            if self.connection.lpos(q.key, task_id) is not None:
                return False, "queued"
            if task_id in ScheduledJobRegistry(queue=q) or task_id in DeferredJobRegistry(queue=q):
                return False, "scheduled"
        status = job.get_status(refresh=False)
        job.delete()
        return True, str(status)

    def _worker_is_dead(self, job: Job, stale_after: timedelta) -> bool:
        """Whether the worker running a started job is gone: its lease expired, or (a worker without a lease,
        e.g. one from before leases) its job heartbeat is older than ``stale_after``."""
        lease = job.meta.get(LEASE_META)
        if lease:
            return not self.connection.exists(lease)
        beat = job.last_heartbeat or job.started_at
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=utcnow().tzinfo)
        return beat is None or utcnow() - beat >= stale_after

    def reconcile(
        self,
        db: Database,
        *,
        older_than: timedelta = timedelta(seconds=60),
        stale_after: timedelta = timedelta(seconds=360),  # > job timeout: SimpleWorker jobs do not heartbeat
        limit: int = 500,
        running_only: bool = False,
    ) -> list[str]:
        """Re-enqueue tasks SQL says are queued/running whose job Redis lost, gave up on, or whose worker died.

        ``running_only`` (the frequent pass) looks only at running tasks, however young, whose started job's
        worker is dead (its lease expired): a few Redis reads per running task, at most ``limit`` tasks.
        """
        cutoff = utcnow() - older_than
        if running_only:  # newest first: a task just orphaned is not starved by old stuck ones
            query = (
                select(Task.id, Task.surface).where(Task.status == "running").order_by(Task.created_at.desc())
            )
        else:
            query = (
                select(Task.id, Task.surface)
                .where(Task.status.in_(("queued", "running")), Task.created_at < cutoff)
                .order_by(Task.created_at)
            )
        with db.session() as s:
            rows = s.execute(query.limit(limit)).all()
        requeued = []
        for task_id, surface in rows:
            lost, why = self._is_lost(task_id, stale_after, dead_worker_only=running_only)
            if not lost:
                continue
            self.enqueue(task_id, queue=BULK if surface == "email" else INTERACTIVE)
            requeued.append(task_id)
            log.warning("reconciler re-enqueued task %s (job was %s)", task_id, why)
        return requeued
