"""``deploy_cancel``: cancel a pending request, ask the CI to cancel a run, or release an unknown one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.db import Task
from bot.deploy import messages as msg
from bot.deploy import service
from bot.deploy.models import DeployRequest
from bot.errors import Denied, UserFacingError
from workers.deploy.shared import _release_ref, _try_cancel_ci
from workers.deploy.slack import _actuator, _announce, _close_approval
from workers.runtime import WorkerDeps


def cancel_core(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """``/deploy cancel <id>``: cancel a pending request, ask the CI to cancel a run, or release one."""
    policy = deps.policy.current
    request = service.get_request(deps.db, str((task.payload or {}).get("request_id", "")))
    if request is None:
        raise UserFacingError(msg.UNKNOWN_REQUEST, reason="unknown request")
    user = task.requester
    allowed = (
        user == request.requester
        or policy.has_scope(user, service.approve_scope(request.environment))
        or policy.has_scope(user, "admin")
    )
    if not allowed:
        raise Denied(msg.CANCEL_NOT_ALLOWED, reason="not the requester or an approver")
    note = msg.cancelled(request.id, user)
    if request.status == "pending":
        if service.transition(
            deps.db, request, ("pending",), "cancelled", actor=user, reason=f"cancelled by {user}"
        ):
            _close_approval(deps, request, note)
            _announce(deps, request, "cancelled", note)
            _actuator(deps).notify(task, note)
            return {"request_id": request.id, "status": "cancelled"}
    if request.status == "running":
        return _cancel_run(deps, task, request)
    if request.status == "unknown":
        window = timedelta(hours=deps.settings.clawback_deploy_rollback_window_hours)
        _try_cancel_ci(deps, request)
        if service.finish_run(
            deps.db,
            request,
            "cancelled",
            rollback_window=window,
            source="explicit",
            detail={"reason": f"released by {user} after an unknown result"},
        ):
            service.release_lock(deps.db, request)
            _release_ref(deps, request)
            _announce(deps, request, "cancelled", note)
            _actuator(deps).notify(task, note)
            return {"request_id": request.id, "status": "cancelled"}
    fresh = service.get_request(deps.db, request.id) or request
    raise UserFacingError(msg.cannot_cancel(request.id, fresh.status), reason=f"request is {fresh.status}")


def _cancel_run(deps: WorkerDeps, task: Task, request: DeployRequest) -> dict[str, Any]:
    if not _try_cancel_ci(deps, request):
        _actuator(deps).notify(task, msg.WEBHOOK_NO_CANCEL)
        return {"request_id": request.id, "status": "running", "cancel": "not supported"}
    _announce(deps, request, f"cancel:{task.id}", msg.cancel_requested(request.id, task.requester))
    return {"request_id": request.id, "status": "running", "cancel": "requested"}
