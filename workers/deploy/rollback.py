"""``deploy_rollback``: a rollback plan (the previous good sha) with a *Request rollback* button; no model."""

from __future__ import annotations

from typing import Any

from bot.db import Task
from bot.deploy import blocks, service
from bot.deploy import messages as msg
from bot.errors import UserFacingError
from workers.deploy.slack import _actuator
from workers.runtime import WorkerDeps


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
