"""Transcripts: /deploy over real HTTP → RQ → GitHub stand-in → Slack stand-in, on real Redis and SQL."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from bot.db import Action, LLMCall
from bot.deploy import service
from bot.deploy.models import DeployApproval, DeployLock, DeployRequest
from tests.conftest import drain
from tests.deploy.conftest import audit_rows, ephemerals, outcomes, requests, tasks, thread_texts

CH = "C0DEPLOYS"


def plan(sender, deps, user="U0ALICE", text="plan shop main prod"):
    """Send ``/deploy plan`` and run the worker; returns (ack reply, plan task)."""
    reply = sender.command(user, "/deploy", text, channel=CH)
    drain(deps)
    return reply, tasks(deps)[-1]


def click(sender, deps, user, action_id, value, message_ts="1.0"):
    """Click a deploy button and run the worker."""
    reply = sender.block_action(user, action_id, value, channel=CH, message_ts=message_ts)
    assert reply.status == 200
    drain(deps)


def test_plan_request_four_eyes_dispatch_and_success(slack, llm, ci, sender, deps):
    """plan → request → self-approval refused → Bob approves → one dispatch of the exact sha → success."""
    sha = ci.shas["main"]
    reply = sender.command("U0ALICE", "/deploy", "plan shop main prod", channel=CH)
    assert reply.status == 200 and "Planning `shop` at `main`" in reply.body.decode()
    assert llm.completions() == [] and ci.requests == []  # nothing slow before the ack
    drain(deps)
    (plan_task,) = tasks(deps, "deploy_plan")
    assert plan_task.status == "done" and plan_task.surface == "command" and plan_task.requester == "U0ALICE"
    (post,) = slack.calls("chat.postMessage")
    body = json.dumps(post["blocks"])
    assert post["channel"] == CH and "Request deploy" in body and sha[:12] in body
    assert "Risk: high" in body and "migrations/0007_discounts.sql" in body and "Discount codes" in body
    with deps.db.session() as s:
        (call,) = s.execute(select(LLMCall)).scalars()
    assert call.task_id == plan_task.id and call.prompt_name == "deploy_plan" and call.total_tokens > 0
    assert llm.completions()[0]["response_format"]["json_schema"]["name"] == "deploy_plan"
    assert "tools" not in llm.completions()[0]

    plan_ts = plan_task.result["plan_ts"]
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id, plan_ts)
    (request,) = requests(deps)
    assert (request.status, request.sha, request.requester, request.ref) == (
        "pending",
        sha,
        "U0ALICE",
        "main",
    )
    assert request.params_hash == service.params_hash("shop", "prod", sha, "U0ALICE")
    approval_text = thread_texts(slack, CH, plan_ts)[-1]
    assert request.id in approval_text and "<@U0BOB>" in approval_text and "<@U0ALICE>" in approval_text

    click(sender, deps, "U0ALICE", "deploy_approve", request.id)  # the requester approves herself
    assert any("can't approve or reject your own" in t for t in ephemerals(slack, "U0ALICE"))
    assert ci.dispatches == [] and requests(deps)[0].status == "pending"
    (denied,) = [a for a in audit_rows(deps, "deploy.approve") if a.decision == "deny"]
    assert denied.actor == "U0ALICE" and "own request" in denied.details

    click(sender, deps, "U0BOB", "deploy_approve", request.id)
    click(sender, deps, "U0BOB", "deploy_approve", request.id)  # a double click changes nothing
    (dispatch,) = ci.dispatches
    # Dispatched on a ref pinned to the approved sha, not on main (changed for issue 11, item 2).
    assert dispatch["ref"] == f"refs/heads/clawback/deploy-{request.id}" and dispatch["sha"] == sha
    assert dispatch["inputs"] == {"environment": "prod", "sha": sha, "request_id": request.id}
    request = requests(deps)[0]
    assert request.status == "succeeded" and request.run_url.endswith(str(dispatch["run_id"]))
    (execute_task,) = tasks(deps, "deploy_execute")
    assert execute_task.status == "done" and execute_task.requester == "U0ALICE"
    assert execute_task.payload["approved_by"] == ["U0BOB"]
    kinds = {(o.task_id, o.kind, o.source) for o in outcomes(deps)}
    assert kinds == {
        (execute_task.id, "deploy_succeeded", "system"),
        (plan_task.id, "deploy_succeeded", "system"),
    }
    texts = thread_texts(slack, CH, plan_ts)
    assert any("Approved by <@U0BOB>" in t for t in texts)
    assert any("started" in t for t in texts) and any("in progress" in t for t in texts)
    assert any("succeeded" in t and sha[:12] in t for t in texts)
    assert service.deployed(deps.db, "shop", "prod").sha == sha
    with deps.db.session() as s:
        assert s.execute(select(DeployLock)).scalars().all() == []
        (trigger,) = s.execute(select(Action).where(Action.kind == "deploy.trigger")).scalars()
    assert trigger.status == "done"
    assert [a.decision for a in audit_rows(deps, "deploy.trigger")] == ["allow"]
    assert audit_rows(deps, "deploy.result.succeeded")
    update_calls = [c for c in slack.calls("chat.update") if "Approved by" in c.get("text", "")]
    assert update_calls and "deploy_approve" not in json.dumps(update_calls[-1].get("blocks"))


def test_staging_without_approvals_deploys_on_the_request_click(slack, llm, ci, sender, deps):
    """An environment needing no approval deploys on the requester's click, once, even when clicked twice."""
    _, plan_task = plan(sender, deps, text="plan shop v1.1 staging")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (dispatch,) = ci.dispatches
    assert dispatch["ref"].startswith("refs/heads/clawback/deploy-") and dispatch["sha"] == ci.shas["v1.1"]
    assert dispatch["inputs"]["environment"] == "staging"
    assert [r.status for r in requests(deps)] == ["succeeded"]


def test_unknown_service_and_environment_are_explained(slack, llm, ci, sender, deps):
    """Unknown service or environment: the requester is told which exist; the task fails; nothing is asked."""
    plan(sender, deps, text="plan nope main prod")
    plan(sender, deps, text="plan shop main moon")
    texts = ephemerals(slack, "U0ALICE")
    assert any("don't know the service `nope`" in t and "`shop`" in t for t in texts)
    assert any("no environment `moon`" in t and "`staging`" in t for t in texts)
    assert [t.status for t in tasks(deps)] == ["failed", "failed"]
    assert len(audit_rows(deps, "worker.deploy_plan.failed")) == 2
    assert llm.completions() == [] and ci.dispatches == []


def test_unknown_ref_is_explained(slack, llm, ci, sender, deps):
    """A ref that does not exist: a clear message, a failed task, no model call."""
    plan(sender, deps, text="plan shop no-such-branch prod")
    assert any("`no-such-branch` is not a branch, tag or commit" in t for t in ephemerals(slack, "U0ALICE"))
    (task,) = tasks(deps)
    assert task.status == "failed" and "ref not found" in task.status_reason
    assert llm.completions() == []


def test_freeze_window_refuses_the_request(slack, llm, ci, sender, deps):
    """During a change freeze the plan warns, the request is refused and audited, nothing is dispatched."""
    _, plan_task = plan(sender, deps, text="plan vault main prod")
    assert "change freeze" in json.dumps(slack.calls("chat.postMessage")[0]["blocks"])
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request_task,) = tasks(deps, "deploy_request")
    assert request_task.status == "denied" and "change freeze" in request_task.status_reason
    assert any("change freeze" in t for t in ephemerals(slack, "U0ALICE"))
    assert requests(deps) == [] and ci.dispatches == []
    assert [a.decision for a in audit_rows(deps, "worker.deploy_request")] == ["deny"]


def test_approval_after_expiry_is_refused(slack, llm, ci, sender, deps):
    """An approval after the request's window is refused; the request expires; nothing is dispatched."""
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    with deps.db.session() as s:  # an hour and more passes
        s.execute(update(DeployRequest).values(expires_at=request.created_at))
    click(sender, deps, "U0BOB", "deploy_approve", request.id)
    assert any("expired before it was approved" in t for t in ephemerals(slack, "U0BOB"))
    assert requests(deps)[0].status == "expired" and ci.dispatches == []
    assert "request expired" in audit_rows(deps, "deploy.approve")[-1].details


def test_expired_approval_does_not_count_at_execution(slack, llm, ci, sender, deps):
    """An approval past its own TTL is not counted when the deploy would start: the execution is refused."""
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    with deps.db.session() as s:
        s.add(
            DeployApproval(
                request_id=request.id,
                approver="U0BOB",
                decision="approve",
                params_hash=request.params_hash,
                created_at=request.created_at,
                expires_at=request.created_at,
            )
        )
        s.execute(update(DeployRequest).values(status="executing"))
    from workers.deploy.request import _submit_execution

    _submit_execution(deps, requests(deps)[0], approved_by=["U0BOB"])
    drain(deps)
    assert requests(deps)[0].status == "refused" and ci.dispatches == []
    (execute_task,) = tasks(deps, "deploy_execute")
    assert execute_task.status == "denied" and "0 valid approval(s) of 1" in execute_task.status_reason


def test_changed_request_is_never_executed(slack, llm, ci, sender, deps):
    """If a request's sha changes after approval, its params hash no longer matches: refused, no dispatch."""
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    with deps.db.session() as s:
        s.execute(update(DeployRequest).values(sha=ci.shas["v1.0"]))
    click(sender, deps, "U0BOB", "deploy_approve", request.id)
    assert any("parameters changed" in t for t in ephemerals(slack, "U0BOB"))
    assert requests(deps)[0].status == "refused" and ci.dispatches == []


def test_approval_without_the_scope_is_refused(slack, llm, ci, sender, deps):
    """Dave (staging approver only) and Emma (no deploy scopes) cannot approve prod."""
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    click(sender, deps, "U0DAVE", "deploy_approve", request.id)
    click(sender, deps, "U0EMMA", "deploy_reject", request.id)
    assert any("deploy.approve.prod" in t for t in ephemerals(slack, "U0DAVE"))
    assert any("deploy.approve.prod" in t for t in ephemerals(slack, "U0EMMA"))
    assert requests(deps)[0].status == "pending" and ci.dispatches == []
    denials = [a for a in audit_rows(deps, "deploy.") if a.decision == "deny"]
    assert {a.actor for a in denials} == {"U0DAVE", "U0EMMA"}


def test_reject_closes_the_request(slack, llm, ci, sender, deps):
    """A rejection by an approver ends the request; a later approval changes nothing."""
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    click(sender, deps, "U0BOB", "deploy_reject", request.id)
    click(sender, deps, "U0CAROL", "deploy_approve", request.id)
    assert requests(deps)[0].status == "rejected" and ci.dispatches == []
    assert any("already rejected" in t for t in ephemerals(slack, "U0CAROL"))


def test_request_without_scope_is_denied(slack, llm, ci, sender, deps):
    """Someone without deploy.request clicking *Request deploy* is told so; no request exists."""
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0EMMA", "deploy_request", plan_task.id)
    assert any("deploy.request" in t for t in ephemerals(slack, "U0EMMA"))
    assert requests(deps) == []


def test_command_without_scope_is_denied_in_the_ack(slack, llm, ci, sender, deps):
    """/deploy plan from someone without deploy.plan is refused in the ack itself and recorded."""
    reply = sender.command("U0EMMA", "/deploy", "plan shop main prod", channel=CH)
    assert "deploy.plan" in reply.body.decode()
    drain(deps)
    (task,) = tasks(deps)
    assert task.status == "denied" and llm.completions() == []


def test_help_and_bad_syntax_answer_in_the_ack(slack, sender, deps):
    """help, unknown sub-commands and bad arguments are answered at once and create no task."""
    assert "/deploy plan <service> <ref> [env]" in sender.command("U0ALICE", "/deploy", "help").body.decode()
    assert (
        "don't know `/deploy launch`" in sender.command("U0ALICE", "/deploy", "launch rockets").body.decode()
    )
    assert "Usage" in sender.command("U0ALICE", "/deploy", "plan shop").body.decode()
    assert tasks(deps) == []


def test_plan_cancel_button_closes_the_plan(slack, llm, ci, sender, deps):
    """Cancel on a plan removes its buttons, records the outcome, and a later request is refused."""
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0ALICE", "deploy_cancel_plan", plan_task.id)
    assert [(o.kind, o.source) for o in outcomes(deps)] == [("deploy_plan_cancelled", "explicit")]
    (update_call,) = slack.calls("chat.update")
    assert "Plan cancelled by <@U0ALICE>" in update_call["text"]
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    assert requests(deps) == [] and any("can't be requested" in t for t in ephemerals(slack, "U0ALICE"))
