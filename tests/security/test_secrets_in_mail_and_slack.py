"""Attack: secrets in a Slack question or an email's subject, sender name and body reach the model or the ledger.

The review found ``"password": "…"`` in JSON, AWS secret keys, vendor tokens, ``Authorization: Bearer``,
IBANs and US SSNs passed through, and a subject "password: Hunter2-Prod!" stored verbatim in
``tasks.payload`` and ``mail_items``. Every text from Slack or mail is now redacted before the model sees it
and before anything is stored: the task payload, the triage record, audit details, the digest DM.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.db import AuditEntry, Task
from bot.mail.models import MailItem
from tests.conftest import drain
from tests.mail import conftest as mail_fixtures
from tests.unit.test_redact import FORMATS

# the mail surface's fixtures (an EWS stand-in, Emma's mailbox policy, a poller on the real queue)
ews = mail_fixtures.ews
mail_scopes = mail_fixtures.mail_scopes
policy_file = mail_fixtures.policy_file
mailboxes = mail_fixtures.mailboxes
mail_deps = mail_fixtures.mail_deps
sleeps = mail_fixtures.sleeps
poller = mail_fixtures.poller

SUBJECT = "password: Hunter2-Prod!"
SENDER_NAME = "Ops api_key=9f8e7d6c5b4a"
SECRETS = [secret for _name, _text, secret, _kept in FORMATS]


def _everything_stored(deps) -> str:
    """Every row a secret could land in, as one string."""
    with deps.db.session() as s:
        tasks = [(t.payload, t.result) for t in s.execute(select(Task)).scalars()]
        items = [(i.subject, i.sender, i.summary) for i in s.execute(select(MailItem)).scalars()]
        audit = [(a.details, a.target) for a in s.execute(select(AuditEntry)).scalars()]
    return json.dumps([tasks, items, audit], default=str, ensure_ascii=False)


def test_email_subject_sender_name_and_body_are_redacted_before_the_model_and_the_ledger(
    ews, poller, mail_deps, llm, slack
):
    """An email full of secrets is triaged; the model, the ledger, the audit log and the digest never hold one."""
    body = "Hi Emma, here is everything for the migration:\n" + "\n".join(
        text for _n, text, _s, _k in FORMATS
    )
    ews.add_message(subject=SUBJECT, sender="ops@example.com", sender_name=SENDER_NAME, body_text=body)
    assert poller.run_once() == 0
    drain(mail_deps)

    with mail_deps.db.session() as s:
        (task,) = s.execute(select(Task).where(Task.intent == "triage")).scalars()
        (item,) = s.execute(select(MailItem)).scalars()
    assert task.status == "done", task.status_reason
    # the subject keeps its label so the owner still recognises the email; the password is gone
    assert task.payload["subject"] == item.subject == "password: [REDACTED:password]"
    assert task.redactions >= 1

    seen_by_model = json.dumps(llm.completions(), ensure_ascii=False)
    stored = _everything_stored(mail_deps)
    digest = json.dumps(slack.calls("chat.postMessage"), ensure_ascii=False)
    for leak in ["Hunter2-Prod!", "9f8e7d6c5b4a", *SECRETS]:
        assert leak not in seen_by_model, leak
        assert leak not in stored, leak
        assert leak not in digest, leak
    assert "[REDACTED:password]" in seen_by_model and "[REDACTED:secret_assignment]" in seen_by_model


def test_slack_question_with_every_format_is_redacted_before_the_model_and_the_ledger(
    slack, llm, sender, deps
):
    """A question holding one secret of every format: neither the prompt nor the task row holds any of them."""
    sender.mention(
        "U0ALICE", "C0GENERAL", "why does this fail?\n" + "\n".join(t for _n, t, _s, _k in FORMATS)
    )
    drain(deps)
    with deps.db.session() as s:
        (task,) = s.execute(select(Task)).scalars()
    assert task.status == "done"
    seen_by_model = json.dumps(llm.completions(), ensure_ascii=False)
    stored = _everything_stored(deps)
    for leak in SECRETS:
        assert leak not in seen_by_model, leak
        assert leak not in stored, leak
    assert task.redactions >= len({n for n, *_ in FORMATS})
