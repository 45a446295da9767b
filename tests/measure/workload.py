"""A generated ledger with known ground truth: honest users, heavy honest users, each gaming pattern."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from bot.db import Database, LLMCall, Outcome, Task

END = datetime(2026, 3, 20, 18, 0, tzinfo=UTC)
REPORTING_DATE = (END - timedelta(days=2)).date()
EXPECTED = {
    ("automation_no_outcome", "U0AUTO"),
    ("near_duplicate_prompts", "U0DUPE"),
    ("padded_prompts", "U0PAD"),
    ("bot_loop", "B0OTHERBOT"),
    ("bot_chain", "U0CHAIN"),
    ("machine_cadence", "U0CLOCK"),
    ("spend_no_outcome", "U0IDLE"),
    ("pre_reporting_spike", "U0SPIKE"),
}
HONEST = [f"U0HONEST{i:02d}" for i in range(12)]
HEAVY = [f"U0HEAVY{i}" for i in range(3)]
MAIL_OWNER = "U0MAILER"


def _vocab(rnd: random.Random, n: int = 3000) -> list[str]:
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pre", "dan", "gel", "bor", "quin", "sa", "te"]
    words = set()
    while len(words) < n:
        words.add("".join(rnd.choice(syll) for _ in range(rnd.randint(2, 4))))
    return sorted(words)


@dataclass
class Workload:
    """Rows to insert and what we know about them."""

    rnd: random.Random
    vocab: list[str] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    outcomes: list[dict] = field(default_factory=list)
    seq: int = 0

    def text(self, lo: int = 8, hi: int = 25) -> str:
        """A varied request (random words from a large vocabulary)."""
        return " ".join(self.rnd.choice(self.vocab) for _ in range(self.rnd.randint(lo, hi)))

    def task(
        self,
        who: str,
        at: datetime,
        *,
        intent: str = "answer",
        surface: str = "mention",
        trigger: str = "human",
        status: str = "done",
        text: str | None = None,
        tokens: tuple[int, int] = (800, 200),
        calls: int = 1,
        outcome: str | None = None,
        source: str = "explicit",
        parent: str | None = None,
        channel: str = "C0GENERAL",
        latency_ms: float | None = None,
        thread: str | None = None,
        extra: dict | None = None,
    ) -> str:
        """Add one task with its LLM calls and (optionally) an outcome; returns its id."""
        self.seq += 1
        tid = f"t{self.seq:07d}"
        lat = latency_ms if latency_ms is not None else self.rnd.uniform(900, 6000)
        finished = (
            at + timedelta(milliseconds=lat) if status in ("done", "failed", "denied", "ignored") else None
        )
        self.tasks.append(
            {
                "id": tid,
                "idempotency_key": f"gen:{tid}",
                "requester": who,
                "surface": surface,
                "intent": intent,
                "trigger": trigger,
                "channel_id": channel,
                "thread_ts": thread or f"{at.timestamp():.6f}",
                "message_ts": f"{at.timestamp():.6f}",
                "parent_id": parent,
                "status": status,
                "payload": {"text": text if text is not None else self.text(), **(extra or {})},
                "result": {},
                "redactions": 0,
                "attempts": 1,
                "created_at": at,
                "started_at": at if status != "queued" else None,
                "finished_at": finished,
            }
        )
        if status not in ("ignored", "denied"):
            p, c = tokens
            for n in range(calls):
                self.calls.append(
                    {
                        "task_id": tid,
                        "step": f"s{n}",
                        "model": "gpt-4o-mini",
                        "prompt_name": intent,
                        "prompt_version": "abc123def456",
                        "prompt_tokens": p,
                        "completion_tokens": c,
                        "cached_tokens": 0,
                        "total_tokens": p + c,
                        "usage_reported": True,
                        "cost": (p * 0.4 + c * 1.6) / 1e6,
                        "latency_ms": lat / max(calls, 1),
                        "status": "ok",
                        "created_at": at,
                    }
                )
        if outcome:
            self.outcomes.append(
                {
                    "task_id": tid,
                    "kind": outcome,
                    "source": source,
                    "actor": who if source == "explicit" else None,
                    "detail": {},
                    "created_at": (finished or at) + timedelta(minutes=self.rnd.uniform(1, 120)),
                }
            )
        return tid

    def insert(self, db: Database) -> None:
        """Bulk-insert everything."""
        with db.session() as s:
            for table, rows in ((Task, self.tasks), (LLMCall, self.calls), (Outcome, self.outcomes)):
                for i in range(0, len(rows), 2000):
                    s.execute(insert(table), rows[i : i + 2000])


def _work_time(rnd: random.Random, day: datetime) -> datetime:
    return day.replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(
        seconds=rnd.uniform(0, 9.5 * 3600)
    )


def _days(n: int) -> list[datetime]:
    start = (END - timedelta(days=n)).replace(hour=0, minute=0, second=0, microsecond=0)
    return [start + timedelta(days=i) for i in range(n + 1) if start + timedelta(days=i) < END]


def _honest_outcome(rnd: random.Random) -> str | None:
    r = rnd.random()
    return "resolved" if r < 0.4 else "not_helpful" if r < 0.5 else None


def build(seed: int = 7) -> Workload:
    """The ground-truth ledger: 45 days, ~10k tasks, ~20k LLM calls."""
    rnd = random.Random(seed)
    w = Workload(rnd, _vocab(rnd))
    days = _days(45)
    for day in days:
        weekday = day.weekday() < 5
        for who in HONEST:
            for _ in range(rnd.randint(3, 12) if weekday else rnd.randint(0, 1)):
                w.task(
                    who,
                    _work_time(rnd, day),
                    intent=rnd.choice(["answer", "summarize"]),
                    tokens=(rnd.randint(400, 2500), rnd.randint(80, 500)),
                    outcome=_honest_outcome(rnd),
                )
        for who in HEAVY:
            for _ in range(rnd.randint(50, 110) if weekday else rnd.randint(0, 8)):
                long = rnd.random() < 0.15
                w.task(
                    who,
                    _work_time(rnd, day),
                    intent=rnd.choice(["answer", "summarize", "draft"]),
                    text=w.text(120, 260) if long else None,
                    calls=rnd.choice((1, 1, 2, 3)),
                    tokens=(rnd.randint(1500, 7000), rnd.randint(200, 1200)),
                    outcome=_honest_outcome(rnd),
                )
        # mail triage by automation, with implicit outcomes (label kept/corrected): not waste
        for _ in range(rnd.randint(10, 25)):
            r = rnd.random()
            kind = "label_kept" if r < 0.7 else "label_corrected" if r < 0.85 else None
            w.task(
                MAIL_OWNER,
                day + timedelta(seconds=rnd.uniform(0, 86000)),
                intent="triage",
                surface="email",
                trigger="automation",
                channel=None,
                tokens=(900, 60),
                outcome=kind,
                source="implicit",
            )
    # 1. automation with no human outcome
    for i in range(60):
        w.task(
            "U0AUTO",
            END - timedelta(days=25) + timedelta(hours=8 * i + rnd.uniform(0, 5)),
            intent="summarize",
            trigger="automation",
            tokens=(1500, 300),
        )
    # 2. near-duplicate prompts: rewordings of one request within three hours
    base = "please summarise the quarterly revenue numbers for the emea sales team and list the top risks"
    fillers = ["", " thanks", " asap", " please", " again", " now", " today", " for me"]
    for i in range(12):
        words = base.split()
        if i % 3 == 1:
            words[0] = "pls"
        w.task(
            "U0DUPE",
            END - timedelta(days=6, hours=3) + timedelta(minutes=15 * i + rnd.uniform(0, 5)),
            text=" ".join(words) + fillers[i % len(fillers)],
            outcome=_honest_outcome(rnd),
        )
    for day in days[-30:]:
        if day.weekday() < 5:
            w.task("U0DUPE", _work_time(rnd, day), outcome=_honest_outcome(rnd))
    # 3. padded prompts
    for i in range(15):
        pad = i < 10
        text = ("Please consider this carefully. " * 40 + w.text(6, 10)) if pad else w.text(90, 140)
        w.task(
            "U0PAD",
            END - timedelta(days=12) + timedelta(hours=7 * i + rnd.uniform(0, 3)),
            text=text,
            tokens=(3000 if pad else 1200, 200),
            outcome=_honest_outcome(rnd),
        )
    # 4. a bot-to-bot loop: another bot's messages, recorded and ignored
    for i in range(25):
        w.task(
            "B0OTHERBOT",
            END - timedelta(days=4) + timedelta(seconds=70 * i),
            trigger="bot",
            status="ignored",
            text="auto-reply: I am a bot, your message was received",
        )
    # 5. a bot chain: task → task → task → task without a human
    parent = w.task("U0CHAIN", END - timedelta(days=8), outcome="resolved")
    for depth in range(4):
        parent = w.task(
            "U0CHAIN",
            END - timedelta(days=8) + timedelta(minutes=2 * (depth + 1)),
            trigger="automation",
            parent=parent,
        )
    # 6. machine-regular cadence behind a person's identity
    for i in range(80):
        w.task(
            "U0CLOCK",
            END - timedelta(days=9) + timedelta(minutes=15 * i, seconds=rnd.uniform(-5, 5)),
            outcome="resolved" if i % 3 == 0 else None,
        )
    # 7. a week of heavy spend with not one outcome
    for i in range(40):
        w.task("U0IDLE", _work_time(rnd, END - timedelta(days=16 - i % 5)), tokens=(2500, 500))
    # 8. a spike before the reporting date, against a steady baseline
    spike_end = datetime.combine(REPORTING_DATE, datetime.min.time(), tzinfo=END.tzinfo) + timedelta(days=1)
    for day in _days(40):
        if day + timedelta(days=1) <= spike_end - timedelta(days=3):
            for _ in range(5):
                w.task("U0SPIKE", _work_time(rnd, day), tokens=(800, 200), outcome=_honest_outcome(rnd))
    for d in range(3):
        day = spike_end - timedelta(days=3 - d)
        for _ in range(60):
            w.task("U0SPIKE", _work_time(rnd, day), tokens=(2500, 500), outcome=_honest_outcome(rnd))
    return w
