"""A corpus of Slack payload shapes, written from Slack's documentation of each event, interactivity payload
and slash command (field names and types as documented; ids are made up). Every one is well formed: Clawback
must acknowledge each (HTTP 200 / a Socket Mode ack), whether or not it uses it."""

from __future__ import annotations

from typing import Any

TEAM, ORG, BOT = "T0CLAWBACK", "E0ORG", "U0CLAWBOT"

_USER_OBJECT = {
    "id": "W0NEWHIRE",
    "team_id": TEAM,
    "name": "newhire",
    "deleted": False,
    "real_name": "New Hire",
    "tz": "Europe/Paris",
    "profile": {"display_name": "newhire", "email": "newhire@example.com", "team": TEAM},
    "is_admin": False,
    "is_bot": False,
    "updated": 1800000000,
}

# (name, inner event) for the Events API; the envelope is added by the test (with or without Grid fields).
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("user_change", {"type": "user_change", "user": _USER_OBJECT, "cache_ts": 1800000000,
                     "event_ts": "1800000000.000100"}),
    ("team_join", {"type": "team_join", "user": _USER_OBJECT, "cache_ts": 1800000000,
                   "event_ts": "1800000000.000200"}),
    ("channel_created", {"type": "channel_created", "channel": {"id": "C0NEWCHAN", "name": "fun",
                         "created": 1800000000, "creator": "U0ALICE", "is_channel": True},
                         "event_ts": "1800000000.000300"}),
    ("im_created", {"type": "im_created", "user": "U0ALICE", "channel": {"id": "D0NEWIM", "created": 1800000000,
                    "is_im": True, "user": "U0ALICE"}, "event_ts": "1800000000.000400"}),
    ("channel_rename", {"type": "channel_rename", "channel": {"id": "C0GENERAL", "name": "all-hands",
                        "created": 1700000000}, "event_ts": "1800000000.000500"}),
    ("reaction_added", {"type": "reaction_added", "user": "U0ALICE", "reaction": "thumbsup",
                        "item_user": BOT, "item": {"type": "message", "channel": "C0GENERAL",
                                                   "ts": "1800000000.000001"}, "event_ts": "1800000000.000600"}),
    ("member_joined_channel", {"type": "member_joined_channel", "user": "U0BOB", "channel": "C0GENERAL",
                               "channel_type": "C", "team": TEAM, "inviter": "U0ALICE",
                               "event_ts": "1800000000.000700"}),
    ("message_changed", {"type": "message", "subtype": "message_changed", "hidden": True, "channel": "D0ALICE",
                         "channel_type": "im", "ts": "1800000000.000800", "event_ts": "1800000000.000800",
                         "message": {"type": "message", "user": "U0ALICE", "text": "edited", "ts": "1.0",
                                     "edited": {"user": "U0ALICE", "ts": "1800000000.000800"}},
                         "previous_message": {"type": "message", "user": "U0ALICE", "text": "old", "ts": "1.0"}}),
    ("message_deleted", {"type": "message", "subtype": "message_deleted", "hidden": True, "channel": "D0ALICE",
                         "channel_type": "im", "ts": "1800000000.000900", "deleted_ts": "1.0",
                         "event_ts": "1800000000.000900"}),
    ("channel_join", {"type": "message", "subtype": "channel_join", "user": "U0BOB", "channel": "C0GENERAL",
                      "channel_type": "channel", "text": "<@U0BOB> has joined the channel",
                      "ts": "1800000000.001000", "event_ts": "1800000000.001000"}),
    ("app_home_opened_messages", {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE",
                                  "tab": "messages", "event_ts": "1800000000.001100"}),
    ("app_uninstalled", {"type": "app_uninstalled", "event_ts": "1800000000.001200"}),
    ("tokens_revoked", {"type": "tokens_revoked", "tokens": {"oauth": ["U0ALICE"], "bot": [BOT]},
                        "event_ts": "1800000000.001300"}),
    ("link_shared", {"type": "link_shared", "channel": "C0GENERAL", "user": "U0ALICE",
                     "message_ts": "1800000000.001400", "links": [{"domain": "example.com",
                                                                     "url": "https://example.com/a"}],
                     "event_ts": "1800000000.001400"}),
    ("file_shared", {"type": "file_shared", "file_id": "F0FILE", "user_id": "U0ALICE", "file": {"id": "F0FILE"},
                     "channel_id": "C0GENERAL", "event_ts": "1800000000.001500"}),
    ("subteam_updated", {"type": "subteam_updated", "subteam": {"id": "S0GROUP", "team_id": TEAM,
                         "handle": "oncall", "users": ["U0ALICE"]}, "event_ts": "1800000000.001600"}),
]

# Envelope fields an org-wide install on Enterprise Grid adds (``authorizations`` name the org, not a team).
GRID_ENVELOPE: dict[str, Any] = {
    "enterprise_id": ORG,
    "is_ext_shared_channel": False,
    "event_context": "4-eyJldCI6InVzZXJfY2hhbmdlIn0",
    "authorizations": [{"enterprise_id": ORG, "team_id": None, "user_id": BOT, "is_bot": True,
                        "is_enterprise_install": True}],
}

_USER = {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": TEAM}

# (name, payload) for interactivity.
INTERACTIVE: list[tuple[str, dict[str, Any]]] = [
    ("interactive_message", {
        "type": "interactive_message",
        "actions": [{"name": "choice", "type": "button", "value": "yes"}],
        "callback_id": "legacy_poll",
        "team": {"id": TEAM, "domain": "clawback"},
        "channel": {"id": "C0GENERAL", "name": "general"},
        "user": {"id": "U0ALICE", "name": "alice"},
        "action_ts": "1800000000.1",
        "message_ts": "1800000000.000001",
        "attachment_id": "1",
        "token": "x",
        "is_app_unfurl": False,
        "original_message": {"type": "message", "text": "Poll", "attachments": [{"id": 1, "text": "?"}]},
        "response_url": "https://hooks.slack.com/actions/T0/1/x",
        "trigger_id": "1.2.abc",
    }),
    ("block_actions_org_wide_team_null", {
        "type": "block_actions",
        "team": None,
        "enterprise": {"id": ORG, "name": "Org"},
        "is_enterprise_install": True,
        "user": _USER,
        "api_app_id": "A0CLAWBACK",
        "token": "x",
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "C0GENERAL", "is_ephemeral": False},
        "trigger_id": "1.2.abc",
        "channel": {"id": "C0GENERAL", "name": "general"},
        "message": {"type": "message", "ts": "1.0", "text": "hi"},
        "response_url": "https://hooks.slack.com/actions/T0/1/x",
        "actions": [{"action_id": "nobody_listens", "block_id": "b1", "type": "button", "value": "v",
                     "action_ts": "1800000000.2"}],
    }),
    ("block_actions_in_a_modal", {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "clawback"},
        "user": _USER,
        "api_app_id": "A0CLAWBACK",
        "token": "x",
        "container": {"type": "view", "view_id": "V0VIEW"},
        "trigger_id": "1.2.abc",
        "view": {"id": "V0VIEW", "type": "modal", "callback_id": "m", "state": {"values": {}}},
        "actions": [{"action_id": "nobody_listens", "block_id": "b1", "type": "static_select",
                     "selected_option": {"text": {"type": "plain_text", "text": "A"}, "value": "a"},
                     "action_ts": "1800000000.3"}],
    }),
    ("view_submission", {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "clawback"},
        "user": _USER,
        "api_app_id": "A0CLAWBACK",
        "token": "x",
        "trigger_id": "1.2.abc",
        "view": {"id": "V0VIEW", "type": "modal", "callback_id": "nobody", "state": {"values": {}},
                 "private_metadata": "", "hash": "1.abc"},
        "response_urls": [],
    }),
    ("view_closed", {
        "type": "view_closed",
        "team": {"id": TEAM, "domain": "clawback"},
        "user": _USER,
        "api_app_id": "A0CLAWBACK",
        "token": "x",
        "view": {"id": "V0VIEW", "type": "modal", "callback_id": "nobody"},
        "is_cleared": False,
    }),
    ("message_action", {
        "type": "message_action",
        "callback_id": "nobody",
        "trigger_id": "1.2.abc",
        "message_ts": "1.0",
        "response_url": "https://hooks.slack.com/app/T0/1/x",
        "team": {"id": TEAM, "domain": "clawback"},
        "channel": {"id": "C0GENERAL", "name": "general"},
        "user": _USER,
        "message": {"type": "message", "user": "U0BOB", "ts": "1.0", "text": "hi"},
        "token": "x",
    }),
    ("global_shortcut", {
        "type": "shortcut",
        "callback_id": "nobody",
        "trigger_id": "1.2.abc",
        "team": {"id": TEAM, "domain": "clawback"},
        "user": _USER,
        "token": "x",
        "action_ts": "1800000000.4",
    }),
    ("block_suggestion", {
        "type": "block_suggestion",
        "team": {"id": TEAM, "domain": "clawback"},
        "user": _USER,
        "api_app_id": "A0CLAWBACK",
        "token": "x",
        "container": {"type": "view", "view_id": "V0VIEW"},
        "action_id": "nobody",
        "block_id": "b1",
        "value": "ab",
        "view": {"id": "V0VIEW", "type": "modal"},
    }),
]

# Slash command forms: one from an org-wide install (enterprise fields), one from a DM.
COMMANDS: list[tuple[str, dict[str, str]]] = [
    ("usage_org_wide", {"token": "x", "team_id": TEAM, "team_domain": "clawback", "enterprise_id": ORG,
                        "enterprise_name": "Org", "is_enterprise_install": "true", "channel_id": "C0GENERAL",
                        "channel_name": "general", "user_id": "U0ALICE", "user_name": "alice",
                        "command": "/usage", "text": "", "api_app_id": "A0CLAWBACK",
                        "response_url": "https://hooks.slack.com/commands/T0/1/x", "trigger_id": "1.2.abc"}),
    ("usage_in_dm", {"token": "x", "team_id": TEAM, "team_domain": "clawback", "channel_id": "D0ALICE",
                     "channel_name": "directmessage", "user_id": "U0ALICE", "user_name": "alice",
                     "command": "/usage", "text": "30d", "api_app_id": "A0CLAWBACK",
                     "is_enterprise_install": "false",
                     "response_url": "https://hooks.slack.com/commands/T0/1/x", "trigger_id": "1.2.abd"}),
]


def envelope(event: dict[str, Any], event_id: str, *, grid: bool = False) -> dict[str, Any]:
    """The Events API callback around ``event`` (with an org-wide install's fields when ``grid``)."""
    body: dict[str, Any] = {
        "token": "x",
        "team_id": TEAM,
        "api_app_id": "A0CLAWBACK",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1800000000,
        "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": BOT, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }
    return body | (GRID_ENVELOPE if grid else {})
