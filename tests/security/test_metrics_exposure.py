"""/metrics on the Slack-facing listener (issue 11, item 13).

Reproduced: `clawback web` served ``GET /metrics`` on the public listener Slack posts to, without any
authentication. Must hold: the Slack-facing listener has no /metrics; the metrics are served only on their
own listener (``--metrics-port``, bound to loopback unless ``--metrics-host`` says otherwise), which serves
nothing else; without ``--metrics-port`` there is no metrics listener at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from bot.standins.slack_events import SlackEventSender
from tests.conftest import SIGNING_SECRET, drain
from tests.load.test_load import free_port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _start(settings, tmp_path, *args: str) -> tuple[subprocess.Popen, int]:
    """`clawback web` as its own process with ``args``; waits for /healthz on its Slack-facing port."""
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": settings.slack_bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": settings.slack_api_url,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "CLAWBACK_HOME": str(settings.clawback_home),
    }
    cmd = [sys.executable, "-m", "bot.ops.cli", "web", "--host", "127.0.0.1", "--port", str(port), *args]
    log = open(tmp_path / "web.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("clawback web did not start: " + (tmp_path / "web.log").read_text()[-2000:])


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes to stop after the test."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        proc.terminate()
        proc.wait(timeout=30)


def test_slack_listener_serves_no_metrics(slack, settings, deps, tmp_path, processes):
    """GET /metrics on the port Slack posts to is 404: nothing about the pipeline leaks there."""
    proc, port = _start(settings, tmp_path)
    processes.append(proc)
    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 404 and "clawback_" not in body


def test_metrics_are_served_on_their_own_port_only(slack, llm, settings, deps, tmp_path, processes):
    """With --metrics-port the totals are on that loopback port, which serves nothing else."""
    metrics_port = free_port()
    proc, port = _start(settings, tmp_path, "--metrics-port", str(metrics_port))
    processes.append(proc)
    sender = SlackEventSender(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET)
    assert sender.mention("U0ALICE", "C0GENERAL", "metrics?").status == 200
    sender.close()
    drain(deps)
    status, body = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200 and 'clawback_ingress_requests_total{kind="event",result="200"} 1.0' in body
    assert "clawback_llm_tokens_total" in body and "U0ALICE" not in body
    # The metrics listener is not a second way into the Slack app.
    metrics_sender = SlackEventSender(f"http://127.0.0.1:{metrics_port}/slack/events", SIGNING_SECRET)
    assert metrics_sender.mention("U0ALICE", "C0GENERAL", "hi").status == 404
    metrics_sender.close()
    assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 404


def _task(deps, requester: str, surface: str, intent: str, n: int) -> None:
    from bot.ledger import NewTask, create_task

    create_task(
        deps.db,
        NewTask(
            idempotency_key=f"{requester}:{intent}:{n}", requester=requester, surface=surface, intent=intent
        ),
        status="done",
    )


def test_series_of_fewer_than_k_people_are_pooled_or_withheld(deps):
    """A (surface, intent) used by fewer than k people would single them out: it is pooled into intent
    ``other`` of its surface; a pool still under k is withheld. Five answerers stay visible."""
    from prometheus_client import CollectorRegistry, generate_latest

    from bot.ops.metrics import LedgerCollector

    for i in range(5):
        _task(deps, f"U0PERSON{i}", "mention", "answer", 0)
    _task(deps, "U0ALICE", "command", "deploy_rollback", 0)  # one person: would expose Alice
    _task(deps, "U0ALICE", "command", "deploy_rollback", 1)
    for i in range(5):  # five people across two small intents of one surface: pooled as "other"
        _task(deps, f"U0PERSON{i}", "deploy", "deploy_request" if i < 3 else "deploy_execute", 0)
    registry = CollectorRegistry()
    registry.register(LedgerCollector(deps.db, k=lambda: 5))
    body = generate_latest(registry).decode()
    assert 'clawback_tasks{intent="answer",status="done",surface="mention"} 5.0' in body
    assert "deploy_rollback" not in body and 'surface="command"' not in body  # withheld: 1 person
    assert "deploy_request" not in body and "deploy_execute" not in body
    assert 'clawback_tasks{intent="other",status="done",surface="deploy"} 5.0' in body
