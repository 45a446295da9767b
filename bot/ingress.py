"""Ingress: turn a verified request into a task — check scopes, create it once, enqueue it.

Everything here is fast (one SQL transaction and one Redis write) because it runs before the ack.
Surfaces call ``submit``; the Slack specifics live in ``handlers/``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import redis
from sqlalchemy import bindparam, select
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
_INSERT_TASK = Task.__table__.insert()


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
_OTHER_DELIVERY = select(_tasks.c.id, _tasks.c.idempotency_key).where(
    _tasks.c.requester == bindparam("requester_"),  # indexed; one message has one author
    _tasks.c.channel_id == bindparam("channel_"),
    _tasks.c.message_ts == bindparam("ts_"),
    _tasks.c.surface.in_(("mention", "dm")),
    _tasks.c.idempotency_key != bindparam("key_"),
)


def _insert(db: Database, task: Task, *, decision: str, scope: str | None, reason: str | None) -> bool:
    """Insert the task and its audit entry in one transaction; False when the key was seen before."""
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


MESSAGE_CLAIM_TTL = 86400  # Slack stops redelivering long before
CLAIM_IN_FLIGHT = 30.0  # a claim older than this whose task never reached SQL is taken over


def message_key(team: str | None, channel: str, ts: str) -> str:
    """The identity of one person's Slack message, whatever event_id each delivery carries."""
    return f"slack-msg:{team or '-'}:{channel}:{ts}"


def _claim_message(deps: IngressDeps, new: NewTask, key: str) -> str | None:
    """Claim a message for ``new``; returns the task id already answering it, or None when ``new`` may go on.

    Redis ``SET NX`` decides between deliveries racing each other; SQL (the tasks of that channel and ts)
    decides when Redis lost the claim. A claim whose task never reached SQL (its ingress failed) is taken over
    after ``CLAIM_IN_FLIGHT`` seconds, so a failed first delivery cannot silence the others.
    """
    with deps.db.session() as s:
        found = s.execute(
            _OTHER_DELIVERY,
            {
                "requester_": new.requester,
                "channel_": new.channel_id,
                "ts_": new.message_ts,
                "key_": new.idempotency_key,
            },
        ).first()
    if found is not None:
        return found[0]
    conn = deps.queue.connection
    claim = f"{deps.queue.prefix}:claim:{key}"
    value = f"{time.time():.3f} {new.idempotency_key}"
    try:
        if conn.set(claim, value, nx=True, ex=MESSAGE_CLAIM_TTL):
            return None
        held = conn.get(claim)
    except redis.RedisError:
        return None  # SQL said no one answers it yet; the idempotency key still guards this delivery
    held_s = held.decode() if isinstance(held, bytes) else str(held or "")
    since, _, holder = held_s.partition(" ")
    if holder == new.idempotency_key:
        return None  # Slack's retry of the delivery that holds the claim
    try:
        young = time.time() - float(since) < CLAIM_IN_FLIGHT
    except ValueError:
        young = False
    if young:
        return f"in-flight:{holder}"
    conn.set(claim, value, ex=MESSAGE_CLAIM_TTL)
    return None


def submit(
    deps: IngressDeps,
    new: NewTask,
    *,
    scope: str,
    channel: str | None = None,
    queue: str = INTERACTIVE,
    notify_denial: bool = True,
    message: str | None = None,
) -> Submission:
    """Create the task for a request exactly once and enqueue it, or record and report a denial.

    ``message``: the ``message_key`` of the person's Slack message; a second delivery of it under another
    event_id is a duplicate too (``created`` False).
    """
    if message is not None:
        existing_id = _claim_message(deps, new, message)
        if existing_id is not None:
            log.info("message %s already has task %s: delivery %s dropped", message, existing_id,
                     new.idempotency_key)
            return Submission(existing_id, created=False)
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
        with deps.db.session() as s:
            existing = s.execute(
                select(Task.id).where(Task.idempotency_key == new.idempotency_key)
            ).scalar_one()
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
