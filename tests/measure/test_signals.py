"""Waste and gaming signals on a generated ledger with known ground truth."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.errors import ConfigError
from bot.measure import facts
from bot.measure.outcomes import parse_kinds
from bot.measure.signals import (
    Thresholds,
    compression_ratio,
    detect,
    near_duplicate,
    parse_thresholds,
    reporting_dates,
    resemblance,
)
from tests.measure.workload import END, EXPECTED, HEAVY, HONEST, MAIL_OWNER, REPORTING_DATE


def _flags(db, settings, **kw):
    facts.refresh(db, parse_kinds(None))
    return detect(db, since=END - timedelta(days=30), until=END, settings=settings, **kw)


def test_every_pattern_is_flagged_and_no_honest_user_is(db, ledger, measure_settings):
    """Each planted pattern is flagged for its subject, and nobody else (honest and heavy users included)."""
    flags = _flags(db, measure_settings)
    got = {(f.kind, f.subject) for f in flags}
    assert got == EXPECTED
    honest = set(HONEST) | set(HEAVY) | {MAIL_OWNER}
    assert not [f for f in flags if f.subject in honest]


def test_flags_carry_explanation_and_real_evidence(db, ledger, measure_settings):
    """Every flag explains itself in words and cites task ids of its subject that exist in the ledger."""
    by_id = {t["id"]: t for t in ledger.tasks}
    for f in _flags(db, measure_settings):
        assert len(f.explanation) > 60 and f.subject in f.explanation
        assert 1 <= len(f.evidence) <= 20
        assert all(by_id[t]["requester"] == f.subject for t in f.evidence)


def test_heavy_honest_users_really_are_heavy(db, ledger):
    """The honest heavy users spend far more than the flagged ones: flags are not about volume."""
    owner = {t["id"]: t["requester"] for t in ledger.tasks}
    spend: dict[str, int] = {}
    for c in ledger.calls:
        spend[owner[c["task_id"]]] = spend.get(owner[c["task_id"]], 0) + c["total_tokens"]
    flagged = {s for _k, s in EXPECTED}
    assert min(spend[h] for h in HEAVY) > 5 * max(v for k, v in spend.items() if k in flagged)


def test_thresholds_are_configurable(db, ledger, measure_settings):
    """Raising a threshold above what the pattern shows removes that flag (and only it)."""
    t = Thresholds(cadence_min_tasks=1000)
    got = {(f.kind, f.subject) for f in _flags(db, measure_settings, thresholds=t)}
    assert got == EXPECTED - {("machine_cadence", "U0CLOCK")}


def test_threshold_overlay_is_validated():
    """Unknown or negative thresholds in CLAWBACK_SIGNAL_THRESHOLDS are configuration errors."""
    assert parse_thresholds('{"dup_min_cluster": 5}').dup_min_cluster == 5
    with pytest.raises(ConfigError, match="unknown threshold"):
        parse_thresholds('{"nope": 1}')
    with pytest.raises(ConfigError, match=">= 0"):
        parse_thresholds('{"pad_max_ratio": -1}')
    with pytest.raises(ConfigError, match="JSON"):
        parse_thresholds("{bad")


def test_resemblance_separates_rewordings_from_different_requests():
    """Rewordings share most words; unrelated requests few; numbers and ids keep requests apart."""
    a = "Can you summarise the incident report for the payments outage yesterday and list the follow ups"
    b = "could you summarise the incident report for the payments outage yesterday and list follow ups"
    c = "What is the on-call rotation for the platform team next week and who is the backup"
    assert resemblance(a, b) >= 0.7 > 0.3 >= resemblance(a, c)
    assert near_duplicate(a, b, 0.8) and not near_duplicate(a, c, 0.8)
    assert not near_duplicate("summarise PR 123 for me", "summarise PR 124 for me", 0.8)


def test_compression_ratio_tells_padding_from_prose():
    """Filler compresses to almost nothing; ordinary prose does not."""
    assert compression_ratio("Please consider this carefully. " * 40) < 0.1
    prose = open(__file__, encoding="utf-8").read()[:1500]
    assert compression_ratio(prose) > 0.3


def test_reporting_dates():
    """month-end yields the last day of each month in range; explicit dates are filtered to the range."""
    start, end = END - timedelta(days=70), END
    assert [d.isoformat() for d in reporting_dates("month-end", start, end)] == ["2026-01-31", "2026-02-28"]
    assert reporting_dates(REPORTING_DATE.isoformat() + ",2020-01-01", start, end) == [REPORTING_DATE]
    with pytest.raises(ConfigError):
        reporting_dates("someday", start, end)
