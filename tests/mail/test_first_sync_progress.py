"""`clawback mail-poll --once` on a big mailbox: a progress bar on a terminal during the first sync, nothing
elsewhere (a pipe, a log file), against the EWS stand-in; the Graph mailbox reports its inbox size too."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console
from sqlalchemy import func, select

from bot.db import Task
from bot.mail.poller import main
from tests.mail.conftest import PASSWORD, PASSWORD_ENV

NEW, OLD = 90, 30  # inside and outside the 7-day first-sync window


def _seed(ews) -> None:
    now = datetime.now(UTC)
    for n in range(NEW):
        ews.add_message(subject=f"new {n}", sender="carol@example.com", body_text="FYI",
                        received=now - timedelta(hours=n))
    for n in range(OLD):
        ews.add_message(subject=f"old {n}", sender="carol@example.com", body_text="FYI",
                        received=now - timedelta(days=30 + n))


def test_first_sync_draws_a_progress_bar_on_a_terminal(ews, mail_deps, monkeypatch):
    """A terminal sees "first mail sync: <mailbox>" and the count of items read against the inbox's size,
    page by page (40 a page: three pages); the tasks are the same as without the bar."""
    _seed(ews)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    settings = mail_deps.settings.model_copy(update={"clawback_mail_batch_size": 40})
    assert main(settings, once=True, console=console) == 0
    drawn = screen.getvalue()
    assert "first mail sync: emma@example.com" in drawn
    assert f"{NEW + OLD}/{NEW + OLD}" in drawn  # every item read, of the inbox's TotalCount
    assert "GetFolder" in ews.operations()
    with mail_deps.db.session() as s:
        assert s.execute(select(func.count()).select_from(Task).where(Task.intent == "triage")).scalar() == NEW


def test_no_progress_bar_off_a_terminal_nor_on_an_incremental_sync(ews, mail_deps, monkeypatch):
    """Piped or logged (not a terminal): nothing drawn. Once the first sync is done, a later poll is a page or
    two: no bar even on a terminal."""
    _seed(ews)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    piped = io.StringIO()
    assert main(mail_deps.settings, once=True, console=Console(file=piped, force_terminal=False)) == 0
    assert piped.getvalue() == ""
    ews.add_message(subject="one more", sender="carol@example.com", body_text="FYI")
    later = io.StringIO()
    assert main(mail_deps.settings, once=True, console=Console(file=later, force_terminal=True)) == 0
    assert "first mail sync" not in later.getvalue()


def test_graph_mailbox_counts_its_inbox(graph, graph_mailbox):
    """The total of a Graph first sync's bar: the Inbox's totalItemCount, in one GET."""
    for n in range(7):
        graph.add_message(subject=f"m{n}", body_text="hi")
    mb = graph_mailbox()
    before = len(graph.graph_requests())
    assert mb.item_count("inbox") == 7
    assert len(graph.graph_requests()) - before == 1
