"""Earned autonomy on a Graph mailbox: shadow agreement measured with ``GraphMailbox.find_message`` (a
``/messages`` search over the whole mailbox by internetMessageId) against the Graph stand-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import AutonomyDecision
from tests.conftest import drain
from tests.mail import test_graph_flow as graph_flow
from tests.mail.conftest import graph_policy_text
from tests.mail.test_autonomy_loop import AUTONOMY
from tests.mail.test_triage_flow import _items

mail_deps = graph_flow.mail_deps  # the Graph flow's fixtures: the mailbox built from the policy
poller = graph_flow.poller


@pytest.fixture
def policy_file(tmp_path: Path, graph_trust, mail_scopes: list[str]) -> Path:
    """Emma's Graph mailbox, with mail.move starting at shadow."""
    path = tmp_path / "policy.toml"
    path.write_text(graph_policy_text(graph_trust, mail_scopes, AUTONOMY.format(start="shadow", max="auto")))
    return path


def test_shadow_agreement_from_the_owners_own_moves_over_graph(graph, poller, mail_deps):
    """Nothing moves at shadow; at the window's end the owner's own filing is looked up anywhere in the mailbox:
    where Clawback would have put it = accepted, another folder (even one of the owner's own, which EWS does not
    search) = rejected, still in the Inbox = none."""
    from workers.mail import verdicts

    ids = [
        graph.add_message(
            subject=f"Widgets weekly #{i}",
            sender="news@widgets.example",
            body_html=f"<html><body><p>Issue {i}.</p><p><a href='https://widgets.example/u'>Unsubscribe</a></p>"
            "</body></html>",
            received=datetime.now(UTC) - timedelta(minutes=30 - i),
            internet_message_id=f"<weekly{i}@widgets.example>",
        )
        for i in range(3)
    ]
    assert poller.run_once() == 0
    drain(mail_deps)
    assert len(graph.messages_in("inbox")) == 3  # shadow: nothing moved
    graph.move_message(ids[0], "Newsletters")
    graph.move_message(ids[1], "Receipts")
    found = verdicts.sweep(
        mail_deps,
        now=datetime.now(UTC) + timedelta(hours=mail_deps.settings.clawback_outcome_window_hours + 1),
    )
    assert found >= 3
    with mail_deps.db.read() as s:
        got = {
            d.task_id: d.verdict
            for d in s.execute(
                select(AutonomyDecision).where(AutonomyDecision.action == "mail.move")
            ).scalars()
        }
    by_subject = {i.subject: got[i.task_id] for i in _items(mail_deps).values()}
    assert by_subject == {
        "Widgets weekly #0": "accepted",
        "Widgets weekly #1": "rejected",
        "Widgets weekly #2": "none",
    }
    searches = [r.path for r in graph.graph_requests("/messages?") if "internetMessageId" in r.path]
    assert len(searches) == 3
