"""Attack: a channel rule that allows only replies must also stop the bot *reading* there.

Issue 11 item 1: with ``[channels.C0SECRET] allow = ["chat.reply"]``, a requester who holds
``chat.read_thread`` and ``chat.read_channel`` mentioned the bot in a thread of C0SECRET; the worker read the
thread (``conversations.replies``), the model called ``search_channel_history`` (``conversations.history``) and
the answer repeated what it read. Every read and every tool is the person's scopes intersected with the channel's
rule: where the tool list is built, when a tool call runs, and before the thread is fetched.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import Action, AuditEntry, Task
from bot.llm import ToolCall
from tests.conftest import drain
from workers.tools import CATALOG, run_tool_call, tools_for

POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self"]
daily_tokens = 200000
requests_per_minute = 100

[roles.reader]
scopes = ["chat.reply", "chat.read_thread", "chat.read_channel", "usage.self"]
daily_tokens = 200000
requests_per_minute = 100

[users.U0CAROL]
roles = ["reader"]

[channels.C0SECRET]
allow = ["chat.reply"]

[channels."*"]
allow = ["*"]
"""

THREAD_SECRET = "the merger closes with Initech on the 14th"
CHANNEL_SECRET = "layoffs list is in the shared drive"


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """Carol may read threads and channels; C0SECRET allows only replies."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def secret_thread(slack) -> str:
    """A private channel with a secret thread and secret channel history; returns the thread's ts."""
    slack.add_channel("C0SECRET", "secret", members=["U0CAROL", "U0BOB"])
    slack.post("C0SECRET", CHANNEL_SECRET, user="U0BOB")
    parent = slack.post("C0SECRET", THREAD_SECRET, user="U0BOB")
    slack.post("C0SECRET", "keep this quiet please", user="U0BOB", thread_ts=parent)
    return parent


def _tasks(deps) -> list[Task]:
    with deps.db.session() as s:
        return list(s.execute(select(Task).order_by(Task.created_at)).scalars())


def _audit(deps, **where) -> list[AuditEntry]:
    with deps.db.session() as s:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for k, v in where.items():
            stmt = stmt.where(getattr(AuditEntry, k) == v)
        return list(s.execute(stmt).scalars())


def test_reply_only_channel_reads_nothing_and_offers_no_read_tool(slack, llm, sender, deps, secret_thread):
    """The mention is answered, but neither the thread nor the channel is read, and the model gets no read tool.

    The model (compromised) asks for ``search_channel_history`` anyway: the call is refused, audited as a denial
    with the channel as target, and the answer still arrives, saying the thread was not read.
    """
    llm.script(
        {"tool_calls": [{"name": "search_channel_history", "arguments": {"query": "layoffs"}}]},
        {"content": "Here is what I can say."},
    )
    sender.mention("U0CAROL", "C0SECRET", "summarise this thread for me", thread_ts=secret_thread)
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done"
    assert slack.calls("conversations.replies") == []  # the thread was never fetched
    assert slack.calls("conversations.history") == []  # nor the channel's history
    assert not llm.completions()[0].get("tools")  # the rule allows only replies: no tool at all is offered
    sent = json.dumps(llm.completions())
    assert THREAD_SECRET not in sent and CHANNEL_SECRET not in sent
    (denial,) = _audit(deps, task_id=task.id, action="tool.search_channel_history")
    assert denial.decision == "deny" and denial.target == "C0SECRET"
    with deps.db.session() as s:
        (action,) = s.execute(
            select(Action).where(Action.task_id == task.id, Action.status == "denied")
        ).scalars()
    assert action.target == "C0SECRET"
    (post,) = slack.calls("chat.postMessage")
    assert post["channel"] == "C0SECRET" and post["thread_ts"] == secret_thread
    blocks = json.dumps(post["blocks"])
    assert "Here is what I can say." in blocks
    assert "didn't read this thread" in blocks  # the person is told why the answer lacks the thread
    assert task.result["context_messages"] == 0 and task.result["thread_read"] is False


def test_tool_call_is_rechecked_against_the_channel_when_it_runs(slack, llm, sender, deps, secret_thread):
    """Even a tool that was (wrongly or earlier) offered is refused at call time in a channel that forbids it."""
    sender.mention("U0CAROL", "C0SECRET", "anything?", thread_ts=secret_thread)
    (task,) = _tasks(deps)  # queued, not yet run
    call = ToolCall(id="call_x", name="search_channel_history", arguments=json.dumps({"query": "layoffs"}))
    out = run_tool_call(deps, task, call, list(CATALOG.values()))
    assert out.startswith("refused") and "channel" in out
    assert slack.calls("conversations.history") == []
    (entry,) = _audit(deps, task_id=task.id, action="tool.search_channel_history")
    assert entry.decision == "deny" and entry.target == "C0SECRET"
    assert "not allowed in channel C0SECRET" in json.loads(entry.details)["reason"]


def test_tool_list_is_built_from_the_intersection(deps):
    """``tools_for`` gets the person's scopes in the channel: no read tool where the rule allows only replies."""
    policy = deps.policy.current
    assert policy.scopes_in("U0CAROL", "C0SECRET") == {"chat.reply"}
    assert policy.scopes_in("U0CAROL", "C0GENERAL") == policy.scopes_for("U0CAROL")
    assert policy.scopes_in("U0CAROL", None) == policy.scopes_for("U0CAROL")  # DMs: no channel rule
    names = [t.name for t in tools_for(policy.scopes_in("U0CAROL", "C0SECRET"), surface="mention")]
    assert names == []


def test_allowed_channel_still_reads_and_audits_the_channel_as_target(slack, llm, sender, deps):
    """Where the rule allows it, thread and history are read, and the tool's audit entry names the channel."""
    parent = slack.post("C0GENERAL", "the release is on Friday", user="U0BOB")
    slack.post("C0GENERAL", "standup moved to 10:00", user="U0BOB")
    llm.script(
        {"tool_calls": [{"name": "search_channel_history", "arguments": {"query": "standup"}}]},
        {"content": "Friday; standup at 10."},
    )
    sender.mention("U0CAROL", "C0GENERAL", "when is the release? " + uuid.uuid4().hex[:6], thread_ts=parent)
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done" and task.result["thread_read"] is True
    assert len(slack.calls("conversations.replies")) == 1
    assert len(slack.calls("conversations.history")) == 1
    (entry,) = _audit(deps, task_id=task.id, action="tool.search_channel_history")
    assert entry.decision == "allow" and entry.target == "C0GENERAL"
    assert "didn't read this thread" not in json.dumps(slack.calls("chat.postMessage")[-1]["blocks"])


def test_dm_questions_keep_reading_their_own_conversation(slack, llm, sender, deps):
    """DMs follow no channel rule (as before): the person's own scopes apply there."""
    sender.dm("U0CAROL", "D0CAROL", "what's my usage?")
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done"
    offered = [t["function"]["name"] for t in llm.completions()[0].get("tools", [])]
    assert offered == ["get_my_usage"]  # the channel tool is never offered in DMs
