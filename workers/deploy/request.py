"""``deploy_request``: a *Request deploy* click creates the request and asks approvers, or submits its one
``deploy_execute`` task (idempotency key ``deploy-exec:<request id>``) when none are needed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot import ledger
from bot.db import Task, utcnow
from bot.deploy import blocks, service
from bot.deploy import messages as msg
from bot.deploy.models import DeployRequest
from bot.errors import UserFacingError
from bot.ingress import IngressDeps, submit
from bot.ledger import NewTask
from workers.deploy.slack import _post_in_thread
from workers.runtime import WorkerDeps


def request_core(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """A *Request deploy* click: a request for the plan's exact sha, then ask approvers or execute."""
    policy = deps.policy.current
    plan_task = ledger.get_task(deps.db, str((task.payload or {}).get("plan_task_id", "")))
    plan = (plan_task.result or {}) if plan_task is not None else {}
    if (
        plan_task is None
        or plan_task.status != "done"
        or plan_task.intent not in ("deploy_plan", "deploy_rollback")
        or not plan.get("sha")
        or plan.get("cancelled_by")
    ):
        raise UserFacingError(msg.PLAN_GONE, reason="plan not usable")
    ttl = timedelta(minutes=deps.settings.clawback_deploy_approval_ttl_minutes)
    if service.aware(plan_task.created_at) + ttl < utcnow():
        raise UserFacingError(
            f"that plan is older than {ttl.total_seconds() / 60:g} minutes; run `/deploy plan` again",
            reason="plan too old",
        )
    config, env = service.target_of(policy, plan["service"], plan["environment"])
    if plan.get("kind") != "rollback":
        service.freeze_check(config, env, utcnow())  # rollbacks restore a known-good version: not frozen
    request, created = service.create_request(
        deps.db, task=task, plan=plan, config=config, environment=env, ttl=ttl
    )
    if request.approvals_required == 0:
        service.transition(
            deps.db,
            request,
            ("pending",),
            "executing",
            actor=task.requester,
            reason="no approval needed",
            decision="allow",
        )
        _ensure_execution(deps, request.id, approved_by=[])
        return {"request_id": request.id, "status": "executing"}
    if request.approval_ts is None:
        approvers = service.approvers_of(policy, request)
        text = msg.approval_needed(
            request.id,
            config.name,
            env,
            request.sha,
            request.requester,
            approvers,
            request.approvals_required,
            ttl.total_seconds() / 60,
        )
        ts = _post_in_thread(deps, task, "approval", text, blocks.build_approval_blocks(text, request.id))
        with deps.db.session() as s:
            row = s.get(DeployRequest, request.id)
            row.approval_ts = ts
            row.detail = {**(row.detail or {}), "approval_text": text}
    return {"request_id": request.id, "status": "pending", "approvals_required": request.approvals_required}


def _ensure_execution(deps: WorkerDeps, request_id: str, *, approved_by: list[str]) -> None:
    """Submit the execution task of an ``executing`` request if it has none yet (safe to call again)."""
    fresh = service.get_request(deps.db, request_id)
    if fresh is not None and fresh.status == "executing" and not fresh.execute_task_id:
        _submit_execution(deps, fresh, approved_by=approved_by)


def _submit_execution(deps: WorkerDeps, request: DeployRequest, *, approved_by: list[str]) -> str:
    """Create the one execution task of a request (idempotent) and remember its id on the request."""
    new = NewTask(
        idempotency_key=f"deploy-exec:{request.id}",
        requester=request.requester,
        surface="deploy",
        intent="deploy_execute",
        trigger="human",
        channel_id=request.channel_id,
        thread_ts=request.thread_ts,
        parent_id=request.task_id,
        payload={"request_id": request.id, "approved_by": approved_by},
    )
    ingress = IngressDeps(db=deps.db, queue=deps.queue, policy=deps.policy)
    sub = submit(ingress, new, scope="deploy.request", channel=request.channel_id)
    with deps.db.session() as s:
        row = s.get(DeployRequest, request.id)
        row.execute_task_id = sub.task_id
    request.execute_task_id = sub.task_id
    if sub.denied is not None:
        service.transition(
            deps.db,
            request,
            ("executing",),
            "refused",
            actor="clawback",
            reason=sub.denied.reason,
            decision="deny",
        )
    return sub.task_id
