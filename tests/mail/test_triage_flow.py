"""Transcripts: mail in Exchange → poller → task → triage (LLM stand-in) → mailbox actions → digest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db import AuditEntry, LLMCall, Outcome, Task
from bot.mail.models import MailItem, MailSyncState
from tests.conftest import drain
from tests.mail.conftest import OWNER, OWNER_ADDRESS

NOW = datetime.now(UTC)


def _tasks(deps, intent: str | None = None) -> list[Task]:
    with deps.db.session() as s:
        q = select(Task).order_by(Task.created_at)
        if intent:
            q = q.where(Task.intent == intent)
        return list(s.execute(q).scalars())


def _items(deps) -> dict[str, MailItem]:
    with deps.db.session() as s:
        return {i.subject: i for i in s.execute(select(MailItem)).scalars()}


def _outcomes(deps) -> list[tuple[str, str, str]]:
    with deps.db.session() as s:
        rows = s.execute(
            select(Outcome, MailItem.subject).join(MailItem, MailItem.task_id == Outcome.task_id)
        )
        return sorted((subject, o.kind, o.source) for o, subject in rows)


def _audit(deps, decision: str | None = None) -> list[AuditEntry]:
    with deps.db.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.seq)
        if decision:
            q = q.where(AuditEntry.decision == decision)
        return list(s.execute(q).scalars())


def _seed_basic(ews) -> dict[str, str]:
    return {
        "action": ews.add_message(
            subject="Please approve the Q3 budget",
            sender="carol@example.com",
            sender_name="Carol Diaz",
            body_text="Hi Emma,\n\nPlease approve the Q3 budget by Friday.\n\nThanks,\nCarol\nFinance lead",
            received=NOW - timedelta(hours=2),
        ),
        "reply": ews.add_message(
            subject="Lunch on Thursday?",
            sender="dave@example.com",
            sender_name="Dave Park",
            body_text="Are you free for lunch on Thursday?",
            received=NOW - timedelta(hours=1),
        ),
        "news": ews.add_message(
            subject="This week in widgets",
            sender="news@widgets.example",
            body_html="<html><body><h1>Widgets weekly</h1><p>New widgets.</p>"
            "<p><a href='https://widgets.example/u'>Unsubscribe</a></p></body></html>",
            received=NOW - timedelta(minutes=30),
        ),
        "old": ews.add_message(
            subject="Ancient history",
            sender="erin@example.com",
            body_text="Can you look at this?",
            received=NOW - timedelta(days=30),
        ),
    }


def test_first_poll_triages_new_mail_acts_and_posts_a_digest(ews, poller, mail_deps, slack, llm):
    """First poll: recent mail becomes BULK tasks; triage labels, moves, drafts; the owner gets one digest."""
    ids = _seed_basic(ews)
    assert poller.run_once() == 0
    triage_tasks = _tasks(mail_deps, "triage")
    assert len(triage_tasks) == 3  # the 30-day-old message is outside the first-sync window
    t = triage_tasks[0]
    assert (t.surface, t.trigger, t.requester, t.status) == ("email", "automation", OWNER, "queued")
    assert t.idempotency_key.startswith(f"mail:{OWNER_ADDRESS}:<")
    assert mail_deps.queue.queues["bulk"].count == 4  # three triages and the digest behind them
    drain(mail_deps)
    assert all(t.status == "done" for t in _tasks(mail_deps)), [
        (t.intent, t.status_reason) for t in _tasks(mail_deps)
    ]
    items = _items(mail_deps)
    assert items["Please approve the Q3 budget"].category == "action_required"
    assert items["Lunch on Thursday?"].category == "reply_needed"
    assert items["This week in widgets"].category == "newsletter"
    # mailbox actions: labels in Exchange, moves into the configured folders, a draft to the sender only
    assert [m.subject for m in ews.messages("Action")] == ["Please approve the Q3 budget"]
    assert [m.subject for m in ews.messages("Newsletters")] == ["This week in widgets"]
    lunch = ews.message(ids["reply"])
    assert lunch.categories == ["Reply needed"]
    drafts = ews.drafts()
    assert sorted(d.to[0] for d in drafts) == ["carol@example.com", "dave@example.com"]
    assert all(len(d.to) == 1 and d.cc == [] for d in drafts)
    assert ews.outbox == [] and ews.sent_items() == []  # triage never sends
    # the three short emails shared one classification call (batching: test_triage_batch.py); each email that
    # may get a draft and needs a reply had its draft written by a call of its own, recorded on its own task
    # (changed with drafts in their own call: they were triaged alone before)
    with mail_deps.db.session() as s:
        calls = list(s.execute(select(LLMCall).where(LLMCall.prompt_name == "triage")).scalars())
        drafting = list(s.execute(select(LLMCall).where(LLMCall.prompt_name == "draft")).scalars())
    (batch_call,) = calls
    done = {t.id: t.result for t in _tasks(mail_deps, "triage")}
    assert {r["batch"]["leader"] for r in done.values()} == {batch_call.task_id}
    assert all(r["batch"]["size"] == 3 for r in done.values())
    by_subject = {i.subject: i for i in items.values()}
    drafted = [by_subject["Please approve the Q3 budget"], by_subject["Lunch on Thursday?"]]
    assert sorted(c.task_id for c in drafting) == sorted(i.task_id for i in drafted)
    assert all(c.step == "draft" for c in drafting)
    own = {c.task_id: c for c in drafting}
    # tokens: each email's share of the batch call (the shares add up to what it reported) plus its own draft call
    shares = {tid: r["batch"] for tid, r in done.items()}
    assert sum(i.prompt_tokens for i in items.values()) == batch_call.prompt_tokens + sum(
        c.prompt_tokens for c in drafting
    )
    for i in items.values():
        extra = own[i.task_id].completion_tokens if i.task_id in own else 0
        assert i.completion_tokens == done[i.task_id]["completion_tokens"]
        assert i.completion_tokens - extra >= 0 and shares[i.task_id]["size"] == 3
    assert all(i.body_tokens <= i.raw_tokens for i in items.values())
    # one digest DM to the owner with the buttons
    (digest,) = [c for c in slack.calls("chat.postMessage") if c["channel"] == "D0EMMA"]
    blocks = json.dumps(digest["blocks"])
    for label in ("mail_right", "mail_wrong", "mail_send_draft", "mail_discard_draft", "3 new message"):
        assert label in blocks
    assert digest["unfurl_links"] in (False, "false", "False", "0")
    # every mailbox action was audited
    actions = [a.action for a in _audit(mail_deps) if a.action.startswith("mail.")]
    assert actions.count("mail.categorize") == 3 and actions.count("mail.move") == 2
    assert actions.count("mail.draft") == 2 and "mail.send" not in actions


def test_second_poll_creates_nothing_and_new_mail_is_the_only_one_triaged(
    ews, poller, mail_deps, ingress, sleeps
):
    """A second poll (even by a fresh poller after a restart) creates no task; new mail creates one."""
    from bot.mail.poller import MailPoller

    _seed_basic(ews)
    assert poller.run_once() == 0
    drain(mail_deps)
    before = len(_tasks(mail_deps, "triage"))
    restarted = MailPoller(
        mail_deps.settings, mail_deps.db, ingress, mail_deps.extras["mailboxes"], sleep=sleeps
    )
    assert restarted.run_once() == 0
    assert len(_tasks(mail_deps, "triage")) == before
    ews.add_message(
        subject="One more thing", sender="carol@example.com", body_text="FYI the office is closed."
    )
    assert restarted.run_once() == 0
    new = [t for t in _tasks(mail_deps, "triage")][before:]
    assert [t.payload["subject"] for t in new] == ["One more thing"]


def test_incremental_sync_new_changed_and_deleted(ews, poller, mail_deps):
    """New mail is a task; mail deleted before triage is skipped with a reason; changes are not tasks."""
    keep = ews.add_message(subject="Status update", sender="carol@example.com", body_text="FYI all good.")
    assert poller.run_once() == 0
    drain(mail_deps)
    ews.set_categories(keep, ["Owner label"])  # changed by the owner: an update, not a new task
    gone = ews.add_message(subject="Gone soon", sender="dave@example.com", body_text="Can you check this?")
    assert poller.run_once() == 0
    ews.delete(gone)  # deleted after the poll, before a worker triaged it
    drain(mail_deps)
    items = _items(mail_deps)
    assert set(items) == {"Status update", "Gone soon"}
    assert items["Gone soon"].status == "skipped"
    assert items["Gone soon"].reason == "the message is no longer in the mailbox"
    task = [t for t in _tasks(mail_deps, "triage") if t.payload["subject"] == "Gone soon"][0]
    assert task.status == "done" and task.result == {"skipped": "the message is no longer in the mailbox"}
    assert poller.run_once() == 0  # the delete is seen; nothing new
    assert len(_tasks(mail_deps, "triage")) == 2


def test_crash_mid_sync_resumes_without_duplicates_or_gaps(ews, mail_deps, ingress, sleeps):
    """A server failure on page 3 keeps pages 1-2; the next poll continues there: every message once."""
    from bot.mail.poller import MailPoller

    settings = mail_deps.settings.model_copy(update={"clawback_mail_batch_size": 2})
    for n in range(7):
        ews.add_message(
            subject=f"m{n}",
            sender="carol@example.com",
            body_text=f"note {n}",
            received=NOW - timedelta(minutes=60 - n),
        )
    p = MailPoller(settings, mail_deps.db, ingress, mail_deps.extras["mailboxes"], sleep=sleeps)
    ops = ews.operations()
    ews.fail_next("SyncFolderItems", "http_500")
    assert p.run_once() == 1  # the first page fails: nothing saved, nothing created
    assert _tasks(mail_deps) == []
    p2 = MailPoller(settings, mail_deps.db, ingress, mail_deps.extras["mailboxes"], sleep=sleeps)
    # let two pages through, then fail the third
    original = mail_deps.extras["mailboxes"](OWNER_ADDRESS)
    calls = {"n": 0}

    class FlakyMailbox:
        address = OWNER_ADDRESS

        def __getattr__(self, name):
            return getattr(original, name)

        def sync_folder(self, folder, state, max_changes=100):
            calls["n"] += 1
            if calls["n"] == 3:
                ews.fail_next("SyncFolderItems", "http_500")
            return original.sync_folder(folder, state, max_changes)

    p2.mailboxes = lambda address: FlakyMailbox()
    assert p2.run_once() == 1
    assert len(_tasks(mail_deps, "triage")) == 4
    with mail_deps.db.session() as s:
        state = s.execute(select(MailSyncState).where(MailSyncState.folder == "inbox")).scalar_one()
    assert state.sync_state and not state.complete
    p3 = MailPoller(settings, mail_deps.db, ingress, mail_deps.extras["mailboxes"], sleep=sleeps)
    assert p3.run_once() == 0
    subjects = sorted(t.payload["subject"] for t in _tasks(mail_deps, "triage"))
    assert subjects == [f"m{n}" for n in range(7)]
    assert len(ops) >= 0


def test_redis_outage_keeps_the_sync_state_and_the_next_poll_enqueues(ews, poller, mail_deps, ingress):
    """Tasks committed while Redis is down are not lost: the state stays, the next poll enqueues them."""
    import redis as redis_lib

    from bot.queue import TaskQueue

    ews.add_message(subject="While Redis was down", sender="carol@example.com", body_text="FYI")
    real_queue = ingress.queue
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    ingress.queue = TaskQueue(dead, prefix=mail_deps.settings.clawback_queue_prefix, retries=0)
    try:
        assert poller.run_once() == 1
    finally:
        ingress.queue = real_queue
    (task,) = _tasks(mail_deps, "triage")
    assert task.status == "queued" and mail_deps.queue.job_status(task.id) is None
    with mail_deps.db.session() as s:
        state = s.execute(select(MailSyncState).where(MailSyncState.folder == "inbox")).scalar_one()
    assert state.sync_state is None and state.last_error == "queue unavailable"
    assert poller.run_once() == 0
    assert len(_tasks(mail_deps, "triage")) == 1 and mail_deps.queue.job_status(task.id) is not None
    drain(mail_deps)
    assert _tasks(mail_deps, "triage")[0].status == "done"


def test_throttling_backs_off_for_the_servers_hint_and_keeps_its_place(
    ews, poller, mail_deps, sleeps, caplog
):
    """ErrorServerBusy with BackOffMilliseconds: --once waits that long, retries, and loses nothing."""
    ews.add_message(subject="Busy day", sender="carol@example.com", body_text="FYI")
    ews.fail_next("SyncFolderItems", "server_busy", back_off_ms=1500)
    with caplog.at_level("WARNING"):
        assert poller.run_once() == 0
    assert sleeps == [pytest.approx(1.5)]
    assert "server busy, backing off 1.5 s" in caplog.text
    assert len(_tasks(mail_deps, "triage")) == 1
    # in the loop, a throttled mailbox is skipped until its back-off has passed
    ews.fail_next("SyncFolderItems", "server_busy", back_off_ms=60_000)
    (report,) = poller.poll_all()
    assert report.back_off == pytest.approx(60.0) and not report.ok
    before = len(ews.requests)
    assert poller.poll_all() == [] and len(ews.requests) == before


def test_auth_error_is_logged_clearly_and_other_mailboxes_continue(
    ews, mail_deps, ingress, sleeps, caplog, tmp_path
):
    """A mailbox with a bad password is reported and backed off; the next mailbox is still polled."""
    from bot.mail.ews import EwsMailbox
    from bot.mail.poller import MailPoller
    from bot.policy import PolicyStore
    from bot.standins.ews import EwsStandIn
    from tests.mail.conftest import policy_text

    other = EwsStandIn(address="zed@example.com", username="zed@example.com", password="zz").start()
    try:
        extra = (
            f'\n[mailboxes."zed@example.com"]\nowner = "{OWNER}"\news_url = "{other.ews_url}"\n'
            'password_env = "CLAWBACK_TEST_ZED"\n'
        )
        path = tmp_path / "two.toml"
        path.write_text(policy_text(ews.ews_url, ["mail.read"], extra))
        ingress.policy = PolicyStore(path)
        other.add_message(subject="For Zed", sender="carol@example.com", body_text="FYI")
        ews.add_message(subject="For Emma", sender="carol@example.com", body_text="FYI")

        def factory(address):
            if address == OWNER_ADDRESS:
                return EwsMailbox(address, ews.ews_url, username=address, password="wrong", timeout=5)
            return EwsMailbox(address, other.ews_url, username=address, password="zz", timeout=5)

        p = MailPoller(mail_deps.settings, mail_deps.db, ingress, factory, sleep=sleeps)
        with caplog.at_level("ERROR"):
            assert p.run_once() == 1
        assert "emma@example.com: the mail server rejected the credentials" in caplog.text
        assert "CLAWBACK_TEST_EWS_PASSWORD" in caplog.text and "ews-s3cret" not in caplog.text
        assert [t.payload["subject"] for t in _tasks(mail_deps, "triage")] == ["For Zed"]
    finally:
        other.stop()


def test_priority_one_goes_to_the_owner_at_once(ews, poller, mail_deps, slack):
    """An urgent request is DM'd on its own, before any digest."""
    ews.add_message(
        subject="URGENT: prod outage",
        sender="carol@example.com",
        body_text="Can you join the bridge? Prod is down today.",
    )
    poller.run_once()
    drain(mail_deps)
    posts = [c for c in slack.calls("chat.postMessage") if c["channel"] == "D0EMMA"]
    assert len(posts) == 1 and "Priority 1 email" in posts[0]["text"]
    item = _items(mail_deps)["URGENT: prod outage"]
    assert item.priority == 1 and item.slack_ts == posts[0].get("ts", item.slack_ts)
    (digest,) = _tasks(mail_deps, "mail_digest")
    assert digest.result == {"items": 0}  # nothing left for the digest


def test_mail_poll_main_reads_the_password_from_the_environment(ews, mail_deps, monkeypatch):
    """``clawback mail-poll --once`` builds its own clients from the policy and the named secret."""
    from bot.mail.poller import main
    from tests.mail.conftest import PASSWORD, PASSWORD_ENV

    ews.add_message(subject="Via the CLI", sender="carol@example.com", body_text="FYI")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(mail_deps.settings, once=True) == 0
    assert [t.payload["subject"] for t in _tasks(mail_deps, "triage")] == ["Via the CLI"]
    monkeypatch.delenv(PASSWORD_ENV)
    assert main(mail_deps.settings, once=True) == 1  # missing secret: a clear failure, not a crash
