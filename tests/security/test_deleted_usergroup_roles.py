"""Attack: a usergroup deleted in Slack (or one Slack stops answering for) keeps granting its roles forever.

Before the fix, ``no_such_subteam`` kept the cached members and every sync renewed the cache's 24 h expiry, so a
member of a deleted group kept its scopes indefinitely. Now a definitive error empties the group at once, and a
transient error keeps the last known members only until they are a day old: nothing renews a stale entry.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import AuditEntry, Task
from bot.slack import usergroups
from tests.conftest import drain

POLICY = """
[defaults]
roles = ["nobody"]

[roles.nobody]
scopes = []

[roles.member]
scopes = ["chat.reply", "usage.self"]
daily_tokens = 200000
requests_per_minute = 100

[usergroups.S0HELP]
roles = ["member"]

[channels."*"]
allow = ["*"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """Dave has no roles of his own; the S0HELP usergroup grants chat.reply."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def _last_task(deps) -> Task:
    with deps.db.session() as s:
        return s.execute(select(Task).order_by(Task.created_at.desc()).limit(1)).scalar_one()


def _housekeeping(deps) -> dict[str, int]:
    from bot.ops.worker import housekeeping_once

    deps.redis.delete(f"{deps.settings.clawback_queue_prefix}:housekeeping")  # the next periodic pass
    return housekeeping_once(deps)


def test_deleted_usergroup_stops_granting_its_roles_at_the_next_sync(slack, llm, sender, deps, ingress):
    """Dave answers through S0HELP; the group is deleted in Slack; the next sync empties it and Dave is denied."""
    deps.policy.interval = ingress.policy.interval = 0
    slack.usergroups["S0HELP"] = ["U0DAVE"]
    assert _housekeeping(deps)["usergroups_synced"] == 1
    sender.mention("U0DAVE", "C0GENERAL", "while the group exists")
    drain(deps)
    assert _last_task(deps).status == "done"

    del slack.usergroups["S0HELP"]  # the stand-in now answers no_such_subteam, as Slack does
    _housekeeping(deps)
    prefix = deps.settings.clawback_queue_prefix
    assert usergroups.read_members(deps.redis, prefix) == {"S0HELP": frozenset()}
    time.sleep(0.01)
    sender.mention("U0DAVE", "C0GENERAL", "after the group was deleted")
    drain(deps)
    task = _last_task(deps)
    assert task.status == "denied"  # Dave is told he may not (the ordinary denial), no model call is made
    with deps.db.session() as s:
        denial = s.execute(
            select(AuditEntry).where(AuditEntry.task_id == task.id, AuditEntry.decision == "deny")
        ).scalar_one()
    assert denial.actor == "U0DAVE"


def test_a_failing_sync_never_renews_members_past_a_day(slack, deps):
    """Slack errors transiently: the last members hold until they are TTL old, then grant nothing."""
    prefix = deps.settings.clawback_queue_prefix
    t0 = 1_800_000_000.0
    slack.usergroups["S0HELP"] = ["U0DAVE"]
    assert usergroups.sync(deps.slack, deps.redis, prefix, ["S0HELP"], clock=lambda: t0) == 1

    # every later sync fails with a transient error: the entry is kept, not renewed
    for hours in (1, 12, 23):
        slack.fail_next("usergroups.users.list", "internal_error")
        now = t0 + hours * 3600
        assert usergroups.sync(deps.slack, deps.redis, prefix, ["S0HELP"], clock=lambda now=now: now) == 0
        assert usergroups.read_members(deps.redis, prefix, clock=lambda now=now: now) == {
            "S0HELP": frozenset({"U0DAVE"})
        }
    later = t0 + usergroups.TTL + 1
    assert usergroups.read_members(deps.redis, prefix, clock=lambda: later) == {}

    # when Slack answers again, the group is current again
    assert usergroups.sync(deps.slack, deps.redis, prefix, ["S0HELP"], clock=lambda: later) == 1
    assert usergroups.read_members(deps.redis, prefix, clock=lambda: later) == {
        "S0HELP": frozenset({"U0DAVE"})
    }
