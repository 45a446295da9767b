"""Faults: killed workers, lost Redis data, a database outage, LLM and Slack failures — nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db import Action, Database, LLMCall, Task
from bot.ingress import IngressDeps
from bot.slack_app import build_web
from bot.standins.slack_events import SlackEventSender
from handlers.context import HandlerContext
from tests.conftest import SIGNING_SECRET, WebServer, drain


def _tasks(deps):
    with deps.db.session() as s:
        return list(s.execute(select(Task).order_by(Task.created_at)).scalars())


def _llm_rows(deps):
    with deps.db.session() as s:
        return list(s.execute(select(LLMCall)).scalars())


def _answers(slack):
    """Answers actually in Slack (messages carrying Clawback's idempotency metadata)."""
    return [m for m in slack.bot_messages() if m.metadata]


def _start_worker(settings, tmp_path, *args: str) -> subprocess.Popen:
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
        "CLAWBACK_RETRY_INTERVALS": "0,0",
        "CLAWBACK_JOB_RETRIES": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--burst"],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "worker.log", "w"),
    )


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _kill_group(proc: subprocess.Popen):
    def kill(*_args) -> None:
        # RQ's work horse runs in its own session, so kill its process group as well as the worker's.
        for pid in _children(proc.pid):
            os.killpg(pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)  # dead before the stand-in answers: the worker never sees the response

    return kill


def _wait_dead(proc: subprocess.Popen) -> None:
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _recover(deps) -> None:
    requeued = deps.queue.reconcile(deps.db, older_than=timedelta(0), stale_after=timedelta(0))
    assert requeued, "the reconciler should find the task the dead worker held"
    drain(deps)


@pytest.mark.slow
def test_worker_killed_before_the_llm_answers(slack, llm, sender, deps, settings, tmp_path):
    """SIGKILL while the model call is in flight: the task is re-run once; one reply; one LLM-call row."""
    sender.mention("U0ALICE", "C0GENERAL", "killed mid-call?")
    proc = _start_worker(settings, tmp_path)
    llm.script({"before": _kill_group(proc), "delay": 5})
    _wait_dead(proc)
    assert _tasks(deps)[0].status == "running" and _answers(slack) == []
    _recover(deps)
    (task,) = _tasks(deps)
    assert task.status == "done" and len(_answers(slack)) == 1
    assert len([r for r in _llm_rows(deps) if r.status == "ok"]) == 1


@pytest.mark.slow
def test_worker_killed_after_the_llm_call_reuses_the_answer(slack, llm, sender, deps, settings, tmp_path):
    """SIGKILL after the model answered (before posting): the recorded answer is reused — no second call."""
    parent = slack.post("C0GENERAL", "a thread to answer in", user="U0BOB")
    sender.mention("U0ALICE", "C0GENERAL", "killed after the call?", thread_ts=parent)
    proc = _start_worker(settings, tmp_path)
    slack.on_call("chat.postMessage", _kill_group(proc), when="before")  # dies as it reaches Slack to post
    _wait_dead(proc)
    assert _answers(slack) == []
    _recover(deps)
    (task,) = _tasks(deps)
    assert task.status == "done" and len(_answers(slack)) == 1
    assert len(llm.completions()) == 1 and len(_llm_rows(deps)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--no-fork", "--fork"])
def test_worker_killed_after_posting_does_not_post_twice(slack, llm, sender, deps, settings, tmp_path, mode):
    """SIGKILL after Slack accepted the post but before it was recorded: the retry finds it; one reply."""
    sender.mention("U0ALICE", "C0GENERAL", "killed after posting?", ts="1700000600.000100")
    proc = _start_worker(settings, tmp_path, mode)
    slack.on_call("chat.postMessage", _kill_group(proc))
    _wait_dead(proc)
    assert len(_answers(slack)) == 1
    with deps.db.session() as s:
        (action,) = s.execute(select(Action)).scalars()
    assert action.status == "pending"
    _recover(deps)
    (task,) = _tasks(deps)
    assert task.status == "done" and len(_answers(slack)) == 1
    with deps.db.session() as s:
        (action,) = s.execute(select(Action)).scalars()
    assert action.status == "done" and action.result["recovered"] is True


def test_redis_flushed_between_ingress_and_work(slack, llm, sender, deps):
    """Redis loses the queue: the reconciler re-enqueues from SQL and the question is answered once."""
    sender.mention("U0ALICE", "C0GENERAL", "will this survive?")
    deps.redis.flushdb()
    drain(deps)
    assert _answers(slack) == []
    assert deps.queue.reconcile(deps.db, older_than=timedelta(0))
    assert deps.queue.reconcile(deps.db, older_than=timedelta(0)) == []  # queued once, not twice
    drain(deps)
    assert len(_answers(slack)) == 1 and _tasks(deps)[0].status == "done"


def test_database_down_answers_503_then_the_retry_is_processed(slack, llm, deps, settings, ingress):
    """With the database unreachable ingress answers 503 (Slack retries); nothing is queued; the retry works."""
    down = Database("postgresql://postgres@127.0.0.1:1/none")
    broken = IngressDeps(db=down, queue=deps.queue, policy=ingress.policy)
    with WebServer(build_web(settings, db=down, queue_conn=deps.redis, ctx=HandlerContext(broken))) as web:
        s = SlackEventSender(web.url + "/slack/events", SIGNING_SECRET)
        r = s.mention("U0ALICE", "C0GENERAL", "db down?", event_id="EvDBDOWN1", ts="1700000700.000100")
        assert r.status == 503
        health = __import__("urllib.request").request.urlopen  # noqa: S310 - loopback only
        with pytest.raises(Exception) as exc:
            health(web.url + "/healthz", timeout=5)
        assert "503" in str(exc.value)
        s.close()
    assert deps.queue.queues["interactive"].count == 0
    with WebServer(
        build_web(settings, db=deps.db, queue_conn=deps.redis, ctx=HandlerContext(ingress))
    ) as web:
        s = SlackEventSender(web.url + "/slack/events", SIGNING_SECRET)
        r = s.mention(
            "U0ALICE", "C0GENERAL", "db down?", event_id="EvDBDOWN1", ts="1700000700.000100", retry_num=1
        )
        assert r.status == 200
        s.close()
    drain(deps)
    assert len(_tasks(deps)) == 1 and len(_answers(slack)) == 1


def test_redis_down_at_ingress_keeps_the_task_for_the_reconciler(slack, llm, deps, settings, ingress):
    """With Redis unreachable the request is still acknowledged; the task waits in SQL and is answered later."""
    import redis as redis_lib

    from bot.queue import TaskQueue

    dead_queue = TaskQueue(redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    broken = IngressDeps(db=deps.db, queue=dead_queue, policy=ingress.policy)
    with WebServer(build_web(settings, db=deps.db, queue_conn=deps.redis, ctx=HandlerContext(broken))) as web:
        s = SlackEventSender(web.url + "/slack/events", SIGNING_SECRET)
        assert s.mention("U0ALICE", "C0GENERAL", "redis down?").status == 200
        s.close()
    assert _tasks(deps)[0].status == "queued"
    assert deps.queue.reconcile(deps.db, older_than=timedelta(0))
    drain(deps)
    assert len(_answers(slack)) == 1


@pytest.mark.parametrize(
    "steps, status, reason",
    [
        ([{"status": 500}] * 12, "failed", "model unavailable"),
        ([{"delay": 3}] * 12, "failed", "model unavailable"),
        ([{"truncate": True}] * 12, "failed", "truncated"),
        ([{"empty_choices": True}] * 12, "failed", "no answer"),
        ([{"status": 429, "retry_after": 0}, {"status": 500}, {}], "done", None),
        ([{"no_usage": True}], "done", None),
        ([{"status": 401, "code": "invalid_api_key"}], "failed", "refused the request"),
    ],
    ids=["5xx", "timeout", "truncated-json", "empty-choices", "429-500-then-ok", "no-usage", "401"],
)
def test_llm_faults_end_cleanly_with_consistent_ledger(slack, llm, sender, deps, steps, status, reason):
    """Each LLM fault ends in a clear state; tokens are only counted when the API reported usage."""
    llm.script(*steps)
    sender.mention("U0ALICE", "C0GENERAL", "fault?", ts="1700000800.000100")
    drain(deps, max_wait=60)
    (task,) = _tasks(deps)
    assert task.status == status, task.status_reason
    if reason:
        assert reason in task.status_reason
        (note,) = slack.calls("chat.postMessage")
        assert task.id in note["text"] and note["thread_ts"] == "1700000800.000100"
    else:
        assert len(_answers(slack)) == 1
    for row in _llm_rows(deps):
        if not row.usage_reported:
            assert row.total_tokens == 0
    if steps == [{"no_usage": True}]:
        (row,) = _llm_rows(deps)
        assert row.usage_reported is False and row.total_tokens == 0


def test_slack_rate_limit_on_post_is_honoured(slack, llm, sender, deps):
    """`ratelimited` with Retry-After is waited out and the answer is posted once."""
    slack.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    sender.mention("U0ALICE", "C0GENERAL", "rate limited?")
    drain(deps)
    assert len(_answers(slack)) == 1 and _tasks(deps)[0].status == "done"


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
def test_slack_refusals_fail_the_task_and_tell_the_user_by_dm(slack, llm, sender, deps, error):
    """When Slack refuses the post, the task fails with the reason and the requester hears about it in a DM."""
    slack.fail_next("chat.postMessage", error, times=2)  # the answer and the note in the thread both fail
    sender.mention("U0ALICE", "C0GENERAL", "where will this go?")
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "failed" and error in task.status_reason
    dms = [c for c in slack.calls("chat.postMessage") if c["channel"] == "D0ALICE"]
    assert dms and task.id in dms[-1]["text"]


def test_long_answers_are_split_never_lost(slack, llm, sender, deps):
    """A 250,000-character answer arrives whole over several messages; the buttons are on the last one."""
    words = [f"w{i}" for i in range(40000)]
    llm.script({"content": " ".join(words)})
    sender.mention("U0ALICE", "C0GENERAL", "tell me everything")
    drain(deps)
    posts = _answers(slack)
    assert len(posts) >= 2
    text = " ".join(b["text"]["text"] for p in posts for b in p.blocks if b["type"] == "section")
    assert text.split() == words
    assert all(b["type"] != "actions" for b in posts[0].blocks) and posts[-1].blocks[-1]["type"] == "actions"


def test_health_reports_redis_and_database(web):
    """/healthz is 200 with both up."""
    import urllib.request

    with urllib.request.urlopen(web.url + "/healthz", timeout=5) as resp:  # noqa: S310 - loopback
        assert resp.status == 200 and json.loads(resp.read()) == {"ok": True, "database": True, "redis": True}


def test_metrics_expose_pipeline_totals_without_people(slack, llm, sender, deps, web):
    """/metrics (on its own listener, not Slack's) has tokens by surface/intent/model and no user ids.

    Five people ask: series cover at least k (5) people, smaller groups are pooled or withheld.
    """
    import urllib.request

    from tests.conftest import WebServer

    for user in ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0EMMA"):
        sender.mention(user, "C0GENERAL", "metrics?")
    drain(deps)
    with WebServer(web.wsgi.metrics_app) as metrics:
        with urllib.request.urlopen(metrics.url + "/metrics", timeout=5) as resp:  # noqa: S310 - loopback
            body = resp.read().decode()
    assert "clawback_llm_tokens_total" in body and 'surface="mention"' in body
    assert "clawback_ingress_ack_seconds" in body
    assert "U0ALICE" not in body
    time.sleep(0)
