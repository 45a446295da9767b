"""Discard draft deletes the reply draft Clawback saved for that email — only that draft, only for the owner,
audited before the effect, idempotent, and never a draft that was sent (EWS stand-in; Graph in
tests/security/test_discard_never_deletes_sent_mail.py)."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.db import Action, AuditEntry, Task
from bot.ledger import NewTask, create_task
from tests.conftest import drain
from tests.mail.conftest import OWNER, send_draft_confirmed
from tests.mail.test_triage_actions import _digest_ts, _reply_mail
from tests.mail.test_triage_flow import _items, _tasks


def _triaged(ews, poller, deps):
    _reply_mail(ews)
    poller.run_once()
    drain(deps)
    item = _items(deps)["Lunch on Thursday?"]
    assert item.draft_status == "open" and len(ews.drafts()) == 1
    return item


def _discard(sender, slack, item, user: str = OWNER) -> None:
    ts = slack.messages["D0EMMA"][0].ts  # the digest
    sender.block_action(user, "mail_discard_draft", item.task_id, channel="D0EMMA", message_ts=ts)


def _run_discard(deps, triage_id: str, key: str = "again") -> Task:
    """A mail_discard task run directly (as a replayed or late job would be)."""
    task, _ = create_task(
        deps.db,
        NewTask(
            idempotency_key=f"test-discard:{triage_id}:{key}", requester=OWNER, surface="dm",
            intent="mail_discard", trigger="human", parent_id=triage_id, payload={"triage_task": triage_id},
        ),
    )  # fmt: skip
    deps.queue.enqueue(task.id)
    drain(deps)
    with deps.db.read() as s:
        return s.get(Task, task.id)


def test_discard_deletes_once_audited_before_the_effect_and_a_second_click_is_quiet(
    ews, poller, mail_deps, slack, sender
):
    """The owner's click: one mail_discard task; DeleteItem (MoveToDeletedItems) after its audit entry; a second
    click and a replayed job change nothing and fail nothing."""
    item = _triaged(ews, poller, mail_deps)
    _discard(sender, slack, item)
    drain(mail_deps)
    assert ews.drafts() == [] and len(ews.messages("deleteditems")) == 1
    (task,) = _tasks(mail_deps, "mail_discard")
    assert task.status == "done" and task.result["draft"] == "deleted"
    with mail_deps.db.read() as s:
        (action,) = s.execute(select(Action).where(Action.kind == "mail.draft.delete")).scalars()
        entry = s.execute(
            select(AuditEntry).where(AuditEntry.task_id == task.id, AuditEntry.action == "mail.draft")
        ).scalar_one()
    assert action.detail == {"draft_id": item.draft_id} and action.result["outcome"] == "deleted"
    assert entry.decision == "allow" and json.loads(entry.details)["effect"] == "delete the draft"
    deletes = ews.operations().count("DeleteItem")
    _discard(sender, slack, item)  # the same click again: recorded already, no second task
    drain(mail_deps)
    assert len(_tasks(mail_deps, "mail_discard")) == 1
    again = _run_discard(mail_deps, item.task_id)  # a replayed job: the draft is gone already
    assert again.status == "done" and again.result["draft"] == "gone"
    assert ews.operations().count("DeleteItem") == deletes


def test_a_strangers_discard_deletes_nothing(ews, poller, mail_deps, slack, sender):
    item = _triaged(ews, poller, mail_deps)
    _discard(sender, slack, item, user="U0BOB")
    drain(mail_deps)
    assert len(ews.drafts()) == 1 and "DeleteItem" not in ews.operations()
    assert _tasks(mail_deps, "mail_discard") == []


def test_a_sent_draft_is_never_deleted(ews, poller, mail_deps, slack, sender):
    """Sent through Clawback: the click records nothing, and a mail_discard job that still runs is refused."""
    item = _triaged(ews, poller, mail_deps)
    send_draft_confirmed(sender, slack, mail_deps, item.task_id, _digest_ts(slack))
    assert len(ews.sent_items()) == 1
    _discard(sender, slack, item)
    drain(mail_deps)
    assert _tasks(mail_deps, "mail_discard") == []
    late = _run_discard(mail_deps, item.task_id)
    assert late.status == "denied" and "sent" in late.status_reason
    assert len(ews.sent_items()) == 1 and "DeleteItem" not in ews.operations()


def test_only_the_draft_clawback_saved_for_that_email(ews, poller, mail_deps, slack, sender):
    """A triage record pointing at a draft Clawback did not save (the owner's own) is refused: nothing deleted."""
    item = _triaged(ews, poller, mail_deps)
    own = ews.add_message(
        subject="My own draft", sender="emma@example.com", body_text="notes", folder="drafts"
    )
    from bot.mail.models import MailItem

    with mail_deps.db.session() as s:
        s.execute(select(MailItem).where(MailItem.task_id == item.task_id)).scalar_one().draft_id = own
    late = _run_discard(mail_deps, item.task_id)
    assert late.status == "denied" and "no draft Clawback saved" in late.status_reason
    assert len(ews.drafts()) == 2 and "DeleteItem" not in ews.operations()


def test_the_audit_entry_comes_before_the_effect(ews, poller, mail_deps, slack, sender):
    """The mailbox refuses the DeleteItem: the audit entry of the attempt is there, the draft too."""
    item = _triaged(ews, poller, mail_deps)
    ews.fail_next("DeleteItem", "auth")
    _discard(sender, slack, item)
    drain(mail_deps)
    (task,) = _tasks(mail_deps, "mail_discard")
    assert task.status == "failed" and len(ews.drafts()) == 1
    with mail_deps.db.read() as s:
        entries = (
            s.execute(
                select(AuditEntry).where(AuditEntry.task_id == task.id, AuditEntry.action == "mail.draft")
            )
            .scalars()
            .all()
        )
    assert [json.loads(e.details)["effect"] for e in entries] == ["delete the draft"]
