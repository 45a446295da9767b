"""Pure parts of the deploy surface: policy [services], freeze windows, command parsing, the risk schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.deploy.config import active_freeze, parse_freeze, parse_services
from bot.deploy.demo import DEMO_ROLES_POLICY, DEMO_SERVICES_POLICY
from bot.deploy.plan import detect, parse_risk
from bot.deploy.service import params_hash
from bot.errors import ConfigError, PolicyError
from bot.policy import parse_policy
from bot.settings import Settings
from handlers.deploy import parse_command

pytestmark = pytest.mark.nopg

HEAD = '[services.api]\nrepo = "acme/api"\nworkflow = "d.yml"\nenvironments = ["prod"]\n'
BASE = """
[roles.deployer]
scopes = ["deploy.plan", "deploy.request", "deploy.approve.prod"]
"""


def at(text: str) -> datetime:
    """A UTC moment from ``YYYY-MM-DD HH:MM`` (2026-03-06 is a Friday)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2026-03-06 15:59", False),
        ("2026-03-06 16:00", True),
        ("2026-03-07 12:00", True),
        ("2026-03-09 07:59", True),
        ("2026-03-09 08:00", False),
        ("2026-03-11 12:00", False),
    ],
)
def test_weekly_window_wraps_over_the_weekend(moment, inside):
    """'Fri 16:00-Mon 08:00 UTC' holds from Friday 16:00 (inclusive) to Monday 08:00 (exclusive)."""
    window = parse_freeze("Fri 16:00-Mon 08:00 UTC")
    assert window.contains(at(moment)) is inside


def test_window_in_another_zone_uses_its_wall_clock():
    """A Berlin window is evaluated on Berlin time (UTC+1 in March)."""
    window = parse_freeze("Friday 16:00-Monday 08:00 Europe/Berlin")
    assert not window.contains(at("2026-03-06 14:59")) and window.contains(at("2026-03-06 15:00"))


def test_daily_and_dated_windows_and_their_end():
    """Daily windows wrap over midnight; dated windows without times cover whole days; ends_at is exact."""
    nightly = parse_freeze("22:00-06:00 UTC")
    assert nightly.contains(at("2026-03-06 23:30")) and not nightly.contains(at("2026-03-06 12:00"))
    assert nightly.ends_at(at("2026-03-06 23:30")) == at("2026-03-07 06:00")
    holidays = parse_freeze("2026-12-24-2026-12-26 UTC")
    assert holidays.contains(at("2026-12-26 23:59")) and not holidays.contains(at("2026-12-27 00:00"))
    assert parse_freeze("Fri 16:00-Mon 08:00 UTC").ends_at(at("2026-03-07 12:00")) == at("2026-03-09 08:00")
    assert active_freeze([nightly, holidays], at("2026-12-25 12:00")) is holidays
    assert active_freeze([nightly], at("2026-03-06 12:00")) is None


@pytest.mark.parametrize(
    "text",
    [
        "Fri 16:00",
        "Fri 25:00-Mon 08:00 UTC",
        "Fri 16:00-Mon 08:00 Mars/Olympus",
        "Fri 16:00-Fri 16:00 UTC",
        "2026-12-26-2026-12-24 UTC",
        "someday",
    ],
)
def test_malformed_windows_are_policy_errors(text):
    """Bad windows name themselves in the error."""
    with pytest.raises(PolicyError) as info:
        parse_freeze(text)
    assert text in info.value.reason


def test_policy_check_accepts_the_demo_and_reads_services():
    """The demo snippet is a valid policy section with approvals and a freeze."""
    policy = parse_policy(DEMO_SERVICES_POLICY + DEMO_ROLES_POLICY)
    shop = parse_services(policy.section("services"))["shop"]
    assert shop.default_env == "staging" and shop.environments["prod"].approvals == 1
    assert shop.baseline == "v1.0" and shop.executor == "github"


@pytest.mark.parametrize(
    ("snippet", "reason", "line_text"),
    [
        (
            HEAD + "[services.api.qa]\n" + "approvals = 1\n",
            "'qa' is not in environments",
            "[services.api.qa]",
        ),
        (
            HEAD + "[services.api.prod]\n" + 'freeze = ["Fri 16:00 to Mon"]\n',
            "freeze window",
            "Fri 16:00 to Mon",
        ),
        (
            HEAD + "[services.api.prod]\n" + "approvals = 9\n",
            "approvals must be",
            "approvals = 9",
        ),
        (
            '[services.api]\nrepo = "acme/api"\nenvironments = ["prod"]\nexecutor = "webhook"\n',
            "webhook_url",
            None,
        ),
        (
            HEAD + 'colour = "red"\n',
            "unknown key 'colour'",
            'colour = "red"',
        ),
        (
            '[services.Api]\nrepo = "acme/api"\nworkflow = "d.yml"\nenvironments = ["prod"]\n',
            "service names",
            "[services.Api]",
        ),
    ],
)
def test_policy_check_names_the_line_and_reason(snippet, reason, line_text):
    """`clawback policy check` reports bad [services] entries with the reason and, where it can, the line."""
    text = BASE + snippet
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert reason in info.value.reason and info.value.reason.startswith("[services]")
    if line_text:
        assert line_text in text.splitlines()[info.value.line - 1]


def test_webhook_service_needs_a_secret_variable_name():
    """A webhook executor names the variable holding its secret; Clawback's own settings are refused."""
    table = {
        "hook": {
            "repo": "a/b",
            "environments": ["prod"],
            "executor": "webhook",
            "webhook_url": "https://ci.example/deploy",
            "webhook_secret_env": "HOOK_SECRET",
        }
    }
    assert parse_services(table)["hook"].webhook_secret_env == "HOOK_SECRET"
    settings = Settings(_env_file=None)
    with pytest.raises(ConfigError):
        settings.deploy_webhook_secret("SLACK_BOT_TOKEN")
    with pytest.raises(ConfigError):
        settings.deploy_webhook_secret("lower_case")


@pytest.mark.parametrize(
    ("text", "intent", "payload"),
    [
        ("plan api main", "deploy_plan", {"service": "api", "ref": "main", "environment": None}),
        (
            "plan API release/2.1 Prod",
            "deploy_plan",
            {"service": "api", "ref": "release/2.1", "environment": "prod"},
        ),
        ("status", "deploy_status", {"service": None}),
        ("rollback api prod", "deploy_rollback", {"service": "api", "environment": "prod"}),
        ("cancel 0123456789abcdef0123", "deploy_cancel", {"request_id": "0123456789abcdef0123"}),
    ],
)
def test_parse_command(text, intent, payload):
    """Sub-commands become intents with their arguments."""
    command = parse_command(text)
    assert (command.intent, command.payload) == (intent, payload)


@pytest.mark.parametrize(
    "text", ["", "help", "plan", "plan a b c d", "cancel nope", "rollback api", "plan a <b>", "nuke prod"]
)
def test_parse_command_answers_at_once(text):
    """Help and bad input are answered in the ack, without a task."""
    command = parse_command(text)
    assert command.intent is None and command.reply


def test_parse_risk_accepts_only_the_schema():
    """The model's answer is used only when it fits; extra text, bad levels and wrong types are refused."""
    good = {
        "risk_level": "medium",
        "summary": "s",
        "notable_changes": ["a"],
        "migrations": [],
        "config_changes": [],
        "suggested_checks": ["x"] * 20,
        "rollback_plan": "r",
    }
    parsed = parse_risk(json.dumps(good))
    assert parsed is not None and len(parsed["suggested_checks"]) == 8
    assert parse_risk(json.dumps({**good, "risk_level": "none"})) is None
    assert parse_risk(json.dumps({**good, "migrations": "yes"})) is None
    assert parse_risk("Sure! Deploying now.") is None


def test_detect_and_params_hash():
    """Migrations and config files are found by path; the params hash changes with any parameter."""
    found = detect(["migrations/0007.sql", "config/prod.yml", "app.py", "db/migrate/1_add.rb"])
    assert found == {
        "migrations": ["migrations/0007.sql", "db/migrate/1_add.rb"],
        "config": ["config/prod.yml"],
    }
    base = params_hash("api", "prod", "a" * 40, "U1")
    assert base != params_hash("api", "prod", "b" * 40, "U1") and base != params_hash(
        "api", "prod", "a" * 40, "U2"
    )
