"""``deploy_status``: what is deployed per environment and what is in flight (ephemeral)."""

from __future__ import annotations

from typing import Any

from bot.db import Task
from bot.deploy import service
from bot.deploy.config import services_of
from workers.deploy.following import _resume_follow_if_lost
from workers.deploy.slack import _actuator
from workers.runtime import WorkerDeps


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
