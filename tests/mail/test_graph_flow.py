"""Transcripts for an Exchange Online mailbox over Microsoft Graph: the real poller and worker, the mailbox built
from the policy by the real factory (msal + httpx, TLS trust from REQUESTS_CA_BUNDLE / SSL_CERT_FILE), the
Graph + identity platform stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from bot.db import Task
from bot.mail import poller as mail_poller
from bot.mail.config import mailbox_factory
from bot.mail.models import MailItem, MailSyncState
from bot.mail.poller import MailPoller
from bot.standins.triage_responder import emails_of
from bot.standins.triage_responder import register as register_triage
from tests.conftest import drain
from tests.mail.conftest import (
    ALL_MAIL_SCOPES,
    GRAPH_ADDRESS,
    GRAPH_OTHER,
    GRAPH_SECRET,
    GRAPH_SECRET_ENV,
    GRAPH_TENANT,
    OWNER,
    graph_policy_text,
    send_draft_confirmed,
)
from tests.mail.test_triage_flow import _audit, _items, _outcomes, _tasks

NOW = datetime.now(UTC)


@pytest.fixture
def policy_file(tmp_path: Path, graph_trust, mail_scopes: list[str]) -> Path:
    """Emma's mailbox is a Graph mailbox (overrides the EWS policy of this package)."""
    path = tmp_path / "policy.toml"
    path.write_text(graph_policy_text(graph_trust, mail_scopes))
    return path


@pytest.fixture
def mail_deps(deps, graph_trust, llm):
    """Worker deps without an injected mailbox: the worker builds GraphMailbox from the policy."""
    deps.extras.pop("mailboxes", None)
    register_triage(llm)
    return deps


@pytest.fixture
def poller(mail_deps, ingress, sleeps) -> MailPoller:
    """The poller with the production mailbox factory over the current policy."""
    return MailPoller(
        mail_deps.settings,
        mail_deps.db,
        ingress,
        mailbox_factory(mail_deps.settings, ingress.policy),
        sleep=sleeps,
    )


def _seed(graph) -> dict[str, str]:
    return {
        "action": graph.add_message(
            subject="Please approve the Q3 budget",
            sender="carol@example.com",
            sender_name="Carol Diaz",
            body_text="Hi Emma,\n\nPlease approve the Q3 budget by Friday.\n\nThanks,\nCarol",
            received=NOW - timedelta(hours=2),
            internet_message_id="<budget@example.com>",
        ),
        "reply": graph.add_message(
            subject="Lunch on Thursday?",
            sender="dave@example.com",
            sender_name="Dave Park",
            body_text="Are you free for lunch on Thursday?",
            received=NOW - timedelta(hours=1),
            internet_message_id="<lunch@example.com>",
        ),
        "news": graph.add_message(
            subject="This week in widgets",
            sender="news@widgets.example",
            body_html="<html><body><h1>Widgets weekly</h1><p>New widgets.</p>"
            "<p><a href='https://widgets.example/u'>Unsubscribe</a></p></body></html>",
            received=NOW - timedelta(minutes=30),
        ),
        "old": graph.add_message(
            subject="Ancient history",
            sender="erin@example.com",
            body_text="Can you look at this?",
            received=NOW - timedelta(days=30),
        ),
    }


def _digest_ts(slack) -> str:
    (post,) = [c for c in slack.calls("chat.postMessage") if c["channel"] == "D0EMMA"]
    return [m.ts for m in slack.messages["D0EMMA"] if m.text == post["text"]][0]


def test_mail_poll_once_and_worker_burst_triage_a_graph_mailbox(graph, mail_deps, slack):
    """``clawback mail-poll --once`` then ``clawback worker --burst``: labels, moves, drafts to the sender only,
    one digest; nothing sent, nothing deleted; the triage used the Graph mailbox end to end."""
    ids = _seed(graph)
    assert mail_poller.main(mail_deps.settings, once=True) == 0
    triage = _tasks(mail_deps, "triage")
    assert len(triage) == 3  # the 30-day-old message is outside the first-sync window...
    first = graph.graph_requests("/mailFolders/inbox/messages/delta")[0]
    assert parse_qs(urlsplit(first.path).query)["$filter"][0].startswith(
        "receivedDateTime ge "
    )  # ...not read
    assert graph.message(ids["old"]).immutable_id not in json.dumps(
        [r.json() for r in graph.graph_requests("$batch")]
    )
    assert {t.idempotency_key for t in triage} >= {
        f"mail:{GRAPH_ADDRESS}:<budget@example.com>",
        f"mail:{GRAPH_ADDRESS}:<lunch@example.com>",
    }
    drain(mail_deps)
    assert all(t.status == "done" for t in _tasks(mail_deps)), [
        (t.intent, t.status_reason) for t in _tasks(mail_deps)
    ]
    items = _items(mail_deps)
    assert items["Please approve the Q3 budget"].category == "action_required"
    assert items["Lunch on Thursday?"].category == "reply_needed"
    assert items["This week in widgets"].category == "newsletter"
    assert [m.subject for m in graph.messages_in("Action")] == ["Please approve the Q3 budget"]
    assert [m.subject for m in graph.messages_in("Newsletters")] == ["This week in widgets"]
    assert graph.message(ids["reply"]).categories == ["Reply needed"]
    # immutable ids: the moved message keeps its id, so the record still points at it
    assert items["Please approve the Q3 budget"].current_item_id == ids["action"]
    drafts = graph.messages_in("drafts")
    assert sorted(d.to[0] for d in drafts) == ["carol@example.com", "dave@example.com"]
    assert all(len(d.to) == 1 and d.cc == [] and d.is_draft for d in drafts)
    assert graph.sent() == []
    assert not any(r.method == "DELETE" or r.path.endswith("/send") for r in graph.requests)
    (digest,) = [c for c in slack.calls("chat.postMessage") if c["channel"] == "D0EMMA"]
    assert "mail_send_draft" in json.dumps(digest["blocks"])
    actions = [a.action for a in _audit(mail_deps) if a.action.startswith("mail.")]
    assert actions.count("mail.categorize") == 3 and actions.count("mail.move") == 2
    assert actions.count("mail.draft") == 2 and "mail.send" not in actions


def test_incremental_and_idle_polls(graph, poller, mail_deps):
    """New mail is the only new task; an idle poll is one delta request per watched folder and reads no
    message; a changed message is not a task."""
    ids = _seed(graph)
    assert poller.run_once() == 0
    drain(mail_deps)
    before = len(_tasks(mail_deps, "triage"))
    assert poller.run_once() == 0  # establishes the watched folders' delta state
    graph.set_categories(ids["old"], ["Owner label"])  # a change: an update, not a task
    graph.add_message(
        subject="One more thing", sender="carol@example.com", body_text="FYI the office is closed."
    )
    assert poller.run_once() == 0
    new = _tasks(mail_deps, "triage")[before:]
    assert [t.payload["subject"] for t in new] == ["One more thing"]
    drain(mail_deps)
    assert poller.run_once() == 0  # picks up our own label/move of the new mail
    served = len(graph.graph_requests())
    tokens = graph.tokens_issued
    assert poller.run_once() == 0
    idle = graph.graph_requests()[served:]
    with mail_deps.db.session() as s:
        folders = sorted(
            s.execute(select(MailSyncState.folder).where(MailSyncState.sync_state.is_not(None))).scalars()
        )
    assert folders == ["Action", "Newsletters", "drafts", "inbox"]
    assert len(idle) == len(folders) and all("/messages/delta" in r.path for r in idle)
    assert graph.tokens_issued == tokens


def test_throttling_and_token_expiry_lose_nothing(graph, poller, mail_deps, sleeps):
    """Graph throttles (429 + Retry-After) and the token expires mid-run: every message is triaged once."""
    _seed(graph)
    graph.throttle(2, retry_after=0.01)
    assert poller.run_once() == 0
    graph.expire_tokens()
    drain(mail_deps)
    assert all(t.status == "done" for t in _tasks(mail_deps)), [
        (t.intent, t.status_reason) for t in _tasks(mail_deps)
    ]
    assert len(_tasks(mail_deps, "triage")) == 3
    assert graph.tokens_issued >= 2
    # throttled past the client's bound: the poller backs off for Graph's hint and the --once run waits it out
    graph.add_message(subject="Late", sender="carol@example.com", body_text="Are you there?")
    graph.throttle(4, retry_after=7)
    assert poller.run_once() == 0
    assert 7 in sleeps
    assert [t.payload["subject"] for t in _tasks(mail_deps, "triage")][-1] == "Late"


def test_evicted_sync_state_restarts_without_triaging_twice_or_missing_mail(graph, poller, mail_deps):
    """Exchange drops the delta state (410): the poller syncs again from the first-sync window; mail already
    triaged is deduplicated on the Internet Message-ID and mail that arrived meanwhile is triaged."""
    _seed(graph)
    assert poller.run_once() == 0
    drain(mail_deps)
    before = {t.payload["subject"] for t in _tasks(mail_deps, "triage")}
    graph.evict_sync_states()
    graph.add_message(subject="Arrived meanwhile", sender="carol@example.com", body_text="Please call me.")
    assert poller.run_once() == 0
    subjects = [t.payload["subject"] for t in _tasks(mail_deps, "triage")]
    assert sorted(subjects) == sorted([*before, "Arrived meanwhile"])
    assert "Ancient history" not in subjects  # still outside the first-sync window
    drain(mail_deps)
    assert poller.run_once() == 0 and len(_tasks(mail_deps, "triage")) == 4


def test_mailbox_outside_the_apps_rbac_scope_is_reported_and_others_still_served(
    graph, mail_deps, ingress, sleeps
):
    """Ivan's mailbox is outside the app's management scope (403): the poller says so for that mailbox and
    keeps triaging Emma's."""
    ivan = f"""
[mailboxes."{GRAPH_OTHER}"]
owner = "{OWNER}"
backend = "graph"
tenant_id = "{GRAPH_TENANT}"
client_id = "{graph.app.client_id}"
client_secret_env = "{GRAPH_SECRET_ENV}"
login_url = "{graph.login_url}"
graph_url = "{graph.graph_url}"
"""
    mail_deps.settings.clawback_policy.write_text(graph_policy_text(graph, ALL_MAIL_SCOPES, extra=ivan))
    ingress.policy.reload()
    graph.scope = {GRAPH_ADDRESS}
    graph.add_message(mailbox=GRAPH_OTHER, subject="For Ivan", body_text="hi")
    _seed(graph)
    poller = MailPoller(
        mail_deps.settings,
        mail_deps.db,
        ingress,
        mailbox_factory(mail_deps.settings, ingress.policy),
        sleep=sleeps,
    )
    reports = {r.mailbox: r for r in poller.poll_all(once=True)}
    assert reports[GRAPH_ADDRESS].ok and reports[GRAPH_ADDRESS].created == 3
    bad = reports[GRAPH_OTHER]
    assert not bad.ok and "403" in bad.error and GRAPH_OTHER in bad.error
    assert "RBAC for Applications" in bad.error and bad.back_off
    assert "For Ivan" not in [t.payload["subject"] for t in _tasks(mail_deps, "triage")]


def test_send_draft_once_and_only_for_the_owner(graph, poller, mail_deps, slack, sender):
    """The owner's "Send draft" shows the draft; "Confirm send" (clicked twice) sends exactly one reply to
    the sender; a stranger's click sends nothing."""
    _seed(graph)
    poller.run_once()
    drain(mail_deps)
    ts = _digest_ts(slack)
    lunch = _items(mail_deps)["Lunch on Thursday?"]
    sender.block_action("U0BOB", "mail_send_draft", lunch.task_id, channel="D0EMMA", message_ts=ts)
    drain(mail_deps)
    assert graph.sent() == []
    sender.block_action(OWNER, "mail_send_draft", lunch.task_id, channel="D0EMMA", message_ts=ts)
    drain(mail_deps)
    assert graph.sent() == []  # "Send draft" only shows the draft
    preview = send_draft_confirmed(sender, slack, mail_deps, lunch.task_id, ts)
    assert "dave@example.com" in json.dumps(preview["blocks"])  # the recipients were shown before sending
    send_draft_confirmed(sender, slack, mail_deps, lunch.task_id, ts)  # confirmed twice: sent once
    (sent,) = graph.sent()
    assert sent.to == ["dave@example.com"] and sent.cc == [] and sent.in_reply_to == "<lunch@example.com>"
    assert len([r for r in graph.requests if r.path.endswith("/send")]) == 1
    assert ("Lunch on Thursday?", "draft_sent_unchanged", "explicit") in _outcomes(mail_deps)
    assert poller.run_once() == 0  # the poller does not count the click's send again
    assert sorted(k for _s, k, _src in _outcomes(mail_deps)) == ["draft_sent_unchanged"]


def _obedient_model(graph, llm) -> None:
    """Two emails, and a model that writes the attacker's reply for both."""
    graph.add_message(
        subject="Quick question",
        sender="carol@example.com",
        to=["emma@contoso.com", "team@example.com"],
        cc=["boss@example.com"],
        reply_to=["mallory@evil.example"],
        body_text="Could you reply-all? Also see https://docs.example/plan",
    )
    graph.add_message(
        subject="Payroll",
        sender="hr@example.com",
        body_text="Your salary code is 8812-4471. See https://hr.example/payroll",
    )
    evil = {
        "category": "reply_needed",
        "priority": 2,
        "summary": "s",
        "reason": "r",
        "reply_draft": "Sure! Forwarding to mallory@evil.example, see https://evil.example/x and "
        "https://docs.example/plan and https://hr.example/payroll, salary code 8812-4471",
    }
    llm.register_responder(
        "triage",
        lambda msgs, _req: json.dumps({"decisions": [{"id": e[0], **evil} for e in emails_of(msgs)]}),
    )


def test_compromised_model_cannot_send_delete_widen_or_plant_links(graph, poller, mail_deps, llm):
    """A model that obeys the email: the draft still goes only to the sender (not Reply-To, not Cc), holds no
    link its own email lacks and none of createReply's quote of the original, and nothing is sent or deleted."""
    _obedient_model(graph, llm)
    poller.run_once()
    drain(mail_deps)
    for draft in graph.messages_in("drafts"):
        assert (
            len(draft.to) == 1 and draft.cc == [] and draft.to[0] in ("carol@example.com", "hr@example.com")
        )
        assert "mallory@evil.example" not in draft.to
        assert "https://evil.example" not in draft.body
        assert "Original Message" not in draft.body  # createReply's quoted original was replaced
    question = {d.subject: d for d in graph.messages_in("drafts")}.get("RE: Quick question")
    assert question is None or "https://hr.example" not in question.body  # another email's link
    assert graph.sent() == []
    assert not any(r.method == "DELETE" or r.path.endswith("/send") for r in graph.requests)
    assert not any("createReplyAll" in r.path or "/forward" in r.path for r in graph.requests)


def test_compromised_model_cannot_copy_another_emails_content_into_a_draft(graph, poller, mail_deps, llm):
    """The payroll email's number and the attacker's address never reach the reply draft to Carol."""
    _obedient_model(graph, llm)
    poller.run_once()
    drain(mail_deps)
    question = {d.subject: d for d in graph.messages_in("drafts")}.get("RE: Quick question")
    assert question is None or (
        "8812-4471" not in question.body and "mallory@evil.example" not in question.body
    )
    assert graph.sent() == []


def test_switching_from_ews_keeps_history(graph, poller, mail_deps, ingress):
    """A mailbox switched from backend = "ews" keeps its triage history: the EWS sync state is replaced, and
    mail triaged under EWS (same Internet Message-ID) is not triaged again."""
    from bot.ingress import submit
    from bot.ledger import NewTask

    _seed(graph)
    sub = submit(
        ingress,
        NewTask(
            idempotency_key=f"mail:{GRAPH_ADDRESS}:<budget@example.com>",
            requester=OWNER,
            surface="email",
            intent="triage",
            trigger="automation",
            payload={"mailbox": GRAPH_ADDRESS, "subject": "Please approve the Q3 budget (EWS era)"},
        ),
        scope="mail.read",
        notify_denial=False,
    )
    with mail_deps.db.session() as s:
        s.query(Task).filter(Task.id == sub.task_id).update({"status": "done"})
        s.add(
            MailSyncState(
                mailbox=GRAPH_ADDRESS,
                folder="inbox",
                sync_state="H4sIAAAAAAAEAO29B2AcSZYlJi9tynt",
                complete=1,
                items_seen=10,
                tasks_created=1,
                skipped_old=0,
            )
        )
    assert poller.run_once() == 0
    subjects = sorted(t.payload["subject"] for t in _tasks(mail_deps, "triage"))
    assert subjects == [
        "Lunch on Thursday?",
        "Please approve the Q3 budget (EWS era)",
        "This week in widgets",
    ]
    with mail_deps.db.session() as s:
        state = s.execute(select(MailSyncState).where(MailSyncState.folder == "inbox")).scalar_one()
    assert "deltatoken" in state.sync_state
    with mail_deps.db.session() as s:
        assert s.execute(select(MailItem)).scalars().all()  # the new mail has triage records


def test_implicit_outcomes_through_delta(graph, poller, mail_deps):
    """The owner in Outlook: moves mail back out of Action, relabels, sends one draft unchanged and one edited,
    discards one: each is recorded once, from the delta of the watched folders."""
    budget = graph.add_message(
        subject="Please approve the budget",
        sender="carol@example.com",
        body_text="Please approve the budget by Friday.",
        internet_message_id="<budget@example.com>",
    )
    for subject, who in (("Lunch", "dave"), ("Coffee", "erin"), ("Dinner", "fred")):
        graph.add_message(
            subject=f"{subject} on Thursday?",
            sender=f"{who}@example.com",
            body_text=f"Are you free for {subject.lower()} on Thursday?",
            internet_message_id=f"<{subject}@example.com>",
        )
    assert poller.run_once() == 0
    drain(mail_deps)
    assert poller.run_once() == 0  # the watched folders' delta state exists from here on
    items = _items(mail_deps)
    graph.move_message(budget, "inbox")  # "not an action"
    graph.set_categories(items["Lunch on Thursday?"].current_item_id, ["FYI"])
    drafts = {d.to[0]: d for d in graph.messages_in("drafts")}
    graph.send_from_outlook(drafts["erin@example.com"].immutable_id)
    graph.send_from_outlook(
        drafts["fred@example.com"].immutable_id, body_text="Thursday works, see you at 7."
    )
    graph.discard(drafts["carol@example.com"].immutable_id)
    assert poller.run_once() == 0
    assert _outcomes(mail_deps) == [
        ("Coffee on Thursday?", "draft_sent_unchanged", "implicit"),
        ("Dinner on Thursday?", "draft_sent_edited", "implicit"),
        ("Lunch on Thursday?", "label_corrected", "implicit"),
        ("Please approve the budget", "draft_discarded", "implicit"),
        ("Please approve the budget", "label_corrected", "implicit"),
    ]
    assert poller.run_once() == 0 and len(_outcomes(mail_deps)) == 5  # recorded once
    assert not any(r.method == "DELETE" for r in graph.requests)


def test_wrong_secret_is_reported_for_the_mailbox_with_the_aadsts_code(
    graph, poller, mail_deps, monkeypatch, caplog
):
    """A wrong client secret: the poll fails for that mailbox with the AADSTS code, backs off, creates nothing;
    with the secret fixed (a new poller process), the mail is triaged."""
    _seed(graph)
    monkeypatch.setenv(GRAPH_SECRET_ENV, "not-the-secret")
    (report,) = poller.poll_all(once=True)
    assert not report.ok and report.back_off
    assert "credentials rejected" in report.error and "AADSTS7000215" in report.error
    assert GRAPH_ADDRESS in report.error and "not-the-secret" not in report.error
    assert "not-the-secret" not in caplog.text
    assert _tasks(mail_deps, "triage") == []
    monkeypatch.setenv(GRAPH_SECRET_ENV, GRAPH_SECRET)
    fresh = MailPoller(
        mail_deps.settings,
        mail_deps.db,
        poller.ingress,
        mailbox_factory(mail_deps.settings, poller.ingress.policy),
        sleep=lambda _s: None,
    )
    assert fresh.run_once() == 0 and len(_tasks(mail_deps, "triage")) == 3
