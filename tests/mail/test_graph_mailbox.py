"""GraphMailbox over real msal and httpx, HTTPS to the Graph + identity platform stand-in."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.mail.base import (
    MailAuthError,
    Mailbox,
    MailError,
    MailNotFound,
    MailSyncStateInvalid,
    MailThrottled,
    MailUnavailable,
)
from bot.standins.graph import make_client_certificate
from tests.mail.conftest import GRAPH_ADDRESS, GRAPH_OTHER, GRAPH_TENANT

pytestmark = pytest.mark.nopg  # no database behaviour

NOW = datetime.now(UTC)


def _sync_all(mb, folder="inbox", state=None, page=100):
    changes = []
    while True:
        result = mb.sync_folder(folder, state, max_changes=page)
        changes += result.changes
        state = result.sync_state
        if not result.more_available:
            return changes, state


def test_is_a_mailbox_and_every_request_asks_for_immutable_ids(graph, graph_mailbox):
    """The protocol is implemented; every Graph call (batched ones too) says Prefer: IdType="ImmutableId"."""
    mb = graph_mailbox()
    assert isinstance(mb, Mailbox)
    for n in range(3):
        graph.add_message(subject=f"m{n}", body_text="hi")
    _sync_all(mb)
    calls = graph.graph_requests()
    assert calls and all('IdType="ImmutableId"' in r.headers.get("Prefer", "") for r in calls)
    batch = [r for r in calls if r.path.endswith("/$batch")]
    assert batch and all(
        'IdType="ImmutableId"' in q["headers"]["Prefer"] for r in batch for q in r.json()["requests"]
    )


def test_first_sync_pages_with_delta_and_fetches_bodies_in_batches_of_20(graph, graph_mailbox):
    """45 messages, page size 25: two delta pages, each followed by $batch (≤ 20 per batch) for the bodies."""
    for n in range(45):
        graph.add_message(subject=f"m{n}", body_html=f"<p>note {n}</p>", received=NOW - timedelta(minutes=n))
    mb = graph_mailbox()
    changes, state = _sync_all(mb, page=25)
    assert len(changes) == 45 and {c.kind for c in changes} == {"create"}
    assert sorted(c.message.subject for c in changes) == sorted(f"m{n}" for n in range(45))
    assert changes[0].message.body_html.startswith("<p>") and "note" in changes[0].message.body_text
    delta = graph.graph_requests("/messages/delta")
    assert len(delta) == 2
    first = parse_qs(urlsplit(delta[0].path).query)
    assert first["$select"] == ["id,receivedDateTime"]  # minimal: bodies come from the batch
    assert "odata.maxpagesize=25" in delta[0].headers["Prefer"]
    batches = [r.json()["requests"] for r in graph.graph_requests("/$batch")]
    assert [len(b) for b in batches] == [20, 5, 20] and sum(len(b) for b in batches) == 45
    assert state and "deltatoken" in state


def test_idle_poll_is_one_request_and_reads_no_message(graph, graph_mailbox):
    """After the first sync, a poll with nothing new is one delta request per folder, nothing else."""
    graph.add_message(subject="hello", body_text="hi")
    mb = graph_mailbox()
    _, inbox_state = _sync_all(mb)
    _, drafts_state = _sync_all(mb, "drafts")
    before = len(graph.graph_requests())
    tokens = graph.tokens_issued
    result = mb.sync_folder("inbox", inbox_state)
    drafts = mb.sync_folder("drafts", drafts_state)
    assert result.changes == [] and drafts.changes == [] and not result.more_available
    served = graph.graph_requests()[before:]
    assert [r.path.split("?")[0].rsplit("/", 3)[-3] for r in served] == ["inbox", "drafts"]
    assert graph.tokens_issued == tokens  # the cached token is reused


def test_incremental_sync_reports_new_changed_and_removed(graph, graph_mailbox):
    """New mail is a create; the owner's label change an update; a move out of the folder a delete."""
    old = graph.add_message(subject="old", body_text="x", received=NOW - timedelta(days=1))
    mb = graph_mailbox()
    _, state = _sync_all(mb)
    graph.set_categories(old, ["Mine"])
    new = graph.add_message(subject="new", body_text="y")
    changes, state = _sync_all(mb, state=state)
    kinds = sorted((c.kind, c.message.subject) for c in changes)
    # delta cannot tell new from changed: mail received since the previous round is also offered as a
    # create (the poller dedupes on the Internet Message-ID); older mail is an update only
    assert kinds == [("create", "new"), ("update", "new"), ("update", "old")]
    assert next(c for c in changes if c.item_id == old).message.categories == ["Mine"]
    graph.move_message(new, "Archive")
    changes, _ = _sync_all(mb, state=state)
    assert [(c.kind, c.item_id) for c in changes] == [("delete", new)]


def test_evicted_sync_state_is_sync_state_invalid(graph, graph_mailbox):
    """A 410 from delta (Exchange dropped the sync state) raises MailSyncStateInvalid; None starts over."""
    graph.add_message(subject="a", body_text="x")
    mb = graph_mailbox()
    _, state = _sync_all(mb)
    graph.evict_sync_states()
    with pytest.raises(MailSyncStateInvalid, match="410"):
        mb.sync_folder("inbox", state)
    changes, _ = _sync_all(mb)
    assert [c.message.subject for c in changes] == ["a"]
    with pytest.raises(MailSyncStateInvalid):  # an EWS sync state left from before the switch
        mb.sync_folder("inbox", "H4sIAAAAAAAEAO29B2AcSZYlJi9tynt")


def test_throttling_honours_retry_after_and_is_bounded(graph, graph_mailbox):
    """429s are retried after Retry-After; beyond the bound the caller gets MailThrottled with the hint."""
    item = graph.add_message(subject="a", body_text="x")
    slept: list[float] = []
    mb = graph_mailbox(sleep=slept.append, max_retries=3)
    graph.throttle(2, retry_after=1.5)
    assert mb.get_message(item).subject == "a"
    assert slept == [1.5, 1.5]
    graph.throttle(4, retry_after=2)  # the call and its three retries
    with pytest.raises(MailThrottled) as caught:
        mb.get_message(item)
    assert caught.value.back_off_seconds == 2
    assert slept[2:] == [2, 2, 2]  # three retries, then it gives up
    graph.throttle(1, retry_after=3600)  # a hint longer than we would block a worker: not slept
    with pytest.raises(MailThrottled):
        mb.get_message(item)
    assert len(slept) == 5


def test_expired_token_is_dropped_and_the_request_retried_once(graph, graph_mailbox):
    """Graph answers 401 for an expired token: a new token is fetched and the request succeeds."""
    item = graph.add_message(subject="a", body_text="x")
    mb = graph_mailbox()
    assert mb.get_message(item) is not None
    assert graph.tokens_issued == 1
    graph.expire_tokens()
    assert mb.get_message(item).subject == "a"
    assert graph.tokens_issued == 2
    statuses = [r.path for r in graph.graph_requests(f"/messages/{item}")]
    assert len(statuses) == 3  # ok, 401, ok


def test_wrong_secret_and_unknown_tenant_name_the_mailbox_and_the_aadsts_code(graph, graph_mailbox):
    """Bad credentials are MailAuthError naming the mailbox, the app, the tenant and the AADSTS code."""
    with pytest.raises(MailAuthError) as caught:
        graph_mailbox(client_secret="wrong").sync_folder("inbox", None)
    text = str(caught.value)
    assert GRAPH_ADDRESS in text and "AADSTS7000215" in text and GRAPH_TENANT in text
    assert graph.app.client_id in text and "wrong" not in text
    with pytest.raises(MailAuthError) as caught:
        graph_mailbox(tenant_id="fabrikam.onmicrosoft.com").sync_folder("inbox", None)
    assert "AADSTS90002" in str(caught.value) and "fabrikam.onmicrosoft.com" in str(caught.value)


def test_certificate_credentials(graph, graph_mailbox):
    """A certificate (client assertion signed with its key, x5t = SHA-1 thumbprint) gets a token."""
    pem, cert, thumbprint = make_client_certificate()
    graph.app.certificate_pem = cert
    item = graph.add_message(subject="a", body_text="x")
    mb = graph_mailbox(client_certificate={"private_key": pem, "thumbprint": thumbprint})
    assert mb.get_message(item).subject == "a"
    token_call = [r for r in graph.requests if r.path.endswith("/oauth2/v2.0/token")][-1]
    form = parse_qs(token_call.body.decode())
    assert "client_assertion" in form and "client_secret" not in form
    other_pem, _, other_thumbprint = make_client_certificate()  # a certificate Entra does not know
    with pytest.raises(MailAuthError, match="AADSTS700027"):
        graph_mailbox(
            client_certificate={"private_key": other_pem, "thumbprint": other_thumbprint}
        ).get_message(item)


def test_mailbox_outside_the_rbac_scope_is_a_clear_error(graph, graph_mailbox):
    """Exchange Online RBAC for Applications answers 403 for a mailbox outside the app's scope."""
    graph.scope = {GRAPH_ADDRESS}
    with pytest.raises(MailError) as caught:
        graph_mailbox(GRAPH_OTHER).sync_folder("inbox", None)
    assert GRAPH_OTHER in str(caught.value) and "403" in str(caught.value)
    assert "RBAC for Applications" in str(caught.value)
    assert not isinstance(caught.value, MailAuthError | MailThrottled)


def test_at_most_four_requests_in_flight_per_mailbox(graph, graph_mailbox):
    """Eight threads sharing one mailbox client never have more than 4 requests at Graph at once."""
    ids = [graph.add_message(subject=f"m{n}", body_text="x") for n in range(8)]
    mb = graph_mailbox()
    mb.get_message(ids[0])  # the token first, so the threads race on Graph only
    errors: list[Exception] = []

    def read(item_id: str) -> None:
        try:
            for _ in range(5):
                mb.get_message(item_id)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=read, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 1 <= graph.max_in_flight <= 4


def test_actions_move_label_draft_send_and_never_delete(graph, graph_mailbox):
    """Move keeps the immutable id and creates the folder; the draft goes to the sender only, holds only our
    text (createReply's Reply-To and quoted original are replaced); send only from Drafts; no DELETE ever."""
    item = graph.add_message(
        subject="Budget",
        sender="carol@example.com",
        reply_to=["attacker@evil.example"],
        cc=["boss@example.com"],
        body_text="Please approve. Secret code 12345.",
    )
    mb = graph_mailbox()
    mb.set_categories(item, ["Action required"])
    assert graph.message(item).categories == ["Action required"]
    assert mb.move(item, "Action") == item
    assert graph.folder_of(item) == "Action"
    draft_id = mb.create_reply_draft(item, "Approved.")
    draft = mb.get_draft(draft_id)
    assert draft.to == ["carol@example.com"] and draft.cc == [] and draft.body_text == "Approved."
    assert draft.subject == "RE: Budget" and "12345" not in draft.body_text
    original = graph.message(item).internet_message_id
    assert [d.item_id for d in mb.find_reply_drafts(original)] == [draft_id]
    assert mb.find_sent_reply(original) is None
    mb.send_draft(draft_id)
    assert [m.immutable_id for m in graph.sent()] == [draft_id]
    assert mb.get_draft(draft_id) is None
    assert mb.find_sent_reply(original).item_id == draft_id
    with pytest.raises(MailNotFound):
        mb.send_draft(draft_id)  # already sent: not in Drafts any more
    with pytest.raises(MailNotFound):
        mb.send_draft(item)  # not a draft
    assert [r for r in graph.requests if r.method == "DELETE"] == []
    assert not any("createReplyAll" in r.path or r.path.endswith("/sendMail") for r in graph.requests)


def test_missing_items_and_folders(graph, graph_mailbox):
    """Unknown ids read as None; acting on them is MailNotFound; syncing a missing folder is MailNotFound."""
    mb = graph_mailbox()
    assert mb.get_message("AAkALgnope") is None
    assert mb.get_draft("AAkALgnope") is None
    with pytest.raises(MailNotFound):
        mb.create_reply_draft("AAkALgnope", "hi")
    with pytest.raises(MailNotFound):
        mb.sync_folder("No such folder", None)


def test_first_inbox_sync_reads_only_the_first_sync_window(graph, graph_mailbox):
    """With first_sync_days, the Inbox's first delta filters on receivedDateTime: older mail is never read,
    and the filter stays with the delta link (later rounds report only newer mail and changes to it)."""
    for n in range(30):
        graph.add_message(subject=f"old {n}", body_text="x", received=NOW - timedelta(days=30, minutes=n))
    recent = graph.add_message(subject="recent", body_text="y", received=NOW - timedelta(days=1))
    mb = graph_mailbox(first_sync_days=7)
    changes, state = _sync_all(mb)
    assert [(c.kind, c.item_id) for c in changes] == [("create", recent)]
    (delta,) = graph.graph_requests("/messages/delta")
    assert parse_qs(urlsplit(delta.path).query)["$filter"][0].startswith("receivedDateTime ge ")
    assert graph.graph_requests("/$batch") == []  # one message: one GET, no batch
    new = graph.add_message(subject="new", body_text="z")
    changes, _ = _sync_all(mb, state=state)
    assert {c.item_id for c in changes} == {new}
    drafts, _ = _sync_all(mb, "drafts")  # only the Inbox is filtered
    assert "$filter" not in graph.graph_requests("/mailFolders/drafts/messages/delta")[0].path


def test_a_link_to_another_host_never_gets_the_token(graph, graph_mailbox):
    """A sync state whose link points outside graph_url is refused before any request carries the token."""
    mb = graph_mailbox()
    _, state = _sync_all(mb)
    forged = state.replace(graph.graph_url, "https://attacker.example/v1.0")
    before = len(graph.requests)
    with pytest.raises(MailUnavailable, match="outside"):
        mb.sync_folder("inbox", forged)
    assert len(graph.requests) == before
