"""Policy parsing, validation errors with lines, scope resolution and live reload."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bot.errors import Denied, PolicyError
from bot.policy import PolicyStore, load_policy, parse_policy

GOOD = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "usage.self"]
daily_tokens = 1000
requests_per_minute = 5

[roles.approver]
scopes = ["deploy.approve.prod"]
daily_tokens = 5000

[users.U0BOSS]
roles = ["approver"]

[groups.sre]
members = ["U0SRE"]
roles = ["approver"]
"""


def test_default_policy_is_safe():
    """Without a file: answers and own usage, nothing else."""
    p = load_policy(None)
    assert p.scopes_for("U0ANY") == {"chat.reply", "chat.read_thread", "usage.self"}
    assert not p.has_scope("U0ANY", "mail.send")


def test_listed_users_replace_defaults_and_groups_add():
    """A listed user gets only their roles; group members keep the defaults and add the group's roles."""
    p = parse_policy(GOOD)
    assert p.scopes_for("U0BOSS") == {"deploy.approve.prod"}
    assert p.scopes_for("U0SRE") == {"chat.reply", "usage.self", "deploy.approve.prod"}
    assert p.limits_for("U0SRE").daily_tokens == 5000  # the most generous role
    assert p.holders_of("deploy.approve.prod") == ["U0BOSS", "U0SRE"]
    with pytest.raises(Denied) as exc:
        p.require("U0BOSS", "chat.reply")
    assert exc.value.scope == "chat.reply"


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ('[roles.member]\nscopes = ["chat.reply", "mail.teleport"]\n', 2, "unknown scope 'mail.teleport'"),
        ('[roles.a]\nscopes = []\n[defaults]\nroles = ["ghost"]\n', 4, "unknown role 'ghost'"),
        ('[roles.a]\nscopes = []\ndaily_tokens = "lots"\n', 3, "daily_tokens must be a non-negative integer"),
        ('[roles.a]\nscopes = "chat.reply"\n', 2, "scopes must be a list"),
        ("[roles.a\n", 1, "not valid TOML"),
        ("[rolez.a]\nscopes = []\n", 1, "unknown section [rolez]"),
        ("[users.alice]\nroles = []\n", 1, "not a Slack user id"),
        ('[channels.C1]\nallow = ["chat.shout"]\n', 2, "unknown scope 'chat.shout'"),
        ('[redaction]\npatterns = [{name = "x", regex = "("}]\n', 2, "bad regex"),
    ],
)
def test_policy_errors_name_line_and_reason(text, line, reason):
    """Each malformed policy is refused with the line and the reason."""
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, source="p.toml")
    assert exc.value.line == line, str(exc.value)
    assert reason in str(exc.value)


def test_policy_check_cli(tmp_path):
    """`clawback policy check` exits 0 on a good file and 1 with line and reason on a bad one."""
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD)
    bad.write_text('[roles.member]\nscopes = ["nope"]\n')
    ok = subprocess.run(
        [sys.executable, "-m", "bot.ops.cli", "policy", "check", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and "policy OK" in ok.stdout
    ko = subprocess.run(
        [sys.executable, "-m", "bot.ops.cli", "policy", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ko.returncode == 1 and "bad.toml:2" in ko.stderr and "unknown scope 'nope'" in ko.stderr


def test_changed_policy_is_picked_up_and_reported(tmp_path):
    """Editing the file changes the policy in force without a restart; a bad edit keeps the last good one."""
    path = tmp_path / "p.toml"
    path.write_text(GOOD)
    changes = []
    store = PolicyStore(path, interval=0, on_change=lambda old, new: changes.append((old.digest, new.digest)))
    assert not store.current.has_scope("U0NEW", "mail.read")
    time.sleep(0.01)
    path.write_text(
        GOOD.replace('scopes = ["chat.reply", "usage.self"]', 'scopes = ["chat.reply", "mail.read"]')
    )
    assert store.current.has_scope("U0NEW", "mail.read")
    assert len(changes) == 1 and changes[0][0] != changes[0][1]
    path.write_text("[broken")
    assert store.current.has_scope("U0NEW", "mail.read")  # still the last good policy


def test_slack_usergroups_grant_roles_once_members_are_known(tmp_path):
    """`[usergroups."S…"]` roles apply to the usergroup's members as the synced cache reports them."""
    path = tmp_path / "p.toml"
    path.write_text(GOOD + '\n[usergroups.S0SRE]\nroles = ["approver"]\n')
    members: dict[str, frozenset[str]] = {}
    store = PolicyStore(path, interval=0, memberships=lambda: members)
    assert not store.current.has_scope("U0ONCALL", "deploy.approve.prod")
    members["S0SRE"] = frozenset({"U0ONCALL"})
    assert store.current.has_scope("U0ONCALL", "deploy.approve.prod")
    assert store.current.has_scope("U0ONCALL", "chat.reply")  # added to the defaults, like groups


def test_usergroup_roles_lapse_when_the_cache_stays_unreachable(tmp_path):
    """A memberships cache outage keeps the last members for at most a day, then they grant nothing."""
    path = tmp_path / "p.toml"
    path.write_text(GOOD + '\n[usergroups.S0SRE]\nroles = ["approver"]\n')
    now = [1000.0]
    state = {"down": False}

    def members() -> dict[str, frozenset[str]]:
        if state["down"]:
            raise ConnectionError("cache unreachable")
        return {"S0SRE": frozenset({"U0ONCALL"})}

    store = PolicyStore(path, interval=0, memberships=members, clock=lambda: now[0])
    assert store.current.has_scope("U0ONCALL", "deploy.approve.prod")
    state["down"] = True
    now[0] += 3600
    assert store.current.has_scope("U0ONCALL", "deploy.approve.prod")  # an outage of an hour: kept
    now[0] += 24 * 3600
    assert not store.current.has_scope("U0ONCALL", "deploy.approve.prod")  # never past a day
    assert store.current.has_scope("U0ONCALL", "chat.reply")  # own roles stay


def test_usergroup_ids_are_validated():
    """A usergroup key that is not a Slack usergroup id is refused with its line."""
    with pytest.raises(PolicyError) as exc:
        parse_policy('[roles.a]\nscopes = []\n[usergroups.sre]\nroles = ["a"]\n', source="p.toml")
    assert exc.value.line == 3 and "not a Slack usergroup id" in str(exc.value)
