"""Attack (issue 11, item 4): a deploy adopts someone else's workflow run.

Before the fix, any ``workflow_dispatch`` run whose title contained the (visible) request id was taken as
ours, whatever its creation time or sha: a run made by someone else before the approval was "reused", nothing
was dispatched, and its success was recorded for a sha that never ran. Now only the run whose id the dispatch
returned (``return_run_details``) is ours; where the server answers 204 (older GitHub Enterprise Server), only a
run on Clawback's own pinned ref at exactly the dispatched sha, created after the dispatch.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.deploy import service
from bot.deploy.executors import DeployTrigger, GitHubClient, WorkflowDispatchExecutor
from tests.deploy.conftest import GH_TOKEN, outcomes, requests
from tests.deploy.test_deploy_flow import click, plan

REPO = "acme/shop"


@pytest.mark.parametrize("mode", ["current", "legacy", "strict-legacy"])
def test_foreign_run_titled_with_the_request_id_is_not_adopted(slack, llm, ci, sender, deps, mode):
    """Someone's run titled "Deploy <our id>" at another sha, made before the approval, is never ours.

    ``current``: GitHub returns the run id; ``legacy``: it answers 204 and the run is found on the pinned ref;
    ``strict-legacy``: it rejects ``return_run_details`` and the dispatch is sent again without it.
    """
    ci.dispatch_mode = mode
    _, plan_task = plan(sender, deps, text="plan shop main prod")
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    ci.add_commits(REPO, "main", [{"message": "unreviewed"}])
    foreign = ci.add_foreign_run(REPO, "main", f"Deploy {request.id}", outcome="success")
    ci.script_runs(["failure"])  # our real run fails: only adopting the foreign one would look like success
    click(sender, deps, "U0BOB", "deploy_approve", request.id)

    (dispatch,) = ci.dispatches  # ours was dispatched, not skipped as "already running"
    request = requests(deps)[0]
    assert request.run_ref == str(dispatch["run_id"]) != str(foreign)
    assert request.status == "failed" and service.deployed(deps.db, "shop", "prod") is None
    assert {o.kind for o in outcomes(deps)} == {"deploy_failed"}


@pytest.mark.parametrize("mode", ["legacy", "strict-legacy"])
def test_without_run_details_only_a_run_on_the_pinned_ref_at_the_sha_is_ours(ci, mode):
    """204 servers: a foreign run at the very same sha on another branch, inside the clock-skew window, is
    ignored; the run found is the one on ``clawback/deploy-<id>`` at the dispatched sha."""
    ci.dispatch_mode = mode
    client = GitHubClient(ci.url, GH_TOKEN, timeout=2.0)
    sha = ci.repos[REPO].branches["main"]
    foreign = ci.add_foreign_run(REPO, "main", "Deploy dep-204")  # same sha, same title, just before
    executor = WorkflowDispatchExecutor(client, REPO, "deploy.yml", sleep=lambda s: None)
    trigger = DeployTrigger("dep-204", "shop", "prod", sha, "U0ALICE", "p" * 16, "main")
    run_ref = executor.trigger(trigger)
    (dispatch,) = ci.dispatches
    assert run_ref == str(dispatch["run_id"]) != str(foreign)
    assert ci.runs[int(run_ref)].head_branch == "clawback/deploy-dep-204"
    assert datetime.now(UTC) >= ci.runs[int(run_ref)].created_at


def test_run_at_another_sha_is_never_recorded_as_success(slack, llm, ci, sender, deps):
    """Defence in depth: should the followed run report another head sha (its pinned branch was moved between
    creation and dispatch), the run is cancelled and the deploy recorded failed, never succeeded."""
    _, plan_task = plan(sender, deps, text="plan shop v1.1 staging")
    ci.add_commits(REPO, "main", [{"message": "unreviewed"}])
    foreign = ci.add_foreign_run(REPO, "main", "someone else's run")
    real_new_run = ci._new_run

    def hijacked(repo, workflow, ref, sha, inputs, outcome=None):  # the run GitHub reports is another sha's
        run = real_new_run(repo, workflow, ref, sha, inputs, outcome)
        run.head_sha = ci.runs[foreign].head_sha
        return run

    ci._new_run = hijacked
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    (request,) = requests(deps)
    assert request.status == "failed" and "not the approved" in (request.status_reason or "")
    assert service.deployed(deps.db, "shop", "staging") is None
    assert {o.kind for o in outcomes(deps)} == {"deploy_failed"}
    assert ci.runs[int(request.run_ref)].cancelled  # stopped at its first status poll
