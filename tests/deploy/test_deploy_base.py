"""What is deployed now (the plan's base) when Clawback has no record: GitHub's Deployments API, then the
policy's baseline; when nobody knows, the plan says "base unknown" and its risk is ``unknown``, set in code.
Also: a stock workflow with no ``run-name`` convention deploys, its run found by the id the dispatch returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.deploy import service
from tests.deploy.conftest import policy_text, requests, tasks
from tests.deploy.test_deploy_flow import click, plan

# ``plain`` has no baseline; ``tiered`` has a service baseline and a prod-only one.
EXTRA_SERVICES = """
[services.plain]
repo = "acme/shop"
workflow = "deploy.yml"
environments = ["staging", "prod"]

[services.tiered]
repo = "acme/shop"
workflow = "deploy.yml"
environments = ["staging", "prod"]
baseline = "v1.0"

[services.tiered.prod]
baseline = "v1.1"
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The deploy test policy plus services without (or with per-environment) baselines."""
    path = tmp_path / "policy.toml"
    path.write_text(policy_text() + EXTRA_SERVICES)
    return path


def _plan_blocks(slack) -> str:
    return json.dumps(slack.calls("chat.postMessage")[-1]["blocks"])


def _compares(ci) -> list[str]:
    return [r.path.split("/compare/", 1)[1] for r in ci.requests if "/compare/" in r.path]


def test_unknown_base_is_said_and_never_rated(slack, llm, ci, sender, deps):
    """No record, no GitHub deployment, no baseline: "base unknown", risk ``unknown``, the model not asked.

    Before the fix the model was given an empty diff ("nothing recorded") and its "low" was shown.
    """
    _, plan_task = plan(sender, deps, text="plan plain main prod")
    body = _plan_blocks(slack)
    assert plan_task.status == "done" and plan_task.result["risk_level"] == "unknown"
    assert "Risk: unknown" in body and "Base unknown" in body and "_base unknown_" in body
    assert "Risk: low" not in body
    assert llm.completions() == [] and _compares(ci) == []
    assert any("/deployments" in r.path and "environment=prod" in r.path for r in ci.requests)
    # The plan can still be requested (people decide; the plan only says what it does not know).
    click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    assert requests(deps)[-1].sha == ci.shas["main"]


def test_a_model_that_says_low_cannot_rate_an_unseen_diff(slack, llm, ci, sender, deps):
    """Even a model scripted to answer "low" is not shown: without a base there is no model call at all."""
    low = {
        "risk_level": "low",
        "summary": "Tiny change.",
        "notable_changes": [],
        "migrations": [],
        "config_changes": [],
        "suggested_checks": [],
        "rollback_plan": "",
    }
    llm.script({"content": json.dumps(low)})
    _, plan_task = plan(sender, deps, text="plan plain main prod")
    assert plan_task.result["risk_level"] == "unknown" and "Risk: low" not in _plan_blocks(slack)


def test_github_deployments_give_the_base(slack, llm, ci, sender, deps):
    """The newest deployment of that environment whose latest status is success is the base; a newer failed
    one, a superseded (inactive) one and another environment's are not."""
    shas = ci.shas
    ci.add_commits("acme/shop", "main", [{"message": "Hotfix", "files": ["shop/hotfix.py"]}])
    ci.add_deployment("acme/shop", "prod", shas["v1.0"], ["in_progress", "success"])  # later inactive
    ci.add_deployment("acme/shop", "prod", shas["v1.1"], ["in_progress", "success"])
    ci.add_deployment("acme/shop", "prod", "main", ["in_progress", "failure"])
    ci.add_deployment("acme/shop", "staging", "main", ["success"])
    _, plan_task = plan(sender, deps, text="plan plain main prod")
    assert plan_task.result["base_sha"] == shas["v1.1"]
    assert _compares(ci) == [f"{shas['v1.1']}...{ci.repos['acme/shop'].branches['main']}"]
    body = _plan_blocks(slack)
    assert shas["v1.1"][:12] in body and "per GitHub's deployments" in body and "Risk: unknown" not in body
    assert len(llm.completions()) == 1


def test_clawback_record_wins_over_github(slack, llm, ci, sender, deps):
    """What Clawback itself deployed there is the base; GitHub is not asked."""
    from tests.deploy.test_deploy_failures import staging_deploy

    staging_deploy(sender, deps, "v1.0")
    ci.add_deployment("acme/shop", "staging", "v1.1", ["success"])
    before = len(ci.requests)
    _, plan_task = plan(sender, deps, text="plan shop main staging")
    assert plan_task.result["base_sha"] == ci.shas["v1.0"]
    assert not any("/deployments" in r.path for r in ci.requests[before:])


def test_environment_baseline_then_service_baseline(slack, llm, ci, sender, deps):
    """Nothing recorded, nothing on GitHub: prod uses its own baseline, staging the service's."""
    _, prod = plan(sender, deps, text="plan tiered main prod")
    assert prod.result["base_sha"] == ci.shas["v1.1"] and "baseline `v1.1`" in _plan_blocks(slack)
    _, staging = plan(sender, deps, text="plan tiered main staging")
    assert staging.result["base_sha"] == ci.shas["v1.0"] and "baseline `v1.0`" in _plan_blocks(slack)


def test_token_without_deployments_read_falls_back_to_the_baseline(slack, llm, ci, sender, deps):
    """A token lacking "Deployments: read" (403) does not stop the plan: the policy's baseline is used."""
    ci.missing_permissions = {"deployments:read"}
    _, plan_task = plan(sender, deps, text="plan shop main prod")
    assert plan_task.status == "done" and plan_task.result["base_sha"] == ci.shas["v1.0"]


def test_github_down_during_base_lookup_is_retried_not_guessed(slack, llm, ci, sender, deps):
    """A 5xx from the Deployments API is transient: the job retries and then finds the base, no guess."""
    ci.add_deployment("acme/shop", "prod", "v1.1", ["success"])
    ci.fail_next("/deployments", 502)
    _, plan_task = plan(sender, deps, text="plan plain main prod")
    assert plan_task.status == "done" and plan_task.result["base_sha"] == ci.shas["v1.1"]


def test_stock_workflow_without_run_name_deploys(slack, llm, ci, sender, deps):
    """A workflow with no run-name convention (runs titled just "deploy"): the dispatch's run id is followed,
    two requests for the same sha each get their own run, both succeed."""
    ci.run_name_convention = False
    for env in ("staging", "staging"):
        _, plan_task = plan(sender, deps, text=f"plan shop main {env}")
        click(sender, deps, "U0ALICE", "deploy_request", plan_task.id)
    first, second = requests(deps)
    assert [d["run_id"] for d in ci.dispatches] == [int(first.run_ref), int(second.run_ref)]
    assert {ci.runs[int(r.run_ref)].display_title for r in (first, second)} == {"deploy"}
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert service.deployed(deps.db, "shop", "staging").sha == ci.shas["main"]
    assert len(tasks(deps, "deploy_execute")) == 2


def test_baseline_is_validated_by_policy_check():
    """``baseline`` per service and per environment is checked like a ref name; a bad one names its key."""
    from bot.deploy.config import parse_services
    from bot.errors import PolicyError

    ok = parse_services(
        {"api": {"repo": "a/b", "workflow": "d.yml", "environments": ["prod"], "prod": {"baseline": "v2"}}}
    )
    assert ok["api"].environments["prod"].baseline == "v2" and ok["api"].baseline is None
    with pytest.raises(PolicyError, match="baseline"):
        parse_services(
            {"api": {"repo": "a/b", "workflow": "d.yml", "environments": ["prod"], "prod": {"baseline": "a b"}}}
        )
