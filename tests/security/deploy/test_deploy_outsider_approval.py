"""Attack (issue 11, item 15, the deploy clicks): a guest from another organisation approves a deploy.

Approve/Reject clicks are checked in the worker, which runs in another process than the web listener. Before the
fix the click job carried only the clicker's user id, so the worker never learned that the clicker belongs to
another organisation and gave them the *default* roles: where the defaults may approve staging, a Slack Connect
guest in the shared channel approved a deploy. Now the clicker's team travels with the job and the worker binds it
before deciding: the guest holds only what ``[teams.T…]`` gives their team (nothing here), so the approval is
refused, audited, and the deploy waits for one of ours.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import drain
from tests.deploy.conftest import audit_rows, ephemerals, policy_text, requests
from tests.deploy.test_deploy_flow import CH, plan


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The deploy policy where everyone of ours may approve staging, and staging needs one approval."""
    text = policy_text().replace('[defaults]\nroles = ["member"]', '[defaults]\nroles = ["member", "stager"]')
    text += "\n[services.shop.staging]\napprovals = 1\n"
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_guest_from_another_team_cannot_approve(slack, llm, ci, sender, deps):
    """U0GUEST of team T0OTHER clicks Approve on Alice's staging request: refused; Erin (ours, default roles)
    may approve it."""
    _, plan_task = plan(sender, deps, text="plan shop v1.1 staging")
    sender.block_action("U0ALICE", "deploy_request", plan_task.id, channel=CH, message_ts="1.0")
    drain(deps)
    (request,) = requests(deps)
    assert request.status == "pending"
    reply = sender.block_action(
        "U0GUEST", "deploy_approve", request.id, channel=CH, message_ts="1.0", user_team="T0OTHER"
    )
    assert reply.status == 200
    drain(deps)
    assert [r.status for r in requests(deps)] == ["pending"]  # nothing approved, nothing dispatched
    assert not any(r.path.endswith("/dispatches") for r in ci.requests)
    denied = [a for a in audit_rows(deps, "deploy.approve") if a.actor == "U0GUEST"]
    assert denied and all(a.decision == "deny" for a in denied)
    assert ephemerals(slack, "U0GUEST")  # told privately
    sender.block_action("U0ERIN", "deploy_approve", request.id, channel=CH, message_ts="1.0")
    drain(deps)
    assert requests(deps)[0].status != "pending"  # one of ours (default roles) approved it
