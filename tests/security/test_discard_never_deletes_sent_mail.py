"""Attack: the owner sends Clawback's reply draft from Outlook, then (before the next poll) clicks "Discard draft"
on the digest — or a replayed click arrives later. On Graph, Clawback asks for immutable ids, and a sent draft
keeps its id in Sent Items, so a DELETE of the recorded draft id would delete the mail the owner just sent.
Discard must delete only a draft that is still in Drafts; anything else is left alone (and the task refused)."""

from __future__ import annotations

from tests.conftest import drain
from tests.mail import conftest as mail_fixtures
from tests.mail import test_graph_flow as graph_flow
from tests.mail.conftest import OWNER
from tests.mail.test_triage_flow import _items, _tasks

graph = mail_fixtures.graph
graph_trust = mail_fixtures.graph_trust
mail_scopes = mail_fixtures.mail_scopes
sleeps = mail_fixtures.sleeps
# The Graph flow's fixtures: the mailbox built from the policy by the real factory.
policy_file = graph_flow.policy_file
mail_deps = graph_flow.mail_deps
poller = graph_flow.poller


def _triaged(graph, poller, deps):
    graph.add_message(
        subject="Lunch on Thursday?",
        sender="dave@example.com",
        sender_name="Dave Park",
        body_text="Are you free for lunch on Thursday?",
        internet_message_id="<lunch@example.com>",
    )
    assert poller.run_once() == 0
    drain(deps)
    item = _items(deps)["Lunch on Thursday?"]
    assert item.draft_status == "open" and len(graph.messages_in("drafts")) == 1
    return item


def _discard(sender, slack, item) -> None:
    ts = slack.messages["D0EMMA"][0].ts
    sender.block_action(OWNER, "mail_discard_draft", item.task_id, channel="D0EMMA", message_ts=ts)


def test_discard_after_sending_from_outlook_leaves_the_sent_mail(graph, poller, mail_deps, slack, sender):
    item = _triaged(graph, poller, mail_deps)
    graph.send_from_outlook(item.draft_id)  # same immutable id, now in Sent Items
    _discard(sender, slack, item)
    drain(mail_deps)
    (task,) = _tasks(mail_deps, "mail_discard")
    assert task.status == "denied"
    assert [m.subject for m in graph.sent()] == ["RE: Lunch on Thursday?"]
    assert not any(r.method == "DELETE" for r in graph.requests)


def test_discard_of_an_open_draft_deletes_it_over_graph(graph, poller, mail_deps, slack, sender):
    """The same click on a draft still in Drafts: one DELETE of that draft (204); the email itself stays."""
    item = _triaged(graph, poller, mail_deps)
    _discard(sender, slack, item)
    drain(mail_deps)
    assert graph.messages_in("drafts") == [] and graph.message(item.current_item_id) is not None
    deletes = [r.path for r in graph.requests if r.method == "DELETE"]
    assert len(deletes) == 1 and deletes[0].endswith(item.draft_id)
