"""Crash windows (owner DM, reply draft), outcome kind names, and relabelling after "Wrong category"."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.db import Action, AuditEntry, LLMCall
from bot.measure.outcomes import DEFAULT_KINDS
from tests.conftest import drain
from tests.mail.conftest import OWNER, send_draft_confirmed
from tests.mail.test_triage_actions import _action_mail, _digest_ts, _reply_mail
from tests.mail.test_triage_flow import _audit, _items, _outcomes, _tasks


class Crash(RuntimeError):
    """A worker dying between a side effect and recording it (the job is retried)."""


class CrashingSlack:
    """The real Slack client, except that one chat.postMessage dies before or after taking effect."""

    def __init__(self, client, *, after: bool) -> None:
        self.client = client
        self.after = after
        self.armed = True

    def __getattr__(self, name):
        return getattr(self.client, name)

    def chat_postMessage(self, **kwargs):  # noqa: N802 - the WebClient method name
        """Post (or not), then die once."""
        if not self.armed:
            return self.client.chat_postMessage(**kwargs)
        self.armed = False
        if self.after:
            self.client.chat_postMessage(**kwargs)
        raise Crash("worker killed around chat.postMessage")


class CrashingMailbox:
    """The real mailbox client, except that one create_reply_draft dies after saving the draft."""

    def __init__(self, mailbox) -> None:
        self.mailbox = mailbox
        self.armed = True

    def __getattr__(self, name):
        return getattr(self.mailbox, name)

    def create_reply_draft(self, item_id: str, body_text: str) -> str:
        """Save the draft, then die once before the id is returned."""
        draft_id = self.mailbox.create_reply_draft(item_id, body_text)
        if self.armed:
            self.armed = False
            raise Crash("worker killed after saving the draft")
        return draft_id


def _dm_posts(slack) -> list[dict]:
    return [c for c in slack.calls("chat.postMessage") if c["channel"] == "D0EMMA"]


@pytest.mark.parametrize("after", [True, False], ids=["crash-after-post", "crash-before-post"])
def test_digest_dm_is_posted_once_across_a_crash(ews, poller, mail_deps, slack, after):
    """A worker dying around the digest post: the retry finds the posted DM by its metadata (or posts it)."""
    _action_mail(ews)
    _reply_mail(ews)
    poller.run_once()
    real = mail_deps.slack
    mail_deps.slack = CrashingSlack(real, after=after)
    try:
        drain(mail_deps)
    finally:
        mail_deps.slack = real
    (digest,) = _tasks(mail_deps, "mail_digest")
    assert digest.status == "done" and digest.attempts == 2
    assert len(_dm_posts(slack)) == 1  # the owner sees one digest
    with mail_deps.db.session() as s:
        (action,) = s.execute(select(Action).where(Action.task_id == digest.id)).scalars()
    assert action.status == "done" and bool(action.result.get("recovered")) is after
    ts = [m.ts for m in slack.messages["D0EMMA"]]
    assert action.result["ts"] == ts[0] and digest.result["pages"] == ts
    assert {i.slack_ts for i in _items(mail_deps).values()} == set(ts)


def _schemas(llm) -> list[str]:
    return [
        (c.get("response_format") or {}).get("json_schema", {}).get("name", "") for c in llm.completions()
    ]


def test_reply_draft_is_created_once_across_a_crash(ews, poller, mail_deps, llm):
    """A worker dying after saving the draft: the retry finds the draft replying to the message, and reuses
    the recorded classification and draft calls (the model is asked once for each; tokens counted once)."""
    _reply_mail(ews)
    real = mail_deps.extras["mailboxes"]
    crashing = CrashingMailbox(real("emma@example.com"))
    mail_deps.extras["mailboxes"] = lambda address: crashing
    poller.run_once()
    drain(mail_deps)
    (task,) = _tasks(mail_deps, "triage")
    assert task.status == "done" and task.attempts == 2 and "mail.draft" in task.result["actions"]
    (draft,) = ews.drafts()
    assert draft.to == ["dave@example.com"]
    with mail_deps.db.session() as s:
        action = s.execute(select(Action).where(Action.kind == "mail.draft")).scalar_one()
    assert action.status == "done" and action.result["recovered"] is True
    assert action.result["draft_id"] == draft.item_id == _items(mail_deps)["Lunch on Thursday?"].draft_id
    assert [a.action for a in _audit(mail_deps)].count("mail.draft") == 1  # audited once, before acting
    assert _schemas(llm) == ["triage", "reply_draft"]
    with mail_deps.db.session() as s:
        calls = list(s.execute(select(LLMCall).where(LLMCall.task_id == task.id)).scalars())
    item = _items(mail_deps)["Lunch on Thursday?"]
    assert sorted(c.step for c in calls) == ["draft", "triage"]
    assert item.prompt_tokens == sum(c.prompt_tokens for c in calls)
    assert item.completion_tokens == sum(c.completion_tokens for c in calls)


def test_a_failed_draft_call_is_retried_without_deciding_again(ews, poller, mail_deps, llm):
    """The model is down for the draft call (after the classification call): the job is retried; the stored
    decision is used as is (no second classification call) and the draft is written and saved once."""
    _reply_mail(ews)
    llm.script({}, {"status": 500}, {"status": 500})  # classification ok; both tries of the draft call fail
    poller.run_once()
    drain(mail_deps)
    (task,) = _tasks(mail_deps, "triage")
    assert task.status == "done" and task.attempts == 2 and "mail.draft" in task.result["actions"]
    assert _schemas(llm) == ["triage", "reply_draft", "reply_draft", "reply_draft"]
    assert len(ews.drafts()) == 1 and task.result["llm_calls"] == 2


def test_a_different_draft_to_the_same_message_is_not_taken_for_ours(ews, poller, mail_deps):
    """After a crash before saving, an owner's own reply draft is not mistaken for the one triage saves."""
    from bot.mail.ews import EwsMailbox
    from tests.mail.conftest import OWNER_ADDRESS, PASSWORD
    from workers.mail.actuator import MailboxActuator

    _reply_mail(ews)
    poller.run_once()
    drain(mail_deps)
    (task,) = _tasks(mail_deps, "triage")
    item = _items(mail_deps)["Lunch on Thursday?"]
    outlook = EwsMailbox(OWNER_ADDRESS, ews.ews_url, username=OWNER_ADDRESS, password=PASSWORD, timeout=5)
    own_draft = outlook.create_reply_draft(item.current_item_id, "Yes! See you at noon.")
    outlook.close()
    with mail_deps.db.session() as s:  # as if the worker died after begin_action, before saving
        s.get(
            Action, s.execute(select(Action.id).where(Action.kind == "mail.draft")).scalar_one()
        ).status = "pending"
    from workers.mail.items import config_for, mailbox_for

    cfg = config_for(mail_deps, OWNER_ADDRESS)
    actuator = MailboxActuator(mailbox_for(mail_deps, OWNER_ADDRESS), cfg, mail_deps.db, mail_deps.policy)
    new_id = actuator.draft_reply(
        task,
        item.current_item_id,
        "Something else entirely",
        source=mail_deps.extras["mailboxes"](OWNER_ADDRESS).get_message(item.current_item_id),
        internet_message_id="<LunchonThursday?@example.com>",
    )
    assert new_id != own_draft and len(ews.drafts()) == 3


def test_send_draft_click_records_unchanged_or_edited(ews, poller, mail_deps, slack, sender):
    """ "Send draft" records draft_sent_unchanged, or draft_sent_edited when the owner edited it first."""
    _reply_mail(ews, "Lunch on Thursday?", "dave@example.com")
    _reply_mail(ews, "Coffee on Friday?", "erin@example.com")
    poller.run_once()
    drain(mail_deps)
    ts = _digest_ts(slack)
    items = _items(mail_deps)
    coffee = items["Coffee on Friday?"]
    ews.edit(coffee.draft_id, "Friday works, 10am at the usual place.")
    for item in items.values():
        send_draft_confirmed(sender, slack, mail_deps, item.task_id, ts)
    assert _outcomes(mail_deps) == [
        ("Coffee on Friday?", "draft_sent_edited", "explicit"),
        ("Lunch on Thursday?", "draft_sent_unchanged", "explicit"),
    ]
    assert sorted(t.result["edited"] for t in _tasks(mail_deps, "mail_send")) == [False, True]


def test_every_mail_outcome_kind_is_one_the_measurement_knows(ews, poller, mail_deps, slack, sender):
    """Right, Wrong, Send (unchanged), Discard and the implicit signals: all kinds are in bot.measure.outcomes."""
    _action_mail(ews)
    _reply_mail(ews, "Lunch on Thursday?", "dave@example.com")
    _reply_mail(ews, "Coffee on Friday?", "erin@example.com")
    poller.run_once()
    drain(mail_deps)
    ts = _digest_ts(slack)
    items = _items(mail_deps)
    budget, lunch, coffee = (
        items["Please approve the budget"],
        items["Lunch on Thursday?"],
        items["Coffee on Friday?"],
    )
    sender.block_action(OWNER, "mail_right", lunch.task_id, channel="D0EMMA", message_ts=ts)
    sender.block_action(
        OWNER, "mail_wrong", "", channel="D0EMMA", message_ts=ts, selected_option=f"{budget.task_id}:fyi"
    )
    send_draft_confirmed(sender, slack, mail_deps, lunch.task_id, ts)
    sender.block_action(OWNER, "mail_discard_draft", coffee.task_id, channel="D0EMMA", message_ts=ts)
    drain(mail_deps)
    ews.set_categories(coffee.current_item_id, ["Newsletter"])  # an implicit correction
    assert poller.run_once() == 0
    kinds = {k for _s, k, _src in _outcomes(mail_deps)}
    assert kinds == {"label_kept", "label_corrected", "draft_sent_unchanged", "draft_discarded"}
    assert all(k in DEFAULT_KINDS and DEFAULT_KINDS[k].family in ("label", "draft") for k in kinds)


def test_wrong_category_relabels_the_message_in_exchange(ews, poller, mail_deps, slack, sender):
    """ "Wrong category" with mail.categorize: the owner's category replaces ours in Exchange, audited;
    their own categories stay, and the next sync does not count the relabel as another correction."""
    _action_mail(ews)
    poller.run_once()
    drain(mail_deps)
    budget = _items(mail_deps)["Please approve the budget"]
    ews.set_categories(budget.current_item_id, ["Project X", "Action required"])
    sender.block_action(
        OWNER,
        "mail_wrong",
        "",
        channel="D0EMMA",
        message_ts=_digest_ts(slack),
        selected_option=f"{budget.task_id}:fyi",
    )
    drain(mail_deps)
    (relabel,) = _tasks(mail_deps, "mail_relabel")
    assert relabel.status == "done" and relabel.parent_id == budget.task_id
    assert relabel.result["categories"] == ["Project X", "FYI"]
    moved = _items(mail_deps)["Please approve the budget"]
    assert ews.message(moved.current_item_id).categories == ["Project X", "FYI"]
    assert moved.label == "FYI" and moved.corrected == 1 and moved.feedback == "wrong:fyi"
    audited = [a for a in _audit(mail_deps) if a.action == "mail.categorize" and a.task_id == relabel.id]
    assert len(audited) == 1 and audited[0].on_behalf_of == OWNER and audited[0].decision == "allow"
    assert poller.run_once() == 0
    assert _outcomes(mail_deps) == [("Please approve the budget", "label_corrected", "explicit")]


@pytest.mark.scopes("mail.read")
def test_wrong_category_without_mail_categorize_changes_nothing_in_exchange(
    ews, poller, mail_deps, slack, sender
):
    """Without mail.categorize the correction is recorded, nothing is relabelled, and the skip is audited."""
    item_id = _action_mail(ews)
    poller.run_once()
    drain(mail_deps)
    budget = _items(mail_deps)["Please approve the budget"]
    sender.block_action(
        OWNER,
        "mail_wrong",
        "",
        channel="D0EMMA",
        message_ts=_digest_ts(slack),
        selected_option=f"{budget.task_id}:newsletter",
    )
    drain(mail_deps)
    assert _tasks(mail_deps, "mail_relabel") == []
    assert ews.message(item_id).categories == []
    assert _outcomes(mail_deps) == [("Please approve the budget", "label_corrected", "explicit")]
    with mail_deps.db.session() as s:
        denied = list(
            s.execute(
                select(AuditEntry).where(
                    AuditEntry.action == "mail.categorize", AuditEntry.task_id == budget.task_id
                )
            ).scalars()
        )
    assert [d.decision for d in denied][-1] == "deny" and denied[-1].actor == OWNER
    assert "unchanged" in json.dumps(denied[-1].details)


def test_relabel_of_a_message_gone_from_the_mailbox_is_skipped(ews, poller, mail_deps, slack, sender):
    """The owner deleted the message before the relabel ran: nothing to change, the task says why."""
    _action_mail(ews)
    poller.run_once()
    drain(mail_deps)
    budget = _items(mail_deps)["Please approve the budget"]
    ews.delete(budget.current_item_id)
    sender.block_action(
        OWNER,
        "mail_wrong",
        "",
        channel="D0EMMA",
        message_ts=_digest_ts(slack),
        selected_option=f"{budget.task_id}:fyi",
    )
    drain(mail_deps)
    (relabel,) = _tasks(mail_deps, "mail_relabel")
    assert relabel.status == "done" and relabel.result == {
        "skipped": "the message is no longer in the mailbox"
    }
    with mail_deps.db.session() as s:
        assert not s.execute(select(Action).where(Action.task_id == relabel.id)).scalars().all()
