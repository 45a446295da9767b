"""Outcome kinds, the none sweep, the follow-up signal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot import ledger
from bot.db import Outcome
from bot.errors import ConfigError
from bot.ledger import NewTask
from bot.measure.outcomes import DEFAULT_KINDS, FOLLOWUP, decisive, note_followup, parse_kinds, sweep_none


def _done(db, key, who="U0ALICE", *, thread="1700000000.000100", channel="C0GENERAL"):
    task, _ = ledger.create_task(
        db,
        NewTask(
            idempotency_key=key,
            requester=who,
            surface="mention",
            intent="answer",
            channel_id=channel,
            thread_ts=thread,
        ),
    )
    ledger.finish(db, task.id, "done")
    return ledger.get_task(db, task.id)


def _outcomes(db):
    with db.session() as s:
        return [
            (o.task_id, o.kind, o.source) for o in s.execute(select(Outcome).order_by(Outcome.id)).scalars()
        ]


def test_default_kinds_are_documented_with_classes_and_weights():
    """Every default kind has a class, a weight and a strength; accepted kinds include the first report's."""
    config = parse_kinds(None)
    assert {k.cls for k in DEFAULT_KINDS.values()} == {"accepted", "rejected", "neutral"}
    assert config.class_of("resolved") == "accepted" and config.class_of("label_corrected") == "rejected"
    assert config.class_of("something_new") == "neutral"
    assert config.kinds[FOLLOWUP].strength == "weak" and config.kinds[FOLLOWUP].weight == 0.5


def test_kind_overlay_is_validated():
    """Bad CLAWBACK_OUTCOME_KINDS entries are configuration errors naming the kind."""
    assert parse_kinds('{"ticket_closed": {"class": "accepted"}}').class_of("ticket_closed") == "accepted"
    for bad, msg in [
        ('{"x": {"class": "great"}}', "class"),
        ('{"x": {"weight": -1}}', "weight"),
        ('{"x": {"strength": "loud"}}', "strength"),
        ('{"x": {"colour": 1}}', "unknown key"),
        ("[1]", "object"),
        ("{nope", "JSON"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_kinds(bad)


def test_decisive_prefers_strength_then_recency():
    """Explicit beats implicit beats weak beats timeout; equal strength: the latest wins."""
    config = parse_kinds(None)
    assert decisive([(1, "resolved", "explicit"), (2, FOLLOWUP, "implicit")], config) == "resolved"
    assert decisive([(1, "deploy_succeeded", "system"), (2, "deploy_rolled_back", "implicit")], config) == (
        "deploy_rolled_back"
    )
    assert decisive([(5, "none", "timeout"), (6, FOLLOWUP, "implicit")], config) == FOLLOWUP
    assert decisive([], config) is None


def test_sweep_marks_none_after_the_window_once(db):
    """Done tasks without outcome get 'none' after the window; rated and failed ones never; idempotent."""
    old = _done(db, "old")
    rated = _done(db, "rated")
    ledger.record_outcome(db, rated.id, "resolved", source="explicit", actor="U0ALICE")
    failed, _ = ledger.create_task(
        db, NewTask(idempotency_key="f", requester="U0A", surface="dm", intent="answer")
    )
    ledger.finish(db, failed.id, "failed")
    later = old.finished_at + timedelta(hours=73)
    fresh = _done(db, "fresh")
    assert sweep_none(db, window=timedelta(hours=72), now=later) == 2  # old and fresh (fresh finished ~now)
    assert sweep_none(db, window=timedelta(hours=72), now=later) == 0
    kinds = {(t, k) for t, k, _s in _outcomes(db)}
    assert (old.id, "none") in kinds and (rated.id, "none") not in kinds and (failed.id, "none") not in kinds
    assert (fresh.id, "none") in kinds
    assert sweep_none(db, window=timedelta(hours=72), now=datetime(2000, 1, 1, tzinfo=UTC)) == 0


def test_followup_in_thread_is_a_weak_not_resolved(db):
    """A second question in the same thread within minutes marks the first answer followup_question once."""
    first = _done(db, "q1")
    second = _done(db, "q2")
    assert note_followup(db, second) == first.id
    assert note_followup(db, second) == first.id
    assert _outcomes(db) == [(first.id, FOLLOWUP, "implicit")]


def test_followup_ignores_other_threads_people_and_old_questions(db):
    """Different thread, different person, or too long ago: no signal."""
    first = _done(db, "q1")
    other_thread = _done(db, "q2", thread="1700000099.000100")
    other_person = _done(db, "q3", who="U0BOB")
    assert note_followup(db, other_thread) is None and note_followup(db, other_person) is None
    late = _done(db, "q4")
    assert note_followup(db, late, within=timedelta(microseconds=1)) is None
    assert _outcomes(db) == [] and first.id
