"""What every deploy job shares: the CI clients, CI error mapping, the pinned ref's release, the CI
cancel call and the follow job's schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rq import Retry, get_current_job
from sqlalchemy import select

from bot import audit
from bot.deploy import messages as msg
from bot.deploy.config import ServiceConfig, services_of
from bot.deploy.executors import (
    CIUnavailable,
    DeployError,
    DeployTrigger,
    Executor,
    GitHubClient,
    PinnedRefConflict,
    RefNotFound,
    WebhookExecutor,
    WorkflowDispatchExecutor,
)
from bot.deploy.models import DeployApproval, DeployRequest
from bot.errors import ConfigError, UserFacingError
from bot.queue import INTERACTIVE
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

FOLLOW = "workers.deploy.follow_run"
CLICK = "workers.deploy.handle_click"


@dataclass
class DeployClients:
    """The CI clients deploy jobs use: GitHub for plans, an executor per service for deploys."""

    github: GitHubClient
    executor_for: Callable[[ServiceConfig], Executor]


def build_clients(settings: Any, *, sleep: Callable[[float], None] = time.sleep) -> DeployClients:
    """Clients from settings: ``CLAWBACK_GITHUB_API_URL``/``_TOKEN``, webhook secrets by variable name."""
    timeout = settings.clawback_deploy_http_timeout
    github = GitHubClient(settings.clawback_github_api_url, settings.clawback_github_token or "", timeout)

    def executor_for(config: ServiceConfig) -> Executor:
        if config.executor == "webhook":
            assert config.webhook_url and config.webhook_secret_env
            secret = settings.deploy_webhook_secret(config.webhook_secret_env)
            if not secret:
                raise ConfigError(f"{config.webhook_secret_env} (webhook secret of {config.name}) is unset")
            return WebhookExecutor(config.webhook_url, secret, timeout)
        return WorkflowDispatchExecutor(github, config.repo, config.workflow, sleep=sleep)

    return DeployClients(github, executor_for)


def clients(deps: WorkerDeps) -> DeployClients:
    """``deps.extras["deploy_clients"]`` (tests inject it), else built from settings once per process."""
    found = deps.extras.get("deploy_clients")
    if found is None:
        if not deps.settings.clawback_github_token:
            raise UserFacingError(
                "deploys are not configured here (no GitHub token)", reason="CLAWBACK_GITHUB_TOKEN is unset"
            )
        found = deps.extras["deploy_clients"] = build_clients(deps.settings)
    return found


def _ci_errors(exc: Exception, service_name: str, ref: str = "") -> Exception:
    """Map CI client errors to what the task runner understands (transient ones are retried)."""
    if isinstance(exc, PinnedRefConflict):
        return UserFacingError(msg.pinned_ref_conflict(str(exc)[:200]), reason=f"pinned ref conflict: {exc}")
    if isinstance(exc, RefNotFound):
        return UserFacingError(msg.unknown_ref(service_name, ref), reason=f"ref not found: {exc}")
    if isinstance(exc, CIUnavailable):
        return exc  # a TransientError: retried, then reported as unavailable
    if isinstance(exc, ConfigError):
        return UserFacingError(f"deploys of `{service_name}` are misconfigured ({exc})", reason=str(exc))
    return UserFacingError(msg.ci_refused(str(exc)[:200]), reason=f"CI error: {exc}")


def _is_last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left


def _deploy_trigger(request: DeployRequest) -> DeployTrigger:
    """What the executor is given: the approved sha (``ref`` only as information)."""
    return DeployTrigger(
        request.id,
        request.service,
        request.environment,
        request.sha,
        request.requester,
        request.params_hash,
        request.ref,
    )


def _release_ref(deps: WorkerDeps, request: DeployRequest) -> None:
    """Delete the request's pinned ref once its run has ended or will not start (best effort, audited).

    A failure here loses nothing: the ref still points at the approved sha, and the log says which to delete.
    """
    config = services_of(deps.policy.current).get(request.service)
    if config is None:
        return
    trigger = _deploy_trigger(request)
    try:
        executor = clients(deps).executor_for(config)
        ref = executor.dispatch_ref(trigger)
        if ref is None:
            return
        deleted = executor.release(trigger)
    except (DeployError, ConfigError, UserFacingError) as exc:
        log.warning("deploy %s: could not delete its pinned ref: %s", request.id, exc)
        return
    if deleted:
        audit.record(
            deps.db,
            actor="clawback",
            on_behalf_of=request.requester,
            action="deploy.ref_deleted",
            decision="info",
            task_id=request.execute_task_id or request.task_id,
            target=f"{request.service}/{request.environment}",
            details={"request_id": request.id, "ref": ref, "sha": request.sha},
        )


def _schedule_follow(deps: WorkerDeps, request_id: str, polls: int, suffix: str = "") -> None:
    """Enqueue the next status poll (after the configured interval); one job id per poll."""
    delay = deps.settings.clawback_deploy_poll_seconds if polls else 0
    queue = deps.queue.queues[INTERACTIVE]
    kwargs = dict(
        job_id=f"deploy-follow-{request_id}-{polls}{suffix}",
        job_timeout=120,
        result_ttl=300,
        failure_ttl=7 * 86400,
        retry=Retry(max=3, interval=[5, 20, 60]),
    )
    if delay > 0:
        queue.enqueue_in(timedelta(seconds=delay), FOLLOW, request_id, **kwargs)
    else:
        queue.enqueue(FOLLOW, request_id, **kwargs)


def _approvers_who_approved(deps: WorkerDeps, request: DeployRequest) -> list[str]:
    """Who has approved ``request`` so far."""
    with deps.db.session() as s:
        return list(
            s.execute(
                select(DeployApproval.approver).where(
                    DeployApproval.request_id == request.id, DeployApproval.decision == "approve"
                )
            ).scalars()
        )


def _try_cancel_ci(deps: WorkerDeps, request: DeployRequest) -> bool:
    """Ask GitHub to cancel the run (webhook executors have no cancel call); False when not possible."""
    config = services_of(deps.policy.current).get(request.service)
    if config is None or config.executor != "github" or not (request.run_ref or "").isdigit():
        return False
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=request.requester,
        action="deploy.cancel_run",
        decision="allow",
        target=f"{request.service}/{request.environment}",
        task_id=request.execute_task_id,
        details={"request_id": request.id, "run": request.run_ref},
    )
    try:
        clients(deps).github.cancel_run(config.repo, request.run_ref or "")
    except DeployError as exc:
        raise _ci_errors(exc, request.service) from exc
    return True
