"""Deploy-assist jobs: plan, request, execute, follow, rollback, status, cancel, and button clicks.

Flow: ``/deploy plan`` (task ``deploy_plan``) posts a plan with *Request deploy*; the click is a task
``deploy_request`` that creates the request (bound to a params hash) and asks approvers; the last
approval (``handle_click``) or, with none needed, the request itself submits one ``deploy_execute`` task
(idempotency key ``deploy-exec:<request id>``) which re-checks everything, takes the lock, and triggers the
CI exactly once (an action row, and run-name matching for retries). ``follow_run`` polls the run, bounded,
and records the result as the outcome of the deploy task and of its plan.

The model only writes the plan's risk summary: it gets no tools and nothing it says is acted on.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rq import Retry, get_current_job
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

import prompts
from bot import audit, ledger
from bot.db import Task, utcnow
from bot.deploy import blocks, service
from bot.deploy import messages as msg
from bot.deploy import plan as planning
from bot.deploy.config import ServiceConfig, active_freeze, services_of
from bot.deploy.executors import (
    ChangeSet,
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
from bot.deploy.models import DeployRequest
from bot.errors import ConfigError, Denied, TransientError, UserFacingError
from bot.ingress import IngressDeps, redactor_for, submit
from bot.ledger import NewTask
from bot.messages import footer as token_footer
from bot.queue import INTERACTIVE
from bot.safety import sanitize, urls_in
from bot.tokens import clip_to_tokens, estimate_messages
from workers import runtime
from workers.actuators import METADATA_EVENT, SlackActuator, _classify
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

PROMPT = "deploy_plan"
FOLLOW = "workers.deploy.follow_run"
CLICK = "workers.deploy.handle_click"
_SHA_LIKE = re.compile(r"[0-9a-f]{7,40}")
_ID = re.compile(r"[0-9a-f]{20}")


# ---- clients -----------------------------------------------------------------------------------------------


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


# ---- Slack helpers -----------------------------------------------------------------------------------------


def _actuator(deps: WorkerDeps) -> SlackActuator:
    return SlackActuator(deps.slack, deps.db, deps.policy)


def _post_in_thread(
    deps: WorkerDeps, task: Task, key: str, text: str, blocks_: list[dict] | None = None
) -> str | None:
    """Post a status message in the deploy's thread once per ``key`` (informational: no scope needed)."""
    if not task.channel_id:
        return None
    idem = f"{task.id}:slack.post:{key}"
    action, created = ledger.begin_action(
        deps.db,
        task_id=task.id,
        key=idem,
        kind="slack.post",
        scope=None,
        target=task.channel_id,
        detail={"thread_ts": task.thread_ts},
    )
    if not created and action.status == "done":
        return action.result.get("ts")
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=task.requester,
        action="slack.post",
        decision="info",
        target=task.channel_id,
        task_id=task.id,
        details={"key": idem, "chars": len(text)},
    )
    try:
        resp = deps.slack.chat_postMessage(
            channel=task.channel_id,
            thread_ts=task.thread_ts,
            text=text,
            blocks=blocks_ or blocks.build_status_blocks(text),
            unfurl_links=False,
            unfurl_media=False,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"task_id": task.id, "key": idem}},
        )
    except SlackApiError as exc:
        raise _classify(exc) from exc
    ledger.complete_action(deps.db, idem, "done", {"ts": resp["ts"]})
    return str(resp["ts"])


def _tell_user(
    deps: WorkerDeps, channel: str | None, user: str, text: str, thread_ts: str | None = None
) -> None:
    """An ephemeral note to one person (best effort: the decision is already recorded)."""
    try:
        if channel:
            deps.slack.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
        else:
            dm = deps.slack.conversations_open(users=user)["channel"]["id"]
            deps.slack.chat_postMessage(channel=dm, text=text, unfurl_links=False, unfurl_media=False)
    except SlackApiError:
        log.exception("could not tell %s: %s", user, text[:80])


def _close_message(
    deps: WorkerDeps, channel: str | None, ts: str | None, blocks_now: list[dict], note: str
) -> None:
    """Replace a message's buttons with a note (best effort)."""
    if not channel or not ts:
        return
    try:
        deps.slack.chat_update(
            channel=channel, ts=ts, text=note, blocks=blocks.build_closed_blocks(blocks_now, note)
        )
    except SlackApiError:
        log.exception("could not update message %s in %s", ts, channel)


def _message_blocks(deps: WorkerDeps, channel: str, ts: str) -> list[dict]:
    """The current blocks of one of our top-level messages (to keep its content when closing it)."""
    try:
        resp = deps.slack.conversations_replies(channel=channel, ts=ts, limit=1)
        for m in resp.get("messages", []):
            if m.get("ts") == ts:
                return list(m.get("blocks") or [])
    except SlackApiError:
        log.warning("could not read message %s in %s", ts, channel)
    return []


# ---- plan --------------------------------------------------------------------------------------------------


def _dispatch_ref(config: ServiceConfig, ref: str, sha: str) -> str:
    """The branch or tag to dispatch on: the named ref, or the service's branch for a bare sha."""
    return config.branch if _SHA_LIKE.fullmatch(ref) and sha.startswith(ref) else ref


def _base_of(deps: WorkerDeps, gh: GitHubClient, config: ServiceConfig, env: str) -> tuple[str | None, str]:
    """(sha deployed now, how we know): Clawback's history, else GitHub's newest successful deployment to
    that environment, else the policy's baseline (the environment's, then the service's); (None, "unknown")
    when nobody knows."""
    current = service.deployed(deps.db, config.name, env)
    if current is not None:
        return current.sha, "recorded"
    try:
        sha = gh.deployed_sha(config.repo, env)
    except CIUnavailable:
        raise  # transient: the job is retried
    except DeployError as exc:
        # e.g. a token without "Deployments: read": fall back to the baseline, say why in the log.
        log.warning("%s/%s: GitHub deployments not readable (%s); using the baseline", config.name, env, exc)
        sha = None
    if sha is not None:
        return sha, "github"
    baseline = config.environments[env].baseline or config.baseline
    if baseline:
        return gh.resolve_ref(config.repo, baseline), f"baseline {baseline}"
    return None, "unknown"


def plan_core(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Compare what is deployed with the ref, ask the model for a risk summary, post the plan."""
    policy = deps.policy.current
    payload = task.payload or {}
    config, env = service.target_of(policy, str(payload.get("service", "")), payload.get("environment"))
    ref = str(payload.get("ref", ""))
    gh = clients(deps).github
    try:
        sha = gh.resolve_ref(config.repo, ref)
        base_sha, base_source = _base_of(deps, gh, config, env)
        changes = gh.compare(config.repo, base_sha, sha) if base_sha else ChangeSet(sha, sha, [], [], [])
    except DeployError as exc:
        if isinstance(exc, CIUnavailable) and _is_last_attempt():
            raise UserFacingError(
                msg.ci_unavailable(str(exc)[:160]), reason=f"CI unavailable: {exc}"
            ) from exc
        raise _ci_errors(exc, config.name, ref) from exc
    now = utcnow()
    window = active_freeze(config.environments[env].freeze, now)
    freeze_note = (
        f"`{env}` is in a change freeze ({window.text}) until {window.ends_at(now):%a %H:%M} UTC: "
        "a request now will be refused."
        if window
        else None
    )
    if base_sha is None:
        # Nothing to compare with: the model would see an empty diff and might call it low risk. It is not
        # asked, and the level is set here, in code.
        risk = _base_unknown_risk(env)
        usage = {"model": "no model call", "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
    else:
        risk, usage = _risk_summary(deps, task, config, env, ref, sha, base_sha, changes)
    files = [name for name, _, _, _ in changes.files]
    plan = {
        "kind": "deploy",
        "service": config.name,
        "environment": env,
        "ref": _dispatch_ref(config, ref, sha),
        "requested_ref": ref,
        "sha": sha,
        "base_sha": base_sha,
        "base_source": base_source,
        "risk": risk,
        "detected": planning.detect(files),
        "commits": changes.commits,
        "pull_requests": changes.pull_requests,
        "files_changed": len(files),
        "freeze_note": freeze_note,
    }
    footer = token_footer(
        usage["model"], usage["prompt_tokens"], usage["completion_tokens"], usage["cost"], task.id
    )
    page = blocks.build_plan_blocks(plan, footer + " · " + msg.NO_DEPLOY_TOOL, task.id)
    text = f"Deploy plan: {config.name} {sha[:12]} → {env} (risk {risk.get('risk_level', 'unknown')})"
    (plan_ts,) = _actuator(deps).post_reply(
        task, text=text, blocks_pages=[page], scope="deploy.plan", key="plan"
    )
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=task.requester,
        action="deploy.plan",
        decision="info",
        task_id=task.id,
        target=f"{config.name}/{env}",
        scope="deploy.plan",
        details={
            "sha": sha,
            "base_sha": base_sha,
            "risk_level": risk.get("risk_level"),
            "commits": len(changes.commits),
        },
    )
    return {
        "kind": "deploy",
        "service": config.name,
        "environment": env,
        "ref": plan["ref"],
        "requested_ref": ref,
        "sha": sha,
        "base_sha": base_sha,
        "risk_level": risk.get("risk_level"),
        "commits": len(changes.commits),
        "plan_ts": plan_ts,
        "reply_ts": plan_ts,
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
    }


def _base_unknown_risk(env: str) -> dict[str, Any]:
    """The plan's risk when what is deployed is unknown: level ``unknown``, never a guess."""
    return {
        "risk_level": "unknown",
        "summary": msg.base_unknown(env),
        "notable_changes": [],
        "migrations": [],
        "config_changes": [],
        "suggested_checks": [],
        "rollback_plan": "",
    }


def _risk_summary(
    deps: WorkerDeps,
    task: Task,
    config: ServiceConfig,
    env: str,
    ref: str,
    sha: str,
    base_sha: str | None,
    changes: ChangeSet,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's structured risk summary (sanitised), or a plain fallback when its answer is unusable."""
    redactor = redactor_for(deps.policy)
    boundary = "<<" + hashlib.sha256(task.id.encode()).hexdigest()[:16] + ">>"
    described, _counts = redactor.redact(planning.describe_changes(changes))
    described = clip_to_tokens(described.replace(boundary, ""), deps.settings.clawback_context_tokens)
    prompt = prompts.render(
        PROMPT,
        service=config.name,
        environment=env,
        ref=redactor.redact(ref)[0].replace(boundary, ""),
        sha=sha,
        base=base_sha or "unknown",  # plan_core asks no model when the base is unknown
        boundary=boundary,
        changes=described,
    )
    policy = deps.policy.current
    max_tokens = deps.settings.clawback_deploy_plan_tokens
    reservation = deps.budget.reserve(
        task.requester, estimate_messages(prompt.messages()) + max_tokens, policy.limits_for(task.requester)
    )
    result = None
    try:
        result = deps.llm.complete(
            task_id=task.id,
            step="deploy_plan",
            prompt=prompt,
            max_tokens=max_tokens,
            response_format=planning.RESPONSE_FORMAT,
        )
    finally:
        deps.budget.settle(reservation, 0 if result is None or result.reused else result.total_tokens)
    if result.tool_calls:
        # No tools were offered; a model that "calls" one anyway is recorded and ignored.
        audit.record(
            deps.db,
            actor="clawback",
            on_behalf_of=task.requester,
            action="deploy.model_tool_call",
            decision="deny",
            task_id=task.id,
            details={"tools": [c.name for c in result.tool_calls], "reason": "the model has no tools"},
        )
    risk = planning.parse_risk(result.content)
    if risk is None:
        log.warning("task %s: model risk summary unusable; showing facts only", task.id)
        risk = {
            "risk_level": "unknown",
            "summary": "The model's summary was unusable; review the changes below.",
            "notable_changes": [],
            "migrations": [],
            "config_changes": [],
            "suggested_checks": [],
            "rollback_plan": "",
        }
    sources = urls_in(described)
    people = {task.requester}
    # Escaping first means the model can produce no Slack links, mentions or broadcasts at all.
    for key in ("summary", "rollback_plan"):
        risk[key] = sanitize(blocks.escape(risk[key]), allowed_urls=sources, allowed_users=people)[0]
    for key in planning.LIST_FIELDS:
        risk[key] = [
            sanitize(blocks.escape(v), allowed_urls=sources, allowed_users=people)[0] for v in risk[key]
        ]
    usage = {
        "model": result.model,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "cost": result.cost,
    }
    return risk, usage


# ---- rollback ----------------------------------------------------------------------------------------------


def rollback_core(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Post a rollback plan (previous good sha) with a *Request rollback* button; no model involved."""
    policy = deps.policy.current
    payload = task.payload or {}
    config, env = service.target_of(policy, str(payload.get("service", "")), payload.get("environment"))
    found = service.rollback_target(deps.db, config.name, env)
    if found is None:
        raise UserFacingError(msg.no_rollback_target(config.name, env), reason="no rollback target")
    current, previous = found
    plan = {
        "kind": "rollback",
        "service": config.name,
        "environment": env,
        "ref": config.branch,
        "sha": previous.sha,
        "base_sha": current.sha,
        "commits": [],
        "files_changed": 0,
    }
    note = f"no model used · rolls back `{current.sha[:12]}` → `{previous.sha[:12]}` · task `{task.id}`"
    page = blocks.build_plan_blocks(plan, note, task.id)
    text = f"Rollback plan: {config.name} {env} {current.sha[:12]} → {previous.sha[:12]}"
    (plan_ts,) = _actuator(deps).post_reply(
        task, text=text, blocks_pages=[page], scope="deploy.request", key="plan"
    )
    return {
        "kind": "rollback",
        "service": config.name,
        "environment": env,
        "ref": config.branch,
        "sha": previous.sha,
        "base_sha": current.sha,
        "rollback_of": current.request_id,
        "plan_ts": plan_ts,
        "reply_ts": plan_ts,
    }


# ---- request -----------------------------------------------------------------------------------------------


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


# ---- execute -----------------------------------------------------------------------------------------------


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


# ---- follow ------------------------------------------------------------------------------------------------


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


def _approvers_who_approved(deps: WorkerDeps, request: DeployRequest) -> list[str]:
    from sqlalchemy import select

    from bot.deploy.models import DeployApproval

    with deps.db.session() as s:
        return list(
            s.execute(
                select(DeployApproval.approver).where(
                    DeployApproval.request_id == request.id, DeployApproval.decision == "approve"
                )
            ).scalars()
        )


# ---- clicks ------------------------------------------------------------------------------------------------


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


def _close_approval(deps: WorkerDeps, request: DeployRequest, note: str) -> None:
    """Replace the approval message's buttons with ``note``."""
    text = (request.detail or {}).get("approval_text") or ""
    _close_message(deps, request.channel_id, request.approval_ts, blocks.build_status_blocks(text), note)


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


# ---- cancel and status -------------------------------------------------------------------------------------


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


def _announce(deps: WorkerDeps, request: DeployRequest, key: str, text: str) -> None:
    """Post in the request's thread (under the request task)."""
    request_task = ledger.get_task(deps.db, request.task_id)
    if request_task is not None:
        _post_in_thread(deps, request_task, key, text)


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


def _cancel_run(deps: WorkerDeps, task: Task, request: DeployRequest) -> dict[str, Any]:
    if not _try_cancel_ci(deps, request):
        _actuator(deps).notify(task, msg.WEBHOOK_NO_CANCEL)
        return {"request_id": request.id, "status": "running", "cancel": "not supported"}
    _announce(deps, request, f"cancel:{task.id}", msg.cancel_requested(request.id, task.requester))
    return {"request_id": request.id, "status": "running", "cancel": "requested"}


def status_core(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """``/deploy status [service]``: what is deployed per environment and what is in flight (ephemeral)."""
    policy = deps.policy.current
    services = services_of(policy)
    wanted = (task.payload or {}).get("service")
    if wanted:
        config, _env = service.target_of(policy, wanted, None)
        services = {config.name: config}
    service.expire_stale(deps.db)
    lines = []
    for name, config in services.items():
        lines.append(f"*{name}* (`{config.repo}`)")
        for env in config.environments:
            current = service.deployed(deps.db, name, env)
            shown = (
                f"`{current.sha[:12]}` since {current.deployed_at:%Y-%m-%d %H:%M} UTC"
                if current
                else "_nothing recorded_"
            )
            lines.append(f"• `{env}`: {shown}")
        for request in service.open_requests(deps.db, name):
            lines.append(
                f"  ↳ request `{request.id}` {request.kind} `{request.sha[:12]}` → `{request.environment}`: "
                f"*{request.status}* (by <@{request.requester}>)"
            )
            _resume_follow_if_lost(deps, request)
    text = "\n".join(lines) or "No services are configured for deploys."
    _actuator(deps).notify(task, text)
    return {"services": len(services)}


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


INTENTS = {
    "deploy_plan": ("deploy.plan", plan_core),
    "deploy_rollback": ("deploy.request", rollback_core),
    "deploy_request": ("deploy.request", request_core),
    "deploy_execute": ("deploy.request", execute_core),
    "deploy_status": ("deploy.plan", status_core),
    "deploy_cancel": ("deploy.plan", cancel_core),
}
