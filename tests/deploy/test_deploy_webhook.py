"""A service deployed through the signed generic webhook instead of GitHub Actions."""

from __future__ import annotations

import pytest

from bot.deploy import service
from tests.deploy.conftest import outcomes, policy_text, requests
from tests.deploy.test_deploy_flow import click, plan
from tests.deploy.test_executors import SECRET, _Receiver

SECRET_ENV = "CLAWBACK_TEST_HOOK_SECRET"


@pytest.fixture
def receiver():
    """A webhook receiver that checks Clawback's signatures."""
    server = _Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def policy_file(tmp_path, receiver):
    """The deploy test policy plus a webhook-deployed service."""
    path = tmp_path / "policy.toml"
    path.write_text(
        policy_text()
        + f"""
[services.hooked]
repo = "acme/shop"
environments = ["prod"]
executor = "webhook"
webhook_url = "{receiver.url}/deploy"
webhook_secret_env = "{SECRET_ENV}"

[services.hooked.prod]
approvals = 1
"""
    )
    return path


def test_webhook_deploy_is_signed_approved_and_followed(slack, llm, ci, sender, deps, receiver, monkeypatch):
    """Approved once, the receiver gets one signed request for the exact sha; the success is recorded."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    _, plan_task = plan(sender, deps, text="plan hooked v1.1 prod")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    click(sender, deps, "U0BOB", "deploy_approve", request.id)
    (post,) = receiver.requests
    assert post.json()["sha"] == ci.shas["v1.1"] and post.json()["request_id"] == request.id
    assert post.json()["params_hash"] == request.params_hash and receiver.rejected == 0
    assert "ref" not in post.json()  # the exact sha, never a branch for the receiver to resolve
    assert service.get_request(deps.db, request.id).status == "succeeded"
    assert {o.kind for o in outcomes(deps)} == {"deploy_succeeded"}
    assert ci.dispatches == []


def test_webhook_without_its_secret_refuses_to_deploy(slack, llm, ci, sender, deps, receiver, monkeypatch):
    """With the secret variable unset the deploy is refused with a configuration message; nothing is sent."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    _, plan_task = plan(sender, deps, text="plan hooked v1.1 prod")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    click(sender, deps, "U0BOB", "deploy_approve", requests(deps)[0].id)
    request = requests(deps)[0]
    assert request.status == "refused" and SECRET_ENV in request.status_reason
    assert receiver.requests == []
