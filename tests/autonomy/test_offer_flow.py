"""Transcripts: an offer DM with its evidence → Yes → auto; Not now; a stranger's click; a demotion notice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import autonomy
from bot.db import AuditEntry, AutonomyOffer
from bot.slack.blocks import AUTONOMY_NOT_NOW, AUTONOMY_YES
from tests.autonomy.conftest import POLICY, decide
from tests.conftest import drain
from workers import autonomy as jobs


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The autonomy test policy (mail.move: promote after 5 at 80%, demote at 2 in 4)."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def _earn_offer(deps) -> int:
    """Five accepted suggestions: the offer is announced (opened and its DM enqueued)."""
    pol = deps.policy.current
    change = None
    for _ in range(5):
        _, change = decide(deps.db, pol, "accepted")
    assert isinstance(change, autonomy.OfferDue)
    assert jobs.announce(deps, change) == "offered"
    assert jobs.announce(deps, change) == "already pending"  # no second DM for the same offer
    drain(deps)
    with deps.db.read() as s:
        (offer,) = s.execute(select(AutonomyOffer)).scalars()
    return offer.id


def _offer_message(slack):
    (msg,) = [m for m in slack.bot_messages("D0ALICE") if "right 5 of your last 5 moves" in m.text]
    return msg


def test_offer_yes_promotes_to_auto(slack, llm, sender, deps):
    """The DM shows the evidence and a Yes button; Alice's Yes makes mail.move auto and updates the DM."""
    offer_id = _earn_offer(deps)
    msg = _offer_message(slack)
    buttons = [e for b in msg.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Yes, go ahead", "Not now"]
    assert "move your mail for you from now on" in msg.text
    sender.block_action("U0ALICE", AUTONOMY_YES, str(offer_id), channel="D0ALICE", message_ts=msg.ts)
    drain(deps)
    assert autonomy.level_for(deps.db, deps.policy.current, "U0ALICE", "mail.move") == "auto"
    assert "said yes" in msg.text and not [b for b in msg.blocks if b["type"] == "actions"]
    with deps.db.read() as s:
        promoted = s.execute(select(AuditEntry).where(AuditEntry.action == "autonomy.promoted")).scalar_one()
    assert promoted.actor == "U0ALICE" and f'"offer_id":{offer_id}' in promoted.details


def test_someone_else_cannot_answer_the_offer(slack, llm, sender, deps):
    """Bob's click on Alice's offer changes nothing, is refused privately and audited."""
    offer_id = _earn_offer(deps)
    msg = _offer_message(slack)
    sender.block_action("U0BOB", AUTONOMY_YES, str(offer_id), channel="D0ALICE", message_ts=msg.ts)
    drain(deps)
    assert autonomy.level_for(deps.db, deps.policy.current, "U0ALICE", "mail.move") == "suggest"
    told = [c for c in slack.calls("chat.postEphemeral") if c.get("user") == "U0BOB"]
    assert told and "Only the person this offer was made to" in told[0]["text"]
    with deps.db.read() as s:
        denied = s.execute(select(AuditEntry).where(AuditEntry.decision == "deny")).scalar_one()
    assert (denied.action, denied.actor) == ("autonomy.offer.accept", "U0BOB")
    with deps.db.read() as s:
        assert s.get(AutonomyOffer, offer_id).status == "pending"


def test_not_now_keeps_the_level_and_says_when_it_asks_again(slack, llm, sender, deps):
    """Not now: still suggest, the DM says when Clawback asks again, the refusal is audited."""
    offer_id = _earn_offer(deps)
    msg = _offer_message(slack)
    sender.block_action("U0ALICE", AUTONOMY_NOT_NOW, str(offer_id), channel="D0ALICE", message_ts=msg.ts)
    drain(deps)
    assert autonomy.level_for(deps.db, deps.policy.current, "U0ALICE", "mail.move") == "suggest"
    assert "ask again after 5 more" in msg.text
    with deps.db.read() as s:
        assert s.get(AutonomyOffer, offer_id).status == "declined"
        assert s.execute(
            select(AuditEntry).where(AuditEntry.action == "autonomy.offer.declined")
        ).scalar_one()


def test_demotion_is_told_with_the_corrected_items(slack, llm, sender, deps):
    """Two corrections in the window at auto: back to suggest, and Alice gets a DM saying why."""
    pol = deps.policy.current
    autonomy.set_level(
        deps.db, pol, user="U0ALICE", action="mail.move", category=None, level="auto", actor="U0ADMIN"
    )
    decide(deps.db, pol, "rejected", outcome_id=7)
    _, demotion = decide(deps.db, pol, "rejected", outcome_id=8)
    assert isinstance(demotion, autonomy.Demotion)
    assert jobs.announce(deps, demotion) == "told"
    drain(deps)
    (notice,) = [m for m in slack.bot_messages("D0ALICE") if "went back from" in m.text]
    assert "*auto* to *suggest*" in notice.text and "corrected 2 of the last 2" in notice.text
    assert notice.text.count("(task `") == 2
    assert json.dumps(notice.blocks).count("task `") == 2
