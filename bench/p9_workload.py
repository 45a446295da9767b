"""P9's labelled workload: simulated people, each honest or gaming in one known way, as timed Slack events.

Every person does ordinary work (varied questions on workdays, feedback clicks now and then); on top of it,
a gaming person shows one pattern and an honest person one hard case that looks like a pattern:

gaming (what the signals must catch)
    ``burst`` 15–30 distinct questions within 45–120 s (MeshClaw-style activity padding), once to three times;
    ``reworded`` one request reworded 8–14 times within hours (filler added, "pls", word order, a synonym or
    the other spelling);
    ``resummarize`` a summary of the same busy thread asked 5–10 times, 3–12 minutes apart, in new words;
    ``padded`` 5–10 long prompts of repeated filler around a short question;
    ``clockwork`` a script behind the person's identity, every 5–20 minutes ± 8% for two to four days;
    ``app_loop`` an app posting 12–40 messages within an hour with the person's token (user and bot_id).
honest (what the signals must leave alone)
    ``normal``; ``heavy`` (40–90 requests a workday, long ones among them); ``long_paste`` (one or two
    pasted logs); ``followup`` (follow-up questions in the thread minutes after an answer); ``never_click``
    (busy, never presses a button); ``cross_channel`` (the same question posted in two to four channels);
    ``on_call`` (10–25 status checks a day of tickets, PRs and services that differ by an id or a name,
    sometimes six in a minute); ``incident_commander`` (an incident of 1.5–3 hours: a question every 15–90 s
    and a summary of the incident thread every 20–60 minutes); ``app_digest`` (an app posting two to six
    digests a day with the person's token: a bot, but no loop).

The generator is seeded and pure: ``generate(seed)`` returns the people and their events in time order.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

END = datetime(2026, 3, 20, 18, 0, tzinfo=UTC)
DAYS = 10
GAMING = {
    "burst": 3,
    "reworded": 3,
    "resummarize": 3,
    "padded": 2,
    "clockwork": 2,
    "app_loop": 2,
}
HONEST = {
    "normal": 8,
    "heavy": 3,
    "long_paste": 2,
    "followup": 3,
    "never_click": 3,
    "cross_channel": 2,
    "on_call": 3,
    "incident_commander": 2,
    "app_digest": 1,
}
CHANNELS = [f"C0TEAM{i:02d}" for i in range(8)]
FILLERS = [
    "the",
    "a",
    "for",
    "of",
    "to",
    "and",
    "in",
    "on",
    "with",
    "is",
    "what",
    "can",
    "you",
    "please",
    "me",
]
SUMMARY_ASKS = [
    "summarize this thread for me",
    "can you give me a recap of the discussion above",
    "tl;dr of this thread please",
    "catch me up on what was said here",
    "sum up the conversation so far",
    "what's the gist of this thread",
    "give me a short summary of the above",
    "recap please, I lost track",
    "summarise the key points of this thread",
    "can I get a quick rundown of this thread",
    "brief me on this thread",
    "what did I miss here, summary please",
]
SERVICES = [
    "payments",
    "search",
    "checkout",
    "billing",
    "auth",
    "ledger",
    "email",
    "gateway",
    "catalog",
    "export",
]


@dataclass
class Event:
    """One Slack message at a simulated time (a person's question, or an app posting with their token)."""

    person: str
    at: datetime
    text: str
    channel: str
    root: Event | None = None  # the thread's first message; None: the message starts its own thread
    click: str | None = None  # resolved / not_helpful, pressed by the person after the answer
    bot_id: str | None = None
    app_id: str | None = None
    ts: str = ""

    @property
    def thread(self) -> str:
        """The Slack thread ts this message belongs to."""
        return self.root.ts if self.root else self.ts


@dataclass
class Person:
    """A simulated person and what they really do."""

    id: str
    kind: str  # a GAMING or HONEST key
    gaming: bool


@dataclass
class Workload:
    """People and events of one seed."""

    seed: int
    people: list[Person] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        syll = [
            "ka",
            "lo",
            "mi",
            "ne",
            "ru",
            "ta",
            "vo",
            "shi",
            "pre",
            "dan",
            "gel",
            "bor",
            "quin",
            "sa",
            "te",
        ]
        words: set[str] = set()
        while len(words) < 2500:
            words.add("".join(self.rnd.choice(syll) for _ in range(self.rnd.randint(2, 4))))
        self.vocab = sorted(words)
        self.rnd.shuffle(self.vocab)
        self.cum = list(itertools.accumulate(1.0 / (r + 20) for r in range(len(self.vocab))))
        self.events: list[Event] = []

    def word(self) -> str:
        # Zipf-like: some content words are common, most are rare; the commonest is about 1% of words.
        return self.rnd.choices(self.vocab, cum_weights=self.cum)[0]

    def text(self, lo: int = 6, hi: int = 22) -> str:
        n = self.rnd.randint(lo, hi)
        return " ".join(
            self.rnd.choice(FILLERS) if self.rnd.random() < 0.35 else self.word() for _ in range(n)
        )

    def click(self, p_resolved: float = 0.35, p_not: float = 0.08) -> str | None:
        r = self.rnd.random()
        return "resolved" if r < p_resolved else "not_helpful" if r < p_resolved + p_not else None

    def add(self, person: str, at: datetime, text: str, channel: str | None = None, **kw) -> Event:
        e = Event(person, at, text, channel or self.rnd.choice(CHANNELS), **kw)
        self.events.append(e)
        return e

    def workdays(self) -> list[datetime]:
        start = (END - timedelta(days=DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
        days = [start + timedelta(days=i) for i in range(DAYS + 1)]
        return [d for d in days if d.weekday() < 5 and d + timedelta(hours=18) <= END]

    def office(self, day: datetime) -> datetime:
        return day + timedelta(hours=8, seconds=self.rnd.uniform(0, 9.5 * 3600))

    # -- ordinary work -------------------------------------------------------------------------------------

    def ordinary(self, who: str, lo: int = 3, hi: int = 10, *, clicks: bool = True, long_share: float = 0.0):
        for day in self.workdays():
            for _ in range(self.rnd.randint(lo, hi)):
                long = self.rnd.random() < long_share
                self.add(
                    who,
                    self.office(day),
                    self.text(120, 260) if long else self.text(),
                    click=self.click() if clicks else None,
                )

    # -- gaming patterns -----------------------------------------------------------------------------------

    def burst(self, who: str) -> None:
        for _ in range(self.rnd.randint(1, 3)):
            t0 = self.office(self.rnd.choice(self.workdays()))
            n, span = self.rnd.randint(15, 30), self.rnd.uniform(45, 120)
            for off in sorted(self.rnd.uniform(0, span) for _ in range(n)):
                self.add(who, t0 + timedelta(seconds=off), self.text(), click=self.click(0.2, 0.0))

    def reworded(self, who: str) -> None:
        synonyms = {"summarise": "summarize", "list": "show", "risks": "issues", "numbers": "figures"}
        for _ in range(self.rnd.randint(1, 2)):
            base = (
                f"please summarise the {self.word()} {self.word()} numbers for the {self.word()} team "
                f"and list the top {self.word()} risks"
            ).split()
            t = self.office(self.rnd.choice(self.workdays()))
            channel = self.rnd.choice(CHANNELS)
            for _i in range(self.rnd.randint(8, 14)):
                words = list(base)
                for _op in range(self.rnd.randint(1, 3)):
                    op = self.rnd.random()
                    if op < 0.3:
                        words.append(
                            self.rnd.choice(["thanks", "asap", "again", "now", "pls", "today", "ok"])
                        )
                    elif op < 0.5:
                        words[0] = self.rnd.choice(["pls", "plz", "can you", "could you"])
                    elif op < 0.75:
                        j = self.rnd.randrange(len(words) - 1)
                        words[j], words[j + 1] = words[j + 1], words[j]
                    else:  # one word for a synonym
                        swap = [j for j, w in enumerate(words) if w in synonyms]
                        if swap:
                            j = self.rnd.choice(swap)
                            words[j] = synonyms[words[j]]
                self.add(who, t, " ".join(words), channel, click=self.click(0.15, 0.0))
                t += timedelta(minutes=self.rnd.uniform(5, 50))

    def resummarize(self, who: str) -> None:
        for _ in range(self.rnd.randint(1, 2)):
            t = self.office(self.rnd.choice(self.workdays()))
            root = self.add(who, t, self.text(), click=None)
            for ask in self.rnd.sample(SUMMARY_ASKS, self.rnd.randint(5, 10)):
                t += timedelta(minutes=self.rnd.uniform(3, 12))
                self.add(who, t, ask, root.channel, root=root, click=None)

    def padded(self, who: str) -> None:
        filler = self.rnd.choice(
            ["Please consider this carefully and answer in full detail. ", "This is very important to me. "]
        )
        days = self.workdays()
        for _ in range(self.rnd.randint(5, 10)):
            text = filler * self.rnd.randint(15, 40) + self.text(6, 12)
            self.add(who, self.office(self.rnd.choice(days)), text, click=self.click(0.2, 0.0))

    def clockwork(self, who: str) -> None:
        period = self.rnd.uniform(5, 20) * 60
        for day in self.rnd.sample(self.workdays(), self.rnd.randint(2, 4)):
            t = day + timedelta(hours=9, minutes=self.rnd.uniform(0, 30))
            end = day + timedelta(hours=17)
            while t < end:
                self.add(who, t, self.text(), click=self.click(0.25, 0.0))
                t += timedelta(seconds=period * self.rnd.uniform(0.92, 1.08))

    def app_loop(self, who: str) -> None:
        app = f"A0{who[2:]}"
        bot = f"B0{who[2:]}"
        t = self.office(self.rnd.choice(self.workdays()))
        channel = self.rnd.choice(CHANNELS)
        n = self.rnd.randint(12, 40)
        span = self.rnd.uniform(15, 55) * 60
        for off in sorted(self.rnd.uniform(0, span) for _ in range(n)):
            self.add(
                who, t + timedelta(seconds=off), f"sync update {self.word()}", channel, bot_id=bot, app_id=app
            )

    # -- honest hard cases ---------------------------------------------------------------------------------

    def long_paste(self, who: str) -> None:
        for _ in range(self.rnd.randint(1, 2)):
            lines = [
                f"2026-03-1{self.rnd.randint(0, 9)} 10:{self.rnd.randint(10, 59)}:{self.rnd.randint(10, 59)} "
                f"ERROR worker-{self.rnd.randint(1, 4)} request timed out after 30000 ms"
                for _ in range(self.rnd.randint(60, 150))
            ]
            text = "why does this keep failing? here is the log:\n" + "\n".join(lines)
            self.add(who, self.office(self.rnd.choice(self.workdays())), text, click=self.click())

    def followup(self, who: str) -> None:
        for day in self.workdays():
            for _ in range(self.rnd.randint(1, 4)):
                t = self.office(day)
                root = self.add(who, t, self.text(), click=None)
                for _f in range(self.rnd.randint(1, 3)):
                    t += timedelta(minutes=self.rnd.uniform(1, 8))
                    self.add(who, t, self.text(4, 12), root.channel, root=root, click=self.click(0.2, 0.1))

    def cross_channel(self, who: str) -> None:
        for _ in range(self.rnd.randint(2, 5)):
            t = self.office(self.rnd.choice(self.workdays()))
            text = self.text(10, 18)
            for channel in self.rnd.sample(CHANNELS, self.rnd.randint(2, 4)):
                self.add(who, t, text, channel, click=self.click())
                t += timedelta(minutes=self.rnd.uniform(1, 30))

    def on_call(self, who: str) -> None:
        for day in self.rnd.sample(self.workdays(), self.rnd.randint(2, 4)):
            t = day + timedelta(hours=8, minutes=self.rnd.uniform(0, 60))
            for _ in range(self.rnd.randint(10, 25)):
                n = self.rnd.randint(1000, 9999)
                text = self.rnd.choice(
                    [
                        f"what is the status of ticket INC-{n} please",
                        f"please summarise PR {n} for me and list blockers",
                        f"what is the current status of the {self.rnd.choice(SERVICES)} service deploy in production",
                        f"any update on INC-{n}?",
                    ]
                )
                self.add(who, t, text, click=self.click(0.3, 0.05))
                quick = self.rnd.random() < 0.15  # walking through a list: the next one within seconds
                t += timedelta(
                    seconds=self.rnd.uniform(8, 15) if quick else self.rnd.uniform(5 * 60, 40 * 60)
                )

    def incident_commander(self, who: str) -> None:
        for _ in range(self.rnd.randint(1, 2)):
            t = self.office(self.rnd.choice(self.workdays()))
            end = t + timedelta(hours=self.rnd.uniform(1.5, 3))
            channel = f"C0INC{self.rnd.randint(100, 999)}"
            root = self.add(who, t, "incident: " + self.text(), channel, click=None)
            next_summary = t + timedelta(minutes=self.rnd.uniform(20, 60))
            while t < end:
                t += timedelta(seconds=self.rnd.uniform(15, 90))
                if t >= next_summary:
                    ask = self.rnd.choice(SUMMARY_ASKS)
                    next_summary = t + timedelta(minutes=self.rnd.uniform(20, 60))
                else:
                    ask = self.text(4, 14)
                in_thread = self.rnd.random() < 0.6 or ask in SUMMARY_ASKS
                self.add(who, t, ask, channel, root=root if in_thread else None, click=self.click(0.2, 0.05))

    def app_digest(self, who: str) -> None:
        channel = self.rnd.choice(CHANNELS)
        bot, app = f"B0D{who[2:]}", f"A0D{who[2:]}"
        for day in self.workdays():
            for _ in range(self.rnd.randint(2, 6)):
                self.add(
                    who, self.office(day), f"daily digest {self.word()}", channel, bot_id=bot, app_id=app
                )


def generate(seed: int) -> Workload:
    """The people of one seed and their events, in time order, each with a unique Slack ts."""
    g = _Gen(seed)
    w = Workload(seed)
    n = 0
    for kinds, gaming in ((GAMING, True), (HONEST, False)):
        for kind, count in kinds.items():
            for _ in range(count):
                n += 1
                who = f"U0P{seed:03d}{n:03d}"
                w.people.append(Person(who, kind, gaming))
                if kind == "heavy":
                    g.ordinary(who, 40, 90, long_share=0.15)
                elif kind == "never_click":
                    g.ordinary(who, 10, 25, clicks=False)
                else:
                    g.ordinary(who)
                if kind != "normal" and kind not in ("heavy", "never_click"):
                    getattr(g, kind)(who)
    g.rnd.shuffle(g.events)  # ties in time must not follow generation order
    g.events.sort(key=lambda e: e.at)
    used: set[str] = set()
    for e in g.events:
        micros = int(e.at.timestamp() * 1_000_000)
        while f"{micros / 1e6:.6f}" in used:
            micros += 1
        e.ts = f"{micros / 1e6:.6f}"
        used.add(e.ts)
    w.events = [e for e in g.events if e.at < END]
    return w
