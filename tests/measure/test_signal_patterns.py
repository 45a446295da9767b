"""Each gaming pattern the signals used to miss, and its honest look-alike, on small hand-built ledgers.

Every test states both directions: the signal fires on the pattern and stays quiet on the honest case that
looks most like it. Timestamps are synthetic (no waiting, no timing assertions).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bot.db import Database
from bot.measure import facts
from bot.measure.outcomes import parse_kinds, sweep_none
from bot.measure.signals import Flag, detect, near_duplicate, resemblance
from bot.settings import Settings
from tests.measure.workload import Workload, _vocab

END = datetime(2026, 3, 20, 18, 0, tzinfo=UTC)
T0 = END - timedelta(days=5, hours=6)


def _workload(seed: int = 3) -> Workload:
    rnd = random.Random(seed)
    return Workload(rnd, _vocab(rnd))


def _detect(db: Database, w: Workload) -> list[Flag]:
    w.insert(db)
    sweep_none(db, window=timedelta(hours=72), now=END)
    facts.refresh(db, parse_kinds(None))
    return detect(
        db,
        since=END - timedelta(days=30),
        until=END,
        settings=Settings(_env_file=None, clawback_reporting_dates="none"),
    )


def _kinds(flags: list[Flag], who: str) -> set[str]:
    return {f.kind for f in flags if f.subject == who}


# -- bursts --------------------------------------------------------------------------------------------------


def test_burst_of_distinct_questions_is_flagged_with_its_timing(db):
    """20 different questions within 90 s (jittered, not clockwork) are a burst: flagged with ids and span."""
    w = _workload()
    ids = [
        w.task("U0BURST", T0 + timedelta(seconds=sorted(w.rnd.uniform(0, 90) for _ in range(20))[i]))
        for i in range(20)
    ]
    flags = [f for f in _detect(db, w) if f.subject == "U0BURST"]
    assert [f.kind for f in flags] == ["burst"]
    assert set(flags[0].evidence) == set(ids)
    assert flags[0].details["tasks"] == 20 and flags[0].details["span_s"] <= 90
    assert "20 requests within" in flags[0].explanation


def test_incident_commander_asking_fast_is_not_a_burst(db):
    """A person asking a question every 20–60 s through a two-hour incident is never flagged."""
    w = _workload()
    at = T0
    for _ in range(150):
        at += timedelta(seconds=w.rnd.uniform(20, 60))
        w.task("U0INCIDENT", at, outcome="resolved" if w.rnd.random() < 0.3 else None)
    assert _kinds(_detect(db, w), "U0INCIDENT") == set()


# -- reworded duplicates -------------------------------------------------------------------------------------


REQUEST = "please summarise the quarterly revenue numbers for the emea sales team and list the top risks"


def test_resemblance_separates_rewordings_from_requests_that_differ_in_a_number():
    """Adding a word or swapping word order keeps a request the same; a different PR number does not."""
    reworded = "pls " + REQUEST.replace("emea sales team", "sales team for emea") + " thanks"
    assert resemblance(REQUEST, reworded) >= 0.8
    assert near_duplicate(REQUEST, reworded, 0.8)
    assert not near_duplicate("please summarise PR 123 for me", "please summarise PR 124 for me", 0.8)
    assert not near_duplicate("status of INC-4821 please", "status of INC-4822 please", 0.8)
    assert not near_duplicate(REQUEST, "what is the on-call rotation for the platform team next week", 0.8)
    deploy = "what is the current status of the {} service deploy in production"
    assert not near_duplicate(deploy.format("payments"), deploy.format("search"), 0.8)


def test_reworded_duplicates_are_flagged(db):
    """Ten rewordings of one request (a word added, "pls", order changed) within a day are one cluster."""
    w = _workload()
    extras = ["", " thanks", " asap", " please", " again", " now", " today", " for me", " again pls", " ok"]
    ids = []
    for i in range(10):
        words = REQUEST.split()
        if i % 2:
            words[0] = "pls"
        if i % 3 == 0:
            words[7:10] = ["team", "emea", "sales"]
        ids.append(w.task("U0REWORD", T0 + timedelta(minutes=40 * i), text=" ".join(words) + extras[i]))
    flags = [f for f in _detect(db, w) if f.subject == "U0REWORD"]
    assert [f.kind for f in flags] == ["near_duplicate_prompts"]
    assert set(flags[0].evidence) == set(ids)
    assert flags[0].details["min_similarity"] >= 0.8


def test_on_call_checking_many_tickets_is_not_a_duplicate(db):
    """Twenty status questions that differ only in the ticket or PR number are different requests."""
    w = _workload()
    for i in range(20):
        n = 4800 + w.rnd.randint(0, 400)
        text = w.rnd.choice(
            [
                f"what is the status of ticket INC-{n} please",
                f"please summarise PR {n} for me and list blockers",
            ]
        )
        w.task(
            "U0ONCALL", T0 + timedelta(minutes=25 * i + w.rnd.uniform(0, 20)), text=text, outcome="resolved"
        )
    assert _kinds(_detect(db, w), "U0ONCALL") == set()


# -- "summarize again" in one thread -------------------------------------------------------------------------

SUMMARY_ASKS = [
    "summarize this thread for me",
    "can you give me a recap of the discussion above",
    "tl;dr of this thread please",
    "catch me up on what was said here",
    "sum up the conversation so far",
    "what's the gist of this thread",
    "give me a short summary of the above",
    "recap please, I lost track",
]


def test_summarize_again_in_one_thread_is_flagged(db):
    """Asking for a summary of the same thread six times in 50 minutes, in new words each time."""
    w = _workload()
    thread = f"{T0.timestamp():.6f}"
    ids = [
        w.task(
            "U0RESUM", T0 + timedelta(minutes=10 * i), text=SUMMARY_ASKS[i], thread=thread, channel="C0BUSY"
        )
        for i in range(6)
    ]
    flags = [f for f in _detect(db, w) if f.subject == "U0RESUM"]
    assert [f.kind for f in flags] == ["repeated_summary"]
    assert flags[0].evidence == ids
    assert flags[0].details["thread"] == thread and flags[0].details["channel"] == "C0BUSY"


def test_busy_thread_questions_and_hourly_summaries_are_not_flagged(db):
    """Many different questions in one thread, and a summary every 30–70 minutes of an incident, are fine."""
    w = _workload()
    thread = f"{T0.timestamp():.6f}"
    at = T0
    for i in range(12):
        at += timedelta(minutes=w.rnd.uniform(30, 70))
        w.task("U0IC", at, text=SUMMARY_ASKS[i % len(SUMMARY_ASKS)], thread=thread, channel="C0INC")
        for _ in range(2):
            ask = at + timedelta(minutes=w.rnd.uniform(1, 25))
            w.task("U0IC", ask, text=w.text(), thread=thread, channel="C0INC")
    assert _kinds(_detect(db, w), "U0IC") == set()


# -- spend with no outcome -----------------------------------------------------------------------------------


def test_one_follow_up_does_not_clear_a_week_of_spend(db):
    """A weak follow-up ("not resolved") is not a real outcome: the week is still flagged."""
    w = _workload()
    for i in range(30):
        w.task(
            "U0SPEND",
            END - timedelta(days=9) + timedelta(hours=3 * i + w.rnd.uniform(0, 2)),
            tokens=(2500, 500),
            outcome="followup_question" if i == 0 else None,
            source="implicit",
        )
    flags = [f for f in _detect(db, w) if f.subject == "U0SPEND"]
    assert [f.kind for f in flags] == ["spend_no_outcome"]
    assert flags[0].details["weak_outcomes"] == 1


def test_spend_with_real_outcomes_is_not_flagged(db):
    """The same week with a handful of explicit or implicit outcomes is not flagged."""
    w = _workload()
    for i in range(30):
        kind = "resolved" if i % 10 == 0 else "draft_sent" if i % 10 == 5 else None
        at = END - timedelta(days=9) + timedelta(hours=3 * i + w.rnd.uniform(0, 2))
        w.task("U0USEFUL", at, tokens=(2500, 500), outcome=kind)
    assert _kinds(_detect(db, w), "U0USEFUL") == set()


# -- bot loops name the app ----------------------------------------------------------------------------------


def test_bot_loop_names_the_app_and_the_person_whose_token_it_used(db):
    """An app posting with a person's token: the flag names the bot id, the app id and the person."""
    w = _workload()
    for i in range(12):
        w.task(
            "U0PERSON",
            T0 + timedelta(seconds=60 * i),
            trigger="bot",
            status="ignored",
            text="",
            extra={"bot_id": "B0ZAPIER", "app_id": "A0ZAPIER"},
        )
    flags = [f for f in _detect(db, w) if f.kind == "bot_loop"]
    assert len(flags) == 1
    f = flags[0]
    assert "B0ZAPIER" in f.explanation and "A0ZAPIER" in f.explanation and "U0PERSON" in f.explanation
    assert not f.explanation.startswith("Bot U0PERSON")
    assert f.details["bot_id"] == "B0ZAPIER" and f.details["app_id"] == "A0ZAPIER"
    assert f.details["user"] == "U0PERSON"


def test_a_few_bot_posts_are_not_a_loop(db):
    """An app posting now and then with a person's token (a daily digest) is not a loop."""
    w = _workload()
    for i in range(12):
        w.task(
            "U0PERSON",
            T0 + timedelta(hours=4 * i),
            trigger="bot",
            status="ignored",
            text="",
            extra={"bot_id": "B0DIGEST", "app_id": "A0DIGEST"},
        )
    assert [f for f in _detect(db, w) if f.kind == "bot_loop"] == []


def test_bot_loop_through_real_ingress_names_the_app(sender, db):
    """Signed events from an app posting with a person's token: recorded, ignored, and flagged naming both."""
    for i in range(11):
        event = {
            "type": "app_mention",
            "user": "U0PERSON",
            "bot_id": "B0ZAPIER",
            "app_id": "A0ZAPIER",
            "bot_profile": {"id": "B0ZAPIER", "app_id": "A0ZAPIER", "name": "zapier"},
            "text": f"<@{sender.bot_user_id}> automated ping {i}",
            "ts": f"{1_770_000_000 + i}.000100",
            "channel": "C0GENERAL",
        }
        assert sender.send_event(event).status == 200
    facts.refresh(db, parse_kinds(None))
    now = datetime.now(UTC)
    flags = detect(db, since=now - timedelta(days=1), until=now + timedelta(minutes=1), dates=[])
    loops = [f for f in flags if f.kind == "bot_loop"]
    assert len(loops) == 1, flags
    assert loops[0].details["bot_id"] == "B0ZAPIER" and loops[0].details["app_id"] == "A0ZAPIER"
    assert loops[0].details["user"] == "U0PERSON" and loops[0].details["messages"] == 11


# -- a script on some days among ordinary work ---------------------------------------------------------------


def _ordinary_days(w: Workload, who: str, days: int = 10) -> None:
    for d in range(days):
        day = (END - timedelta(days=days - d)).replace(hour=8, minute=0)
        for _ in range(w.rnd.randint(3, 10)):
            w.task(who, day + timedelta(seconds=w.rnd.uniform(0, 9.5 * 3600)), outcome="resolved")


def test_script_on_two_days_among_ordinary_work_is_flagged(db):
    """A request every 12 minutes ± 8% for two office days, amid ten days of bursty ordinary use."""
    w = _workload()
    _ordinary_days(w, "U0SCRIPT")
    for d in (3, 4):
        t = (END - timedelta(days=d)).replace(hour=9, minute=0)
        while t.hour < 17:
            w.task("U0SCRIPT", t)
            t += timedelta(seconds=720 * w.rnd.uniform(0.92, 1.08))
    flags = [f for f in _detect(db, w) if f.subject == "U0SCRIPT"]
    assert [f.kind for f in flags] == ["machine_cadence"]
    assert 600 <= flags[0].details["median_gap_s"] <= 840 and flags[0].details["robust_cv"] <= 0.15


def test_ordinary_work_every_day_has_no_cadence(db):
    """The same ten days of ordinary use without the script: no run of 30 is regular."""
    w = _workload()
    _ordinary_days(w, "U0PLAIN")
    assert _kinds(_detect(db, w), "U0PLAIN") == set()


def test_rewordings_changing_one_word_each_are_one_cluster(db):
    """Rewordings that each swap a different word for a synonym, between plain repeats, are one cluster."""
    w = _workload()
    synonyms = [("list", "show"), ("risks", "issues"), ("numbers", "figures"), ("top", "main")]
    ids = []
    for i in range(9):
        a, b = synonyms[i // 2 % len(synonyms)]
        text = REQUEST.replace(a, b) if i % 2 else REQUEST + " thanks"
        ids.append(w.task("U0DRIFT", T0 + timedelta(minutes=30 * i + w.rnd.uniform(0, 10)), text=text))
    flags = [f for f in _detect(db, w) if f.subject == "U0DRIFT"]
    assert [f.kind for f in flags] == ["near_duplicate_prompts"]
    assert set(flags[0].evidence) == set(ids) and flags[0].details["min_similarity"] >= 0.8
