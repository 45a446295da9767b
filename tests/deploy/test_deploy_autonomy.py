"""Deploys are never autonomous: with an ``[autonomy]`` policy granting ``auto`` everywhere it may, /deploy still
waits for every human click (the request, then the approval), and no level can be set or asked for a deploy."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot import autonomy
from bot.ops.cli import app
from bot.policy import NEVER_AUTONOMOUS
from tests.conftest import drain
from tests.deploy.conftest import policy_text, requests, tasks

CH = "C0DEPLOYS"
AUTONOMY = """
[autonomy]
default = "auto"

[autonomy.actions."chat.reply.channel"]
start = "auto"
max = "auto"

[autonomy.actions."mail.move"]
start = "auto"
max = "auto"
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The deploy test policy with an [autonomy] section that puts everything it governs at auto."""
    path = tmp_path / "policy.toml"
    path.write_text(policy_text() + AUTONOMY)
    return path


def click(sender, deps, user: str, action_id: str, value: str, message_ts: str = "1.0") -> None:
    assert sender.block_action(user, action_id, value, channel=CH, message_ts=message_ts).status == 200
    drain(deps)


def test_every_deploy_click_is_still_required(slack, llm, ci, sender, deps, policy_file):
    """plan: nothing requested; request click: nothing dispatched; only Bob's approval dispatches."""
    assert CliRunner().invoke(app, ["policy", "check", str(policy_file)]).exit_code == 0
    sender.command("U0ALICE", "/deploy", "plan shop main prod", channel=CH)
    drain(deps)
    (plan_task,) = tasks(deps, "deploy_plan")
    assert requests(deps) == [] and ci.dispatches == []
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id, plan_task.result["plan_ts"])
    (request,) = requests(deps)
    assert request.status == "pending" and ci.dispatches == []
    click(sender, deps, "U0BOB", "deploy_approve", request.id)
    (dispatch,) = ci.dispatches
    assert dispatch["sha"] == ci.shas["main"] and requests(deps)[0].status == "succeeded"


def test_no_level_exists_for_a_deploy(deps):
    """Asking or setting a deploy's level is refused whatever the policy says."""
    pol = deps.policy.current
    for action in ("deploy.request", "deploy.approve.prod", "deploy.plan"):
        with pytest.raises(ValueError, match=NEVER_AUTONOMOUS):
            autonomy.level_for(deps.db, pol, "U0ALICE", action)
        with pytest.raises(ValueError, match=NEVER_AUTONOMOUS):
            autonomy.set_level(
                deps.db, pol, user="U0ALICE", action=action, category=None, level="auto", actor="U0ADMIN"
            )


def test_policy_check_refuses_a_deploy_action(tmp_path: Path):
    """`policy check` names the line of a deploy under [autonomy.actions] and refuses the file."""
    path = tmp_path / "policy.toml"
    path.write_text(policy_text() + AUTONOMY + '\n[autonomy.actions."deploy.request"]\nstart = "auto"\n')
    out = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert out.exit_code == 1 and "deploys are never autonomous" in out.output
