"""Outcome kinds, their classes and weights, and the outcome sweeps.

Every task ends in one **outcome state**, used by reports and signals:

- a recorded outcome: explicit (feedback buttons), implicit (label kept/corrected, draft sent/discarded,
  deploy succeeded/failed/rolled back), weak (a follow-up question in the same thread soon after an answer),
  or ``none`` (recorded by the sweep when nothing happened within ``CLAWBACK_OUTCOME_WINDOW_HOURS``);
- otherwise the task's own status: ``failed``, ``denied``, ``pending`` (queued/running) or ``awaiting``
  (done, still inside the outcome window).

When a task has several outcomes the **decisive** one is the strongest (explicit > implicit > weak >
timeout), and among equally strong ones the latest: a deploy that succeeded and was then rolled back counts
as rolled back; a "Resolved" click outranks a later follow-up question.

Each kind has a **class** (accepted, rejected or neutral) and a **weight** (how much it counts in the
weighted acceptance rate: an edited draft is accepted but weighs 0.7; a follow-up question is a weak
"not resolved" and weighs 0.5). Some kinds also belong to a **family** used by surface rates (label
correction rate, draft use rate, deploy success and rollback rates). Unknown kinds are neutral, with their
strength taken from the outcome's source.

Configure with ``CLAWBACK_OUTCOME_KINDS``: a JSON object (or a path to one) overlaying the table below,
e.g. ``{"draft_sent_edited": {"weight": 0.5}, "ticket_closed": {"class": "accepted", "minutes_saved": 10}}``.
``minutes_saved`` (estimated minutes one such outcome saves; defaults beside ``DEFAULT_KINDS``) feeds the adoption
KPIs (``bot.measure.adoption``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, insert, literal, select

from bot.db import Database, Outcome, Task, utcnow
from bot.errors import ConfigError

CLASSES = ("accepted", "rejected", "neutral")
STRENGTHS = {"timeout": 0, "weak": 1, "implicit": 2, "explicit": 3}
SOURCE_STRENGTH = {"explicit": "explicit", "implicit": "implicit", "timeout": "timeout", "system": "implicit"}
FOLLOWUP = "followup_question"
NONE = "none"


@dataclass(frozen=True)
class OutcomeKind:
    """How one outcome kind counts."""

    name: str
    cls: str  # accepted, rejected, neutral
    weight: float = 1.0
    strength: str = "implicit"  # explicit, implicit, weak, timeout
    family: str | None = None  # label, draft, deploy
    role: str | None = None  # kept/corrected, used/discarded, succeeded/failed/rolled_back/cancelled
    minutes_saved: float = (
        0.0  # estimated minutes of the person's time one such outcome saves (adoption KPIs)
    )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "class": self.cls,
            "weight": self.weight,
            "strength": self.strength,
            "family": self.family,
            "role": self.role,
            "minutes_saved": self.minutes_saved,
        }


# Estimated minutes saved (``minutes_saved``) by default, per accepted kind: an answer that resolved a question
# saves a search or a colleague's interruption (5); a label kept saves sorting one message (0.5); a draft sent
# unchanged saves writing a reply (4), an edited one part of it (2.5); an answer the asker posted to the thread
# from its private copy saves what a resolved answer saves (5); an automatic triage action kept, or a proposal
# applied with one click, saves sorting one message (0.5); shadow decisions did nothing and save nothing.
# Rejected and neutral kinds save nothing.
# Deploys are never autonomous and save nothing here. Override per site in CLAWBACK_OUTCOME_KINDS.
DEFAULT_KINDS: dict[str, OutcomeKind] = {
    k.name: k
    for k in (
        OutcomeKind("resolved", "accepted", 1.0, "explicit", minutes_saved=5.0),
        OutcomeKind("not_helpful", "rejected", 1.0, "explicit"),
        OutcomeKind("answer_posted", "accepted", 1.0, "explicit", minutes_saved=5.0),
        OutcomeKind("answer_dismissed", "rejected", 1.0, "explicit"),
        OutcomeKind("label_kept", "accepted", 1.0, "implicit", "label", "kept", minutes_saved=0.5),
        OutcomeKind("label_corrected", "rejected", 1.0, "implicit", "label", "corrected"),
        OutcomeKind("draft_sent", "accepted", 1.0, "implicit", "draft", "used", minutes_saved=3.0),
        OutcomeKind("draft_sent_unchanged", "accepted", 1.0, "implicit", "draft", "used", minutes_saved=4.0),
        OutcomeKind("draft_sent_edited", "accepted", 0.7, "implicit", "draft", "used", minutes_saved=2.5),
        OutcomeKind("draft_discarded", "rejected", 1.0, "implicit", "draft", "discarded"),
        OutcomeKind("deploy_succeeded", "accepted", 1.0, "implicit", "deploy", "succeeded"),
        OutcomeKind("deploy_failed", "rejected", 1.0, "implicit", "deploy", "failed"),
        OutcomeKind("deploy_rolled_back", "rejected", 1.0, "implicit", "deploy", "rolled_back"),
        OutcomeKind("deploy_cancelled", "neutral", 0.0, "implicit", "deploy", "cancelled"),
        # Earned autonomy on triage (bot.mail.autonomy): an automatic action kept through the outcome window, a
        # proposal applied or dismissed, an automatic move undone, shadow agreement with what the owner did.
        OutcomeKind("auto_kept", "accepted", 1.0, "implicit", minutes_saved=0.5),
        OutcomeKind("suggestion_applied", "accepted", 1.0, "explicit", minutes_saved=0.5),
        OutcomeKind("suggestion_dismissed", "rejected", 1.0, "explicit"),
        OutcomeKind("move_undone", "rejected", 1.0, "explicit"),
        OutcomeKind("shadow_agreed", "accepted", 1.0, "implicit"),
        OutcomeKind("shadow_disagreed", "rejected", 1.0, "implicit"),
        OutcomeKind(FOLLOWUP, "rejected", 0.5, "weak"),
        OutcomeKind(NONE, "neutral", 0.0, "timeout"),
    )
}


@dataclass(frozen=True)
class OutcomeConfig:
    """The outcome kind table in force."""

    kinds: dict[str, OutcomeKind]

    def kind(self, name: str | None) -> OutcomeKind | None:
        """The definition of ``name`` (unknown kinds: neutral, implicit)."""
        if name is None:
            return None
        return self.kinds.get(name) or OutcomeKind(name, "neutral", 0.0, "implicit")

    def class_of(self, name: str) -> str:
        """accepted, rejected or neutral."""
        k = self.kind(name)
        return k.cls if k else "neutral"

    @property
    def digest(self) -> str:
        """Hash of the table (the facts table is rebuilt when it changes)."""
        blob = json.dumps({n: k.as_dict() for n, k in sorted(self.kinds.items())}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        """The documented table, for reports."""
        return {n: k.as_dict() for n, k in sorted(self.kinds.items())}


def parse_kinds(raw: str | None) -> OutcomeConfig:
    """Overlay ``CLAWBACK_OUTCOME_KINDS`` (JSON text or a path to a JSON file) on the defaults."""
    kinds = dict(DEFAULT_KINDS)
    if not raw:
        return OutcomeConfig(kinds)
    text = raw if raw.lstrip()[:1] in ("{", "[") else _read(raw)
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"CLAWBACK_OUTCOME_KINDS is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError("CLAWBACK_OUTCOME_KINDS must be a JSON object of kind → {class, weight, ...}")
    for name, spec in loaded.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"CLAWBACK_OUTCOME_KINDS[{name!r}] must be an object")
        base = kinds.get(name) or OutcomeKind(name, "neutral", 1.0, "implicit")
        unknown = set(spec) - {"class", "weight", "strength", "family", "role", "minutes_saved"}
        if unknown:
            raise ConfigError(f"CLAWBACK_OUTCOME_KINDS[{name!r}]: unknown key {sorted(unknown)[0]!r}")
        cls = spec.get("class", base.cls)
        strength = spec.get("strength", base.strength)
        weight = spec.get("weight", base.weight)
        if cls not in CLASSES:
            raise ConfigError(f"CLAWBACK_OUTCOME_KINDS[{name!r}]: class must be one of {', '.join(CLASSES)}")
        if strength not in STRENGTHS:
            raise ConfigError(
                f"CLAWBACK_OUTCOME_KINDS[{name!r}]: strength must be one of {', '.join(STRENGTHS)}"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ConfigError(f"CLAWBACK_OUTCOME_KINDS[{name!r}]: weight must be a number >= 0")
        minutes = spec.get("minutes_saved", base.minutes_saved)
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 <= minutes <= 1440:
            raise ConfigError(
                f"CLAWBACK_OUTCOME_KINDS[{name!r}]: minutes_saved must be a number from 0 to 1440"
            )
        kinds[name] = replace(
            base,
            cls=cls,
            weight=float(weight),
            strength=strength,
            family=spec.get("family", base.family),
            role=spec.get("role", base.role),
            minutes_saved=float(minutes),
        )
    return OutcomeConfig(kinds)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"CLAWBACK_OUTCOME_KINDS: cannot read {path}: {exc.strerror}") from None


def config_from_settings(settings: Any | None) -> OutcomeConfig:
    """The outcome table for these settings (defaults when None)."""
    return parse_kinds(getattr(settings, "clawback_outcome_kinds", None) if settings is not None else None)


# -- outcomes recorded by a person's click -----------------------------------------------------------------

# The tasks each click-recorded kind applies to. Anything else (deploy results, sent drafts, follow-ups) is
# recorded by Clawback from what happened, never by a click.
CLICK_KINDS: dict[str, frozenset[str]] = {
    "resolved": frozenset({"answer"}),
    "not_helpful": frozenset({"answer"}),
    "answer_posted": frozenset({"answer"}),
    "answer_dismissed": frozenset({"answer"}),
    "label_kept": frozenset({"triage"}),
    "label_corrected": frozenset({"triage"}),
    "draft_discarded": frozenset({"triage"}),
    "suggestion_dismissed": frozenset({"triage"}),
    "move_undone": frozenset({"triage"}),
}
NOT_REQUESTER = "not the requester"


def click_refusal(task: Task, actor: str, kind: str) -> str | None:
    """Why ``actor`` may not record ``kind`` on ``task`` by a click, or None when they may.

    Only the task's requester rates it, and each kind applies only to its intents: "Resolved" and
    "Not helpful" rate answers, the triage buttons rate triage. Every click-recorded outcome checks this.
    """
    if actor != task.requester:
        return NOT_REQUESTER
    intents = CLICK_KINDS.get(kind)
    if intents is None:
        return f"{kind} is not recorded by a click"
    if task.intent not in intents:
        what = "answers" if "answer" in intents else " and ".join(sorted(intents))
        return f"{kind} applies to {what} only, not to {task.intent} tasks"
    return None


def record_click(
    session: Any, task: Task, kind: str, actor: str, detail: dict[str, Any] | None = None
) -> Outcome | None:
    """Add an explicit outcome for a click in ``session`` if ``click_refusal`` allows it (else None)."""
    if click_refusal(task, actor, kind) is not None:
        return None
    row = Outcome(task_id=task.id, kind=kind, source="explicit", actor=actor, detail=detail or {})
    session.add(row)
    session.flush()
    return row


# -- sweeps and weak signals -----------------------------------------------------------------------------


def sweep_none(db: Database, *, window: timedelta, now: datetime | None = None, batch: int = 5000) -> int:
    """Record ``none`` (source timeout) for finished tasks with no outcome after ``window``; returns how many.

    Only ``done`` tasks are swept: failed and denied tasks already have their state. Idempotent: a task
    that has any outcome is never swept again.
    """
    cutoff = (now or utcnow()) - window
    total = 0
    while True:
        candidates = (
            select(Task.id)
            .where(
                Task.status == "done",
                Task.finished_at.is_not(None),
                Task.finished_at < cutoff,
                ~exists().where(Outcome.task_id == Task.id),
            )
            .limit(batch)
        )
        with db.session() as s:
            ids = list(s.execute(candidates).scalars())
            if ids:
                stamp = now or utcnow()
                s.execute(
                    insert(Outcome),
                    [
                        {
                            "task_id": i,
                            "kind": NONE,
                            "source": "timeout",
                            "actor": None,
                            "detail": {"window_hours": window.total_seconds() / 3600},
                            "created_at": stamp,
                        }
                        for i in ids
                    ],
                )
        total += len(ids)
        if len(ids) < batch:
            return total


def note_followup(db: Database, task: Task, *, within: timedelta = timedelta(minutes=10)) -> str | None:
    """If ``task`` follows up in the same thread, record a weak "not resolved" on the earlier task.

    The earlier task must be the same person's, in the same channel and thread, finished ``done`` and
    created at most ``within`` before this one. Returns the earlier task id, or None. Idempotent.
    """
    if not task.channel_id or not task.thread_ts or task.trigger != "human":
        return None
    if task.thread_ts == task.message_ts:
        return None  # a top-level message starts its thread: no earlier answer in it to follow up on
    created = task.created_at or utcnow()
    with db.session() as s:
        earlier = s.execute(
            select(Task.id)
            .where(
                Task.channel_id == task.channel_id,
                Task.thread_ts == task.thread_ts,
                Task.requester == task.requester,
                Task.id != task.id,
                Task.status == "done",
                Task.created_at < created,
                Task.created_at >= created - within,
            )
            .order_by(Task.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        if earlier is None:
            return None
        seen = s.execute(
            select(Outcome.id).where(
                and_(
                    Outcome.task_id == earlier,
                    Outcome.kind == FOLLOWUP,
                    Outcome.actor == task.requester,
                )
            )
        ).first()
        already = False
        if seen is not None:
            already = any(
                (o.detail or {}).get("followup_task") == task.id
                for o in s.execute(
                    select(Outcome).where(Outcome.task_id == earlier, Outcome.kind == FOLLOWUP)
                ).scalars()
            )
        if not already:
            s.add(
                Outcome(
                    task_id=earlier,
                    kind=FOLLOWUP,
                    source="implicit",
                    actor=task.requester,
                    detail={"followup_task": task.id},
                )
            )
    return earlier


def strength_case(config: OutcomeConfig) -> Any:
    """SQL: the strength (0–3) of an outcome row, from its kind (or its source for unknown kinds)."""
    from sqlalchemy import case

    by_kind = {name: STRENGTHS[k.strength] for name, k in config.kinds.items()}
    by_source = case(
        {src: STRENGTHS[st] for src, st in SOURCE_STRENGTH.items()}, value=Outcome.source, else_=literal(2)
    )
    return case(by_kind, value=Outcome.kind, else_=by_source)


def decisive(outcomes: list[tuple[int, str, str]], config: OutcomeConfig) -> str | None:
    """The decisive kind among ``(id, kind, source)`` rows: strongest, then latest (as in SQL)."""

    def strength(kind: str, source: str) -> int:
        k = config.kinds.get(kind)
        return STRENGTHS[k.strength] if k else STRENGTHS[SOURCE_STRENGTH.get(source, "implicit")]

    if not outcomes:
        return None
    return max(outcomes, key=lambda o: (strength(o[1], o[2]), o[0]))[1]
