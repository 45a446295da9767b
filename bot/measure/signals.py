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
    of ≥ ``dup_min_chars`` (24) characters are compared as sets of words, leaving out filler (``FILLER``:
    articles, pronouns, "pls", "thanks", "asap", ...): two are near-duplicates when their Jaccard
    resemblance (shared words / all words) is ≥ ``dup_min_similarity`` (0.8) **and** they carry exactly the
    same numbers and ids (any word with a digit: ``123``, ``4821``, ``v2``). Adding "pls" or "thanks" to a
    request or changing its word order keeps it at 1.0, one changed word in ten at 0.82; "summarise PR 123"
    and "summarise PR 124" are different requests however alike their words, and "status of the payments
    deploy" and "status of the search deploy" share too few meaningful words (0.5). Flagged when one request has
    ≥ ``dup_min_cluster`` − 1 (7) near-copies within ``dup_window_hours`` (24 h); the evidence gives the
    lowest resemblance in the cluster.
``burst``
    Many human-triggered requests from one person in a moment: ≥ ``burst_min_tasks`` (12) within
    ``burst_window_seconds`` (120 s), i.e. one every 10 s or faster for two minutes — faster than anyone
    reads an answer. Padding activity numbers with a script or a pasted list of questions looks like this;
    the texts may all differ and the gaps may be jittered. The evidence gives the span in seconds.
``repeated_summary``
    The same person asking for a summary (a recap, a tl;dr, "catch me up", ...) of the same thread again and
    again: ≥ ``resum_min_tasks`` (4) summary requests in one thread within ``resum_window_minutes`` (60).
    A summary request is a text matching ``SUMMARY_WORDS`` or a task with intent ``summarize``; the words
    may change each time. Someone keeping up with a long incident (a summary every half hour or so) stays
    below it.
``padded_prompts``
    Long prompts with little information: text of ≥ ``pad_min_chars`` (400) characters whose zlib-compressed
    size is ≤ ``pad_max_ratio`` (0.2) of its raw size (ordinary prose compresses to 0.4–0.6). Flagged when
    ≥ ``pad_min_tasks`` (5) such prompts make up ≥ ``pad_min_share`` (30%) of the person's long prompts.
``bot_loop``
    Messages from another bot that Clawback recorded and ignored (``trigger = bot``, ``status = ignored``):
    ≥ ``loop_min_messages`` (10) from one bot in one channel within ``loop_window_minutes`` (60) means two
    bots are talking to each other (or one to itself). The flag names the app (bot id and app id, recorded
    at ingress) and, when the app posted with a person's token, that person too.
``bot_chain``
    Tasks started by other tasks (``parent_id``) without a human in between, ≥ ``chain_min_depth`` (3)
    deep.
``machine_cadence``
    Human-triggered requests arriving like clockwork. In some run of ``cadence_min_tasks`` (30) requests in
    a row, the robust coefficient of variation of the gaps between them (1.4826 × median absolute
    deviation / median) is ≤ ``cadence_max_cv`` (0.15); runs are measured one after another, so a script
    running on a few days among a person's ordinary work is found. People are bursty (values near or above
    1); overnight pauses do not hide a script that runs only in office hours, because the median-based
    measure ignores them.
``spend_no_outcome``
    A person's week (7 days, ending ``CLAWBACK_OUTCOME_WINDOW_HOURS`` ago so outcomes had time to arrive)
    with ≥ ``week_min_tokens`` (50,000) tokens over ≥ ``week_min_tasks`` (20) human-triggered tasks and not
    one real outcome. A real outcome is explicit (a button) or implicit (label kept, draft sent, deploy):
    weak ones (a follow-up question in the thread) and the sweep's ``none`` do not count, so one follow-up
    does not clear a week. This is a waste signal, not a gaming one: people who never click buttons trip it
    when they spend heavily on chat, where the only outcomes are buttons.
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
import functools
import json
import math
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
from bot.measure.facts import TaskFact
from bot.measure.outcomes import STRENGTHS, OutcomeConfig

EVIDENCE_MAX = 20
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Thresholds:
    """Every signal's thresholds (see the module documentation)."""

    automation_min_tasks: int = 20
    automation_min_tokens: int = 10_000
    automation_max_outcome_share: float = 0.05
    dup_min_chars: int = 24
    dup_min_similarity: float = 0.8
    dup_min_cluster: int = 8
    dup_window_hours: float = 24.0
    burst_min_tasks: int = 12
    burst_window_seconds: float = 120.0
    resum_min_tasks: int = 4
    resum_window_minutes: float = 60.0
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
    thread_ts: str | None = None
    intent: str | None = None
    weak_outcome: bool = False
    bot_id: str | None = None
    app_id: str | None = None


# -- text measures -------------------------------------------------------------------------------------------

# Words that ask for a summary, in the many ways people say it (matched case-insensitively).
SUMMARY_WORDS = re.compile(
    r"\b(summar\w*|recap\w*|tl;?\s?dr|gist|rundown|run-down|digest|overview|sum\s+(it\s+|this\s+|that\s+)?up|"
    r"catch\s+(me\s+|us\s+)?up|what\s+did\s+i\s+miss|brief\s+me|key\s+points|main\s+points)\b",
    re.IGNORECASE,
)


# Words that carry no request of their own: articles, pronouns, politeness, urgency. Adding or dropping them
# (or "pls" for "please") rewords a request without changing it.
FILLER = frozenset(
    """a an the and or but of to in on at for from with by about as into is are was were be been am do does
    did can could would will should shall may might must have has had i me my we us our you your it its this
    that these those there here what which who whom whose when where why how please pls plz kindly thanks
    thank thx ty asap again now today just also too very really quickly quick urgent urgently once more ok
    okay hi hey hello so then all any some""".split()
)


_SPELLING = re.compile(r"is(e|ed|es|ing|ation)$")


_DIGIT = re.compile(r"\d")


@functools.lru_cache(maxsize=65536)
def _normal(word: str) -> str:
    """One spelling per word: British -ise as -ize, a plural s dropped ("summarises" -> "summarize")."""
    if "is" in word:
        word = _SPELLING.sub(r"iz\1", word)
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def word_set(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(the words that carry meaning, the words that carry a digit: numbers and ids), lower-cased.

    Filler words (``FILLER``) are left out; a text of filler only keeps all its words.
    """
    raw = _WORD.findall(text.lower())
    words = frozenset(map(_normal, raw))
    meaning = words - FILLER or words
    # Only words that are not all letters can hold a digit; most are all letters, so this is cheap.
    return meaning, frozenset(_normal(w) for w in raw if not w.isalpha() and _DIGIT.search(w))


def resemblance(a: str, b: str) -> float:
    """Jaccard resemblance of two texts' meaningful word sets (1.0 = same words, in any order)."""
    wa, _ = word_set(a)
    wb, _ = word_set(b)
    return len(wa & wb) / len(wa | wb) if wa or wb else 1.0


def near_duplicate(a: str, b: str, min_similarity: float) -> bool:
    """True when two texts are the same request: alike words and exactly the same numbers and ids."""
    return word_set(a)[1] == word_set(b)[1] and resemblance(a, b) >= min_similarity


def is_summary_request(text: str | None, intent: str | None = None) -> bool:
    """True for a request for a summary (by its intent, or its words)."""
    return intent == "summarize" or bool(text and SUMMARY_WORDS.search(text))


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
            Task.thread_ts,
            Task.intent,
        )
        .join(Task, Task.id == TaskFact.task_id)
        .where(TaskFact.created_at >= start, TaskFact.created_at < end)
        .order_by(TaskFact.created_at, TaskFact.task_id)
    )
    rows = []
    with db.session() as s:
        for (
            tid,
            who,
            at,
            trig,
            status,
            tokens,
            strength,
            payload,
            parent,
            channel,
            thread,
            intent,
        ) in s.execute(stmt):
            payload = payload if isinstance(payload, dict) else {}
            text, bot_id, app_id = (payload.get(k) for k in ("text", "bot_id", "app_id"))
            rows.append(
                _Row(
                    tid,
                    who,
                    at if at.tzinfo else at.replace(tzinfo=UTC),
                    trig,
                    status,
                    int(tokens or 0),
                    # Only explicit and implicit outcomes show value; a weak follow-up or the sweep's none do not.
                    strength is not None and strength >= STRENGTHS["implicit"],
                    text if isinstance(text, str) else None,
                    parent,
                    channel,
                    thread,
                    intent,
                    strength == STRENGTHS["weak"],
                    bot_id if isinstance(bot_id, str) else None,
                    app_id if isinstance(app_id, str) else None,
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


def _root(parent: list[int], i: int) -> int:
    """Union-find: the representative of ``i``'s cluster (with path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def near_duplicates(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Near-copies of the same request from one person within a window (word-set resemblance, same ids).

    Requests are linked when they are near-duplicates and at most ``dup_window_hours`` apart; linked requests
    form one cluster (a reworded request drifts: each rewording is close to some other, not to all). The
    flag counts the most requests of one cluster that fall within one window.
    """
    window = timedelta(hours=t.dup_window_hours)
    by: dict[str, list[tuple[datetime, frozenset[str], frozenset[str], str]]] = defaultdict(list)
    for r in rows:
        if r.trigger == "human" and r.text and len(r.text) >= t.dup_min_chars:
            words, ids = word_set(r.text)
            by[r.requester].append((r.created_at, words, ids, r.id))
    flags = []
    for who, items in sorted(by.items()):
        parent = list(range(len(items)))
        closest = [0.0] * len(items)  # each request's highest resemblance to a linked one

        # Prefix filtering (exact): with words ordered rarest first, two sets with Jaccard >= t share a word
        # among the first len - ceil(t * len) + 1 of each, so only requests indexed under those are compared.
        freq: dict[str, int] = defaultdict(int)
        for _at, words, _ids, _tid in items:
            for word in words:
                freq[word] += 1
        index: dict[str, list[int]] = defaultdict(list)
        start = 0
        for j, (at, words, ids, _tid) in enumerate(items):
            while at - items[start][0] > window:
                start += 1
            ordered = sorted(words, key=lambda x: (freq[x], x))
            prefix = ordered[: len(ordered) - math.ceil(t.dup_min_similarity * len(ordered)) + 1]
            candidates = {i for word in prefix for i in index[word] if i >= start}
            for word in prefix:
                index[word].append(j)
            for i in sorted(candidates):
                _at2, words2, ids2, _tid2 = items[i]
                small, big = sorted((len(words), len(words2)))
                if ids2 != ids or not big or small / big < t.dup_min_similarity:
                    continue  # different numbers or ids, or too different in size to reach the threshold
                sim = len(words & words2) / len(words | words2)
                if sim >= t.dup_min_similarity:
                    parent[_root(parent, i)] = _root(parent, j)
                    closest[i], closest[j] = max(closest[i], sim), max(closest[j], sim)
        clusters: dict[int, list[int]] = defaultdict(list)
        for i in range(len(items)):
            clusters[_root(parent, i)].append(i)
        best: list[int] = []
        for members in clusters.values():
            if len(members) < max(t.dup_min_cluster, len(best) + 1):
                continue
            lo = 0
            for hi in range(len(members)):
                while items[members[hi]][0] - items[members[lo]][0] > window:
                    lo += 1
                if hi - lo + 1 > len(best):
                    best = members[lo : hi + 1]
        if len(best) >= t.dup_min_cluster:
            lowest = min(closest[i] for i in best)
            span = (items[best[-1]][0] - items[best[0]][0]).total_seconds()
            flags.append(
                Flag(
                    "near_duplicate_prompts",
                    who,
                    f"{who} sent {len(best)} near-identical requests within {_dur(span)} (threshold "
                    f"{t.dup_min_cluster} within {t.dup_window_hours:g} hours): each shares at least {lowest:.0%} "
                    f"of its meaningful words with another (threshold {t.dup_min_similarity:.0%}), with the same "
                    "numbers and ids. Repeating a request spends tokens without new information: a script, a "
                    "broken integration, or padding usage?",
                    _evidence(items[i][3] for i in best),
                    {
                        "cluster": len(best),
                        "min_similarity": round(lowest, 3),
                        "span_s": round(span, 1),
                        "window_hours": t.dup_window_hours,
                    },
                )
            )
    return flags


def _densest(items: list[_Row], window: timedelta) -> list[_Row]:
    """The largest run of rows (in time order) that fits within ``window``: the earliest such run on ties."""
    best: list[_Row] = []
    dq: deque[_Row] = deque()
    for r in items:
        dq.append(r)
        while r.created_at - dq[0].created_at > window:
            dq.popleft()
        if len(dq) > len(best):
            best = list(dq)
    return best


def bursts(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Many requests from one person within a couple of minutes (faster than anyone reads the answers)."""
    window = timedelta(seconds=t.burst_window_seconds)
    by: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.trigger == "human" and r.status != "ignored":
            by[r.requester].append(r)
    flags = []
    for who, items in sorted(by.items()):
        best = _densest(items, window)
        if len(best) >= t.burst_min_tasks:
            span = (best[-1].created_at - best[0].created_at).total_seconds()
            distinct = len({r.text if r.text is not None else r.id for r in best})
            flags.append(
                Flag(
                    "burst",
                    who,
                    f"{who} sent {len(best)} requests within {span:.0f} s ({distinct} different texts; "
                    f"threshold {t.burst_min_tasks} within {t.burst_window_seconds:g} s), from "
                    f"{best[0].created_at:%Y-%m-%d %H:%M:%S} UTC. Nobody reads answers that fast: a script "
                    "or a pasted list padding activity numbers?",
                    _evidence(r.id for r in best),
                    {
                        "tasks": len(best),
                        "distinct_texts": distinct,
                        "span_s": round(span, 1),
                        "first_at": best[0].created_at.isoformat(),
                        "window_s": t.burst_window_seconds,
                    },
                )
            )
    return flags


def repeated_summaries(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """The same person asking for a summary of the same thread again and again (in any words)."""
    window = timedelta(minutes=t.resum_window_minutes)
    by: dict[tuple[str, str, str], list[_Row]] = defaultdict(list)
    for r in rows:
        if (
            r.trigger == "human"
            and r.status != "ignored"
            and r.thread_ts
            and is_summary_request(r.text, r.intent)
        ):
            by[(r.requester, r.channel_id or "", r.thread_ts)].append(r)
    worst: dict[str, tuple[list[_Row], str, str]] = {}
    for (who, channel, thread), items in sorted(by.items()):
        best = _densest(items, window)
        if len(best) >= t.resum_min_tasks and len(best) > len(worst.get(who, ([], "", ""))[0]):
            worst[who] = (best, channel, thread)
    flags = []
    for who, (best, channel, thread) in sorted(worst.items()):
        span = (best[-1].created_at - best[0].created_at).total_seconds()
        flags.append(
            Flag(
                "repeated_summary",
                who,
                f"{who} asked for a summary of the same thread ({thread} in {channel or 'a DM'}) {len(best)} "
                f"times within {_dur(span)} (threshold {t.resum_min_tasks} within "
                f"{t.resum_window_minutes:g} minutes), in different words. Each summary re-reads the whole "
                "thread: is the first one not used, or is usage being padded?",
                _evidence(r.id for r in best),
                {"requests": len(best), "channel": channel, "thread": thread, "span_s": round(span, 1)},
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


def _bot_actor(r: _Row) -> tuple[str | None, str | None, str | None]:
    """(bot id, app id, person) behind an ignored bot message; the person only if the app used their token."""
    bot = r.bot_id or (r.requester if r.requester.startswith("B") else None)
    return bot, r.app_id, (r.requester if r.requester != bot else None)


def bot_loops(rows: list[_Row], t: Thresholds) -> list[Flag]:
    """Bursts of ignored bot messages in one channel (bot-to-bot or self loops), naming the app."""
    window = timedelta(minutes=t.loop_window_minutes)
    by: dict[tuple[str, str, str, str], list[_Row]] = defaultdict(list)
    for r in rows:
        if r.trigger == "bot" and r.status == "ignored":
            bot, app, _person = _bot_actor(r)
            by[(r.requester, bot or "", app or "", r.channel_id or "")].append(r)
    flags = []
    for (who, _bot, _app, channel), items in sorted(by.items()):
        best = _densest(items, window)
        if len(best) >= t.loop_min_messages:
            bot, app, person = _bot_actor(best[0])
            actor = (
                f"App {app} (bot {bot or 'id not recorded'})" if app else f"Bot {bot or 'id not recorded'}"
            )
            token = f" with {person}'s token" if person else ""
            flags.append(
                Flag(
                    "bot_loop",
                    who,
                    f"{actor} posted {len(best)} messages at Clawback{token} in {channel or 'a DM'} within "
                    f"{t.loop_window_minutes:g} minutes (threshold {t.loop_min_messages}). Clawback ignores "
                    "bots, but two bots answering each other is a loop someone should stop"
                    + (f": look at the integration {app or bot} that {person} installed." if person else "."),
                    _evidence(r.id for r in best),
                    {
                        "messages": len(best),
                        "channel": channel or None,
                        "window_minutes": t.loop_window_minutes,
                        "bot_id": bot,
                        "app_id": app,
                        "user": person,
                    },
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
    """Human-triggered requests arriving at machine-regular intervals (robust CV of the gaps).

    Every run of ``cadence_min_tasks`` consecutive requests is measured, so a script that runs on some days
    among a person's ordinary (bursty) work is found too; the most regular run is the evidence.
    """
    by: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.trigger == "human" and r.status != "ignored":
            by[r.requester].append(r)
    flags = []
    n = max(t.cadence_min_tasks, 3)
    for who, items in sorted(by.items()):
        if len(items) < n:
            continue
        gaps = [(b.created_at - a.created_at).total_seconds() for a, b in zip(items, items[1:], strict=False)]
        best: tuple[float, float, int] | None = None  # (robust cv, median gap, first request of the run)
        for start in range(len(items) - n + 1):
            run = gaps[start : start + n - 1]
            med = statistics.median(run)
            if med <= 0:
                continue
            cv = 1.4826 * statistics.median(abs(g - med) for g in run) / med
            if best is None or cv < best[0]:
                best = (cv, med, start)
        if best is not None and best[0] <= t.cadence_max_cv:
            cv, med, start = best
            run_rows = items[start : start + n]
            flags.append(
                Flag(
                    "machine_cadence",
                    who,
                    f"{n} of {who}'s requests in a row, from {run_rows[0].created_at:%Y-%m-%d %H:%M} UTC, arrived "
                    f"like clockwork: typically every {_dur(med)}, with a spread of {cv:.0%} (threshold "
                    f"{t.cadence_max_cv:.0%}; people are far less regular). Probably a script using a person's "
                    "identity.",
                    _evidence(r.id for r in run_rows),
                    {
                        "tasks": n,
                        "all_tasks": len(items),
                        "median_gap_s": round(med, 1),
                        "robust_cv": round(cv, 4),
                        "first_at": run_rows[0].created_at.isoformat(),
                    },
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
                weak = sum(r.weak_outcome for r in week)
                flags.append(
                    Flag(
                        "spend_no_outcome",
                        who,
                        f"In the week to {week_end:%Y-%m-%d}, {who} used {tokens:,} tokens on {len(week)} "
                        "requests and none got a real outcome (no feedback button, label kept, draft sent or "
                        f"deploy; {weak} follow-up question(s), which do not show value). Spend with nothing "
                        "to show for it.",
                        _evidence(r.id for r in week),
                        {
                            "tasks": len(week),
                            "tokens": tokens,
                            "weak_outcomes": weak,
                            "week_end": week_end.date().isoformat(),
                        },
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
        *bursts(window_rows, t),
        *repeated_summaries(window_rows, t),
        *padded_prompts(window_rows, t),
        *bot_loops(window_rows, t),
        *bot_chains(window_rows, t),
        *machine_cadence(window_rows, t),
        *spend_no_outcome(window_rows, t, start=start, end=matured),
        *pre_reporting_spikes(rows, t, dates),
    ]
    return sorted(flags, key=lambda f: (f.kind, f.subject))
