"""Ingress: turn a verified request into a task — check scopes, create it once, enqueue it.

Everything here is fast (one SQL transaction and one Redis write) because it runs before the ack.
Surfaces call ``submit``; the Slack specifics live in ``handlers/``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import IntegrityError

from bot import audit
from bot.db import Database, Task, new_id, utcnow
from bot.errors import Denied, ServiceUnavailable
from bot.ledger import NewTask
from bot.policy import PolicyStore
from bot.queue import INTERACTIVE, TaskQueue
from bot.text.redact import Redactor

log = logging.getLogger(__name__)

NOTIFY_DENIED = "workers.notify_denied"


@dataclass
class IngressDeps:
    """What ingress needs: the ledger, the queue and the policy."""

    db: Database
    queue: TaskQueue
    policy: PolicyStore
    home_teams: tuple[str, ...] = ()  # the team of the bot token (auth.test at start-up); see handlers.teams


@dataclass(frozen=True)
class Submission:
    """What happened to a submitted request."""

    task_id: str
    created: bool
    denied: Denied | None = None
    enqueued: bool = False


def redactor_for(policy: PolicyStore) -> Redactor:
    """A redactor with the policy's site-specific patterns."""
    return Redactor(extra=[(p.name, p.regex) for p in policy.current.redaction])


# Built once: building a statement costs more than running it on SQLite, and these run before every ack.
_tasks = Task.__table__
_INSERT_TASK = _tasks.insert()
_EXISTING = select(_tasks.c.id).where(
    or_(_tasks.c.idempotency_key == bindparam("key_"), _tasks.c.message_key == bindparam("message_"))
)


def _insert(db: Database, task: Task, *, decision: str, scope: str | None, reason: str | None) -> bool:
    """Insert the task and its audit entry in one transaction; False when its idempotency key or its message
    key is taken (another delivery of the same request or message made the task: nothing is written)."""
    row = {c.key: getattr(task, c.key) for c in Task.__table__.columns}
    row["id"] = row["id"] or new_id()
    row["created_at"] = row["created_at"] or utcnow()
    row.update(
        {
            k: v if v is not None else d
            for k, v, d in (
                ("payload", row["payload"], {}),
                ("result", row["result"], {}),
                ("attempts", row["attempts"], 0),
                ("redactions", row["redactions"], 0),
                ("trigger", row["trigger"], "human"),
            )
        }
    )
    task.id = row["id"]
    try:
        with db.session() as s:
            s.execute(_INSERT_TASK, row)  # one cached statement, parameters apart
            audit.append(
                s,
                actor=task.requester,
                action=f"ingress.{task.surface}",
                decision=decision,
                task_id=task.id,
                target=task.channel_id,
                scope=scope,
                details={
                    "intent": task.intent,
                    "trigger": task.trigger,
                    "reason": reason,
                    "key": task.idempotency_key,
                },
            )
        return True
    except IntegrityError:
        return False


def message_key(team: str | None, channel: str, ts: str) -> str:
    """The identity of one person's Slack message, whatever event_id each delivery carries (at most 160
    characters: the column's width; longer ones, which Slack's ids never make, are hashed)."""
    key = f"slack-msg:{team or '-'}:{channel}:{ts}"
    return key if len(key) <= 160 else "slack-msg:sha256:" + hashlib.sha256(key.encode()).hexdigest()


def submit(
    deps: IngressDeps,
    new: NewTask,
    *,
    scope: str,
    channel: str | None = None,
    queue: str = INTERACTIVE,
    notify_denial: bool = True,
) -> Submission:
    """Create the task for a request exactly once and enqueue it, or record and report a denial.

    ``new.message_key`` (a person's Slack message): a second delivery of it under another event_id is a
    duplicate too (``created`` False). SQL decides, by the unique index on ``tasks.message_key``:
    deliveries racing each other in several processes make one task, and a delivery whose ingress failed
    before its commit holds nothing, so it cannot silence the others.
    """
    policy = deps.policy.current
    origin = deps.policy.origin_of(new.requester) if new.surface != "email" else None
    if origin is not None:
        # The requester's own team, as the signed payload gave it, and the teams that were ours then: the
        # worker's re-check decides with the same two (see workers.execute).
        team, homes = origin
        new = replace(new, team_id=team, payload={**(new.payload or {}), "home_teams": list(homes)})
    denied: Denied | None = None
    try:
        policy.require(new.requester, scope, channel=channel)
    except Denied as exc:
        denied = exc
    task = new.to_task(status="denied" if denied else "queued", reason=denied.reason if denied else None)
    created = _insert(
        deps.db,
        task,
        decision="deny" if denied else "allow",
        scope=scope,
        reason=denied.reason if denied else None,
    )
    if not created:
        with deps.db.read() as s:
            existing = s.execute(
                _EXISTING, {"key_": new.idempotency_key, "message_": new.message_key}
            ).scalar()
        if existing is None:  # the row that held the key is gone (a purge): nothing to point at
            raise ServiceUnavailable("task key taken but no task found; retry")
        if new.message_key is not None:
            log.info("message %s already has task %s: delivery %s dropped", new.message_key, existing,
                     new.idempotency_key)
        return Submission(existing, created=False, denied=denied)
    enqueued = False
    try:
        if denied is None:
            deps.queue.enqueue(task.id, queue=queue)
            enqueued = True
        elif notify_denial:
            deps.queue.enqueue(task.id, queue=INTERACTIVE, func=NOTIFY_DENIED)
    except ServiceUnavailable:
        # The task is safe in SQL; the reconciler enqueues it when Redis is back.
        log.warning("task %s created but not enqueued: queue unavailable", task.id)
    return Submission(task.id, created=True, denied=denied, enqueued=enqueued)


def record_ignored(deps: IngressDeps, new: NewTask, reason: str) -> Submission:
    """Record a message we deliberately do not answer (another bot's), so loops and chains are visible."""
    task = replace(new, trigger="bot").to_task(status="ignored", reason=reason)
    created = _insert(deps.db, task, decision="info", scope=None, reason=reason)
    return Submission(task.id, created=created)
