"""Helpers for the earned-autonomy tests: a policy with governed actions and a way to make decisions."""

from __future__ import annotations

from bot import autonomy
from bot.db import Database, Task, new_id
from bot.policy import Policy, parse_policy

POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self", "mail.read", "mail.categorize", "mail.move"]
daily_tokens = 200000
requests_per_minute = 20

[roles.admin]
scopes = ["admin", "audit.read", "usage.self", "usage.team"]

[users.U0ADMIN]
roles = ["admin"]

[autonomy]
default = "auto"

[autonomy.actions."mail.move"]
start = "suggest"
max = "auto"
promote_after = 5
promote_min_acceptance = 0.8
window = 4
demote_after = 2

[autonomy.actions."mail.move".categories.newsletter]
promote_after = 3

[autonomy.actions."mail.categorize"]
start = "suggest"
max = "suggest"
"""


def policy(text: str = POLICY) -> Policy:
    """The test policy, parsed."""
    return parse_policy(text)


def task(db: Database, user: str = "U0ALICE", intent: str = "triage") -> str:
    """A task row for decisions to hang on; returns its id."""
    with db.session() as s:
        t = Task(idempotency_key=new_id(), requester=user, surface="email", intent=intent, status="done")
        s.add(t)
        s.flush()
        return t.id


def decide(
    db: Database,
    pol: Policy,
    verdict: str,
    *,
    user: str = "U0ALICE",
    action: str = "mail.move",
    category: str | None = None,
    outcome_id: int | None = None,
):
    """One decision at the level in force, judged at once; returns (decision id, change)."""
    level = autonomy.level_for(db, pol, user, action, category)
    did = autonomy.record_decision(
        db, task_id=task(db, user), user=user, action=action, category=category, level=level
    )
    return did, autonomy.judge(db, pol, did, verdict, outcome_id=outcome_id, actor=user)
