"""The job queue: RQ on Redis. Job ids are task ids; SQL stays the source of truth.

Two queues keep interactive work (mentions, DMs, commands, clicks) ahead of bulk work (mail triage):
workers always take from ``interactive`` first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import select

from bot import embedded_redis
from bot.db import Database, Task, utcnow
from bot.errors import ServiceUnavailable
from bot.settings import Settings

log = logging.getLogger(__name__)

INTERACTIVE = "interactive"
BULK = "bulk"
JOB_FUNC = "workers.run_task"


def connect_redis(settings: Settings) -> redis.Redis:
    """Redis from ``REDIS_URL``, or the embedded server when it is unset."""
    url = settings.redis_url or embedded_redis.ensure(settings.clawback_home)
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


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

    @property
    def ordered(self) -> list[Queue]:
        """Queues in the order workers take from them."""
        return [self.queues[INTERACTIVE], self.queues[BULK]]

    def enqueue(self, task_id: str, *, queue: str = INTERACTIVE, func: str = JOB_FUNC) -> Job:
        """Enqueue ``func(task_id)`` under job id ``task_id``; raises ServiceUnavailable if Redis is down."""
        retry = Retry(max=self.retries, interval=self.retry_intervals) if self.retries else None
        try:
            return self.queues[queue].enqueue(
                func,
                task_id,
                job_id=task_id,
                retry=retry,
                job_timeout=self.job_timeout,
                result_ttl=600,
                failure_ttl=7 * 86400,
                description=f"{func}({task_id})",
            )
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

    def _is_lost(self, task_id: str, stale_after: timedelta) -> tuple[bool, str]:
        """Whether a task's job is gone: missing, off every queue and registry, or started but silent.

        The registries are asked rather than the job's status field, which a killed worker can leave stale.
        """
        try:
            job = Job.fetch(task_id, connection=self.connection)
        except NoSuchJobError:
            return True, "missing"
        for q in self.ordered:
            if self.connection.lpos(q.key, task_id) is not None:
                return False, "queued"
            if task_id in ScheduledJobRegistry(queue=q) or task_id in DeferredJobRegistry(queue=q):
                return False, "scheduled"
            if task_id in StartedJobRegistry(queue=q):
                # A running job's worker refreshes its heartbeat; a SIGKILLed one stops doing so.
                beat = job.last_heartbeat or job.started_at
                if beat is not None and beat.tzinfo is None:
                    beat = beat.replace(tzinfo=utcnow().tzinfo)
                if beat is not None and utcnow() - beat < stale_after:
                    return False, "started"
                StartedJobRegistry(queue=q).remove_executions(job)
        status = job.get_status(refresh=False)
        job.delete()
        return True, str(status)

    def reconcile(
        self,
        db: Database,
        *,
        older_than: timedelta = timedelta(seconds=60),
        stale_after: timedelta = timedelta(seconds=360),  # > job timeout: SimpleWorker jobs do not heartbeat
        limit: int = 500,
    ) -> list[str]:
        """Re-enqueue tasks SQL says are queued/running whose job Redis lost, gave up on, or whose worker died."""
        cutoff = utcnow() - older_than
        with db.session() as s:
            rows = s.execute(
                select(Task.id, Task.surface)
                .where(Task.status.in_(("queued", "running")), Task.created_at < cutoff)
                .order_by(Task.created_at)
                .limit(limit)
            ).all()
        requeued = []
        for task_id, surface in rows:
            lost, why = self._is_lost(task_id, stale_after)
            if not lost:
                continue
            self.enqueue(task_id, queue=BULK if surface == "email" else INTERACTIVE)
            requeued.append(task_id)
            log.warning("reconciler re-enqueued task %s (job was %s)", task_id, why)
        return requeued
