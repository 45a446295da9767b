"""Deploy domain logic over SQL: requests, four-eyes approvals, execution checks, the lock, history.

Nothing here talks to Slack, the model or the CI: workers call these functions and act on the answers.
Every state change is a conditional update (``WHERE status = ...``) committed together with its audit
entry, so double clicks, retried jobs and several worker processes settle on exactly one winner.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import audit
from bot.db import Database, Outcome, Task, utcnow
from bot.deploy import messages as msg
from bot.deploy.config import ServiceConfig, active_freeze, services_of
from bot.deploy.models import FINISHED, DeployApproval, DeployHistory, DeployLock, DeployRequest
from bot.errors import Denied, UserFacingError
from bot.policy import Policy

APPROVE, REJECT = "approve", "reject"
CONCLUSIONS = {"success": "succeeded", "failure": "failed", "cancelled": "cancelled"}
OUTCOME_KINDS = {
    "succeeded": "deploy_succeeded",
    "failed": "deploy_failed",
    "cancelled": "deploy_cancelled",
    "unknown": "deploy_unknown",
}


def aware(moment: datetime | None) -> datetime | None:
    """A stored time as timezone-aware UTC (SQLite hands back naive values)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def params_hash(service: str, environment: str, sha: str, requester: str) -> str:
    """sha256 over the exact parameters an approval is bound to."""
    body = json.dumps([service, environment, sha, requester], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def approve_scope(environment: str) -> str:
    """The scope an approver of ``environment`` needs."""
    return f"deploy.approve.{environment}"


def target_of(policy: Policy, service: str, environment: str | None) -> tuple[ServiceConfig, str]:
    """The configured service and environment (first listed when None); UserFacingError when unknown."""
    services = services_of(policy)
    config = services.get(service)
    if config is None:
        raise UserFacingError(
            msg.unknown_service(service, sorted(services)), reason=f"unknown service {service}"
        )
    env = environment or config.default_env
    if config.env(env) is None:
        raise UserFacingError(
            msg.unknown_env(service, env, list(config.environments)), reason=f"unknown environment {env}"
        )
    return config, env


def freeze_check(config: ServiceConfig, environment: str, now: datetime) -> None:
    """Denied while ``environment`` is inside one of its change-freeze windows."""
    env = config.env(environment)
    window = active_freeze(env.freeze if env else (), now)
    if window is not None:
        until = window.ends_at(now)
        raise Denied(
            msg.frozen(config.name, environment, window.text, until),
            reason=f"change freeze {window.text!r} until {until:%Y-%m-%d %H:%M} UTC",
        )


# ---- requests ----------------------------------------------------------------------------------------------


def get_request(db: Database, request_id: str) -> DeployRequest | None:
    """A request by id."""
    with db.session() as s:
        return s.get(DeployRequest, request_id)


def request_for_task(db: Database, task_id: str) -> DeployRequest | None:
    """The request created by a request task (a retried job finds its own)."""
    with db.session() as s:
        return s.execute(select(DeployRequest).where(DeployRequest.task_id == task_id)).scalar_one_or_none()


def is_requested(db: Database, plan_task_id: str) -> bool:
    """True once a deploy was requested from a plan: a request row, or a request task still in flight."""
    with db.session() as s:
        if s.execute(
            select(DeployRequest.id).where(DeployRequest.plan_task_id == plan_task_id).limit(1)
        ).first():
            return True
        return bool(
            s.execute(
                select(Task.id)
                .where(
                    Task.parent_id == plan_task_id,
                    Task.intent == "deploy_request",
                    Task.status.in_(("queued", "running", "done")),
                )
                .limit(1)
            ).first()
        )


def create_request(
    db: Database,
    *,
    task: Task,
    plan: dict[str, Any],
    config: ServiceConfig,
    environment: str,
    ttl: timedelta,
    now: datetime | None = None,
) -> tuple[DeployRequest, bool]:
    """Create the request for a request task once (returns it and whether it was created now)."""
    existing = request_for_task(db, task.id)
    if existing is not None:
        return existing, False
    now = now or utcnow()
    env = config.env(environment)
    assert env is not None
    row = DeployRequest(
        task_id=task.id,
        plan_task_id=task.parent_id,
        kind=plan.get("kind", "deploy"),
        service=config.name,
        environment=environment,
        ref=plan["ref"],
        sha=plan["sha"],
        base_sha=plan.get("base_sha"),
        requester=task.requester,
        params_hash=params_hash(config.name, environment, plan["sha"], task.requester),
        approvals_required=env.approvals,
        status="pending",
        rollback_of=plan.get("rollback_of"),
        channel_id=task.channel_id,
        thread_ts=task.thread_ts,
        polls=0,
        detail={"plan_risk": plan.get("risk_level")},
        created_at=now,
        expires_at=now + ttl,
    )
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            audit.append(
                s,
                actor=task.requester,
                action="deploy.request",
                decision="allow",
                task_id=task.id,
                target=f"{config.name}/{environment}",
                scope="deploy.request",
                details={
                    "request_id": row.id,
                    "kind": row.kind,
                    "sha": row.sha,
                    "ref": row.ref,
                    "params_hash": row.params_hash,
                    "approvals_required": row.approvals_required,
                },
            )
    except IntegrityError:
        found = request_for_task(db, task.id)
        assert found is not None
        return found, False
    return row, True


def _set_status(s: Session, request_id: str, from_statuses: tuple[str, ...], to: str, **fields: Any) -> bool:
    """Conditional transition; True when this caller made it."""
    if to in FINISHED:
        fields.setdefault("finished_at", utcnow())
    result = s.execute(
        update(DeployRequest)
        .where(DeployRequest.id == request_id, DeployRequest.status.in_(from_statuses))
        .values(status=to, **fields)
    )
    return result.rowcount == 1


def transition(
    db: Database,
    request: DeployRequest,
    from_statuses: tuple[str, ...],
    to: str,
    *,
    actor: str,
    reason: str | None = None,
    decision: str = "info",
    **fields: Any,
) -> bool:
    """Move a request between statuses with an audit entry, only from ``from_statuses``."""
    with db.session() as s:
        if not _set_status(s, request.id, from_statuses, to, status_reason=reason, **fields):
            return False
        audit.append(
            s,
            actor=actor,
            on_behalf_of=request.requester,
            action=f"deploy.{to}",
            decision=decision,
            task_id=request.execute_task_id or request.task_id,
            target=f"{request.service}/{request.environment}",
            details={"request_id": request.id, "sha": request.sha, "reason": reason},
        )
    return True


@dataclass(frozen=True)
class Decision:
    """What an Approve/Reject click came to: ``result`` is one of approved, ready, rejected, refused,
    duplicate; ``message`` is what the clicker is told."""

    result: str
    message: str
    request: DeployRequest | None


def decide(
    db: Database,
    policy: Policy,
    request_id: str,
    user: str,
    choice: str,
    *,
    ttl: timedelta,
    now: datetime | None = None,
) -> Decision:
    """Record an approval or rejection by ``user`` after every check; all outcomes are audited."""
    now = now or utcnow()
    with db.session() as s:
        request = s.get(DeployRequest, request_id)
        if request is None:
            return Decision("refused", msg.UNKNOWN_REQUEST, None)
        target = f"{request.service}/{request.environment}"
        scope = approve_scope(request.environment)

        def refuse(reason: str, text: str, *, result: str = "refused") -> Decision:
            audit.append(
                s,
                actor=user,
                on_behalf_of=request.requester,
                action=f"deploy.{choice}",
                decision="deny",
                task_id=request.task_id,
                target=target,
                scope=scope,
                details={"request_id": request.id, "reason": reason},
            )
            return Decision(result, text, request)

        if request.status != "pending":
            return refuse(
                f"request is {request.status}",
                msg.not_pending(request.id, request.status),
                result="duplicate",
            )
        if aware(request.expires_at) <= now:
            _set_status(s, request.id, ("pending",), "expired", status_reason="approval window passed")
            return refuse("request expired", msg.expired(request.id))
        if user == request.requester:
            return refuse("requester cannot approve their own request", msg.SELF_APPROVAL)
        if not policy.has_scope(user, scope):
            return refuse(f"missing scope {scope}", msg.missing_approve_scope(scope))
        expected = params_hash(request.service, request.environment, request.sha, request.requester)
        if expected != request.params_hash:
            _set_status(s, request.id, ("pending",), "refused", status_reason="parameters changed")
            return refuse("parameters changed since the request", msg.CHANGED)
        earlier = s.execute(
            select(DeployApproval).where(
                DeployApproval.request_id == request.id, DeployApproval.approver == user
            )
        ).scalar_one_or_none()
        if earlier is not None:
            return refuse(
                f"already decided ({earlier.decision})",
                msg.already_decided(earlier.decision),
                result="duplicate",
            )
        s.add(
            DeployApproval(
                request_id=request.id,
                approver=user,
                decision=choice,
                params_hash=request.params_hash,
                created_at=now,
                expires_at=now + ttl,
            )
        )
        s.flush()
        audit.append(
            s,
            actor=user,
            on_behalf_of=request.requester,
            action=f"deploy.{choice}",
            decision="allow",
            task_id=request.task_id,
            target=target,
            scope=scope,
            details={"request_id": request.id, "sha": request.sha, "params_hash": request.params_hash},
        )
        if choice == REJECT:
            _set_status(s, request.id, ("pending",), "rejected", status_reason=f"rejected by {user}")
            return Decision("rejected", msg.rejected(user), request)
        count = len(_valid_approvals(s, policy, request, now))
        if count >= request.approvals_required and _set_status(s, request.id, ("pending",), "executing"):
            request.status = "executing"
            return Decision("ready", msg.approved_ready(user), request)
        return Decision("approved", msg.approved_waiting(user, count, request.approvals_required), request)


def _valid_approvals(s: Session, policy: Policy, request: DeployRequest, now: datetime) -> list[str]:
    """Approvers whose approval still counts: exact params, not the requester, scope held now, unexpired."""
    rows = s.execute(select(DeployApproval).where(DeployApproval.request_id == request.id)).scalars()
    scope = approve_scope(request.environment)
    return [
        a.approver
        for a in rows
        if a.decision == APPROVE
        and a.params_hash == request.params_hash
        and a.approver != request.requester
        and aware(a.expires_at) > now
        and policy.has_scope(a.approver, scope)
    ]


def approvers_of(policy: Policy, request: DeployRequest) -> list[str]:
    """People who may approve this request (never its requester)."""
    return [u for u in policy.holders_of(approve_scope(request.environment)) if u != request.requester]


def check_execution(
    db: Database, policy: Policy, request: DeployRequest, now: datetime | None = None
) -> None:
    """Every check before a deploy starts; Denied (with the reason) when one fails."""
    now = now or utcnow()
    if request.status != "executing":
        raise Denied(msg.not_pending(request.id, request.status), reason=f"request is {request.status}")
    config, env = target_of(policy, request.service, request.environment)
    if (
        params_hash(request.service, request.environment, request.sha, request.requester)
        != request.params_hash
    ):
        raise Denied(msg.CHANGED, reason="parameters changed since the request")
    needed = max(request.approvals_required, config.environments[env].approvals)
    with db.session() as s:
        valid = _valid_approvals(s, policy, request, now)
    if len(valid) < needed:
        raise Denied(
            msg.approvals_missing(len(valid), needed),
            reason=f"{len(valid)} valid approval(s) of {needed} (expired, revoked or changed)",
        )
    freeze_check(config, env, now)


# ---- the lock ----------------------------------------------------------------------------------------------


def acquire_lock(db: Database, request: DeployRequest) -> str | None:
    """Take the service/environment lock for ``request``; returns the holder's id when someone else has it."""
    for _attempt in range(2):
        try:
            with db.session() as s:
                held = s.get(DeployLock, (request.service, request.environment))
                if held is not None:
                    if held.request_id == request.id:
                        return None
                    holder = s.get(DeployRequest, held.request_id)
                    if holder is not None and holder.status not in FINISHED:
                        return held.request_id
                    s.delete(held)  # the holder finished without releasing (a crash): the lock is stale
                    s.flush()
                s.add(
                    DeployLock(
                        service=request.service, environment=request.environment, request_id=request.id
                    )
                )
            return None
        except IntegrityError:
            continue  # another process took it between our read and our insert: look again
    with db.session() as s:
        held = s.get(DeployLock, (request.service, request.environment))
        return held.request_id if held is not None else "unknown"


def release_lock(db: Database, request: DeployRequest) -> None:
    """Release the lock if ``request`` holds it."""
    with db.session() as s:
        s.execute(
            delete(DeployLock).where(
                DeployLock.service == request.service,
                DeployLock.environment == request.environment,
                DeployLock.request_id == request.id,
            )
        )


# ---- runs and history --------------------------------------------------------------------------------------


def record_started(db: Database, request: DeployRequest, run_ref: str, run_url: str | None) -> None:
    """Store the CI run reference once the deploy was triggered."""
    with db.session() as s:
        s.execute(
            update(DeployRequest)
            .where(DeployRequest.id == request.id, DeployRequest.status == "executing")
            .values(
                status="running", run_ref=run_ref, run_url=run_url, run_status="queued", executed_at=utcnow()
            )
        )


def record_poll(db: Database, request_id: str, run_status: str | None, run_url: str | None) -> int:
    """Count a status poll; returns the number of polls so far."""
    with db.session() as s:
        row = s.get(DeployRequest, request_id)
        if row is None:
            return 0
        row.polls = (row.polls or 0) + 1
        row.polled_at = utcnow()
        if run_status:
            row.run_status = run_status
        if run_url:
            row.run_url = run_url
        return row.polls


def finish_run(
    db: Database,
    request: DeployRequest,
    final: str,
    *,
    detail: dict[str, Any],
    rollback_window: timedelta,
    source: str = "system",
) -> bool:
    """Record a run's end once: status, outcome(s), history; a rollback marks the deploy it undid."""
    now = utcnow()
    from_statuses = ("running", "unknown") if final == "cancelled" else ("running",)
    with db.session() as s:
        if not _set_status(
            s, request.id, from_statuses, final, status_reason=detail.get("reason"), finished_at=now
        ):
            return False
        kind = OUTCOME_KINDS[final]
        for task_id in _outcome_tasks(request):
            s.add(
                Outcome(
                    task_id=task_id,
                    kind=kind,
                    source=source,
                    actor=None,
                    detail={"request_id": request.id, "sha": request.sha, **detail},
                )
            )
        audit.append(
            s,
            actor="clawback",
            on_behalf_of=request.requester,
            action=f"deploy.result.{final}",
            decision="info",
            task_id=request.execute_task_id or request.task_id,
            target=f"{request.service}/{request.environment}",
            details={"request_id": request.id, "sha": request.sha, **detail},
        )
        if final == "succeeded":
            s.add(
                DeployHistory(
                    service=request.service,
                    environment=request.environment,
                    sha=request.sha,
                    request_id=request.id,
                    kind=request.kind,
                    deployed_at=now,
                )
            )
            if request.kind == "rollback" and request.rollback_of:
                _mark_rolled_back(s, request, now, rollback_window)
    return True


def _outcome_tasks(request: DeployRequest) -> list[str]:
    """The deploy's own task and the plan it came from (where the model's tokens were spent)."""
    return [t for t in dict.fromkeys((request.execute_task_id, request.plan_task_id)) if t]


def _mark_rolled_back(s: Session, rollback: DeployRequest, now: datetime, window: timedelta) -> None:
    """Flag the undone deploy in the history; within ``window`` of it, record ``deploy_rolled_back``."""
    undone = s.get(DeployRequest, rollback.rollback_of)
    s.execute(
        update(DeployHistory).where(DeployHistory.request_id == rollback.rollback_of).values(rolled_back=True)
    )
    if undone is None or undone.finished_at is None or now - aware(undone.finished_at) > window:
        return
    for task_id in _outcome_tasks(undone):
        s.add(
            Outcome(
                task_id=task_id,
                kind="deploy_rolled_back",
                source="implicit",
                actor=rollback.requester,
                detail={"request_id": undone.id, "rollback_request_id": rollback.id, "to_sha": rollback.sha},
            )
        )
    audit.append(
        s,
        actor="clawback",
        on_behalf_of=rollback.requester,
        action="deploy.rolled_back",
        decision="info",
        task_id=undone.execute_task_id or undone.task_id,
        target=f"{undone.service}/{undone.environment}",
        details={"request_id": undone.id, "rollback_request_id": rollback.id},
    )


def history(db: Database, service: str, environment: str, limit: int = 20) -> list[DeployHistory]:
    """Deploys of a service to an environment, newest first."""
    with db.session() as s:
        return list(
            s.execute(
                select(DeployHistory)
                .where(DeployHistory.service == service, DeployHistory.environment == environment)
                .order_by(DeployHistory.id.desc())
                .limit(limit)
            ).scalars()
        )


def deployed(db: Database, service: str, environment: str) -> DeployHistory | None:
    """What Clawback last deployed there (None when it never did)."""
    rows = history(db, service, environment, limit=1)
    return rows[0] if rows else None


def rollback_target(
    db: Database, service: str, environment: str
) -> tuple[DeployHistory, DeployHistory] | None:
    """(current, previous good) deploys: the newest earlier sha that differs and was not rolled back."""
    rows = history(db, service, environment, limit=50)
    if not rows:
        return None
    current = rows[0]
    for row in rows[1:]:
        if row.sha != current.sha and not row.rolled_back:
            return current, row
    return None


def open_requests(db: Database, service: str | None = None, limit: int = 20) -> list[DeployRequest]:
    """Requests not finished yet (newest first), of one service or all."""
    with db.session() as s:
        stmt = select(DeployRequest).where(DeployRequest.status.not_in(FINISHED))
        if service:
            stmt = stmt.where(DeployRequest.service == service)
        return list(s.execute(stmt.order_by(DeployRequest.created_at.desc()).limit(limit)).scalars())


def expire_stale(db: Database, now: datetime | None = None) -> list[str]:
    """Mark pending requests past their approval window as expired (audited); returns their ids."""
    now = now or utcnow()
    with db.session() as s:
        stale = list(
            s.execute(
                select(DeployRequest).where(
                    DeployRequest.status == "pending", DeployRequest.expires_at <= now
                )
            ).scalars()
        )
    done = []
    for request in stale:
        if transition(
            db, request, ("pending",), "expired", actor="clawback", reason="approval window passed"
        ):
            done.append(request.id)
    return done
