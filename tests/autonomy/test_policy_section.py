"""`[autonomy]` in the policy: validated with the line and the reason; deploys are never autonomous."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bot.errors import PolicyError
from bot.ops.cli import app
from bot.policy import AutonomyRule, parse_policy
from tests.autonomy.conftest import POLICY

HEAD = '[roles.a]\nscopes = []\n\n[autonomy]\ndefault = "auto"\n\n'


def test_the_issue_example_parses_with_category_overrides():
    """The documented example and a per-category table overriding one key."""
    p = parse_policy(POLICY)
    assert p.autonomy.rule("mail.move") == AutonomyRule("suggest", "auto", 5, 0.8, 4, 2)
    assert p.autonomy.rule("mail.move", "newsletter").promote_after == 3
    assert p.autonomy.rule("mail.move", "newsletter").window == 4  # inherited from the action
    assert p.autonomy.rule("mail.draft") is None and p.autonomy.default == "auto"


@pytest.mark.parametrize(
    "body, line, reason",
    [
        ('[autonomy.actions."deploy.request"]\nstart = "auto"\n', 7, "deploys are never autonomous"),
        ('[autonomy.actions."mail.teleport"]\n', 7, "unknown action 'mail.teleport'"),
        (
            '[autonomy.actions."mail.move"]\nstart = "auto"\nmax = "suggest"\n',
            9,
            "max 'suggest' is below start",
        ),
        (
            '[autonomy.actions."mail.move"]\nstart = "always"\n',
            8,
            "start must be one of shadow, suggest, auto",
        ),
        ('[autonomy.actions."mail.move"]\npromote_after = 0\n', 8, "promote_after must be an integer"),
        (
            '[autonomy.actions."mail.move"]\npromote_min_acceptance = 1.5\n',
            8,
            "promote_min_acceptance must be",
        ),
        ('[autonomy.actions."mail.move"]\nwindow = 3\ndemote_after = 4\n', 9, "cannot exceed window"),
        ('[autonomy.actions."mail.move"]\npromote_aftr = 3\n', 8, "unknown key 'promote_aftr'"),
        ('[autonomy.actions."mail.move".categories.spam]\n', 7, "unknown category"),
        ('[autonomy.actions."chat.reply.channel".categories.fyi]\n', 7, "mail actions only"),
    ],
)
def test_bad_sections_name_the_line_and_reason(body, line, reason):
    """Each mistake is reported with its line, as the rest of the policy is."""
    with pytest.raises(PolicyError) as exc:
        parse_policy(HEAD + body)
    assert reason in str(exc.value)
    assert exc.value.line == line


def test_bad_default_and_unknown_key_in_the_section():
    """default must be a level; [autonomy] takes only default and actions."""
    with pytest.raises(PolicyError, match="autonomy.default must be one of"):
        parse_policy('[autonomy]\ndefault = "yolo"\n')
    with pytest.raises(PolicyError, match="unknown key 'level'"):
        parse_policy('[autonomy]\nlevel = "auto"\n')


def test_policy_check_refuses_deploys(tmp_path):
    """`clawback policy check` exits 1 naming the deploy action's line."""
    path = tmp_path / "p.toml"
    path.write_text(HEAD + '[autonomy.actions."deploy.approve.prod"]\nstart = "auto"\n')
    out = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert out.exit_code == 1
    assert ":7:" in out.output and "deploys are never autonomous" in out.output
    path.write_text(POLICY)
    assert CliRunner().invoke(app, ["policy", "check", str(path)]).exit_code == 0
