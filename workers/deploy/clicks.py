"""Button clicks (RQ entry ``workers.deploy.handle_click``): Approve, Reject and a plan's Cancel."""

from __future__ import annotations

import re
from datetime import timedelta

from bot import audit, ledger
from bot.deploy import blocks, service
from bot.deploy import messages as msg
from workers import runtime
from workers.deploy.request import _ensure_execution
from workers.deploy.shared import _approvers_who_approved
from workers.deploy.slack import _close_approval, _close_message, _message_blocks, _post_in_thread, _tell_user
from workers.runtime import WorkerDeps

_ID = re.compile(r"[0-9a-f]{20}")


def handle_click(
    kind: str, value: str, user: str, team: str | None = None, homes: list[str] | None = None
) -> str:
    """RQ entry: an Approve, Reject or plan Cancel click; ``team`` is the clicker's own team from the payload."""
    deps = runtime.current()
    if team is not None:  # bind the clicker's organisation before any scope check (jobs from before: no team)
        deps.policy.note_team(user, team, tuple(homes or ()))
    return click(deps, kind, value, user)


def click(deps: WorkerDeps, kind: str, value: str, user: str) -> str:
    """Apply one button click with every check; the clicker is told privately when refused."""
    if not _ID.fullmatch(value or ""):
        return "malformed"
    if kind == blocks.CANCEL_PLAN:
        return _cancel_plan(deps, value, user)
    choice = service.APPROVE if kind == blocks.APPROVE else service.REJECT
    ttl = timedelta(minutes=deps.settings.clawback_deploy_approval_ttl_minutes)
    decision = service.decide(deps.db, deps.policy.current, value, user, choice, ttl=ttl)
    request = decision.request
    if request is None:
        return decision.result
    request_task = ledger.get_task(deps.db, request.task_id)
    if decision.result in ("refused", "duplicate"):
        _ensure_execution(
            deps, request.id, approved_by=_approvers_who_approved(deps, request)
        )  # a retried job
        _tell_user(deps, request.channel_id, user, decision.message, request.thread_ts)
        if request_task is not None and decision.message == msg.expired(request.id):
            _post_in_thread(deps, request_task, "expired", decision.message)
        return decision.result
    if request_task is not None:
        _post_in_thread(deps, request_task, f"decision:{user}", decision.message)
    if decision.result in ("rejected", "ready"):
        _close_approval(deps, request, decision.message)
    if decision.result == "ready":
        _ensure_execution(deps, request.id, approved_by=_approvers_who_approved(deps, request))
    return decision.result


def _cancel_plan(deps: WorkerDeps, plan_task_id: str, user: str) -> str:
    """The plan's Cancel button: only its requester, only before a deploy was requested from it.

    Cancelling records an outcome on the plan task, so nobody may do it on someone else's plan, and a plan
    that led to a request keeps the outcome its deploy gives it (cancel the request with ``/deploy cancel``).
    """
    plan_task = ledger.get_task(deps.db, plan_task_id)
    if plan_task is None or plan_task.intent not in ("deploy_plan", "deploy_rollback"):
        return "unknown plan"
    reason = None
    if user != plan_task.requester:
        reason, text = "not the requester", msg.PLAN_NOT_YOURS
    elif service.is_requested(deps.db, plan_task.id):
        reason, text = "a deploy was requested from this plan", msg.PLAN_ALREADY_REQUESTED
    audit.record(
        deps.db,
        actor=user,
        on_behalf_of=plan_task.requester,
        action="deploy.plan_cancel",
        decision="deny" if reason else "allow",
        task_id=plan_task.id,
        target=plan_task.channel_id,
        details={"reason": reason},
    )
    if reason:
        _tell_user(deps, plan_task.channel_id, user, text)
        return "denied"
    if (plan_task.result or {}).get("cancelled_by"):
        return "duplicate"
    ledger.update_result(deps.db, plan_task.id, cancelled_by=user)
    ledger.record_outcome(deps.db, plan_task.id, "deploy_plan_cancelled", source="explicit", actor=user)
    ts = (plan_task.result or {}).get("plan_ts")
    if plan_task.channel_id and ts:
        _close_message(
            deps,
            plan_task.channel_id,
            ts,
            _message_blocks(deps, plan_task.channel_id, ts),
            msg.plan_cancelled(user),
        )
    return "cancelled"
