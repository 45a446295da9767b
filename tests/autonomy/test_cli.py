"""`clawback autonomy show|set`: a table that fits 80 columns; set is audited with the OS user; caps hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot import autonomy
from bot.db import AuditEntry
from bot.ops.cli import app
from tests.autonomy.conftest import POLICY, decide, policy


@pytest.fixture
def env(tmp_path: Path, db) -> dict[str, str]:
    """Environment for the CLI on the test database and policy."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return {"DATABASE_URL": db.url, "CLAWBACK_POLICY": str(path), "CLAWBACK_HOME": str(tmp_path / "home")}


def test_set_then_show(db, env):
    """An admin sets newsletter moves to auto; show lists it within 80 columns; the change is audited."""
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["autonomy", "set", "--user", "U0ALICE", "--action", "mail.move", "--category", "newsletter",
         "--level", "auto"],
        env=env,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert autonomy.level_for(db, policy(), "U0ALICE", "mail.move", "newsletter") == "auto"
    decide(db, policy(), "accepted", user="U0BOB")
    shown = runner.invoke(app, ["autonomy", "show"], env={**env, "COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "U0ALICE" in shown.output and "newsletter" in shown.output and "U0BOB" in shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= 80
    only = runner.invoke(app, ["autonomy", "show", "--user", "U0BOB"], env=env)
    assert "U0ALICE" not in only.output and "1/1" in only.output
    with db.read() as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "autonomy.set")).scalar_one()
    assert entry.actor.startswith("cli:") and entry.scope == "admin" and '"os_user"' in entry.details


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--action", "mail.categorize", "--level", "auto"], "above the policy's max"),
        (["--action", "deploy.request", "--level", "auto"], "deploys are never autonomous"),
        (["--action", "mail.move", "--level", "sometimes"], "bad level"),
        (["--action", "chat.reply.channel", "--category", "fyi", "--level", "auto"], "does not apply"),
    ],
)
def test_set_refusals(db, env, args, reason):
    """Above max, deploys, bad levels and categories of non-mail actions are refused (exit 2)."""
    out = CliRunner().invoke(app, ["autonomy", "set", "--user", "U0ALICE", *args], env=env)
    assert out.exit_code == 2 and reason in out.output
