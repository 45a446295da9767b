"""``follow_run`` (RQ entry ``workers.deploy.follow_run``): poll a running deploy, bounded, record its end;
and the self-healing that resumes a follow job Redis lost.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot import ledger
from bot.db import utcnow
from bot.deploy import messages as msg
from bot.deploy import service
from bot.deploy.config import services_of
from bot.deploy.executors import DeployError
from bot.deploy.models import DeployRequest
from bot.errors import ConfigError, UserFacingError
from workers import runtime
from workers.deploy.shared import (
    _approvers_who_approved,
    _release_ref,
    _schedule_follow,
    _try_cancel_ci,
    clients,
)
from workers.deploy.slack import _post_in_thread, _tell_user
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)


def follow_run(request_id: str) -> str:
    """RQ entry: poll one deploy run once, record its end or schedule the next poll."""
    return follow(runtime.current(), request_id)


def follow(deps: WorkerDeps, request_id: str) -> str:
    """One bounded poll of a running deploy; returns the request's status afterwards."""
    request = service.get_request(deps.db, request_id)
    if request is None or request.status != "running":
        return request.status if request is not None else "unknown request"
    task = ledger.get_task(deps.db, request.execute_task_id or "")
    config = services_of(deps.policy.current).get(request.service)
    status = None
    try:
        if config is None:
            raise DeployError(f"service {request.service} is no longer configured")
        status = clients(deps).executor_for(config).status(request.run_ref or "")
    except (DeployError, ConfigError, UserFacingError) as exc:
        log.warning("deploy %s: status poll failed: %s", request.id, exc)
    previous = request.run_status
    polls = service.record_poll(
        deps.db, request.id, status.status if status else None, status.html_url if status else None
    )
    url = (status.html_url if status else None) or request.run_url
    wrong_commit = status is not None and bool(status.head_sha) and status.head_sha != request.sha
    if status is not None and (status.is_done or wrong_commit):
        final = service.CONCLUSIONS.get(status.conclusion or "", "failed")
        detail: dict[str, Any] = {"run": status.id, "conclusion": status.conclusion, "url": url}
        if wrong_commit:
            # Never record a success (nor a base for later plans) for a commit that is not the approved one,
            # and stop such a run while it is still going.
            if not status.is_done:
                try:
                    _try_cancel_ci(deps, request)
                except (UserFacingError, DeployError) as exc:
                    log.warning("deploy %s: could not cancel a run at the wrong commit: %s", request.id, exc)
            final = "failed"
            detail["head_sha"] = status.head_sha
            detail["reason"] = f"the run is at {status.head_sha[:12]}, not the approved {request.sha[:12]}"
        request = service.get_request(deps.db, request.id) or request
        window = timedelta(hours=deps.settings.clawback_deploy_rollback_window_hours)
        if service.finish_run(deps.db, request, final, rollback_window=window, detail=detail):
            service.release_lock(deps.db, request)
            _release_ref(deps, request)
            if task is not None:
                text = msg.finished(request.id, final, request.service, request.environment, request.sha, url)
                if wrong_commit:
                    text = msg.wrong_commit(request.id, status.head_sha, request.sha, url)
                _post_in_thread(deps, task, f"result:{final}", text)
        return final
    if (
        status is not None
        and status.status != previous
        and task is not None
        and status.status == "in_progress"
    ):
        _post_in_thread(deps, task, "run:in_progress", msg.run_update(request.id, status.status, url))
    if polls >= deps.settings.clawback_deploy_max_polls:
        request = service.get_request(deps.db, request.id) or request
        window = timedelta(hours=deps.settings.clawback_deploy_rollback_window_hours)
        if service.finish_run(
            deps.db,
            request,
            "unknown",
            rollback_window=window,
            source="timeout",
            detail={"reason": f"no result after {polls} polls", "url": url},
        ):
            if task is not None:
                _post_in_thread(deps, task, "result:unknown", msg.unknown_result(request.id, polls))
            for person in {request.requester, *_approvers_who_approved(deps, request)}:
                _tell_user(
                    deps, request.channel_id, person, msg.unknown_result(request.id, polls), request.thread_ts
                )
        return "unknown"
    _schedule_follow(deps, request.id, polls)
    return "running"


def resume_lost_followers(deps: WorkerDeps) -> int:
    """Resume following every running deploy whose follow job was lost; returns how many were resumed."""
    resumed = 0
    with deps.db.read() as s:
        running = list(s.execute(select(DeployRequest).where(DeployRequest.status == "running")).scalars())
    for request in running:
        resumed += _resume_follow_if_lost(deps, request)
    return resumed


def _resume_follow_if_lost(deps: WorkerDeps, request: DeployRequest) -> bool:
    """Self-healing: a running deploy not polled for a long while lost its follow job (Redis lost it)."""
    if request.status != "running":
        return False
    stale_after = max(120.0, 5 * deps.settings.clawback_deploy_poll_seconds)
    last = service.aware(request.polled_at or request.executed_at)
    if last is not None and (utcnow() - last).total_seconds() > stale_after:
        log.warning("deploy %s: follow job looks lost; resuming", request.id)
        _schedule_follow(deps, request.id, request.polls, suffix=f"-resume-{int(time.time())}")
        return True
    return False
