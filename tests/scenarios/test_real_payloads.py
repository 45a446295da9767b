"""Every well-formed Slack payload is acknowledged, over HTTP and over Socket Mode, whether or not Clawback uses
it (the corpus in ``slack_payloads`` is written from Slack's documentation). Was: events whose ``user`` or
``channel`` is an object, ``"team": null`` clicks (org-wide installs) and legacy ``interactive_message`` clicks
were refused with 400, and Slack showed the person an error or retried."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from bot.db import Task
from tests.scenarios import slack_payloads as corpus

_EVENTS = [pytest.param(e, grid, id=f"{name}{'-grid' if grid else ''}")
           for name, e in corpus.EVENTS for grid in (False, True)]


def _count(deps) -> int:
    with deps.db.session() as s:
        return s.execute(select(func.count()).select_from(Task)).scalar_one()


@pytest.mark.parametrize(("event", "grid"), _EVENTS)
def test_events_are_acked_over_http(sender, deps, event, grid):
    """Each event shape (plain and from an org-wide install) → 200, no task."""
    body = corpus.envelope(event, "Ev" + event["type"].upper()[:20], grid=grid)
    reply = sender.post(json.dumps(body).encode(), "application/json")
    assert reply.status == 200, reply.body
    assert _count(deps) == 0


@pytest.mark.parametrize("payload", [p for _, p in corpus.INTERACTIVE], ids=[n for n, _ in corpus.INTERACTIVE])
def test_interactivity_is_acked_over_http(sender, payload):
    """Each interactivity shape → 200."""
    reply = sender.post(urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded")
    assert reply.status == 200, reply.body


@pytest.mark.parametrize("form", [f for _, f in corpus.COMMANDS], ids=[n for n, _ in corpus.COMMANDS])
def test_commands_answer_over_http(sender, form):
    """Each command shape → 200 with the answer."""
    reply = sender.post(urlencode(form).encode(), "application/x-www-form-urlencoded")
    assert reply.status == 200 and reply.json()["response_type"] == "ephemeral"


def test_whole_corpus_is_acked_over_socket_mode(deps, socket_app, socket_standin):
    """The same corpus as envelopes: every one acked, none counted as malformed, commands answered in the ack."""
    sent = [socket_standin.events_api(corpus.envelope(e, f"EvS{i}", grid=g))
            for i, (e, g) in enumerate((e, g) for _, e in corpus.EVENTS for g in (False, True))]
    sent += [socket_standin.interactive(p) for _, p in corpus.INTERACTIVE]
    for eid in sent:
        socket_standin.wait_ack(eid)
    for _, form in corpus.COMMANDS:
        ack = socket_standin.wait_ack(socket_standin.slash_command(form))
        assert ack.payload["response_type"] == "ephemeral"
    assert socket_app.metrics.requests.labels("malformed", "400")._value.get() == 0
    assert _count(deps) == 0
