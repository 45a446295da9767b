"""The real processes: `clawback web` and `clawback worker` started as a person would, configured only by the
environment (SLACK_API_URL and OPENAI_BASE_URL point at the stand-ins)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from bot.db import Database, LLMCall, Task
from bot.errors import SchemaOutdated
from bot.standins.slack_events import SlackEventSender
from tests.conftest import SIGNING_SECRET
from tests.load.test_load import free_port, start_web


@pytest.mark.slow
def test_web_and_worker_processes_answer_once_with_the_reported_tokens(slack, llm, settings, db, tmp_path):
    """A signed mention to `clawback web` is answered by `clawback worker` once, with the exact token total."""
    env = {**os.environ, "SLACK_BOT_TOKEN": settings.slack_bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": settings.slack_api_url, "OPENAI_API_KEY": settings.openai_api_key,
           "OPENAI_BASE_URL": settings.openai_base_url, "CLAWBACK_MODEL": "clawback-standin",
           "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
           "CLAWBACK_HOME": str(settings.clawback_home)}
    port = free_port()
    web = start_web(settings, tmp_path, port)
    worker = subprocess.Popen([sys.executable, "-m", "bot.ops.cli", "worker"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "w"))
    try:
        sender = SlackEventSender(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET)
        parent = slack.post("C0GENERAL", "Which region hosts the EU customers?", user="U0BOB")
        for retry in (None, 1):
            reply = sender.mention("U0ALICE", "C0GENERAL", "where do EU customers live?", thread_ts=parent,
                                   event_id="EvPROC0001", ts="1800000100.000100", retry_num=retry)
            assert reply.status == 200
        sender.close()
        deadline = time.monotonic() + 30
        while not [m for m in slack.bot_messages() if m.metadata] and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)  # clean shutdown: finish the current job, then exit
        assert worker.wait(timeout=30) == 0
    finally:
        for proc in (web, worker):
            if proc.poll() is None:
                proc.kill()
        web.wait(timeout=30)
    (answer,) = [m for m in slack.bot_messages() if m.metadata]
    assert answer.thread_ts == parent
    with db.session() as s:
        (call,) = s.execute(select(LLMCall)).scalars()
        (task,) = s.execute(select(Task)).scalars()
    assert task.status == "done" and len(llm.completions()) == 1
    assert f"total {call.prompt_tokens + call.completion_tokens:,}" in json.dumps(answer.blocks)


def test_outdated_schema_is_refused_with_what_to_run(tmp_path):
    """With automatic upgrades off (PostgreSQL's rule), an old schema stops start-up and names the command."""
    from bot import migrate
    from bot.migrate import ensure_schema

    old = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(old, "0001")
    with pytest.raises(SchemaOutdated, match="clawback db upgrade"):
        ensure_schema(old, auto_upgrade_sqlite=False)
    ensure_schema(old)  # SQLite upgrades itself by default
    assert migrate.current_revision(old) == migrate.head_revision()
