"""The rules of earned autonomy: start and cap, promotion offers, declined offers, demotion, persistence."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot import autonomy, controls
from bot.db import AuditEntry, AutonomyChange, Database
from bot.policy import parse_policy
from tests.autonomy.conftest import decide, policy


def test_no_section_keeps_todays_behaviour(db):
    """Without [autonomy] every action runs at auto and judging changes nothing."""
    pol = parse_policy("[roles.a]\nscopes = []\n")
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move", "newsletter") == "auto"
    _, change = decide(db, pol, "rejected")
    assert change is None


def test_unlisted_action_runs_at_default_and_deploys_are_refused(db):
    """An action the section does not list runs at ``default``; deploys are never governed."""
    pol = policy()
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.draft") == "auto"
    with pytest.raises(ValueError, match="deploys are never autonomous"):
        autonomy.level_for(db, pol, "U0ALICE", "deploy.request")
    with pytest.raises(ValueError, match="deploys are never autonomous"):
        autonomy.record_decision(
            db, task_id="x", user="U0ALICE", action="deploy.trigger", category=None, level="auto"
        )


def test_promotion_is_offered_at_the_threshold_and_not_before(db):
    """4 accepted of 5 at 0.8 → offer after the 5th judged decision, not earlier; 'none' verdicts do not count."""
    pol = policy()
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move") == "suggest"
    changes = [decide(db, pol, v)[1] for v in ("accepted", "rejected", "none", "accepted", "accepted")]
    assert changes == [None] * 5
    _, due = decide(db, pol, "accepted")
    assert isinstance(due, autonomy.OfferDue)
    assert (due.from_level, due.to_level) == ("suggest", "auto")
    assert due.evidence.text == "right 4 of your last 5 moves"
    assert len(due.evidence.decision_ids) == 5


def test_acceptance_below_the_rule_is_not_offered(db):
    """3 of 5 accepted is below 0.8: no offer."""
    pol = policy()
    results = [decide(db, pol, v)[1] for v in ("rejected", "rejected", "accepted", "accepted", "accepted")]
    assert results[-1] is None


def test_category_rule_overrides_and_levels_are_per_category(db):
    """The newsletter table lowers promote_after to 3; other categories keep the action's 5."""
    pol = policy()
    for _ in range(2):
        assert decide(db, pol, "accepted", category="newsletter")[1] is None
    _, due = decide(db, pol, "accepted", category="newsletter")
    assert isinstance(due, autonomy.OfferDue) and due.category == "newsletter"
    assert due.evidence.text == "right 3 of your last 3 newsletter moves"
    assert decide(db, pol, "accepted", category="fyi")[1] is None


def test_accept_promotes_and_never_above_max(db):
    """Yes promotes (only the person; audited); set_level refuses a level above max."""
    pol = policy()
    due = None
    for _ in range(5):
        _, due = decide(db, pol, "accepted")
    offer_id = autonomy.open_offer(db, pol, due)
    assert autonomy.open_offer(db, pol, due) is None  # one pending offer at a time
    assert autonomy.accept_offer(db, pol, offer_id, actor="U0MALLORY") == "not yours"
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move") == "suggest"
    assert autonomy.accept_offer(db, pol, offer_id, actor="U0ALICE") == "accepted"
    assert autonomy.accept_offer(db, pol, offer_id, actor="U0ALICE") == "already accepted"
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move") == "auto"
    with pytest.raises(ValueError, match="above the policy's max"):
        autonomy.set_level(
            db, pol, user="U0ALICE", action="mail.categorize", category=None, level="auto", actor="U0ADMIN"
        )
    with db.read() as s:
        actions = [(e.action, e.decision, e.actor) for e in s.execute(select(AuditEntry)).scalars()]
    assert ("autonomy.offered", "info", "clawback") in actions
    assert ("autonomy.offer.accept", "deny", "U0MALLORY") in actions
    assert ("autonomy.promoted", "allow", "U0ALICE") in actions


def test_cap_lowered_in_the_policy_caps_stored_levels(db):
    """A person at auto is held to suggest once the admin lowers max; no offer goes above it."""
    pol = policy()
    autonomy.set_level(
        db, pol, user="U0ALICE", action="mail.move", category=None, level="auto", actor="U0ADMIN"
    )
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move") == "auto"
    capped = policy(policy_text := _with_max("suggest"))
    assert 'max = "suggest"' in policy_text
    assert autonomy.level_for(db, capped, "U0ALICE", "mail.move") == "suggest"
    for _ in range(6):
        assert decide(db, capped, "accepted")[1] is None


def _with_max(level: str) -> str:
    from tests.autonomy.conftest import POLICY

    return POLICY.replace('max = "auto"', f'max = "{level}"', 1)


def test_declined_offer_is_asked_again_only_after_promote_after_more(db):
    """Not now → no offer for the next 4 judged decisions; the 5th brings it back."""
    pol = policy()
    for _ in range(5):
        _, due = decide(db, pol, "accepted")
    offer_id = autonomy.open_offer(db, pol, due)
    assert autonomy.decline_offer(db, offer_id, actor="U0ALICE") == "declined"
    assert [decide(db, pol, "accepted")[1] for _ in range(4)] == [None] * 4
    _, again = decide(db, pol, "accepted")
    assert isinstance(again, autonomy.OfferDue)
    assert again.evidence.judged_total == 10


def test_window_demotion_at_auto_is_immediate_and_audited(db):
    """At auto, 2 rejections within the last 4 judged → suggest at once, with the ids that justified it."""
    pol = policy()
    autonomy.set_level(
        db, pol, user="U0ALICE", action="mail.move", category=None, level="auto", actor="U0ADMIN"
    )
    decide(db, pol, "accepted")
    first, change = decide(db, pol, "rejected", outcome_id=101)
    assert change is None
    decide(db, pol, "accepted")
    second, demotion = decide(db, pol, "rejected", outcome_id=102)
    assert isinstance(demotion, autonomy.Demotion)
    assert (demotion.from_level, demotion.to_level) == ("auto", "suggest")
    assert demotion.evidence.decision_ids == (first, second)
    assert demotion.evidence.outcome_ids == (101, 102)
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move") == "suggest"
    with db.read() as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "autonomy.demoted")).scalar_one()
        row = s.get(AutonomyChange, demotion.change_id)
    assert '"outcome_ids":[101,102]' in entry.details and row.kind == "demotion"
    # The rules count afresh at suggest: earlier decisions at suggest do not bring an instant offer back.
    assert decide(db, pol, "accepted")[1] is None


def test_rejections_outside_the_window_do_not_demote(db):
    """Two rejections five judged decisions apart (window 4) leave the level alone."""
    pol = policy()
    autonomy.set_level(
        db, pol, user="U0ALICE", action="mail.move", category=None, level="auto", actor="U0ADMIN"
    )
    changes = [decide(db, pol, v)[1] for v in ("rejected", "accepted", "accepted", "accepted", "rejected")]
    assert changes == [None] * 5
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move") == "auto"


def test_a_verdict_is_kept_once_and_none_may_be_replaced(db):
    """A second verdict on a judged decision is ignored; a late click replaces 'none'."""
    pol = policy()
    did, _ = decide(db, pol, "none")
    autonomy.judge(db, pol, did, "accepted", actor="U0ALICE")
    autonomy.judge(db, pol, did, "rejected", actor="U0ALICE")
    assert autonomy.evidence(db, pol, "U0ALICE", "mail.move").accepted == 1


def test_kill_switch_answers_shadow_for_the_paused_intent(db):
    """While paused, level_for with the caller's intent acts on nothing."""
    pol = policy()
    controls.pause(db, by="U0ADMIN", user="U0ALICE")
    assert autonomy.level_for(db, pol, "U0ALICE", "mail.move", intent="triage") == "shadow"
    assert autonomy.level_for(db, pol, "U0BOB", "mail.move", intent="triage") == "suggest"


def test_levels_survive_a_new_database_object(db):
    """A level set through one Database is in force through a fresh one (a restart)."""
    pol = policy()
    autonomy.set_level(
        db, pol, user="U0ALICE", action="mail.move", category="fyi", level="auto", actor="U0ADMIN"
    )
    again = Database(db.url)
    try:
        assert autonomy.level_for(again, pol, "U0ALICE", "mail.move", "fyi") == "auto"
        assert autonomy.level_for(again, pol, "U0ALICE", "mail.move", "newsletter") == "suggest"
    finally:
        again.dispose()


def test_standings_say_what_would_change_the_level(db):
    """Home and /usage lines: level, accepted/judged and the next step."""
    pol = policy()
    decide(db, pol, "accepted", category="newsletter")
    rows = {(r.action, r.category): r for r in autonomy.standings(db, pol, "U0ALICE")}
    news = rows[("mail.move", "newsletter")]
    assert (news.level, news.accepted, news.judged) == ("suggest", 1, 1)
    assert news.next_step.startswith("2 more judged to be offered auto")
    assert rows[("mail.categorize", "")].next_step == "at the cap your admin set"
    assert autonomy.build_standing_lines([news]) == ["• mail.move (newsletter): *suggest*, 1/1 accepted"]
