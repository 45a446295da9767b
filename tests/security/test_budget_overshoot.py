"""Attack: overshoot the daily token budget with CJK text and concurrent workers.

Before the fix the reservation estimated characters / 4 (7,200 CJK characters reserved ~1.8k tokens and the
endpoint billed ~7.2k), and a reservation was granted whenever used + reserved was still under the limit, so
four workers racing on one person's budget spent about 1.5 times the daily limit. Now the estimate is UTF-8
bytes / 3 (a token per CJK character), a reservation is refused when used + reserved + this call's worst case
would exceed the limit, and each call settles to the usage the API reported.

The LLM stand-in bills with its own tokenizer model (``count_tokens``: a token per CJK character), not with
Clawback's estimate, so this test would catch an estimate that under-counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import LLMCall, Task
from bot.standins.llm import count_prompt
from bot.text.tokens import estimate_messages

LIMIT = 20_000

POLICY = f"""
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "usage.self"]
daily_tokens = {LIMIT}
requests_per_minute = 100

[channels."*"]
allow = ["*"]
"""

# 7,200 CJK characters: 21,600 UTF-8 bytes
QUESTION = ("请帮我总结一下这个季度的预算执行情况和下一步计划。" * 300)[:7200]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """Everyone may ask, with 20,000 tokens a day."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def _worker(settings, tmp_path: Path, n: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": settings.slack_bot_token,
        "SLACK_API_URL": settings.slack_api_url,
        "OPENAI_API_KEY": settings.openai_api_key,
        "OPENAI_BASE_URL": settings.openai_base_url,
        "CLAWBACK_MODEL": settings.clawback_model,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "CLAWBACK_HOME": str(settings.clawback_home),
        "CLAWBACK_POLICY": str(settings.clawback_policy),
        "CLAWBACK_LLM_TIMEOUT": "10",
        "CLAWBACK_RETRY_INTERVALS": "0,0",
        "CLAWBACK_JOB_RETRIES": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bot.ops.cli", "worker", "--burst"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"worker{n}.log", "w"),
    )


def test_four_workers_with_cjk_questions_stay_within_the_daily_budget(
    slack, llm, sender, deps, settings, tmp_path
):
    """Six long CJK questions, four worker processes at once: the tokens billed never exceed the limit."""
    llm.latency = 1.0  # every call is in flight while the other workers reserve
    for n in range(6):
        sender.mention("U0ALICE", "C0GENERAL", f"{QUESTION} ({n})")
    workers = [_worker(settings, tmp_path, n) for n in range(4)]
    for w in workers:
        assert w.wait(120) == 0, (tmp_path / "worker0.log").read_text()[-2000:]

    with deps.db.session() as s:
        calls = list(s.execute(select(LLMCall)).scalars())
        tasks = list(s.execute(select(Task).where(Task.intent == "answer")).scalars())
    billed = sum(c.total_tokens for c in calls)
    assert calls, "no call was made at all"
    assert billed <= LIMIT, f"{len(calls)} calls billed {billed} tokens against a {LIMIT} limit"
    # every request either got its answer or a clear refusal before the model; nothing is left hanging
    statuses = sorted(t.status for t in tasks)
    assert set(statuses) <= {"done", "denied"} and "denied" in statuses, statuses
    refusals = [
        c["text"] for c in slack.calls("chat.postMessage") if "Nothing was sent to the model" in c["text"]
    ]
    assert len(refusals) == statuses.count("denied")
    assert all("daily Clawback token budget" in text for text in refusals)
    # the estimate the reservation used is never below what the endpoint billed for the prompt
    for body in llm.completions():
        assert estimate_messages(body["messages"]) >= count_prompt(body["messages"])
    assert Budget_used(deps, "U0ALICE") == billed


def Budget_used(deps, user: str) -> int:  # noqa: N802
    """Tokens the Redis budget counts as used today for ``user`` (nothing left reserved)."""
    used, reserved = deps.budget.used_today(user)
    assert reserved == 0
    return used
