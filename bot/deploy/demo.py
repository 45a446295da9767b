"""Demo data for the deploy assistant: a seeded repository on the CI stand-in and a policy snippet.

``clawback demo`` (the lead's) calls ``seed_demo(ci)`` on a running ``CIStandIn``, appends
``DEMO_SERVICES_POLICY`` (and roles like ``DEMO_ROLES_POLICY``) to its policy, sets
``CLAWBACK_GITHUB_API_URL = ci.url`` and ``CLAWBACK_GITHUB_TOKEN = ci.token``, and registers
``bot.standins.deploy_responder.register(llm)`` on the LLM stand-in.
"""

from __future__ import annotations

from typing import Any

from bot.standins.ci import CIStandIn

DEMO_REPO = "acme/shop"

DEMO_SERVICES_POLICY = """
[services.shop]
repo = "acme/shop"
workflow = "deploy.yml"
environments = ["staging", "prod"]
branch = "main"
baseline = "v1.0"

[services.shop.staging]
approvals = 0

[services.shop.prod]
approvals = 1
freeze = ["2026-12-24-2026-12-26 UTC"]
"""

# Roles to merge into a demo policy: Alice deploys, Bob and Carol approve prod, Dave only plans.
DEMO_ROLES_POLICY = """
[roles.deployer]
scopes = ["chat.reply", "chat.read_thread", "usage.self", "deploy.plan", "deploy.request"]

[roles.approver]
scopes = ["chat.reply", "chat.read_thread", "usage.self", "deploy.plan", "deploy.approve.staging",
          "deploy.approve.prod"]

[roles.planner]
scopes = ["chat.reply", "usage.self", "deploy.plan"]

[users.U0ALICE]
roles = ["deployer"]

[users.U0BOB]
roles = ["approver"]

[users.U0CAROL]
roles = ["approver", "deployer"]

[users.U0DAVE]
roles = ["planner"]
"""

_RELEASE_1 = [
    {
        "message": "Checkout page",
        "author": "alice",
        "files": ["shop/checkout.py"],
        "pr": {"number": 1, "title": "Checkout page"},
    },
    {
        "message": "Product images",
        "author": "bob",
        "files": ["shop/images.py", "static/logo.svg"],
        "pr": {"number": 2, "title": "Product images"},
    },
]
_RELEASE_2 = [
    {
        "message": "Add discount codes\n\nNew table for codes.",
        "author": "carol",
        "files": [
            "shop/discounts.py",
            {"filename": "migrations/0007_discounts.sql", "status": "added", "additions": 24},
        ],
        "pr": {"number": 14, "title": "Discount codes"},
    },
    {
        "message": "Discount code tests",
        "author": "carol",
        "files": [{"filename": "tests/test_discounts.py", "status": "added", "additions": 80}],
        "pr": {"number": 14, "title": "Discount codes"},
    },
    {
        "message": "Raise the checkout timeout",
        "author": "alice",
        "files": [{"filename": "config/production.yml", "additions": 1, "deletions": 1}],
        "pr": {"number": 15, "title": "Checkout timeout 30s"},
    },
    {
        "message": "Fix rounding in cart totals",
        "author": "bob",
        "files": ["shop/cart.py"],
        "pr": {"number": 16, "title": "Cart rounding fix"},
    },
]


def seed_demo(ci: CIStandIn, outcomes: tuple[str, ...] = ("success", "failure", "success")) -> dict[str, Any]:
    """Seed ``acme/shop``: tag v1.0 (the baseline) then four commits from three PRs; script run outcomes.

    Returns the shas by name, for a demo script to mention.
    """
    ci.add_repo(DEMO_REPO)
    release_1 = ci.add_commits(DEMO_REPO, "main", _RELEASE_1)
    ci.add_tag(DEMO_REPO, "v1.0", "main")
    release_2 = ci.add_commits(DEMO_REPO, "main", _RELEASE_2)
    ci.add_tag(DEMO_REPO, "v1.1", "main")
    ci.script_runs(list(outcomes), steps=2)
    return {"repo": DEMO_REPO, "v1.0": release_1[-1], "v1.1": release_2[-1], "main": release_2[-1]}
