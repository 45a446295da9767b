"""``deploy_plan``: compare what is deployed with the ref, ask the model for a risk summary, post the plan.

The model only writes the plan's risk summary: it gets no tools and nothing it says is acted on.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import prompts
from bot import audit
from bot.db import Task, utcnow
from bot.deploy import blocks, service
from bot.deploy import messages as msg
from bot.deploy import plan as planning
from bot.deploy.config import ServiceConfig, active_freeze
from bot.deploy.executors import ChangeSet, CIUnavailable, DeployError, GitHubClient
from bot.errors import UserFacingError
from bot.ingress import redactor_for
from bot.messages import footer as token_footer
from bot.text.safety import sanitize, urls_in
from bot.text.tokens import clip_to_tokens, estimate_messages
from workers.deploy.shared import _ci_errors, _is_last_attempt, clients
from workers.deploy.slack import _actuator
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

PROMPT = "deploy_plan"
_SHA_LIKE = re.compile(r"[0-9a-f]{7,40}")


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
