"""Attack: one person spends the bot's Slack rate limit by mentioning it in a loop.

Issue 11 item 11: with ``requests_per_minute = 2``, 30 mentions made 2 model calls but 30 thread reads and 30
posts, because the rate was only taken inside the token reservation, after the thread was read, and every refusal
was answered. The person's rate is now taken before any Slack read or post, and over-limit requests get at most
one "slow down" notice per person per window; the rest are recorded (task denied, audited) without a Slack call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import messages
from bot.budget import Budget
from bot.db import AuditEntry, Task
from bot.errors import BudgetExceeded
from bot.policy import Limits
from tests.conftest import drain

POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self"]
daily_tokens = 200000
requests_per_minute = 100

[roles.slow]
scopes = ["chat.reply", "chat.read_thread"]
daily_tokens = 200000
requests_per_minute = 2

[roles.nobody]
scopes = []

[users.U0EMMA]
roles = ["slow"]

[users.U0IVAN]
roles = ["nobody"]
"""

SLACK_METHODS = (
    "conversations.replies",
    "conversations.history",
    "chat.postMessage",
    "chat.postEphemeral",
    "conversations.open",
)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """Emma may make two requests a minute."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


class Clock:
    """A settable clock for the budget, so the test never straddles a minute boundary by chance."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(second=1, microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(deps) -> Clock:
    """The worker's budget on the same Redis, with a settable clock (an injected dependency)."""
    c = Clock()
    deps.budget = Budget(deps.redis, prefix=deps.settings.clawback_queue_prefix, clock=c)
    return c


def _tasks(deps) -> list[Task]:
    with deps.db.session() as s:
        return list(s.execute(select(Task).order_by(Task.created_at)).scalars())


def _slack_calls(slack) -> dict[str, int]:
    return {m: len(slack.calls(m)) for m in SLACK_METHODS}


def test_thirty_mentions_cost_two_reads_two_answers_and_one_notice(slack, llm, sender, deps, clock):
    """30 mentions in a thread at 2/min: 2 thread reads, 2 answers, 1 notice; 28 tasks denied and audited quietly."""
    parent = slack.post("C0GENERAL", "what is the plan for the launch?", user="U0BOB")
    for n in range(30):
        assert sender.mention("U0EMMA", "C0GENERAL", f"and now? {n}", thread_ts=parent).status == 200
    drain(deps)
    tasks = _tasks(deps)
    assert len(tasks) == 30
    assert [t.status for t in tasks].count("done") == 2
    denied = [t for t in tasks if t.status == "denied"]
    assert len(denied) == 28 and all(t.status_reason.startswith("rate limited") for t in denied)
    assert len(llm.completions()) == 2
    calls = _slack_calls(slack)
    assert calls["conversations.replies"] == 2  # only the answered requests read the thread
    assert calls["conversations.history"] == 0
    assert calls["chat.postEphemeral"] == 0 and calls["conversations.open"] == 0
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 3  # two answers and one "slow down" notice for the whole window
    notices = [p for p in posts if "faster than your limit" in p["text"]]
    assert len(notices) == 1 and notices[0]["thread_ts"] == parent
    with deps.db.session() as s:
        entries = list(
            s.execute(
                select(AuditEntry).where(AuditEntry.action == "worker.answer", AuditEntry.decision == "deny")
            ).scalars()
        )
    assert sorted(e.task_id for e in entries) == sorted(t.id for t in denied)  # every refusal is on record


def test_next_window_answers_again_and_may_notify_once_more(slack, llm, sender, deps, clock):
    """The window passes: requests are answered again, and a new over-limit burst gets one new notice."""
    for n in range(4):
        sender.mention("U0EMMA", "C0GENERAL", f"first minute {n}")
    drain(deps)
    assert [t.status for t in _tasks(deps)] == ["done", "done", "denied", "denied"]
    clock.now += timedelta(seconds=60)
    for n in range(4):
        sender.mention("U0EMMA", "C0GENERAL", f"second minute {n}")
    drain(deps)
    assert [t.status for t in _tasks(deps)][4:] == ["done", "done", "denied", "denied"]
    assert len(llm.completions()) == 4
    notices = [p for p in slack.calls("chat.postMessage") if "faster than your limit" in p["text"]]
    assert len(notices) == 2  # one per window


def test_other_people_are_not_slowed_down(slack, llm, sender, deps, clock):
    """Emma's limit is hers: Bob's mention in the same minute is answered."""
    for n in range(5):
        sender.mention("U0EMMA", "C0GENERAL", f"spam {n}")
    sender.mention("U0BOB", "C0GENERAL", "a real question")
    drain(deps)
    assert {t.requester: t.status for t in _tasks(deps) if t.status == "done"}.keys() == {"U0EMMA", "U0BOB"}
    assert [t.status for t in _tasks(deps) if t.requester == "U0BOB"] == ["done"]


def test_take_request_counts_per_window_and_tells_once(redis_conn):
    """The budget's request gate on real Redis: ``limit`` requests pass, then one refusal says to tell, the rest not."""
    clock = Clock()
    budget = Budget(redis_conn, prefix="t-rate", clock=clock)
    limits = Limits(daily_tokens=1000, requests_per_minute=2)
    budget.take_request("U0X", limits)
    budget.take_request("U0X", limits)
    refusals = []
    for _ in range(3):
        with pytest.raises(BudgetExceeded) as exc:
            budget.take_request("U0X", limits)
        refusals.append(exc.value)
    assert [r.notify for r in refusals] == [True, False, False]
    assert refusals[0].user_message == messages.rate_limited(59)
    budget.take_request("U0Y", limits)  # another person has their own window
    budget.take_request("U0X", Limits(daily_tokens=1000, requests_per_minute=0))  # 0 = no rate limit
    clock.now += timedelta(seconds=60)
    budget.take_request("U0X", limits)  # a new window


def test_refused_at_ingress_thirty_times_is_told_once(slack, llm, sender, deps, clock):
    """Ivan may not use the bot at all (no chat.reply): 30 mentions cost one private notice, not 30; every
    refusal is still a denied task with its audit entry."""
    for n in range(30):
        assert sender.mention("U0IVAN", "C0GENERAL", f"let me in {n}").status == 200
    drain(deps)
    tasks = _tasks(deps)
    assert len(tasks) == 30 and all(t.status == "denied" for t in tasks)
    assert llm.completions() == []
    told = slack.calls("chat.postEphemeral") + slack.calls("chat.postMessage")
    assert len(told) == 1 and "chat.reply" in told[0]["text"]
    with deps.db.session() as s:
        entries = list(s.execute(select(AuditEntry).where(AuditEntry.decision == "deny")).scalars())
    assert {t.id for t in tasks} <= {e.task_id for e in entries}
