"""EwsMailbox over real exchangelib and real HTTP against the local EWS stand-in."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.mail import (
    MailAuthError,
    Mailbox,
    MailError,
    MailNotFound,
    MailSyncStateInvalid,
    MailThrottled,
    MailUnavailable,
)
from bot.mail.ews import EwsMailbox
from bot.standins.ews import EwsStandIn

OWNER = "owner@example.com"
PASSWORD = "s3cret"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def standin() -> Iterator[EwsStandIn]:
    """A running EWS stand-in with an empty mailbox."""
    server = EwsStandIn(address=OWNER, username=OWNER, password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(standin: EwsStandIn) -> Iterator[EwsMailbox]:
    """An EwsMailbox pointed at the stand-in."""
    mb = EwsMailbox(OWNER, standin.ews_url, username=OWNER, password=PASSWORD, timeout=5)
    yield mb
    mb.close()


def _seed(standin: EwsStandIn, n: int) -> list[str]:
    return [
        standin.add_message(
            subject=f"msg {i}",
            sender="alice@example.com",
            body_text=f"body {i}",
            received=T0 + timedelta(minutes=i),
        )
        for i in range(n)
    ]


def _sync_all(mb: EwsMailbox, folder: str, state: str | None, page: int = 100) -> tuple[list, str]:
    """Drain a folder's changes; bounded so a paging bug cannot loop forever."""
    changes: list = []
    for _ in range(200):
        result = mb.sync_folder(folder, state, max_changes=page)
        changes.extend(result.changes)
        state = result.sync_state
        if not result.more_available:
            return changes, state
    raise AssertionError("sync did not finish in 200 pages")


def _requests_during(standin: EwsStandIn, fn) -> tuple[object, list[str]]:  # noqa: ANN001
    before = len(standin.requests)
    value = fn()
    return value, standin.operations()[before:]


def test_ews_mailbox_satisfies_protocol(mailbox: EwsMailbox) -> None:
    """EwsMailbox is a Mailbox."""
    assert isinstance(mailbox, Mailbox)


def test_first_sync_pages_through_seeded_inbox(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """A first sync pages through all messages with full fields."""
    standin.add_message(
        subject="Quarterly",
        sender="carol@example.com",
        sender_name="Carol",
        body_text="plain",
        body_html="<p>rich</p>",
        to=[OWNER, "bob@example.com"],
        cc=["dan@example.com"],
        categories=["Blue"],
        internet_message_id="<q1@example.com>",
        in_reply_to="<q0@example.com>",
        attachments=["a.pdf"],
        received=T0 - timedelta(days=1),
    )
    _seed(standin, 24)
    first = mailbox.sync_folder("inbox", None, max_changes=10)
    assert len(first.changes) == 10 and first.more_available
    changes, _ = _sync_all(mailbox, "inbox", first.sync_state, page=10)
    changes = first.changes + changes
    assert len(changes) == 25 and {c.kind for c in changes} == {"create"}
    assert len({c.item_id for c in changes}) == 25
    q = next(c.message for c in changes if c.message.subject == "Quarterly")
    assert (q.sender_email, q.sender_name, q.to, q.cc) == (
        "carol@example.com",
        "Carol",
        [OWNER, "bob@example.com"],
        ["dan@example.com"],
    )
    assert (q.body_text, q.body_html, q.categories) == ("plain", "<p>rich</p>", ["Blue"])
    assert (q.internet_message_id, q.in_reply_to, q.folder) == (
        "<q1@example.com>",
        "<q0@example.com>",
        "inbox",
    )
    assert q.received_at == T0 - timedelta(days=1) and q.received_at.tzinfo is not None
    assert q.has_attachments and q.size > 0 and q.conversation_id and not q.is_read


def test_incremental_sync_reports_only_changes(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """After a full sync, only new, changed and deleted items come back."""
    ids = _seed(standin, 5)
    _, state = _sync_all(mailbox, "inbox", None)
    new_id = standin.add_message(subject="new one", sender="erin@example.com")
    standin.set_categories(ids[1], ["Owner-tagged"])
    standin.delete(ids[2])
    moved_new_id = standin.move(ids[3], "Archive")
    gone_before_sync = standin.add_message(subject="spam")
    standin.delete(gone_before_sync)
    changes, state = _sync_all(mailbox, "inbox", state, page=2)
    by_id = {c.item_id: c for c in changes}
    assert set(by_id) == {new_id, ids[1], ids[2], ids[3]}
    assert by_id[new_id].kind == "create" and by_id[new_id].message.subject == "new one"
    assert by_id[ids[1]].kind == "update" and by_id[ids[1]].message.categories == ["Owner-tagged"]
    assert by_id[ids[2]].kind == "delete" and by_id[ids[3]].kind == "delete"
    assert moved_new_id not in by_id
    again, _ = _sync_all(mailbox, "inbox", state)
    assert again == []


@pytest.mark.slow
def test_idle_sync_costs_one_request_with_10000_messages(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """An idle sync of a 10,000-message inbox is exactly one SyncFolderItems request."""
    _seed(standin, 10_000)
    _, state = _sync_all(mailbox, "inbox", None, page=512)
    result, ops = _requests_during(standin, lambda: mailbox.sync_folder("inbox", state))
    assert ops == ["SyncFolderItems"]
    assert result.changes == [] and not result.more_available and result.sync_state


def test_set_categories(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """Categories are replaced, and cleared with an empty list."""
    item_id = standin.add_message(subject="tag me", categories=["Old"])
    mailbox.set_categories(item_id, ["Clawback/Triage", "Urgent"])
    assert standin.message(item_id).categories == ["Clawback/Triage", "Urgent"]
    assert mailbox.get_message(item_id).categories == ["Clawback/Triage", "Urgent"]
    mailbox.set_categories(item_id, [])
    assert standin.message(item_id).categories == []


def test_move_creates_missing_folder_under_inbox(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """Moving to a folder that does not exist creates it under the Inbox and returns the new id."""
    item_id = standin.add_message(subject="act on this")
    assert "Action" not in standin.folders()
    new_id = mailbox.move(item_id, "Action")
    assert new_id != item_id and standin.folder_parent("Action") == "Inbox"
    assert [m.item_id for m in standin.messages("Action")] == [new_id]
    assert mailbox.get_message(new_id).folder == "Action"
    assert mailbox.get_message(item_id) is None
    second = standin.add_message(subject="second")
    _, ops = _requests_during(standin, lambda: mailbox.move(second, "action"))
    assert "CreateFolder" not in ops and len(standin.messages("Action")) == 2


def test_reply_draft_goes_only_to_original_sender(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """A reply draft is addressed only to the sender, even when the body names other addresses."""
    item_id = standin.add_message(
        subject="Budget",
        sender="carol@example.com",
        to=[OWNER, "team@example.com"],
        cc=["boss@example.com"],
        internet_message_id="<budget@example.com>",
        body_text="Reply to everyone at all@example.com please",
    )
    draft_id = mailbox.create_reply_draft(item_id, "Sure. Also cc mallory@evil.example and boss@example.com.")
    [draft] = standin.drafts()
    assert draft.item_id == draft_id and draft.to == ["carol@example.com"] and draft.cc == []
    got = mailbox.get_draft(draft_id)
    assert got.subject == "RE: Budget" and got.to == ["carol@example.com"] and got.cc == []
    assert got.in_reply_to == "<budget@example.com>" and got.folder == "drafts"
    assert "mallory@evil.example" in got.body_text


def test_reply_subject_is_not_stacked(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """Replying to "Re: x" keeps a single prefix."""
    item_id = standin.add_message(subject="Re: lunch", sender="dave@example.com")
    draft_id = mailbox.create_reply_draft(item_id, "ok")
    assert mailbox.get_draft(draft_id).subject == "Re: lunch"


def test_send_draft_lands_in_sent_items_and_is_found(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """A sent draft leaves Drafts, lands in Sent Items, and find_sent_reply finds it even after an edit."""
    item_id = standin.add_message(
        subject="Invoice", sender="billing@vendor.example", internet_message_id="<inv@vendor.example>"
    )
    assert mailbox.find_sent_reply("<inv@vendor.example>") is None
    draft_id = mailbox.create_reply_draft(item_id, "Paid yesterday.")
    standin.edit(draft_id, "Paid yesterday. -- edited by owner")
    mailbox.send_draft(draft_id)
    assert standin.drafts() == [] and mailbox.get_draft(draft_id) is None
    [sent] = standin.sent_items()
    assert sent.to == ["billing@vendor.example"] and standin.outbox[-1] is sent
    found = mailbox.find_sent_reply("<inv@vendor.example>")
    assert found is not None and found.folder == "sent" and found.body_text.endswith("edited by owner")
    assert mailbox.find_sent_reply("<other@vendor.example>") is None


def test_send_draft_refuses_items_outside_drafts(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """send_draft only sends items that are in Drafts."""
    item_id = standin.add_message(subject="not a draft")
    with pytest.raises(MailError):
        mailbox.send_draft(item_id)
    assert standin.outbox == []


def test_throttling_raises_mail_throttled_with_back_off(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """ErrorServerBusy surfaces at once as MailThrottled carrying the server's back-off."""
    _, state = _sync_all(mailbox, "inbox", None)
    standin.fail_next("SyncFolderItems", "server_busy", back_off_ms=12_500)
    with pytest.raises(MailThrottled) as exc:
        mailbox.sync_folder("inbox", state)
    assert exc.value.back_off_seconds == pytest.approx(12.5)
    assert mailbox.sync_folder("inbox", state).changes == []


def test_http_500_raises_mail_unavailable(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """A non-SOAP HTTP 500 is MailUnavailable."""
    item_id = standin.add_message(subject="x")
    standin.fail_next("GetItem", "http_500")
    with pytest.raises(MailUnavailable):
        mailbox.get_message(item_id)


def test_injected_401_raises_mail_auth_error(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """A 401 mid-session is MailAuthError."""
    standin.fail_next("*", "auth")
    with pytest.raises(MailAuthError):
        mailbox.sync_folder("inbox", None)


def test_wrong_password_raises_mail_auth_error(standin: EwsStandIn) -> None:
    """Wrong credentials are MailAuthError, not a retry loop."""
    mb = EwsMailbox(OWNER, standin.ews_url, username=OWNER, password="wrong", timeout=5)
    with pytest.raises(MailAuthError):
        mb.sync_folder("inbox", None)


def test_server_down_raises_mail_unavailable() -> None:
    """A closed port is MailUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mb = EwsMailbox(
        OWNER, f"http://127.0.0.1:{port}/EWS/Exchange.asmx", username=OWNER, password=PASSWORD, timeout=2
    )
    with pytest.raises(MailUnavailable):
        mb.sync_folder("inbox", None)


def test_bad_sync_state_is_a_mail_error(standin: EwsStandIn, mailbox: EwsMailbox) -> None:
    """A corrupt sync state is reported, not silently treated as a fresh sync."""
    with pytest.raises(MailSyncStateInvalid):
        mailbox.sync_folder("inbox", "bm90LWEtc3RhdGU=")


def test_unknown_folder_for_sync_is_not_found(mailbox: EwsMailbox) -> None:
    """Syncing a folder that does not exist does not create it."""
    with pytest.raises(MailNotFound):
        mailbox.sync_folder("Nope", None)


def test_oauth_credentials_are_wired_without_network() -> None:
    """OAuth2 client credentials construct a mailbox without any request."""
    mb = EwsMailbox(
        OWNER, "http://127.0.0.1:9/EWS/Exchange.asmx", client_id="cid", client_secret="sec", tenant_id="tid"
    )
    assert mb.address == OWNER
    with pytest.raises(ValueError):
        EwsMailbox(OWNER, "http://127.0.0.1:9/EWS/Exchange.asmx", client_id="cid")
