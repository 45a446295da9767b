"""Transcripts: the App Home tab and /usage show a person their own numbers; the CLI report and sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.ops.cli import app
from tests.conftest import drain

POLICY = """
[defaults]
roles = ["member"]
[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self"]
daily_tokens = 200000
requests_per_minute = 20
[roles.guest]
scopes = ["chat.reply"]
daily_tokens = 1000
requests_per_minute = 5
[roles.auditor]
scopes = ["usage.self", "audit.read"]
[users.U0DAVE]
roles = ["guest"]
[users.U0EMMA]
roles = ["auditor"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """Members see their own usage; Dave is a guest without usage.self; Emma audits."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def _ask_and_rate(sender, slack, deps, user: str, channel: str = "C0GENERAL") -> None:
    sender.mention(user, channel, "what is the launch date?")
    drain(deps)
    with deps.db.session() as s:
        from sqlalchemy import select

        from bot.db import Task

        task = (
            s.execute(select(Task).where(Task.requester == user).order_by(Task.created_at.desc()))
            .scalars()
            .first()
        )
    sender.block_action(
        user, "feedback_resolved", task.id, channel=channel, message_ts=task.result["reply_ts"]
    )
    drain(deps)


def test_home_tab_shows_own_week_and_receipts(slack, llm, sender, deps):
    """Opening Home publishes Alice's own tasks, accepted outcomes, cost per accepted outcome and receipts."""
    _ask_and_rate(sender, slack, deps, "U0ALICE")
    sender.mention("U0BOB", "C0GENERAL", "bob's own question")
    drain(deps)
    assert sender.home_opened("U0ALICE").status == 200
    assert "U0ALICE" not in slack.views  # nothing published before the ack: the job does it
    drain(deps)
    view = json.dumps(slack.views["U0ALICE"])
    assert '"type": "home"' in view and "Your week with Clawback" in view
    assert "*Tasks*\\n1" in view and "*Accepted outcomes*\\n1" in view
    assert "slack.post" in view and "C0GENERAL" in view  # receipt of the reply posted for her
    assert "Only you see these numbers" in view


def test_home_tab_without_usage_scope_says_so(slack, llm, sender, deps):
    """A guest without usage.self gets a Home tab that explains why there are no numbers."""
    sender.home_opened("U0DAVE")
    drain(deps)
    assert "usage.self" in json.dumps(slack.views["U0DAVE"])


def test_usage_command_answers_ephemerally_with_own_numbers(slack, llm, sender, deps):
    """/usage answers in the ack, only for the caller, with their own numbers."""
    _ask_and_rate(sender, slack, deps, "U0ALICE")
    sender.mention("U0BOB", "C0GENERAL", "bob asks too")
    drain(deps)
    reply = sender.command("U0ALICE", "/usage", "30d")
    assert reply.status == 200
    body = reply.json()
    assert body["response_type"] == "ephemeral"
    assert (
        "last 30 days" in body["text"]
        and "1 tasks" in body["text"]
        and "Accepted outcomes: 1" in body["text"]
    )
    assert "Only you can see this" in body["text"]
    assert all("Your usage" not in (c.get("text") or "") for c in slack.calls("chat.postMessage"))


def test_usage_command_refusals(slack, llm, sender, deps):
    """No usage.self → told which permission is missing; bad window → help text."""
    assert "usage.self" in sender.command("U0DAVE", "/usage", "").json()["text"]
    assert "Usage: `/usage`" in sender.command("U0ALICE", "/usage", "999d").json()["text"]


def _env(settings, policy_file) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "CLAWBACK_POLICY": str(policy_file),
        "CLAWBACK_HOME": str(settings.clawback_home),
    }


def test_cli_report_json_and_per_person_rules(slack, llm, sender, deps, settings, policy_file):
    """`clawback report --format json` works for the operator; --by user needs --as an audit.read holder."""
    _ask_and_rate(sender, slack, deps, "U0ALICE")
    runner = CliRunner()
    env = _env(settings, policy_file)
    out = runner.invoke(app, ["report", "--format", "json"], env=env)
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    # One person < k = 5: the totals are suppressed too (they used to show that person's numbers).
    assert (
        doc["totals"]["suppressed"] is True and doc["totals"]["tasks"] is None and doc["outcome_mix"] is None
    )
    assert doc["flags"] is None and "flags_summary" in doc
    assert doc["by_intent"][0]["suppressed"] is True  # one person < k = 5
    refused = runner.invoke(app, ["report", "--by", "user"], env=env)
    assert refused.exit_code == 2 and "audit.read" in refused.output
    ok = runner.invoke(app, ["report", "--by", "user", "--format", "csv", "--as", "U0EMMA"], env=env)
    assert ok.exit_code == 0 and ok.stdout.splitlines()[1].startswith("U0ALICE,False,1,1,")


def test_cli_report_html_and_table(slack, llm, sender, deps, settings, policy_file, tmp_path):
    """--html writes the self-contained file; the table format prints the sections."""
    _ask_and_rate(sender, slack, deps, "U0ALICE")
    target = tmp_path / "r.html"
    out = CliRunner().invoke(
        app, ["report", "--html", str(target), "--as", "U0EMMA"], env=_env(settings, policy_file)
    )
    assert out.exit_code == 0, out.output
    assert "chart-timeline" in target.read_text() and "By intent" in out.stdout
    bad = CliRunner().invoke(app, ["report", "--by", "colour"], env=_env(settings, policy_file))
    assert bad.exit_code != 0 and "colour" in bad.output


def test_cli_outcomes_sweep(slack, llm, sender, deps, settings, policy_file):
    """`clawback outcomes-sweep` marks finished tasks past the window as none (here: a zero-length window)."""
    sender.mention("U0BOB", "C0GENERAL", "no one will rate this")
    drain(deps)
    env = {**_env(settings, policy_file), "CLAWBACK_OUTCOME_WINDOW_HOURS": "0.0000001"}
    out = CliRunner().invoke(app, ["outcomes-sweep"], env=env)
    assert out.exit_code == 0 and "1 task(s) marked none" in out.stdout
