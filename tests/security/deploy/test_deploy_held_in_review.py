"""What held in the black-box review of issue 11, kept under test: ``/deploy cancel`` by others, a rollback during
a change freeze, and ``/deploy`` in a channel whose rule forbids it are all refused, and nothing is dispatched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.db import utcnow
from bot.deploy import service
from bot.deploy.models import DeployHistory
from tests.conftest import drain
from tests.deploy.conftest import ephemerals, policy_text, requests, tasks
from tests.deploy.test_deploy_failures import approved_prod_deploy
from tests.deploy.test_deploy_flow import CH, click


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The deploy policy, and a channel where the bot may do nothing."""
    path = tmp_path / "policy.toml"
    path.write_text(policy_text() + '\n[channels.C0RANDOM]\nallow = []\n\n[channels."*"]\nallow = ["*"]\n')
    return path


@pytest.mark.parametrize("settings_overrides", [{"clawback_deploy_poll_seconds": 60.0}])
def test_cancel_by_someone_neither_requester_nor_approver_is_refused(slack, llm, ci, sender, deps):
    """Dave may plan and approve staging, but Alice's prod deploy is not his to cancel: refused, still running."""
    ci.script_runs(["never"])
    _, request_id = approved_prod_deploy(sender, deps, drain_wait=0.5)
    assert service.get_request(deps.db, request_id).status == "running"
    sender.command("U0DAVE", "/deploy", f"cancel {request_id}", channel=CH)
    drain(deps, max_wait=0.5)
    assert service.get_request(deps.db, request_id).status == "running"
    assert not any(r.path.endswith("/cancel") for r in ci.requests)
    assert [t.status for t in tasks(deps, "deploy_cancel")] == ["denied"]


def test_rollback_during_a_freeze_is_refused(slack, llm, ci, sender, deps):
    """vault/prod is frozen: a rollback may be planned and requested, but even approved it is refused at execution
    and nothing is dispatched."""
    with deps.db.session() as s:
        for days, ref in ((3, "v1.0"), (1, "main")):
            s.add(
                DeployHistory(
                    service="vault",
                    environment="prod",
                    sha=ci.shas[ref],
                    kind="deploy",
                    deployed_at=utcnow() - timedelta(days=days),
                )
            )
    sender.command("U0ALICE", "/deploy", "rollback vault prod", channel=CH)
    drain(deps)
    (rollback_task,) = tasks(deps, "deploy_rollback")
    assert rollback_task.result["sha"] == ci.shas["v1.0"]
    click(sender, deps, "U0ALICE", "deploy_request", rollback_task.id)
    (request,) = requests(deps)
    click(sender, deps, "U0BOB", "deploy_approve", request.id)  # approved, but the freeze holds at execution
    assert [r.status for r in requests(deps)] == ["refused"]
    assert "freeze" in requests(deps)[0].status_reason
    assert ci.dispatches == []
    assert any("freeze" in t for t in ephemerals(slack, "U0ALICE"))


def test_deploy_in_a_forbidden_channel_is_refused_in_the_ack(slack, llm, ci, sender, deps):
    """`/deploy plan` in #random (allow = []) is refused in the ack: no plan, no model call, no GitHub call."""
    reply = sender.command("U0ALICE", "/deploy", "plan shop main prod", channel="C0RANDOM")
    assert reply.status == 200 and "channel" in reply.body.decode()
    drain(deps)
    assert [t.status for t in tasks(deps, "deploy_plan")] in ([], ["denied"])
    assert llm.completions() == [] and ci.requests == []
