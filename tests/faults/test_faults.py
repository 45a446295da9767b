"""Faults: killed workers, lost Redis data, a database outage, LLM and Slack failures — nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from rq import Worker
from sqlalchemy import delete, event, select

from bot.db import Action, Database, LLMCall, Task
from bot.ingress import IngressDeps
from bot.slack.app import build_web
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


def _worker_env(settings, **extra: str) -> dict[str, str]:
    return {
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
        **extra,
    }


def _start_worker(
    settings, tmp_path, *args: str, burst: bool = True, log: str = "worker.log", **env: str
) -> subprocess.Popen:
    """A `clawback worker` process (``args``: e.g. ``--fork``); burst by default (it exits when idle)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bot.ops.cli", "worker", *(["--burst"] if burst else []), *args],
        env=_worker_env(settings, **env),
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / log, "w"),
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


def _kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    # RQ's work horse runs in its own session, so signal its process group as well as the worker's.
    for pid in [*_children(proc.pid), proc.pid]:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:  # not a group leader (or gone): the group signal below reaches it
            pass


class Crash:
    """Kills (or freezes) the worker running a task when a stand-in hook fires, with a second worker ready.

    The second worker (long-running, as in production) is started and holds its lease before the first one
    dies, so ``at`` → answer measures the recovery, not a process start-up.
    """

    def __init__(self, settings, tmp_path, deps) -> None:
        self.settings, self.tmp_path, self.deps = settings, tmp_path, deps
        self.victim: subprocess.Popen | None = None
        self.survivor: subprocess.Popen | None = None
        self.at: float | None = None
        self.env: dict[str, str] = {}

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        """Start the worker that will take the task (``args``: ``--fork`` or ``--no-fork``)."""
        self.env = env
        self.victim = _start_worker(self.settings, self.tmp_path, *args, **env)
        return self.victim

    def _start_survivor(self) -> None:
        """Start a long-running worker and wait until it has registered with RQ (it is then working)."""
        name = f"survivor-{uuid.uuid4().hex[:8]}"
        self.survivor = _start_worker(
            self.settings, self.tmp_path, "--name", name, burst=False, log="survivor.log", **self.env
        )
        deadline = time.monotonic() + 60
        while not Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=self.deps.redis):
            assert time.monotonic() < deadline, (self.tmp_path / "survivor.log").read_text()
            time.sleep(0.1)

    def kill(self, *_args) -> None:
        """SIGKILL the victim (dead before the stand-in answers: it never sees the response)."""
        assert self.victim is not None
        self._start_survivor()
        _kill_tree(self.victim)
        self.victim.wait(timeout=10)
        self.at = time.monotonic()

    def freeze(self, *_args) -> None:
        """SIGSTOP the victim: alive but silent, so its lease is no longer renewed."""
        assert self.victim is not None
        self._start_survivor()
        _kill_tree(self.victim, signal.SIGSTOP)
        self.at = time.monotonic()

    def close(self) -> None:
        for proc in (self.victim, self.survivor):
            if proc is not None and proc.poll() is None:
                _kill_tree(proc, signal.SIGCONT)
                _kill_tree(proc)
                proc.wait(timeout=10)


@pytest.fixture
def crash(settings, tmp_path, deps):
    c = Crash(settings, tmp_path, deps)
    yield c
    c.close()


def _wait_dead(proc: subprocess.Popen) -> None:
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _recover(deps, slack, crash: Crash, *, within: float = 60.0) -> float:
    """Wait for the surviving worker to answer; returns seconds from the kill to the answer (asserted < within)."""
    deadline = time.monotonic() + within + 30
    while not (_answers(slack) and _tasks(deps)[0].status == "done"):
        assert time.monotonic() < deadline, (crash.tmp_path / "survivor.log").read_text()[-3000:]
        time.sleep(0.1)
    assert crash.at is not None
    elapsed = time.monotonic() - crash.at
    assert elapsed < within, f"recovered after {elapsed:.1f} s"
    return elapsed


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--no-fork", "--fork"])
def test_worker_killed_before_the_llm_answers(slack, llm, sender, deps, crash, mode):
    """SIGKILL while the model call is in flight: another worker re-runs the task within a minute (its lease
    expired; no waiting for a 6-minute staleness limit); one reply; one answered LLM-call row."""
    sender.mention("U0ALICE", "C0GENERAL", "killed mid-call?")
    crash.start(mode)
    llm.script({"before": crash.kill})
    _wait_dead(crash.victim)
    assert _tasks(deps)[0].status == "running" and _answers(slack) == []
    _recover(deps, slack, crash)
    time.sleep(2)  # a few more reconciler passes change nothing
    (task,) = _tasks(deps)
    assert task.status == "done" and len(_answers(slack)) == 1
    assert len([r for r in _llm_rows(deps) if r.status == "ok"]) == 1


@pytest.mark.slow
def test_worker_killed_after_the_llm_call_reuses_the_answer(slack, llm, sender, deps, crash):
    """SIGKILL after the model answered (before posting): the recorded answer is reused — no second call."""
    parent = slack.post("C0GENERAL", "a thread to answer in", user="U0BOB")
    sender.mention("U0ALICE", "C0GENERAL", "killed after the call?", thread_ts=parent)
    crash.start()
    slack.on_call("chat.postMessage", crash.kill, when="before")  # dies as it reaches Slack to post
    _wait_dead(crash.victim)
    assert _answers(slack) == []
    _recover(deps, slack, crash)
    (task,) = _tasks(deps)
    assert task.status == "done" and len(_answers(slack)) == 1
    assert len(llm.completions()) == 1 and len(_llm_rows(deps)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--no-fork", "--fork"])
def test_worker_killed_after_posting_does_not_post_twice(slack, llm, sender, deps, crash, mode):
    """SIGKILL after Slack accepted the post but before it was recorded: the retry finds it; one reply."""
    sender.mention("U0ALICE", "C0GENERAL", "killed after posting?", ts="1700000600.000100")
    crash.start(mode)
    slack.on_call("chat.postMessage", crash.kill)
    _wait_dead(crash.victim)
    assert len(_answers(slack)) == 1
    with deps.db.session() as s:
        (action,) = s.execute(select(Action)).scalars()
    assert action.status == "pending"
    _recover(deps, slack, crash)
    (task,) = _tasks(deps)
    assert task.status == "done" and len(_answers(slack)) == 1
    with deps.db.session() as s:
        (action,) = s.execute(select(Action)).scalars()
    assert action.status == "done" and action.result["recovered"] is True


@pytest.mark.slow
def test_paused_worker_woken_after_the_rerun_does_not_post_twice(slack, llm, sender, deps, crash):
    """SIGSTOP mid-call: the lease expires and another worker answers. When the paused worker wakes with the
    model's answer in hand, the task's attempt counter (a newer attempt owns it) stops it at its first side
    effect ("superseded"), so it acts neither after the re-run nor while the re-run is still posting (here the
    re-run has finished, so the recorded action alone would also have kept the reply single)."""
    sender.mention("U0ALICE", "C0GENERAL", "paused mid-call?", ts="1700000650.000100")
    crash.start(CLAWBACK_LEASE_TTL="3", CLAWBACK_RECONCILE_INTERVAL="1")
    llm.script({"before": crash.freeze})
    _recover(deps, slack, crash)
    _kill_tree(crash.victim, signal.SIGCONT)  # wakes up: its model call returns, it goes on to post
    assert crash.victim.wait(timeout=60) == 0
    assert len(_answers(slack)) == 1
    (task,) = _tasks(deps)
    assert task.status == "done" and task.attempts == 2
    log = (crash.tmp_path / "worker.log").read_text()
    assert "superseded" in log, log[-3000:]


@pytest.mark.slow
def test_worker_in_a_long_llm_call_keeps_its_task(slack, llm, sender, deps, crash):
    """A live worker blocked in a model call longer than its lease TTL keeps renewing the lease (a thread
    beside the job): the reconciler leaves its task alone — one model call, one reply."""
    sender.mention("U0ALICE", "C0GENERAL", "a slow answer?")
    crash.start(CLAWBACK_LEASE_TTL="2", CLAWBACK_RECONCILE_INTERVAL="0.5")
    llm.script({"before": crash._start_survivor, "delay": 8})
    assert crash.victim.wait(timeout=60) == 0
    time.sleep(1)
    (task,) = _tasks(deps)
    assert task.status == "done" and task.attempts == 1 and len(_answers(slack)) == 1
    assert len(llm.completions()) == 1
    assert "re-enqueued" not in (crash.tmp_path / "survivor.log").read_text()


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


def test_a_task_purged_between_the_key_clash_and_its_read_back_answers_503(slack, llm, sender, deps):
    """A second delivery of a message clashes with the first's task on ``tasks.message_key``; before ingress
    reads that task back, the row is gone (an operator's purge, staged here by a listener on our own engine).
    Ingress has nothing to point at: it answers 503 and writes nothing, and Slack's retry makes the task."""
    ts = "1700000750.000100"
    assert sender.mention("U0ALICE", "C0GENERAL", "purged?", ts=ts, event_id="EvPURGE1").status == 200
    [first] = _tasks(deps)
    purged: list[str] = []

    def purge(conn, cursor, statement, params, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "message_key" in statement and not purged:
            purged.append(first.id)
            with deps.db.engine.begin() as other:  # another connection: the purge commits on its own
                other.execute(delete(Task.__table__).where(Task.id == first.id))  # the audit keeps its entries

    event.listen(deps.db.engine, "before_cursor_execute", purge)
    try:
        reply = sender.mention("U0ALICE", "C0GENERAL", "purged?", ts=ts, event_id="EvPURGE2")
    finally:
        event.remove(deps.db.engine, "before_cursor_execute", purge)
    assert purged == [first.id]  # the read-back ran, after the clash
    assert reply.status == 503 and _tasks(deps) == []  # nothing written for the second delivery
    retry = sender.mention("U0ALICE", "C0GENERAL", "purged?", ts=ts, event_id="EvPURGE2", retry_num=1)
    assert retry.status == 200
    [task] = _tasks(deps)
    assert task.idempotency_key != first.idempotency_key  # the retry's own task


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


def test_lease_renewal_notices_that_it_lapsed(redis_conn):
    """A lease renewed after it expired (the process was frozen) counts the lapse and is taken again;
    a clean stop gives it up."""
    from bot.queue import TaskQueue

    lease = TaskQueue(redis_conn, prefix="t").lease("w1", ttl=30).start()
    assert 0 < redis_conn.ttl("t:lease:w1") <= 30
    assert lease.renew() is True and lease.lapses == 0
    redis_conn.delete("t:lease:w1")  # as if it expired while the process was stopped
    assert lease.renew() is False and lease.lapses == 1 and redis_conn.exists("t:lease:w1")
    lease.stop()
    assert not redis_conn.exists("t:lease:w1")


def test_lease_pass_leaves_a_running_task_whose_job_waits_in_the_queue(slack, llm, sender, deps):
    """The frequent pass acts only on started jobs of dead workers: a running task whose job is queued
    (a retry on its way to a worker) is left alone, and the task is answered once."""
    from bot import ledger

    sender.mention("U0ALICE", "C0GENERAL", "retry on its way?")
    (task,) = _tasks(deps)
    ledger.mark_running(deps.db, task.id)
    assert deps.queue.reconcile(deps.db, running_only=True) == []
    drain(deps)
    assert len(_answers(slack)) == 1 and _tasks(deps)[0].status == "done"
