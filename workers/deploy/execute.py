"""``deploy_execute``: re-check everything, take the lock and trigger the CI exactly once for the exact sha."""

from __future__ import annotations

from typing import Any

from bot import audit, ledger
from bot.db import Task
from bot.deploy import messages as msg
from bot.deploy import service
from bot.deploy.config import ServiceConfig
from bot.deploy.executors import CIUnavailable, DeployError, PinnedRefConflict
from bot.deploy.models import DeployRequest
from bot.errors import ConfigError, Denied, TransientError, UserFacingError
from workers.deploy.shared import (
    _ci_errors,
    _deploy_trigger,
    _is_last_attempt,
    _release_ref,
    _schedule_follow,
    clients,
)
from workers.deploy.slack import _actuator, _post_in_thread
from workers.runtime import WorkerDeps


def execute_core(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Run every check again, take the lock and trigger the CI exactly once for the exact sha."""
    policy = deps.policy.current
    request = service.get_request(deps.db, str((task.payload or {}).get("request_id", "")))
    if request is None:
        raise UserFacingError(msg.UNKNOWN_REQUEST, reason="unknown request")
    if request.status in ("running", "succeeded", "failed", "cancelled", "unknown"):
        return {"request_id": request.id, "status": request.status}  # a retried job: already triggered
    try:
        service.check_execution(deps.db, policy, request)
        config, _env = service.target_of(policy, request.service, request.environment)
        holder = service.acquire_lock(deps.db, request)
        if holder is not None:
            raise Denied(
                msg.locked(request.service, request.environment, holder), reason=f"locked by {holder}"
            )
        run_ref = _trigger(deps, task, request, config)
    except (UserFacingError, DeployError, ConfigError) as exc:
        if isinstance(exc, TransientError) and not _is_last_attempt():
            raise  # lock and pending action stay: the retry reuses an earlier run before dispatching again
        error = _refuse(deps, task, request, exc)
        raise error from exc
    service.record_started(deps.db, request, run_ref, None)
    _post_in_thread(
        deps,
        task,
        "started",
        msg.started(request.id, request.service, request.environment, request.sha, None),
    )
    _schedule_follow(deps, request.id, 0)
    return {"request_id": request.id, "status": "running", "run_ref": run_ref, "sha": request.sha}


def _refuse(deps: WorkerDeps, task: Task, request: DeployRequest, exc: Exception) -> UserFacingError:
    """End an execution that will not start: release the lock, mark the request refused, say why."""
    if isinstance(exc, CIUnavailable):
        error = UserFacingError(msg.ci_unavailable(str(exc)[:160]), reason=f"CI unavailable: {exc}")
    elif isinstance(exc, UserFacingError):
        error = exc
    else:
        error = _ci_errors(exc, request.service, request.ref)  # type: ignore[assignment]
    ledger.complete_action(deps.db, f"deploy:{request.id}:trigger", "failed", {"error": error.reason[:300]})
    if not isinstance(exc, PinnedRefConflict):  # a planted ref is left alone (release checks the sha too)
        _release_ref(deps, request)
    service.release_lock(deps.db, request)
    service.transition(
        deps.db,
        request,
        ("executing",),
        "refused",
        actor="clawback",
        reason=error.reason[:500],
        decision="deny",
    )
    _post_in_thread(
        deps, task, "refused", f":no_entry: Deploy `{request.id}` not started: {error.user_message}"
    )
    return error


def _trigger(deps: WorkerDeps, task: Task, request: DeployRequest, config: ServiceConfig) -> str:
    """guard → action → audit → executor.trigger → audit what ran → action done; one dispatch per request."""
    executor = clients(deps).executor_for(config)
    trigger = _deploy_trigger(request)
    dispatch_ref = executor.dispatch_ref(trigger)
    key = f"deploy:{request.id}:trigger"
    action, created = ledger.begin_action(
        deps.db,
        task_id=task.id,
        key=key,
        kind="deploy.trigger",
        scope="deploy.request",
        target=f"{request.service}/{request.environment}",
        detail={
            "sha": request.sha,
            "requested_ref": request.ref,
            "dispatch_ref": dispatch_ref,
            "params_hash": request.params_hash,
        },
    )
    if not created and action.status == "done":
        return str(action.result["run_ref"])
    _actuator(deps).guard(task, "deploy.request", channel=request.channel_id)
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=request.requester,
        action="deploy.trigger",
        decision="allow",
        scope="deploy.request",
        task_id=task.id,
        target=f"{request.service}/{request.environment}",
        details={
            "request_id": request.id,
            "sha": request.sha,
            "requested_ref": request.ref,
            "dispatch_ref": dispatch_ref,
            "executor": config.executor,
            "retry": not created,
        },
    )
    run_ref = executor.trigger(trigger)
    # What was actually started: the pinned ref (created at, and checked to be at, exactly this sha).
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=request.requester,
        action="deploy.dispatched",
        decision="info",
        scope="deploy.request",
        task_id=task.id,
        target=f"{request.service}/{request.environment}",
        details={"request_id": request.id, "ref": dispatch_ref, "sha": request.sha, "run": run_ref},
    )
    ledger.complete_action(deps.db, key, "done", {"run_ref": run_ref, "dispatch_ref": dispatch_ref})
    return run_ref
