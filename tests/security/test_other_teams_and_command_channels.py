"""Other teams and channel rules for commands (issue 11, item 15).

Reproduced: ``/usage`` answered in a channel whose rule is ``allow = []``, and a person from another
organisation in a Slack Connect channel got the default roles (team ids were never checked). Must hold:
every command honours the channel rule; a user whose own team is not Clawback's (the team of its bot token,
``auth.test``, plus the policy's ``[teams.T…] home = true``) holds no roles unless the policy names their
team (``[teams.T…] roles = [...]``), at ingress, in the worker's re-check and wherever scopes are read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import messages
from bot.db import AuditEntry, LLMCall, Task
from bot.errors import PolicyError
from bot.ledger import NewTask, create_task
from bot.policy import parse_policy
from tests.conftest import drain

POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self", "deploy.plan", "deploy.request"]
daily_tokens = 200000
requests_per_minute = 100

[roles.guest]
scopes = ["chat.reply"]
daily_tokens = 20000
requests_per_minute = 100

[teams.T0FRIEND]
roles = ["guest"]

[channels.C0RANDOM]
allow = []

[channels."*"]
allow = ["*"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """Members at home; guests from the partner team T0FRIEND; nothing in #random."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def shared(slack):
    """#general is shared with two outside organisations (T0FRIEND is named in the policy, T0OTHER is not)."""
    slack.add_user("U0STRANGER", "stranger")
    slack.add_user("U0FRIEND", "friend")
    return slack


def _tasks(deps) -> list[Task]:
    with deps.db.session() as s:
        rows = list(s.execute(select(Task).order_by(Task.created_at)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def _llm_calls(deps) -> int:
    with deps.db.session() as s:
        return len(list(s.execute(select(LLMCall)).scalars()))


# -- channel rules for commands ----------------------------------------------------------------------------


def test_usage_is_refused_in_a_channel_that_allows_nothing(slack, llm, sender, deps):
    """/usage in #random (``allow = []``): the ack says the channel does not allow it; no numbers are shown."""
    reply = sender.command("U0ALICE", "/usage", "", channel="C0RANDOM")
    assert reply.status == 200
    body = reply.json()
    assert body["response_type"] == "ephemeral"
    assert body["text"] == messages.CHANNEL_NOT_ALLOWED


def test_usage_still_answers_in_allowed_channels_and_dms(slack, llm, sender, deps):
    """The rule refuses only where it says so: #general (``*``) and the person's DM still answer."""
    for channel in ("C0GENERAL", "D0ALICE"):
        text = sender.command("U0ALICE", "/usage", "", channel=channel).json()["text"]
        assert "last 7 days" in text, text


# -- users of other teams ------------------------------------------------------------------------------------


def test_user_of_an_unnamed_team_gets_no_roles(shared, llm, sender, deps):
    """A Slack Connect guest from T0OTHER mentions the bot: denied at ingress, told why, no model call."""
    reply = sender.mention("U0STRANGER", "C0GENERAL", "what is in the Q3 plan?", user_team="T0OTHER")
    assert reply.status == 200
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "denied" and task.team_id == "T0OTHER"
    assert _llm_calls(deps) == 0 and not shared.calls("conversations.replies")
    (note,) = shared.calls("chat.postEphemeral")
    assert note["user"] == "U0STRANGER" and messages.OTHER_TEAM in note["text"]
    with deps.db.session() as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.task_id == task.id)).scalars().first()
    assert entry.decision == "deny" and "T0OTHER" in json.loads(entry.details)["reason"]


def test_user_of_an_unnamed_team_cannot_use_commands_or_see_usage(shared, llm, sender, deps):
    """/usage and /deploy from a user whose own team is T0OTHER are refused (no default roles)."""
    usage = sender.command("U0STRANGER", "/usage", "", team_id="T0OTHER").json()["text"]
    assert usage == messages.OTHER_TEAM
    deploy = sender.command("U0STRANGER", "/deploy", "plan api main", team_id="T0OTHER")
    assert messages.OTHER_TEAM in deploy.body.decode()  # /deploy acks in plain text
    (task,) = _tasks(deps)
    assert task.status == "denied" and task.team_id == "T0OTHER"


def test_user_of_a_named_team_gets_exactly_that_teams_roles(shared, llm, sender, deps):
    """A guest from T0FRIEND (roles = guest: chat.reply only) is answered, but the thread is not read."""
    parent = shared.post("C0GENERAL", "internal numbers: 42", user="U0ALICE")
    sender.mention("U0FRIEND", "C0GENERAL", "summarise this thread", thread_ts=parent, user_team="T0FRIEND")
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done" and task.team_id == "T0FRIEND"
    assert not shared.calls("conversations.replies")  # members may read threads; this guest may not
    assert _llm_calls(deps) == 1
    # The same person's /usage is refused: guests do not hold usage.self.
    text = sender.command("U0FRIEND", "/usage", "", team_id="T0FRIEND").json()["text"]
    assert text == messages.missing_scope("usage.self")


def test_home_users_are_unchanged(shared, llm, sender, deps):
    """A member of Clawback's own team (the bot token's team) keeps the default roles: the thread is read."""
    parent = shared.post("C0GENERAL", "context", user="U0BOB")
    sender.mention("U0ALICE", "C0GENERAL", "what did bob say?", thread_ts=parent)
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done" and task.team_id == "T0CLAWBACK"
    assert shared.calls("conversations.replies")


def test_worker_recheck_refuses_a_queued_task_of_another_team(shared, llm, deps):
    """The worker's authoritative re-check uses the stored team: a queued task of T0OTHER is denied there."""
    from workers import execute

    task, _ = create_task(
        deps.db,
        NewTask(
            idempotency_key="slack:EvQUEUED",
            requester="U0STRANGER",
            surface="mention",
            intent="answer",
            team_id="T0OTHER",
            channel_id="C0GENERAL",
            thread_ts="1700000000.000100",
            message_ts="1700000000.000100",
            payload={"text": "hello", "home_teams": ["T0CLAWBACK"]},
        ),
    )
    assert execute(deps, task.id) == "denied"
    assert _llm_calls(deps) == 0


def test_interactive_clicks_carry_the_clickers_team(shared, llm, sender, deps):
    """ "Request deploy" clicked by a user of T0OTHER on a member's plan: refused at ingress (no roles)."""
    from bot.deploy.blocks import REQUEST_DEPLOY

    plan, _ = create_task(
        deps.db,
        NewTask(
            idempotency_key="slack:cmd:plan1",
            requester="U0ALICE",
            surface="command",
            intent="deploy_plan",
            team_id="T0CLAWBACK",
            channel_id="C0GENERAL",
            payload={"service": "api", "ref": "main", "environment": None},
        ),
    )
    reply = sender.block_action(
        "U0STRANGER", REQUEST_DEPLOY, plan.id, channel="C0GENERAL", message_ts="1.0", user_team="T0OTHER"
    )
    assert reply.status == 200
    request = [t for t in _tasks(deps) if t.intent == "deploy_request"]
    assert [(t.status, t.team_id) for t in request] == [("denied", "T0OTHER")]


# -- the policy file -------------------------------------------------------------------------------------------


def test_policy_check_validates_teams():
    """``[teams.*]``: the id must be a team id, roles must exist, only ``roles`` and ``home`` are known."""
    base = '[roles.guest]\nscopes = ["chat.reply"]\n'
    ok = parse_policy(base + '[teams.T0FRIEND]\nroles = ["guest"]\n[teams.T0SISTER]\nhome = true\n')
    assert ok.teams == {"T0FRIEND": ("guest",)} and ok.home_teams == frozenset({"T0SISTER"})
    for bad, why in (
        ('[teams.friend]\nroles = ["guest"]\n', "not a Slack team id"),
        ('[teams.T0FRIEND]\nroles = ["admin"]\n', "unknown role"),
        ("[teams.T0FRIEND]\nmembers = []\n", "unknown key"),
        ('[teams.T0FRIEND]\nhome = "yes"\n', "home must be true or false"),
    ):
        with pytest.raises(PolicyError, match=why) as exc:
            parse_policy(base + bad)
        assert exc.value.line is not None and exc.value.line >= 3


def test_payload_team_extractors():
    """Where Slack puts the requester's team and the installation, per payload kind (pure)."""
    from handlers import payloads

    shared_event = {
        "team_id": "T0HOME",
        "authorizations": [{"team_id": "T0HOME", "user_id": "U0BOT", "is_bot": True}],
        "event": {"type": "app_mention", "user": "U0X", "team": "T0OTHER", "user_team": "T0OTHER"},
    }
    assert payloads.requester_id(shared_event) == "U0X"
    assert payloads.requester_team(shared_event) == "T0OTHER"
    assert payloads.installed_teams(shared_event) == ("T0HOME",)
    plain_event = {"team_id": "T0HOME", "event": {"type": "app_mention", "user": "U0A"}}
    assert payloads.requester_team(plain_event) == "T0HOME"
    click = {"type": "block_actions", "user": {"id": "U0X", "team_id": "T0OTHER"}, "team": {"id": "T0HOME"}}
    assert payloads.requester_team(click) == "T0OTHER" and payloads.installed_teams(click) == ("T0HOME",)
    command = {"user_id": "U0A", "team_id": "T0HOME", "channel_id": "C0GENERAL", "command": "/usage"}
    assert payloads.requester_id(command) == "U0A" and payloads.requester_team(command) == "T0HOME"
    assert payloads.command_channel(command) == "C0GENERAL"
    assert payloads.command_channel({**command, "channel_id": "D0ALICE"}) is None
    assert payloads.requester_id({"type": "url_verification"}) is None


def test_team_binding_survives_a_policy_reload(tmp_path):
    """A user of another team stays bound after the policy file changes; ``home = true`` teams count as ours."""
    from bot.policy import PolicyStore

    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    store = PolicyStore(path)
    assert not store.note_team("U0X", "T0OTHER", ("T0HOME",))
    assert store.note_team("U0A", "T0HOME", ("T0HOME",))
    assert store.current.scopes_for("U0X") == frozenset() and "usage.self" in store.current.scopes_for("U0A")
    path.write_text(POLICY + "\n[teams.T0OTHER]\nhome = true\n")
    store.reload()
    assert "usage.self" in store.current.scopes_for("U0X")  # T0OTHER is now ours: defaults apply at once
    assert store.note_team("U0X", "T0OTHER", ("T0HOME",))
