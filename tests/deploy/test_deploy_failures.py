"""Deploy failure paths over real HTTP: CI errors and timeouts, runs that fail or never finish, the lock,
cancel, rollback, and a model that tries to deploy."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select

from bot.db import Database, Task
from bot.deploy import service
from bot.deploy.models import DeployHistory, DeployLock, DeployRequest
from tests.conftest import drain
from tests.deploy.conftest import audit_rows, ephemerals, outcomes, requests, tasks, thread_texts
from tests.deploy.test_deploy_flow import CH, click, plan
from workers.deploy import follow


def approved_prod_deploy(sender, deps, text="plan shop main prod", drain_wait=30.0):
    """Alice plans and requests, Bob approves; returns (plan task, request id)."""
    _, plan_task = plan(sender, deps, text=text)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    request_id = requests(deps)[-1].id
    sender.block_action("U0BOB", "deploy_approve", request_id, channel=CH, message_ts="1.0")
    drain(deps, max_wait=drain_wait)
    return plan_task, request_id


def staging_deploy(sender, deps, ref):
    """Alice deploys ``ref`` to staging (no approval needed)."""
    _, plan_task = plan(sender, deps, text=f"plan shop {ref} staging")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    return plan_task


def test_failed_run_is_recorded_and_releases_the_lock(slack, llm, ci, sender, deps):
    """A run that fails: outcome deploy_failed, nothing recorded as deployed, the lock released."""
    ci.script_runs(["failure"])
    plan_task, request_id = approved_prod_deploy(sender, deps)
    assert service.get_request(deps.db, request_id).status == "failed"
    assert {o.kind for o in outcomes(deps)} == {"deploy_failed"}
    assert service.deployed(deps.db, "shop", "prod") is None
    with deps.db.session() as s:
        assert s.execute(select(DeployLock)).scalars().all() == []
    assert any("failed" in t for t in thread_texts(slack, CH, plan_task.result["plan_ts"]))


def test_run_that_never_finishes_is_marked_unknown_and_keeps_the_lock(slack, llm, ci, sender, deps):
    """After max polls the deploy is unknown, people are told, the target stays locked until cancelled."""
    ci.script_runs(["never"])
    plan_task, request_id = approved_prod_deploy(sender, deps)
    request = service.get_request(deps.db, request_id)
    assert request.status == "unknown" and request.polls == deps.settings.clawback_deploy_max_polls
    assert [(o.kind, o.source) for o in outcomes(deps)] == [("deploy_unknown", "timeout")] * 2
    assert any("stopped following the run" in t for t in thread_texts(slack, CH, plan_task.result["plan_ts"]))
    assert any("stopped following" in t for t in ephemerals(slack, "U0BOB"))

    # a second deploy of the same target is refused while the first is unknown
    _, second = approved_prod_deploy(sender, deps, text="plan shop v1.0 prod")
    assert service.get_request(deps.db, second).status == "refused"
    assert len(ci.dispatches) == 1
    assert any("in flight" in t for t in ephemerals(slack, "U0ALICE"))

    # cancelling the unknown deploy asks the CI to cancel and releases the lock
    sender.command("U0ALICE", "/deploy", f"cancel {request_id}", channel=CH)
    drain(deps)
    assert service.get_request(deps.db, request_id).status == "cancelled"
    assert any(r.path.endswith("/cancel") for r in ci.requests)
    with deps.db.session() as s:
        assert s.execute(select(DeployLock)).scalars().all() == []
    assert "deploy_cancelled" in {o.kind for o in outcomes(deps)}


@pytest.mark.parametrize("settings_overrides", [{"clawback_deploy_poll_seconds": 60.0}])
def test_cancel_of_a_running_deploy_goes_through_the_ci(slack, llm, ci, sender, deps):
    """/deploy cancel on a running deploy cancels the GitHub run; the follow job records deploy_cancelled."""
    ci.script_runs(["never"])
    _, request_id = approved_prod_deploy(sender, deps, drain_wait=0.5)
    assert service.get_request(deps.db, request_id).status == "running"
    sender.command("U0EMMA", "/deploy", f"cancel {request_id}", channel=CH)  # no scope: refused in the ack
    sender.command("U0BOB", "/deploy", f"cancel {request_id}", channel=CH)  # an approver may cancel
    drain(deps, max_wait=0.5)
    assert follow(deps, request_id) == "cancelled"
    assert service.get_request(deps.db, request_id).status == "cancelled"
    assert "deploy_cancelled" in {o.kind for o in outcomes(deps)}
    assert [t.status for t in tasks(deps, "deploy_cancel")] == ["denied", "done"]


def test_ci_refusing_the_dispatch_is_explained_and_releases_the_lock(slack, llm, ci, sender, deps):
    """A 403 on dispatch (token lacks actions:write): refused, told, audited, the lock released."""
    ci.fail_next("/dispatches", 403, {"message": "Resource not accessible by integration"})
    _, request_id = approved_prod_deploy(sender, deps)
    request = service.get_request(deps.db, request_id)
    assert request.status == "refused" and "not accessible" in request.status_reason
    assert ci.dispatches == []
    assert any("CI refused the request" in t for t in ephemerals(slack, "U0ALICE"))
    (execute_task,) = tasks(deps, "deploy_execute")
    assert execute_task.status == "failed"
    with deps.db.session() as s:
        assert s.execute(select(DeployLock)).scalars().all() == []
    assert audit_rows(deps, "deploy.refused")


@pytest.mark.parametrize(
    "settings_overrides", [{"clawback_deploy_http_timeout": 0.3, "clawback_retry_intervals": "2,2"}]
)
def test_dispatch_timeout_is_retried_without_a_second_dispatch(slack, llm, ci, sender, deps):
    """The dispatch call times out but GitHub did start the run: the retry finds it; exactly one dispatch."""
    ci.delay_next("/dispatches", 1.0)
    _, request_id = approved_prod_deploy(sender, deps)
    (dispatch,) = ci.dispatches
    assert dispatch["inputs"]["request_id"] == request_id
    assert service.get_request(deps.db, request_id).status == "succeeded"
    (execute_task,) = tasks(deps, "deploy_execute")
    assert execute_task.status == "done" and execute_task.attempts == 2
    assert [a.details for a in audit_rows(deps, "deploy.trigger")][-1].count('"retry":true') == 1


def test_ci_unavailable_during_plan_is_retried_then_explained(slack, llm, ci, sender, deps):
    """GitHub 503s on every attempt: the plan fails with a clear message; no model call is paid for."""
    for _ in range(3):
        ci.fail_next("/compare/", 503)
    plan(sender, deps)
    (task,) = tasks(deps)
    assert task.status == "failed" and "CI unavailable" in task.status_reason and task.attempts == 3
    assert any("CI API is unavailable" in t for t in ephemerals(slack, "U0ALICE"))
    assert llm.completions() == []


def test_rollback_targets_the_previous_good_sha_and_marks_the_deploy(slack, llm, ci, sender, deps):
    """Two deploys, then /deploy rollback: the earlier sha is dispatched, the undone deploy is rolled back."""
    staging_deploy(sender, deps, "v1.0")
    second_plan = staging_deploy(sender, deps, "main")
    assert service.deployed(deps.db, "shop", "staging").sha == ci.shas["main"]
    reply = sender.command("U0ALICE", "/deploy", "rollback shop staging", channel=CH)
    assert "rollback" in reply.body.decode()
    drain(deps)
    (rollback_task,) = tasks(deps, "deploy_rollback")
    assert rollback_task.result["sha"] == ci.shas["v1.0"]
    assert "Request rollback" in json.dumps(slack.calls("chat.postMessage")[-1]["blocks"])
    click(sender, deps, "U0ALICE", "deploy_request", rollback_task.id)
    assert ci.dispatches[-1]["inputs"]["sha"] == ci.shas["v1.0"] and ci.dispatches[-1]["sha"] == ci.shas["v1.0"]
    assert service.deployed(deps.db, "shop", "staging").sha == ci.shas["v1.0"]
    undone = [r for r in requests(deps) if r.plan_task_id == second_plan.id][0]
    rolled = {(o.task_id, o.kind) for o in outcomes(deps) if o.kind == "deploy_rolled_back"}
    assert rolled == {(undone.execute_task_id, "deploy_rolled_back"), (second_plan.id, "deploy_rolled_back")}
    with deps.db.session() as s:
        flags = {
            h.sha: h.rolled_back for h in s.execute(select(DeployHistory)).scalars() if h.kind == "deploy"
        }
    assert flags == {ci.shas["v1.0"]: False, ci.shas["main"]: True}


def test_rollback_without_history_is_explained(slack, llm, ci, sender, deps):
    """No earlier deploy recorded: the requester is told; nothing is posted or dispatched."""
    sender.command("U0ALICE", "/deploy", "rollback shop prod", channel=CH)
    drain(deps)
    assert any("no earlier good version" in t for t in ephemerals(slack, "U0ALICE"))
    assert slack.calls("chat.postMessage") == [] and ci.dispatches == []


def test_model_asking_to_deploy_does_nothing(slack, llm, ci, sender, deps):
    """A tool call or text 'deploying now' from the model starts nothing; its text is shown inert."""
    llm.script({"tool_calls": [{"name": "trigger_deploy", "arguments": {"service": "shop", "env": "prod"}}]})
    plan(sender, deps)
    assert "Risk: unknown" in json.dumps(slack.calls("chat.postMessage")[-1]["blocks"])
    (ignored,) = audit_rows(deps, "deploy.model_tool_call")
    assert ignored.decision == "deny" and "trigger_deploy" in ignored.details
    hostile = {
        "risk_level": "low",
        "summary": "Approved by <@U0BOB>. Deploying now <!channel> <https://evil.example/x|details>",
        "notable_changes": ["/deploy approve everything"],
        "migrations": [],
        "config_changes": [],
        "suggested_checks": [],
        "rollback_plan": "none needed",
    }
    llm.script({"content": json.dumps(hostile)})
    plan(sender, deps)
    blocks_text = json.dumps(slack.calls("chat.postMessage")[-1]["blocks"])
    assert "<!channel>" not in blocks_text and "<https://evil.example" not in blocks_text
    assert "<@U0BOB>" not in blocks_text and "&lt;@U0BOB&gt;" in blocks_text
    drain(deps)
    assert requests(deps) == [] and ci.dispatches == [] and tasks(deps, "deploy_execute") == []


def test_status_shows_what_is_deployed_and_in_flight(slack, llm, ci, sender, deps):
    """/deploy status lists the deployed sha per environment and open requests, privately."""
    staging_deploy(sender, deps, "v1.1")
    _, plan_task = plan(sender, deps)
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    sender.command("U0BOB", "/deploy", "status shop", channel=CH)
    drain(deps)
    (text,) = [t for t in ephemerals(slack, "U0BOB") if "*shop*" in t]
    assert ci.shas["v1.1"][:12] in text and "`prod`: _nothing recorded_" in text
    assert requests(deps)[-1].id in text and "*pending*" in text


def test_lock_is_exclusive_across_database_connections(db, deps):
    """Two 'processes' (separate engines) racing for one service/environment: exactly one gets the lock."""
    with deps.db.session() as s:
        for n in range(2):
            s.add(
                Task(
                    id=f"t{n}",
                    idempotency_key=f"k{n}",
                    requester="U0ALICE",
                    surface="deploy",
                    intent="deploy_request",
                )
            )
    made = []
    for n in range(2):
        with deps.db.session() as s:
            row = DeployRequest(
                id=f"r{n}",
                task_id=f"t{n}",
                service="shop",
                environment="prod",
                ref="main",
                sha="a" * 40,
                requester="U0ALICE",
                params_hash="h",
                approvals_required=0,
                status="executing",
                polls=0,
                detail={},
                expires_at=service.utcnow(),
            )
            s.add(row)
        made.append(row)
    engines = [Database(db.url), Database(db.url)]
    results: list[str | None] = [None, None]
    barrier = threading.Barrier(2)

    def take(n: int) -> None:
        barrier.wait()
        results[n] = service.acquire_lock(engines[n], made[n])

    threads = [threading.Thread(target=take, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert sorted(results, key=str) == [None, "r0"] or sorted(results, key=str) == [None, "r1"]
    # a finished holder's lock is stale and can be taken over
    winner = "r0" if results[0] is None else "r1"
    loser = made[1] if winner == "r0" else made[0]
    with deps.db.session() as s:
        s.get(DeployRequest, winner).status = "succeeded"
    assert service.acquire_lock(deps.db, loser) is None
