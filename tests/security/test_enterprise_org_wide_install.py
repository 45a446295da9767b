"""Enterprise Grid org-wide installs: the installation is the organisation, not one workspace.

Reproduced: with an org-level token (``auth.test`` says ``is_enterprise_install``; its ``team_id`` is not a
workspace) the people of the org's workspaces were taken for outsiders and refused, and clicks from an org-wide
install (``"team": null``) were refused with 400. Must hold: people of every workspace the app was added to
(``auth.teams.list``) are at home; a Slack Connect partner organisation is still from outside; clicks with
``"team": null`` and commands carrying ``enterprise_id`` work; one message delivered per authorization is
answered once.
"""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bot.db import Outcome, Task
from tests.conftest import drain

ORG = "E0ORG"


@pytest.fixture
def slack(slack):
    """The Slack stand-in as an org-wide install across two workspaces of one organisation."""
    slack.enterprise_id = ORG
    slack.org_teams = ["T0CLAWBACK", "T0SECOND"]
    return slack


def _org_mention(sender, user: str, user_team: str, *, ts: str, event_id: str, workspace: str = "T0SECOND"):
    body = {
        "token": "x",
        "enterprise_id": ORG,
        "team_id": workspace,
        "api_app_id": "A0CLAWBACK",
        "is_ext_shared_channel": user_team not in ("T0CLAWBACK", "T0SECOND"),
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event_context": "4-eyJldCI6ImFwcF9tZW50aW9uIn0",
        "authorizations": [
            {"enterprise_id": ORG, "team_id": None, "user_id": "U0CLAWBOT", "is_bot": True,
             "is_enterprise_install": True}
        ],
        "event": {
            "type": "app_mention",
            "user": user,
            "text": "<@U0CLAWBOT> what changed?",
            "ts": ts,
            "channel": "C0GENERAL",
            "event_ts": ts,
            "team": user_team,
            "user_team": user_team,
            "source_team": user_team,
        },
    }
    return sender.post(json.dumps(body).encode(), "application/json")


def _tasks(deps):
    with deps.db.session() as s:
        return list(s.execute(select(Task).order_by(Task.created_at)).scalars())


def test_people_of_every_workspace_of_the_org_are_at_home(slack, llm, sender, deps):
    """A person of the org's second workspace is answered (was: refused as an outsider)."""
    assert _org_mention(sender, "U0BOB", "T0SECOND", ts="1800000900.000100", event_id="EvORG1").status == 200
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "done", task.status_reason if hasattr(task, "status_reason") else task.status
    assert len(slack.calls("chat.postMessage")) == 1


def test_a_partner_organisation_is_still_outside(slack, llm, sender, deps):
    """A Slack Connect partner (its own team, not one of the org's) holds no roles: denied, not answered."""
    assert _org_mention(sender, "U0PARTNER", "T0OTHER", ts="1800000900.000200", event_id="EvORG2").status == 200
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "denied" and llm.completions() == []


def test_one_message_delivered_per_authorization_is_answered_once(slack, llm, sender, deps):
    """The same message reaching two installations' deliveries (two event_ids): one answer."""
    for eid, ws in (("EvORG3a", "T0SECOND"), ("EvORG3b", "T0CLAWBACK")):
        assert _org_mention(sender, "U0BOB", "T0SECOND", ts="1800000900.000300", event_id=eid,
                            workspace=ws).status == 200
    drain(deps)
    assert len(_tasks(deps)) == 1 and len(slack.calls("chat.postMessage")) == 1


def test_click_with_team_null_and_command_with_enterprise_fields_work(slack, llm, sender, deps):
    """Org-wide interactivity (``"team": null``, ``enterprise``, ``is_enterprise_install``) records the click;
    a command with ``enterprise_id`` answers in its ack."""
    _org_mention(sender, "U0BOB", "T0SECOND", ts="1800000900.000400", event_id="EvORG4")
    drain(deps)
    (task,) = _tasks(deps)
    (post,) = slack.bot_messages("C0GENERAL")
    payload = {
        "type": "block_actions",
        "team": None,
        "enterprise": {"id": ORG, "name": "Org"},
        "is_enterprise_install": True,
        "user": {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": "T0SECOND"},
        "api_app_id": "A0CLAWBACK",
        "token": "x",
        "trigger_id": secrets.token_hex(8),
        "channel": {"id": "C0GENERAL", "name": "general"},
        "container": {"type": "message", "message_ts": post.ts, "channel_id": "C0GENERAL", "is_ephemeral": False},
        "message": {"ts": post.ts, "type": "message"},
        "response_url": "https://hooks.slack.com/actions/T0/1/none",
        "actions": [{"action_id": "feedback_resolved", "block_id": "b", "type": "button", "value": task.id,
                     "action_ts": "1800000901.0"}],
    }
    reply = sender.post(urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded")
    assert reply.status == 200
    drain(deps)
    with deps.db.session() as s:
        (outcome,) = s.execute(select(Outcome).where(Outcome.task_id == task.id)).scalars()
    assert outcome.kind == "resolved"
    form = {"token": "x", "team_id": "T0SECOND", "team_domain": "second", "enterprise_id": ORG,
            "enterprise_name": "Org", "is_enterprise_install": "true", "channel_id": "C0GENERAL",
            "channel_name": "general", "user_id": "U0BOB", "user_name": "bob", "command": "/usage", "text": "",
            "api_app_id": "A0CLAWBACK", "response_url": "https://hooks.slack.com/commands/T0/1/none",
            "trigger_id": secrets.token_hex(8)}
    reply = sender.post(urlencode(form).encode(), "application/x-www-form-urlencoded")
    assert reply.status == 200 and "last 7 days" in reply.json()["text"].lower()
