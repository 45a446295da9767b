"""Deploy fixtures: the GitHub stand-in with the demo repo, a policy with services, injected clients."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.db import AuditEntry, Outcome, Task, utcnow
from bot.deploy.demo import seed_demo
from bot.deploy.models import DeployRequest
from bot.standins.ci import CIStandIn
from bot.standins.deploy_responder import register as register_responder

GH_TOKEN = "ghp-deploy-test-token"


def policy_text(now=None) -> str:
    """The test policy: Alice deploys, Bob approves, Carol both, Dave approves staging only, Emma nothing.

    Service ``vault`` is in a change freeze around ``now`` in prod.
    """
    now = now or utcnow()
    start, end = (now - timedelta(days=1)).date(), (now + timedelta(days=1)).date()
    return f"""
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "usage.self"]
daily_tokens = 200000
requests_per_minute = 100

[roles.deployer]
scopes = ["chat.reply", "deploy.plan", "deploy.request"]
daily_tokens = 200000
requests_per_minute = 100

[roles.approver]
scopes = ["deploy.plan", "deploy.approve.prod", "deploy.approve.staging"]
daily_tokens = 200000
requests_per_minute = 100

[roles.stager]
scopes = ["deploy.plan", "deploy.approve.staging"]

[users.U0ALICE]
roles = ["deployer"]

[users.U0BOB]
roles = ["approver"]

[users.U0CAROL]
roles = ["approver", "deployer"]

[users.U0DAVE]
roles = ["stager"]

[services.shop]
repo = "acme/shop"
workflow = "deploy.yml"
environments = ["staging", "prod"]
baseline = "v1.0"

[services.shop.prod]
approvals = 1

[services.vault]
repo = "acme/shop"
workflow = "deploy.yml"
environments = ["prod"]

[services.vault.prod]
approvals = 1
freeze = ["{start} 00:00-{end} 00:00 UTC"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The deploy test policy."""
    path = tmp_path / "policy.toml"
    path.write_text(policy_text())
    return path


@pytest.fixture
def ci() -> Iterator[CIStandIn]:
    """The GitHub stand-in with acme/shop (v1.0, v1.1 = main); runs succeed on their second poll."""
    server = CIStandIn(token=GH_TOKEN).start()
    server.shas = seed_demo(server, outcomes=("success",))
    yield server
    server.stop()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Per-test settings changes (override by parametrizing ``settings_overrides``)."""
    return {}


@pytest.fixture
def settings(settings, ci: CIStandIn, settings_overrides: dict[str, Any]):
    """The core test settings plus the deploy section pointing at the CI stand-in."""
    values = {
        "clawback_github_api_url": ci.url,
        "clawback_github_token": GH_TOKEN,
        "clawback_deploy_http_timeout": 2.0,
        "clawback_deploy_poll_seconds": 0.0,
        "clawback_deploy_max_polls": 5,
        **settings_overrides,
    }
    return settings.model_copy(update=values)


@pytest.fixture
def deps(deps, llm):
    """Worker deps with deploy clients that never really sleep, and the deterministic plan responder."""
    from workers.deploy import build_clients

    deps.extras["deploy_clients"] = build_clients(deps.settings, sleep=lambda seconds: None)
    register_responder(llm)
    return deps


# ---- helpers -----------------------------------------------------------------------------------------------


def tasks(deps, intent: str | None = None) -> list[Task]:
    """Tasks (of one intent), oldest first."""
    with deps.db.session() as s:
        stmt = select(Task).order_by(Task.created_at)
        if intent:
            stmt = stmt.where(Task.intent == intent)
        return list(s.execute(stmt).scalars())


def requests(deps) -> list[DeployRequest]:
    """Deploy requests, oldest first."""
    with deps.db.session() as s:
        return list(s.execute(select(DeployRequest).order_by(DeployRequest.created_at)).scalars())


def audit_rows(deps, action_prefix: str) -> list[AuditEntry]:
    """Audit entries whose action starts with ``action_prefix``."""
    with deps.db.session() as s:
        rows = s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
        return [r for r in rows if r.action.startswith(action_prefix)]


def outcomes(deps) -> list[Outcome]:
    """All outcomes, oldest first."""
    with deps.db.session() as s:
        return list(s.execute(select(Outcome).order_by(Outcome.id)).scalars())


def ephemerals(slack, user: str) -> list[str]:
    """Texts of ephemeral messages shown to ``user``."""
    return [c["text"] for c in slack.calls("chat.postEphemeral") if c.get("user") == user]


def thread_texts(slack, channel: str, thread_ts: str) -> list[str]:
    """Texts of the bot's replies in a thread (not the parent)."""
    return [m.text for m in slack.thread(channel, thread_ts) if m.ts != thread_ts and not m.ephemeral_to]
