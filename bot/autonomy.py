"""Earned autonomy: the level each side effect runs at, per (person, action, mail category), and its rules.

Levels (``bot.policy.LEVELS``): ``shadow`` decides and records only; ``suggest`` shows and acts on the person's
Apply; ``auto`` acts at once and the person can correct or undo. The rules come from ``[autonomy]`` in the policy
(``bot.policy.AutonomyPolicy``); this module keeps the books in SQL, so levels survive restarts:

- ``autonomy_levels``: the level in force per (user, action, category or ''); no row = the rule's ``start``.
  Whatever is stored, the level in force is never above the rule's ``max`` (an admin lowering ``max`` caps
  everyone at once).
- ``autonomy_decisions``: one row per governed decision with the level it was made at and, once judged, the
  verdict (accepted, rejected, or none = no reaction within the outcome window). "Judged" means accepted or
  rejected. The rules count only decisions made at the current level after the last change of level.
- ``autonomy_offers`` and ``autonomy_changes``: promotions offered and answered; every change of level with
  its evidence.

Rules, applied by ``judge`` at once after each verdict:

- demotion: at ``auto``, when the last ``window`` judged decisions hold at least ``demote_after`` rejections,
  the level drops to ``suggest`` immediately (audited with the decision and outcome ids);
- promotion: when the last ``promote_after`` judged decisions at the current level were accepted at a rate of at
  least ``promote_min_acceptance`` and the next level is within ``max``, an offer is due. It is made unless one
  is pending, or one was declined fewer than ``promote_after`` judged decisions ago. Promotion itself happens
  only when the person accepts (``accept_offer``).

Deploys are never governed (``policy check`` refuses them): every deploy keeps its human clicks.

The kill switch: ``level_for(..., intent=...)`` returns ``shadow`` (acts on nothing) while a pause applies to
the person and intent, so a caller that asks with its intent never acts while paused. Workers also refuse a paused
task before any level matters (``workers.execute``), so a caller without an intent stays safe.

Pure functions over the database and the policy: no Slack calls here. ``announce`` enqueues the Slack side (the
offer DM, the demotion notice) by job name, so both listeners and workers can call it after ``judge``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import audit, controls
from bot.db import AutonomyChange, AutonomyDecision, AutonomyLevel, AutonomyOffer, Database, utcnow
from bot.mail.config import CATEGORIES
from bot.policy import GOVERNED_ACTIONS, LEVELS, MAIL_ACTIONS, NEVER_AUTONOMOUS, AutonomyRule, Policy

log = logging.getLogger(__name__)

VERDICTS = ("accepted", "rejected", "none")
JUDGED = ("accepted", "rejected")
SEND_OFFER = "workers.autonomy.send_offer"
TELL_DEMOTION = "workers.autonomy.tell_demotion"
SHOW_OFFER_ANSWER = "workers.autonomy.show_offer_answer"
# What one decision of each action is called in texts ("right 19 of your last 20 newsletter moves").
NOUNS = {
    "mail.categorize": "labels",
    "mail.move": "moves",
    "mail.draft": "reply drafts",
    "chat.reply.channel": "channel answers",
}
_DOING = {
    "mail.categorize": "label {what} for you",
    "mail.move": "move {what} for you",
    "mail.draft": "save reply drafts to {what} for you",
    "chat.reply.channel": "answer in channel threads for you",
}
# What happens after a demotion, where it is not "propose and wait for your Apply".
_AGAIN = {
    "chat.reply.channel": "It will send you its answers privately and wait for your Post to thread again.",
}
# Scope a person must hold for the action to concern them at all.
SCOPE_OF = {"mail.categorize": "mail.categorize", "mail.move": "mail.move", "mail.draft": "mail.draft",
            "chat.reply.channel": "chat.reply"}  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """What the person's recent judged decisions at one level say (the texts and the audit use it)."""

    user: str
    action: str
    category: str  # '' = the action as a whole
    level: str
    judged: int  # judged decisions considered (the last N)
    accepted: int
    rejected: int
    judged_total: int  # every judged decision at this level since the last change
    decision_ids: tuple[int, ...] = ()
    outcome_ids: tuple[int, ...] = ()

    @property
    def what(self) -> str:
        """``newsletter moves``, ``moves``."""
        noun = NOUNS.get(self.action, self.action)
        return f"{self.category.replace('_', ' ')} {noun}" if self.category else noun

    @property
    def text(self) -> str:
        """``right 19 of your last 20 newsletter moves``."""
        return f"right {self.accepted} of your last {self.judged} {self.what}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (audit details, offer and change rows)."""
        return {
            "level": self.level,
            "judged": self.judged,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "judged_total": self.judged_total,
            "decision_ids": list(self.decision_ids),
            "outcome_ids": list(self.outcome_ids),
            "text": self.text,
        }


@dataclass(frozen=True)
class OfferDue:
    """The promotion rule holds and no offer is pending or declined too recently: offer ``to_level``."""

    user: str
    action: str
    category: str
    from_level: str
    to_level: str
    evidence: Evidence


@dataclass(frozen=True)
class Demotion:
    """The demotion rule fired: the level dropped to ``to_level`` (``change_id`` is the history row)."""

    change_id: int
    user: str
    action: str
    category: str
    from_level: str
    to_level: str
    evidence: Evidence


Change = OfferDue | Demotion


@dataclass(frozen=True)
class Standing:
    """One line of "What Clawback may do for you": the level, its record and what would change it."""

    user: str
    action: str
    category: str
    level: str
    max: str
    accepted: int
    judged: int
    next_step: str
    since: datetime | None = None
    pending_offer: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- rules and levels ------------------------------------------------------------------------------------------


def _cat(category: str | None) -> str:
    return category or ""


def _check_action(action: str) -> None:
    if action.startswith("deploy"):
        raise ValueError(NEVER_AUTONOMOUS)
    if action not in GOVERNED_ACTIONS:
        raise ValueError(f"unknown action {action!r} (governed: {', '.join(GOVERNED_ACTIONS)})")


def _check_category(action: str, category: str | None) -> None:
    if category and (action not in MAIL_ACTIONS or category not in CATEGORIES):
        raise ValueError(
            f"category {category!r} does not apply to {action} (mail actions: {', '.join(CATEGORIES)})"
        )


def rule_for(policy: Policy, action: str, category: str | None = None) -> AutonomyRule | None:
    """The rule governing ``action`` (the category's override first); None when it runs at the default."""
    _check_action(action)
    return policy.autonomy.rule(action, _cat(category) or None)


def _cap(level: str, rule: AutonomyRule) -> str:
    return level if LEVELS.index(level) <= LEVELS.index(rule.max) else rule.max


def _row(s: Session, user: str, action: str, category: str) -> AutonomyLevel | None:
    return s.execute(
        select(AutonomyLevel).where(
            AutonomyLevel.user == user, AutonomyLevel.action == action, AutonomyLevel.category == category
        )
    ).scalar_one_or_none()


def _in_force(s: Session, rule: AutonomyRule, user: str, action: str, category: str) -> tuple[str, int]:
    """(level in force, id of the last decision before it started)."""
    row = _row(s, user, action, category)
    if row is None:
        return rule.start, 0
    return _cap(row.level, rule), row.since_decision


def level_for(
    db: Database,
    policy: Policy,
    user: str,
    action: str,
    category: str | None = None,
    *,
    intent: str | None = None,
) -> str:
    """The level ``action`` runs at for ``user`` (and mail ``category``): the stored level or the rule's start,
    never above ``max``; the policy's ``default`` for an action it does not govern (``auto`` with no section);
    ``shadow`` while the kill switch pauses (user, ``intent``) when an intent is given. Deploys raise ValueError."""
    rule = rule_for(policy, action, category)
    if intent is not None and controls.active_pause(db, user=user, intent=intent) is not None:
        return "shadow"
    if rule is None:
        return policy.autonomy.default
    with db.read() as s:
        return _in_force(s, rule, user, action, _cat(category))[0]


def record_decision(
    db: Database,
    *,
    task_id: str,
    user: str,
    action: str,
    category: str | None,
    level: str,
    detail: dict[str, Any] | None = None,
) -> int:
    """Record one governed decision made at ``level``; returns its id (pass it to ``judge`` later)."""
    _check_action(action)
    _check_category(action, category)
    if level not in LEVELS:
        raise ValueError(f"bad level {level!r}")
    with db.session() as s:
        row = AutonomyDecision(
            task_id=task_id,
            user=user,
            action=action,
            category=_cat(category),
            level=level,
            detail=detail or {},
        )
        s.add(row)
        s.flush()
        return row.id


def _judged(
    s: Session, user: str, action: str, category: str, level: str, after: int, limit: int
) -> list[tuple]:
    """The last ``limit`` judged decisions at ``level`` after decision ``after``: (id, verdict, outcome_id)."""
    return list(
        s.execute(
            select(AutonomyDecision.id, AutonomyDecision.verdict, AutonomyDecision.outcome_id)
            .where(
                AutonomyDecision.user == user,
                AutonomyDecision.action == action,
                AutonomyDecision.category == category,
                AutonomyDecision.level == level,
                AutonomyDecision.id > after,
                AutonomyDecision.verdict.in_(JUDGED),
            )
            .order_by(AutonomyDecision.id.desc())
            .limit(limit)
        ).all()
    )


def _judged_total(s: Session, user: str, action: str, category: str, level: str, after: int) -> int:
    return int(
        s.execute(
            select(func.count(AutonomyDecision.id)).where(
                AutonomyDecision.user == user,
                AutonomyDecision.action == action,
                AutonomyDecision.category == category,
                AutonomyDecision.level == level,
                AutonomyDecision.id > after,
                AutonomyDecision.verdict.in_(JUDGED),
            )
        ).scalar_one()
    )


def _evidence(
    s: Session,
    user: str,
    action: str,
    category: str,
    level: str,
    after: int,
    last: int,
    *,
    only: str | None = None,
) -> Evidence:
    rows = _judged(s, user, action, category, level, after, last)
    picked = [r for r in rows if only is None or r[1] == only]
    return Evidence(
        user=user,
        action=action,
        category=category,
        level=level,
        judged=len(rows),
        accepted=sum(r[1] == "accepted" for r in rows),
        rejected=sum(r[1] == "rejected" for r in rows),
        judged_total=_judged_total(s, user, action, category, level, after),
        decision_ids=tuple(sorted(r[0] for r in picked)),
        outcome_ids=tuple(sorted(r[2] for r in picked if r[2] is not None)),
    )


def evidence(db: Database, policy: Policy, user: str, action: str, category: str | None = None) -> Evidence:
    """The person's record at their current level: the last ``promote_after`` judged decisions (for texts)."""
    rule = rule_for(policy, action, category) or AutonomyRule(start=policy.autonomy.default)
    cat = _cat(category)
    with db.read() as s:
        level, after = _in_force(s, rule, user, action, cat)
        return _evidence(s, user, action, cat, level, after, rule.promote_after)


def _max_decision(s: Session) -> int:
    return int(s.execute(select(func.coalesce(func.max(AutonomyDecision.id), 0))).scalar_one())


def _set(
    s: Session,
    *,
    user: str,
    action: str,
    category: str,
    from_level: str,
    to_level: str,
    kind: str,
    actor: str,
    evidence: dict[str, Any],
) -> AutonomyChange:
    """Store the new level (the rules start counting afresh) and its history row; expire pending offers."""
    row = _row(s, user, action, category)
    now, last = utcnow(), _max_decision(s)
    fields = {"level": to_level, "since": now, "since_decision": last, "set_by": actor, "reason": kind}
    if row is None:
        s.add(AutonomyLevel(user=user, action=action, category=category, **fields))
    else:
        for key, value in fields.items():
            setattr(row, key, value)
    s.execute(
        update(AutonomyOffer)
        .where(
            AutonomyOffer.user == user,
            AutonomyOffer.action == action,
            AutonomyOffer.category == category,
            AutonomyOffer.status == "pending",
        )
        .values(status="expired", answered_at=now)
    )
    change = AutonomyChange(
        user=user,
        action=action,
        category=category,
        from_level=from_level,
        to_level=to_level,
        kind=kind,
        actor=actor,
        evidence=evidence,
        created_at=now,
    )
    s.add(change)
    s.flush()
    return change


def judge(
    db: Database,
    policy: Policy,
    decision_id: int,
    verdict: str,
    *,
    outcome_id: int | None = None,
    actor: str,
) -> Change | None:
    """Record the verdict on a decision, then apply the rules at once.

    Returns a ``Demotion`` (already applied and audited) or an ``OfferDue`` (nothing stored yet: pass it to
    ``announce`` or ``open_offer``), else None. A decision keeps its first verdict; only ``none`` (no reaction
    within the window) may be replaced by a late accepted/rejected.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"bad verdict {verdict!r} (use {', '.join(VERDICTS)})")
    with db.session() as s:
        d = s.get(AutonomyDecision, decision_id)
        if d is None:
            raise ValueError(f"unknown decision {decision_id}")
        if d.verdict is not None and not (d.verdict == "none" and verdict != "none"):
            return None
        d.verdict, d.judged_at = verdict, utcnow()
        if outcome_id is not None:
            d.outcome_id = outcome_id
        if verdict == "none":
            return None
        rule = policy.autonomy.rule(d.action, d.category or None)
        if rule is None:
            return None
        s.flush()
        level, after = _in_force(s, rule, d.user, d.action, d.category)
        if d.level != level or d.id <= after:
            return None  # judged late: made at another level than the one in force
        if verdict == "rejected" and level == "auto" and LEVELS.index(rule.max) >= LEVELS.index("suggest"):
            ev = _evidence(s, d.user, d.action, d.category, level, after, rule.window, only="rejected")
            if ev.rejected >= rule.demote_after:
                details = {**ev.as_dict(), "window": rule.window, "demote_after": rule.demote_after}
                change = _set(
                    s,
                    user=d.user,
                    action=d.action,
                    category=d.category,
                    from_level=level,
                    to_level="suggest",
                    kind="demotion",
                    actor="clawback",
                    evidence=details,
                )
                audit.append(
                    s,
                    actor="clawback",
                    on_behalf_of=d.user,
                    action="autonomy.demoted",
                    decision="info",
                    task_id=d.task_id,
                    target=_target(d.action, d.category),
                    details={**details, "from": level, "to": "suggest", "change_id": change.id, "by": actor},
                )
                return Demotion(change.id, d.user, d.action, d.category, level, "suggest", ev)
            return None
        return _offer_due(s, rule, d.user, d.action, d.category, level, after)


def _target(action: str, category: str) -> str:
    return f"{action}:{category}" if category else action


def _offer_due(
    s: Session, rule: AutonomyRule, user: str, action: str, category: str, level: str, after: int
) -> OfferDue | None:
    i = LEVELS.index(level)
    if i + 1 > LEVELS.index(rule.max):
        return None
    ev = _evidence(s, user, action, category, level, after, rule.promote_after)
    if ev.judged < rule.promote_after or ev.accepted < rule.promote_min_acceptance * ev.judged:
        return None
    last = s.execute(
        select(AutonomyOffer)
        .where(
            AutonomyOffer.user == user,
            AutonomyOffer.action == action,
            AutonomyOffer.category == category,
            AutonomyOffer.from_level == level,
            AutonomyOffer.status.in_(("pending", "declined")),
        )
        .order_by(AutonomyOffer.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    row = _row(s, user, action, category)
    if last is not None and row is not None and last.created_at < row.since:
        last = None  # asked before the level last changed: a new stretch at this level starts afresh
    if last is not None and last.status == "pending":
        return None
    if last is not None and ev.judged_total < last.judged + rule.promote_after:
        return None  # declined: asked again only after another promote_after judged decisions
    return OfferDue(user, action, category, level, LEVELS[i + 1], ev)


# -- offers ----------------------------------------------------------------------------------------------------


def open_offer(db: Database, policy: Policy, due: OfferDue, *, actor: str = "clawback") -> int | None:
    """Store the offer (audited with the decision and outcome ids behind it); None when one is already pending
    (a racing judge's offer included: the unique partial index on pending offers refuses a second one)."""
    try:
        return _open_offer(db, due, actor=actor)
    except IntegrityError:
        return None


def _open_offer(db: Database, due: OfferDue, *, actor: str) -> int | None:
    with db.session() as s:
        pending = s.execute(
            select(AutonomyOffer.id).where(
                AutonomyOffer.user == due.user,
                AutonomyOffer.action == due.action,
                AutonomyOffer.category == due.category,
                AutonomyOffer.status == "pending",
            )
        ).first()
        if pending is not None:
            return None
        offer = AutonomyOffer(
            user=due.user,
            action=due.action,
            category=due.category,
            from_level=due.from_level,
            to_level=due.to_level,
            status="pending",
            judged=due.evidence.judged_total,
            evidence=due.evidence.as_dict(),
        )
        s.add(offer)
        s.flush()
        audit.append(
            s,
            actor=actor,
            on_behalf_of=due.user,
            action="autonomy.offered",
            decision="info",
            target=_target(due.action, due.category),
            details={
                "offer_id": offer.id,
                "from": due.from_level,
                "to": due.to_level,
                **due.evidence.as_dict(),
            },
        )
        return offer.id


def _answer(
    db: Database, policy: Policy | None, offer_id: Any, *, actor: str, accept: bool
) -> tuple[str, AutonomyOffer | None]:
    verb = "accept" if accept else "decline"
    if not isinstance(offer_id, int | str) or not str(offer_id).isdigit() or len(str(offer_id)) > 12:
        return "malformed", None
    with db.session() as s:
        offer = s.get(AutonomyOffer, int(offer_id))
        if offer is None:
            return "unknown", None
        target = _target(offer.action, offer.category)
        if actor != offer.user:
            audit.append(
                s,
                actor=actor,
                on_behalf_of=offer.user,
                action=f"autonomy.offer.{verb}",
                decision="deny",
                target=target,
                details={"offer_id": offer.id, "reason": "only the person offered may answer"},
            )
            return "not yours", offer
        if offer.status != "pending":
            return f"already {offer.status}", offer
        offer.answered_at, offer.answered_by = utcnow(), actor
        if not accept:
            offer.status = "declined"
            audit.append(
                s,
                actor=actor,
                action="autonomy.offer.declined",
                decision="info",
                target=target,
                details={"offer_id": offer.id, "to": offer.to_level, **(offer.evidence or {})},
            )
            return "declined", offer
        assert policy is not None
        rule = policy.autonomy.rule(offer.action, offer.category or None)
        level = _in_force(s, rule, offer.user, offer.action, offer.category)[0] if rule else None
        if rule is None or level != offer.from_level or LEVELS.index(offer.to_level) > LEVELS.index(rule.max):
            offer.status = "expired"
            audit.append(
                s,
                actor=actor,
                action="autonomy.offer.accept",
                decision="deny",
                target=target,
                details={"offer_id": offer.id, "reason": "the level or its cap changed since the offer"},
            )
            return "expired", offer
        offer.status = "accepted"  # before _set, which expires what is still pending
        change = _set(
            s,
            user=offer.user,
            action=offer.action,
            category=offer.category,
            from_level=offer.from_level,
            to_level=offer.to_level,
            kind="promotion",
            actor=actor,
            evidence={"offer_id": offer.id, **(offer.evidence or {})},
        )
        audit.append(
            s,
            actor=actor,
            action="autonomy.promoted",
            decision="allow",
            target=target,
            details={
                "offer_id": offer.id,
                "change_id": change.id,
                "from": offer.from_level,
                "to": offer.to_level,
                **(offer.evidence or {}),
            },
        )
        return "accepted", offer


def accept_offer(db: Database, policy: Policy, offer_id: Any, *, actor: str) -> str:
    """The person's Yes: promote (never above ``max``, only if the level is still the one offered from).

    Returns accepted, not yours (audited refusal), expired, already <status>, unknown or malformed.
    """
    return _answer(db, policy, offer_id, actor=actor, accept=True)[0]


def decline_offer(db: Database, offer_id: Any, *, actor: str) -> str:
    """The person's "Not now": asked again only after another ``promote_after`` judged decisions (audited)."""
    return _answer(db, None, offer_id, actor=actor, accept=False)[0]


# -- administration --------------------------------------------------------------------------------------------


def set_level(
    db: Database,
    policy: Policy,
    *,
    user: str,
    action: str,
    category: str | None,
    level: str,
    actor: str,
    details: dict[str, Any] | None = None,
) -> int:
    """An admin sets the level (never above ``max``; audited); returns the history row's id."""
    if level not in LEVELS:
        raise ValueError(f"bad level {level!r} (use {', '.join(LEVELS)})")
    _check_category(action, category)
    rule = rule_for(policy, action, category)
    if rule is None:
        raise ValueError(f"{action} is not governed by the policy's [autonomy] section")
    if LEVELS.index(level) > LEVELS.index(rule.max):
        raise ValueError(
            f"{level} is above the policy's max ({rule.max}) for {_target(action, _cat(category))}"
        )
    cat = _cat(category)
    with db.session() as s:
        before = _in_force(s, rule, user, action, cat)[0]
        change = _set(
            s,
            user=user,
            action=action,
            category=cat,
            from_level=before,
            to_level=level,
            kind="admin",
            actor=actor,
            evidence=details or {},
        )
        audit.append(
            s,
            actor=actor,
            on_behalf_of=user,
            action="autonomy.set",
            decision="allow",
            scope="admin",
            target=_target(action, cat),
            details={"from": before, "to": level, "change_id": change.id, **(details or {})},
        )
        return change.id


# -- what people see -------------------------------------------------------------------------------------------


def _next_step(rule: AutonomyRule, level: str, ev: Evidence, pending: int | None) -> str:
    if pending is not None:
        return "an offer to go up is waiting for your answer in your DMs"
    parts = []
    i = LEVELS.index(level)
    if i < LEVELS.index(rule.max):
        need = max(0, rule.promote_after - ev.judged)
        if need:
            parts.append(f"{need} more judged to be offered {LEVELS[i + 1]}")
        else:
            parts.append(
                f"offered {LEVELS[i + 1]} at {rule.promote_min_acceptance:.0%} of the last {rule.promote_after}"
            )
    else:
        parts.append("at the cap your admin set")
    if level == "auto":
        parts.append(f"back to suggest at {rule.demote_after} corrections in the last {rule.window}")
    return "; ".join(parts)


def standings(db: Database, policy: Policy, user: str | None = None) -> list[Standing]:
    """Every (person, action, category) known for ``user`` (or everyone): the rule's actions and categories for a
    named person, plus every key with a stored level or a decision. Sorted by person, action, category."""
    auto = policy.autonomy
    keys: set[tuple[str, str, str]] = set()
    with db.read() as s:
        for model in (AutonomyLevel, AutonomyDecision):
            stmt = select(model.user, model.action, model.category).distinct()
            if user is not None:
                stmt = stmt.where(model.user == user)
            keys |= {tuple(r) for r in s.execute(stmt).all()}
        if user is not None:
            keys |= {(user, a, "") for a in auto.actions if policy.has_scope(user, SCOPE_OF[a])}
            keys |= {(user, a, c) for a, c in auto.categories if policy.has_scope(user, SCOPE_OF[a])}
        out = []
        for u, action, cat in sorted(keys):
            rule = auto.rule(action, cat or None)
            if rule is None:
                continue
            row = _row(s, u, action, cat)
            level, after = (_cap(row.level, rule), row.since_decision) if row else (rule.start, 0)
            ev = _evidence(s, u, action, cat, level, after, rule.promote_after)
            pending = s.execute(
                select(AutonomyOffer.id).where(
                    AutonomyOffer.user == u,
                    AutonomyOffer.action == action,
                    AutonomyOffer.category == cat,
                    AutonomyOffer.status == "pending",
                )
            ).scalar_one_or_none()
            out.append(
                Standing(
                    u,
                    action,
                    cat,
                    level,
                    rule.max,
                    ev.accepted,
                    ev.judged,
                    _next_step(rule, level, ev, pending),
                    row.since if row else None,
                    pending,
                )
            )
    return out


def build_standing_lines(rows: list[Standing]) -> list[str]:
    """Short mrkdwn lines (``/usage``): ``• mail.move (newsletter): suggest, 12/13 accepted``."""
    return [
        f"• {_target(r.action, r.category).replace(':', ' (') + (')' if r.category else '')}: *{r.level}*, "
        f"{r.accepted}/{r.judged} accepted"
        for r in rows
    ]


def offer_text(offer: AutonomyOffer) -> str:
    """The DM text of an offer, with its evidence."""
    ev = offer.evidence or {}
    what = f"{offer.category.replace('_', ' ')} mail" if offer.category else "your mail"
    if offer.to_level == "auto":
        doing = _DOING.get(offer.action, offer.action).format(what=what)
        question = f"{doing} from now on, without asking first?"
    else:
        question = (
            f"show you its {NOUNS.get(offer.action, offer.action)} so you can apply them with one click?"
        )
    return f"Clawback was {ev.get('text', 'right on your recent decisions')}: {question}"


def demotion_text(change: AutonomyChange, items: list[str]) -> str:
    """The notice of a demotion: why, and the corrected items."""
    ev = change.evidence or {}
    noun = NOUNS.get(change.action, change.action)
    what = f"{change.category.replace('_', ' ')} {noun}" if change.category else noun
    lines = [
        f"Clawback went back from *{change.from_level}* to *{change.to_level}* for your {what}: you corrected "
        f"{ev.get('rejected', '?')} of the last {ev.get('judged', '?')} it made on its own "
        f"(the rule is {ev.get('demote_after', '?')} in {ev.get('window', '?')}). "
        + _AGAIN.get(change.action, "It will propose and wait for your Apply again."),
    ]
    if items:
        lines.append("Corrected:")
        lines.extend(f"• {item}" for item in items)
    return "\n".join(lines)


def announce(db: Database, policy: Policy, queue: Any, change: Change | None) -> str:
    """After ``judge``: open the offer and enqueue its DM, or enqueue the demotion notice (``queue``: a
    ``bot.queue.TaskQueue``). Returns offered, already pending, told, nothing or queue unavailable."""
    from bot.queue import INTERACTIVE

    if change is None:
        return "nothing"
    if isinstance(change, OfferDue):
        offer_id = open_offer(db, policy, change)
        if offer_id is None:
            return "already pending"
        job, args, result = SEND_OFFER, (offer_id,), "offered"
    else:
        job, args, result = TELL_DEMOTION, (change.change_id,), "told"
    try:
        queue.queues[INTERACTIVE].enqueue(job, *args, job_timeout=60, result_ttl=60, failure_ttl=86400)
    except Exception:  # the change is recorded; the DM is best effort (a pending offer shows in App Home)
        log.warning("autonomy %s for %s recorded but its message was not enqueued", result, change.user)
        return "queue unavailable"
    return result
