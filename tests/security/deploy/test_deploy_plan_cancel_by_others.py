"""Attack (issue 11, item 14, deploy part): cancelling someone else's plan, or a plan already requested.

Before the fix, any holder of ``deploy.request`` could press *Cancel* on another person's plan, even after it had
been requested and deployed, which recorded a ``deploy_plan_cancelled`` outcome on that person's task and
rewrote what their plan came to. Now only the plan's requester may cancel it, and only while no deploy has been
requested from it; every refusal is audited and explained privately to the clicker; nothing is recorded.
"""

from __future__ import annotations

from bot import ledger
from tests.deploy.conftest import audit_rows, ephemerals, outcomes, requests
from tests.deploy.test_deploy_flow import click, plan


def test_another_deployer_cannot_cancel_my_plan(slack, llm, ci, sender, deps):
    """Carol may request deploys, but Alice's plan is Alice's: refused, audited, Alice's task untouched."""
    _, plan_task = plan(sender, deps, text="plan shop main prod")
    click(sender, deps, "U0CAROL", "deploy_cancel_plan", plan_task.id)
    assert outcomes(deps) == [] and slack.calls("chat.update") == []
    assert not (ledger.get_task(deps.db, plan_task.id).result or {}).get("cancelled_by")
    assert any("Only the person who asked for this plan" in t for t in ephemerals(slack, "U0CAROL"))
    (denied,) = audit_rows(deps, "deploy.plan_cancel")
    assert (denied.actor, denied.decision) == ("U0CAROL", "deny")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)  # the plan still works for Alice
    assert [r.status for r in requests(deps)] == ["pending"]


def test_a_requested_plan_cannot_be_cancelled_and_its_outcome_stays(slack, llm, ci, sender, deps):
    """After a deploy was requested (and succeeded) from a plan, Cancel is refused, even for its requester."""
    _, plan_task = plan(sender, deps, text="plan shop v1.1 staging")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    assert [r.status for r in requests(deps)] == ["succeeded"]
    before = [(o.task_id, o.kind) for o in outcomes(deps)]
    assert (plan_task.id, "deploy_succeeded") in before
    for user in ("U0ALICE", "U0CAROL"):
        click(sender, deps, user, "deploy_cancel_plan", plan_task.id)
    assert [(o.task_id, o.kind) for o in outcomes(deps)] == before
    assert not (ledger.get_task(deps.db, plan_task.id).result or {}).get("cancelled_by")
    assert any("already been requested" in t for t in ephemerals(slack, "U0ALICE"))
    assert [a.decision for a in audit_rows(deps, "deploy.plan_cancel")] == ["deny", "deny"]
