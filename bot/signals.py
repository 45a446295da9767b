"""Waste and gaming signals: patterns worth a conversation, each with a plain explanation and evidence.

Flags are signals, not verdicts. Each names its subject (a person or a bot id), explains in plain language
what was seen and why it matters, gives the numbers and the threshold, and lists evidence task ids (at most
``EVIDENCE_MAX``). They are shown only to holders of ``audit.read``.

The signals and their default thresholds (override any with ``CLAWBACK_SIGNAL_THRESHOLDS``, a JSON object of
``Thresholds`` field names):

``automation_no_outcome``
    Work started by automation, a schedule or a bot (``trigger`` other than ``human``) with no real outcome.
    Flagged per requester when ≥ ``automation_min_tasks`` (20) such tasks used ≥ ``automation_min_tokens``
    (10,000) tokens and at most ``automation_max_outcome_share`` (5%) of them got an outcome.
``near_duplicate_prompts``
    The same person sending near-copies of one request. Texts (``tasks.payload["text"]``, already redacted)
    of ≥ ``dup_min_chars`` (24) characters are fingerprinted with a 64-bit SimHash over their set of words;
    two are near-duplicates when their fingerprints differ in ≤ ``dup_max_hamming`` (8) bits (rewordings
    of one request differ in 2–6 bits, unrelated requests in about 32; numbers count as words, so
    "summarise PR 123" and "summarise PR 124" are different requests). Flagged when
    one request has ≥ ``dup_min_cluster`` − 1 (7) near-copies within ``dup_window_hours`` (24 h).
``padded_prompts``
    Long prompts with little information: text of ≥ ``pad_min_chars`` (400) characters whose zlib-compressed
    size is ≤ ``pad_max_ratio`` (0.2) of its raw size (ordinary prose compresses to 0.4–0.6). Flagged when
    ≥ ``pad_min_tasks`` (5) such prompts make up ≥ ``pad_min_share`` (30%) of the person's long prompts.
``bot_loop``
    Messages from another bot that Clawback recorded and ignored (``trigger = bot``, ``status = ignored``):
    ≥ ``loop_min_messages`` (10) from one bot in one channel within ``loop_window_minutes`` (60) means two
    bots are talking to each other (or one to itself).
``bot_chain``
    Tasks started by other tasks (``parent_id``) without a human in between, ≥ ``chain_min_depth`` (3)
    deep.
``machine_cadence``
    Human-triggered requests arriving like clockwork. With ≥ ``cadence_min_tasks`` (30) requests, the
    robust coefficient of variation of the gaps between them (1.4826 × median absolute deviation / median)
    is ≤ ``cadence_max_cv`` (0.15). People are bursty (values near or above 1); overnight pauses do not hide
    a script that runs only in office hours, because the median-based measure ignores them.
``spend_no_outcome``
    A person's week (7 days, ending ``CLAWBACK_OUTCOME_WINDOW_HOURS`` ago so outcomes had time to arrive)
    with ≥ ``week_min_tokens`` (50,000) tokens over ≥ ``week_min_tasks`` (20) human-triggered tasks and not
    one real outcome.
``pre_reporting_spike``
    Usage in the ``spike_days`` (3) days up to a reporting date (``CLAWBACK_REPORTING_DATES``: month ends by
    default) at ≥ ``spike_min_ratio`` (4×) the person's daily average over the ``baseline_days`` (21) before,
    with ≥ ``spike_min_tokens`` (20,000) tokens in the spike and ≥ ``spike_min_history_days`` (14) days of
    history (new starters ramping up are not flagged).

Honest heavy use — many varied requests, bursty timing, outcomes recorded, steady from week to week — trips
none of these: every signal looks at *how* tokens are spent, never at *how many*.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import statistics
import zlib
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.db import Database, Task, utcnow
from bot.errors import ConfigError
from bot.facts import TaskFact
from bot.outcomes import OutcomeConfig

EVIDENCE_MAX = 20
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Thresholds:
    """Every signal's thresholds (see the module documentation)."""

    automation_min_tasks: int = 20
    automation_min_tokens: int = 10_000
    automation_max_outcome_share: float = 0.05
    dup_min_chars: int = 24
    dup_max_hamming: int = 8
    dup_min_cluster: int = 8
    dup_window_hours: float = 24.0
    pad_min_chars: int = 400
    pad_max_ratio: float = 0.2
    pad_min_tasks: int = 5
    pad_min_share: float = 0.3
    loop_min_messages: int = 10
    loop_window_minutes: float = 60.0
    chain_min_depth: int = 3
    cadence_min_tasks: int = 30
    cadence_max_cv: float = 0.15
    week_min_tokens: int = 50_000
    week_min_tasks: int = 20
    spike_days: int = 3
    baseline_days: int = 21
    spike_min_ratio: float = 4.0
    spike_min_tokens: int = 20_000
    spike_min_history_days: int = 14


def parse_thresholds(raw: str | None) -> Thresholds:
    """Overlay ``CLAWBACK_SIGNAL_THRESHOLDS`` (JSON text or a path) on the defaults."""
    if not raw:
        return Thresholds()
    text = raw if raw.lstrip().startswith("{") else Path(raw).read_text(encoding="utf-8")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"CLAWBACK_SIGNAL_THRESHOLDS is not valid JSON: {exc}") from None
    known = {f.name: f.type for f in fields(Thresholds)}
    if not isinstance(loaded, dict):
        raise ConfigError("CLAWBACK_SIGNAL_THRESHOLDS must be a JSON object")
    for key, value in loaded.items():
        if key not in known:
            raise ConfigError(f"CLAWBACK_SIGNAL_THRESHOLDS: unknown threshold {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"CLAWBACK_SIGNAL_THRESHOLDS: {key} must be a number >= 0")
    return replace(Thresholds(), **loaded)


def reporting_dates(spec: str, start: datetime, end: datetime) -> list[date]:
    """Reporting dates in [start, end]: ``month-end`` (each month's last day) or comma-separated ISO dates."""
    spec = (spec or "").strip()
    if spec in ("", "none"):
        return []
    if spec == "month-end":
        out, y, m = [], start.year, start.month
        while (y, m) <= (end.year, end.month):
            d = date(y, m, calendar.monthrange(y, m)[1])
            if start.date() <= d <= end.date():
                out.append(d)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out
    try:
        days = sorted(date.fromisoformat(x.strip()) for x in spec.split(",") if x.strip())
    except ValueError:
        raise ConfigError("CLAWBACK_REPORTING_DATES must be month-end or comma-separated ISO dates") from None
    return [d for d in days if start.date() <= d <= end.date()]


@dataclass
class Flag:
    """One signal about one subject."""

    kind: str
    subject: str
    explanation: str
    evidence: list[str]
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass
class _Row:
    id: str
    requester: str
    created_at: datetime
    trigger: str
    status: str
    tokens: int
    real_outcome: bool
    text: str | None = None
    parent_id: str | None = None
    channel_id: str | None = None


# -- fingerprints --------------------------------------------------------------------------------------------


_SPREAD = [sum(((v >> i) & 1) << (16 * i) for i in range(8)) for v in range(256)]  # byte -> 8 x 16-bit lanes
_MAX_GRAMS = 4000  # lanes hold counts up to 65,535


def simhash(text: str) -> int:
    """64-bit SimHash over the set of words (character 4-grams for texts under three words).

    Bit counts are summed in 16-bit lanes of one big integer (8 table look-ups per shingle, not 64 loops).
    """
    words = _WORD.findall(text.lower())
    if len(words) >= 3:
        grams = set(words)
    else:
        joined = " ".join(words)
        grams = {joined[i : i + 4] for i in range(max(1, len(joined) - 3))}
    acc = 0
    n = 0
    for g in grams:
        if n >= _MAX_GRAMS:
            break
        n += 1
        d = hashlib.blake2b(g.encode(), digest_size=8).digest()
        for p in range(8):
            acc += _SPREAD[d[p]] << (128 * p)
    out = 0
    for bit in range(64):
        p, i = divmod(bit, 8)
        if ((acc >> (128 * p + 16 * i)) & 0xFFFF) * 2 > n:
            out |= 1 << bit
    return out


def compression_ratio(text: str) -> float:
    """zlib-compressed size / raw size (low = repetitive, little information per token)."""
    raw = text.encode()
    return len(zlib.compress(raw, 9)) / len(raw) if raw else 1.0


# -- loading -------------------------------------------------------------------------------------------------


def _load(db: Database, start: datetime, end: datetime) -> list[_Row]:
    stmt = (
        select(
            TaskFact.task_id,
            TaskFact.requester,
            TaskFact.created_at,
            TaskFact.trigger,
            TaskFact.status,
            TaskFact.prompt_tokens + TaskFact.completion_tokens,
            TaskFact.outcome_strength,
            Task.payload,
            Task.parent_id,
            TaskFact.channel_id,
        )
        .join(Task, Task.id == TaskFact.task_id)
        .where(TaskFact.created_at >= start, TaskFact.created_at < end)
        .order_by(TaskFact.created_at, TaskFact.task_id)
    )
    rows = []
    with db.session() as s:
        for tid, who, at, trig, status, tokens, strength, payload, parent, channel in s.execute(stmt):
            text = payload.get("text") if isinstance(payload, dict) else None
            rows.append(
                _Row(
                    tid,
                    who,
                    at if at.tzinfo else at.replace(tzinfo=UTC),
                    trig,
                    status,
                    int(tokens or 0),
                    strength is not None and strength >= 1,
                    text if isinstance(text, str) else None,
                    parent,
                    channel,
                )
            )
    return rows


def _evidence(ids: Iterable[str]) -> list[str]:
    out: list[str] = []
    for i in ids:
        if i not in out:
            out.append(i)
        if len(out) >= EVIDENCE_MAX:
            break
    return out


# -- the signals ---------------------------------------------------------------------------------------------


def automation_no_outcome(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Automation/schedule/bot-triggered work that used tokens and got (almost) no outcome."""
    by: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.trigger != "human" and r.status != "ignored" and r.tokens > 0:
            by[r.requester].append(r)
    flags = []
    for who, items in sorted(by.items()):
        tokens = sum(r.tokens for r in items)
        with_outcome = sum(r.real_outcome for r in items)
        share = with_outcome / len(items)
        if len(items) >= t.automation_min_tasks and tokens >= t.automation_min_tokens:
            if share <= t.automation_max_outcome_share:
                flags.append(
                    Flag(
                        "automation_no_outcome",
                        who,
                        f"{len(items)} tasks started by automation or a bot for {who} used {tokens:,} "
                        "tokens, "
                        f"and only {with_outcome} got an outcome ({share:.0%}; threshold "
                        f"{t.automation_max_outcome_share:.0%}). Nobody seems to use what this work "
                        "produces.",
                        _evidence(r.id for r in items if not r.real_outcome),
                        {"tasks": len(items), "tokens": tokens, "outcome_share": round(share, 4)},
                    )
                )
    return flags


def near_duplicates(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Near-copies of the same request from one person within a window (SimHash + LSH bands)."""
    window = timedelta(hours=t.dup_window_hours)
    by: dict[str, list[tuple[datetime, int, str]]] = defaultdict(list)
    for r in rows:
        if r.trigger == "human" and r.text and len(r.text) >= t.dup_min_chars:
            by[r.requester].append((r.created_at, simhash(r.text), r.id))
    flags = []
    bands = t.dup_max_hamming + 1  # pigeonhole: ≤ h differing bits leave at least one band identical
    width = 64 // bands
    for who, items in sorted(by.items()):
        buckets: dict[tuple[int, int], deque] = defaultdict(deque)
        best: list[str] = []
        for at, h, tid in items:
            near: set[str] = set()
            for b in range(bands):
                key = (b, h >> (b * width) & ((1 << width) - 1))
                dq = buckets[key]
                while dq and at - dq[0][0] > window:
                    dq.popleft()
                for _at2, h2, tid2 in dq:
                    if bin(h ^ h2).count("1") <= t.dup_max_hamming:
                        near.add(tid2)
                dq.append((at, h, tid))
            if len(near) + 1 > len(best):
                best = [*sorted(near), tid]
        if len(best) >= t.dup_min_cluster:
            flags.append(
                Flag(
                    "near_duplicate_prompts",
                    who,
                    f"{who} sent {len(best)} near-identical requests within {t.dup_window_hours:g} hours "
                    f"(threshold {t.dup_min_cluster}). Repeating a request spends tokens without new "
                    "information: a script, a broken integration, or padding usage?",
                    _evidence(best),
                    {"cluster": len(best), "window_hours": t.dup_window_hours},
                )
            )
    return flags


def padded_prompts(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Long prompts that compress to almost nothing (filler, repetition)."""
    by: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in rows:
        if r.trigger == "human" and r.text and len(r.text) >= t.pad_min_chars:
            by[r.requester].append((r.id, compression_ratio(r.text)))
    flags = []
    for who, items in sorted(by.items()):
        padded = [(tid, ratio) for tid, ratio in items if ratio <= t.pad_max_ratio]
        share = len(padded) / len(items)
        if len(padded) >= t.pad_min_tasks and share >= t.pad_min_share:
            worst = statistics.median(ratio for _tid, ratio in padded)
            flags.append(
                Flag(
                    "padded_prompts",
                    who,
                    f"{len(padded)} of {who}'s {len(items)} long requests carry little information: they "
                    f"compress to {worst:.0%} of their size (threshold {t.pad_max_ratio:.0%}; ordinary "
                    "text stays above 40%). Filler text costs tokens and adds nothing.",
                    _evidence(tid for tid, _r in padded),
                    {"padded": len(padded), "long_prompts": len(items), "median_ratio": round(worst, 4)},
                )
            )
    return flags


def bot_loops(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Bursts of ignored bot messages in one channel (bot-to-bot or self loops)."""
    window = timedelta(minutes=t.loop_window_minutes)
    by: dict[tuple[str, str | None], list[_Row]] = defaultdict(list)
    for r in rows:
        if r.trigger == "bot" and r.status == "ignored":
            by[(r.requester, r.channel_id)].append(r)
    flags = []
    for (who, channel), items in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        best: list[_Row] = []
        dq: deque[_Row] = deque()
        for r in items:
            dq.append(r)
            while r.created_at - dq[0].created_at > window:
                dq.popleft()
            if len(dq) > len(best):
                best = list(dq)
        if len(best) >= t.loop_min_messages:
            flags.append(
                Flag(
                    "bot_loop",
                    who,
                    f"Bot {who} posted {len(best)} messages at Clawback in {channel or 'a DM'} within "
                    f"{t.loop_window_minutes:g} minutes (threshold {t.loop_min_messages}). Clawback ignores "
                    "bots, but two bots answering each other is a loop someone should stop.",
                    _evidence(r.id for r in best),
                    {"messages": len(best), "channel": channel, "window_minutes": t.loop_window_minutes},
                )
            )
    return flags


def bot_chains(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Tasks spawned by tasks, with no human in the chain, at least ``chain_min_depth`` deep."""
    parent = {r.id: r.parent_id for r in rows}
    trig = {r.id: r.trigger for r in rows}
    who = {r.id: r.requester for r in rows}
    deepest: dict[str, list[str]] = {}
    for r in rows:
        if not r.parent_id or r.trigger == "human":
            continue
        chain, cur = [r.id], r.parent_id
        while cur in parent and cur not in chain and len(chain) < 100:
            chain.append(cur)
            if trig.get(cur) == "human":
                break
            cur = parent[cur]
        if len(chain) >= t.chain_min_depth and len(chain) > len(deepest.get(who[r.id], [])):
            deepest[who[r.id]] = chain
    return [
        Flag(
            "bot_chain",
            subject,
            f"Work for {subject} started other work {len(chain) - 1} times in a row without a person in "
            "between "
            f"(threshold depth {t.chain_min_depth}). Chains like this can run up costs unattended.",
            _evidence(reversed(chain)),
            {"depth": len(chain)},
        )
        for subject, chain in sorted(deepest.items())
    ]


def machine_cadence(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Human-triggered requests arriving at machine-regular intervals (robust CV of the gaps)."""
    by: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.trigger == "human" and r.status != "ignored":
            by[r.requester].append(r)
    flags = []
    for who, items in sorted(by.items()):
        if len(items) < t.cadence_min_tasks:
            continue
        gaps = [(b.created_at - a.created_at).total_seconds() for a, b in zip(items, items[1:], strict=False)]
        med = statistics.median(gaps)
        if med <= 0:
            continue
        mad = statistics.median(abs(g - med) for g in gaps)
        cv = 1.4826 * mad / med
        if cv <= t.cadence_max_cv:
            flags.append(
                Flag(
                    "machine_cadence",
                    who,
                    f"{who}'s {len(items)} requests arrived like clockwork: typically every {_dur(med)}, "
                    "with a "
                    f"spread of {cv:.0%} (threshold {t.cadence_max_cv:.0%}; people are far less regular). "
                    "Probably a script using a person's identity.",
                    _evidence(r.id for r in items),
                    {"tasks": len(items), "median_gap_s": round(med, 1), "robust_cv": round(cv, 4)},
                )
            )
    return flags


def spend_no_outcome(rows: list[_Row], t: Thresholds, *, start: datetime, end: datetime) -> list[Flag]:
    """Weeks with heavy human-triggered spend and not one outcome."""
    flags = []
    by: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.trigger == "human" and r.status not in ("ignored", "denied"):
            by[r.requester].append(r)
    for who, items in sorted(by.items()):
        week_end = end
        while week_end - timedelta(days=7) >= start:
            week = [r for r in items if week_end - timedelta(days=7) <= r.created_at < week_end]
            tokens = sum(r.tokens for r in week)
            if (
                len(week) >= t.week_min_tasks
                and tokens >= t.week_min_tokens
                and not any(r.real_outcome for r in week)
            ):
                flags.append(
                    Flag(
                        "spend_no_outcome",
                        who,
                        f"In the week to {week_end:%Y-%m-%d}, {who} used {tokens:,} tokens on {len(week)} "
                        "requests "
                        "and none got an outcome (no feedback, label kept, draft sent or deploy). Spend "
                        "with "
                        "nothing to show for it.",
                        _evidence(r.id for r in week),
                        {"tasks": len(week), "tokens": tokens, "week_end": week_end.date().isoformat()},
                    )
                )
                break
            week_end -= timedelta(days=7)
    return flags


def pre_reporting_spikes(rows: list[_Row], t: Thresholds, dates: list[date]) -> list[Flag]:
    """Usage jumping in the days before a reporting date, against the person's own baseline."""
    flags = []
    by: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.status not in ("ignored", "denied"):
            by[r.requester].append(r)
    for who, items in sorted(by.items()):
        first = items[0].created_at
        for d in dates:
            spike_end = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1)
            spike_start = spike_end - timedelta(days=t.spike_days)
            base_start = spike_start - timedelta(days=t.baseline_days)
            if first > spike_start - timedelta(days=t.spike_min_history_days):
                continue
            spike = [r for r in items if spike_start <= r.created_at < spike_end]
            base = sum(r.tokens for r in items if base_start <= r.created_at < spike_start)
            spike_tokens = sum(r.tokens for r in spike)
            base_daily = max(base / t.baseline_days, 1000.0)
            ratio = (spike_tokens / t.spike_days) / base_daily
            if spike_tokens >= t.spike_min_tokens and ratio >= t.spike_min_ratio:
                flags.append(
                    Flag(
                        "pre_reporting_spike",
                        who,
                        f"In the {t.spike_days} days up to the reporting date {d.isoformat()}, {who} used "
                        f"{spike_tokens:,} tokens: {ratio:.1f}× their usual daily use (threshold "
                        f"{t.spike_min_ratio:g}×). Usage that jumps just before numbers are counted "
                        "deserves a "
                        "look.",
                        _evidence(r.id for r in spike),
                        {
                            "spike_tokens": spike_tokens,
                            "ratio": round(ratio, 2),
                            "reporting_date": d.isoformat(),
                        },
                    )
                )
    return flags


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def detect(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    settings: Any | None = None,
    config: OutcomeConfig | None = None,
    thresholds: Thresholds | None = None,
    dates: list[date] | None = None,
) -> list[Flag]:
    """Every flag for tasks in [since, until) (default: the last 30 days); the facts must be fresh."""
    end = until or utcnow()
    start = since or end - timedelta(days=30)
    t = thresholds or parse_thresholds(getattr(settings, "clawback_signal_thresholds", None))
    history = timedelta(days=t.spike_days + t.baseline_days + t.spike_min_history_days)
    rows = _load(db, start - history, end)
    window_rows = [r for r in rows if r.created_at >= start]
    if dates is None:
        dates = reporting_dates(getattr(settings, "clawback_reporting_dates", "month-end"), start, end)
    matured = end - timedelta(hours=float(getattr(settings, "clawback_outcome_window_hours", 72.0)))
    flags = [
        *automation_no_outcome([r for r in window_rows if r.created_at < matured], t),
        *near_duplicates(window_rows, t),
        *padded_prompts(window_rows, t),
        *bot_loops(window_rows, t),
        *bot_chains(window_rows, t),
        *machine_cadence(window_rows, t),
        *spend_no_outcome(window_rows, t, start=start, end=matured),
        *pre_reporting_spikes(rows, t, dates),
    ]
    return sorted(flags, key=lambda f: (f.kind, f.subject))
