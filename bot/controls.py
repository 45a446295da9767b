"""Kill switch: pause side effects for everyone, one user, or one intent — queued jobs included.

A pause of a surface's first intent covers the follow-up intents its clicks create: ``triage`` covers every
``mail_*`` intent (Apply, Undo move, Confirm send, relabel, digest), ``deploy`` every ``deploy_*`` intent. A pause
of a follow-up intent covers only that one."""

from __future__ import annotations

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from bot import audit
from bot.db import Database, Pause

_p = Pause.__table__
_PAUSED = (  # built once: the worker checks it before each side effect
    select(_p.c.id)
    .where(_p.c.active.is_(True))
    .where(or_(_p.c.user.is_(None), _p.c.user == bindparam("user_")))
    .where(
        or_(_p.c.intent.is_(None), _p.c.intent == bindparam("intent_"), _p.c.intent == bindparam("family_"))
    )
    .limit(1)
)

# Follow-up intents (by prefix) → the intent whose pause also covers them.
FAMILIES = {"mail_": "triage", "deploy_": "deploy"}


def family_of(intent: str | None) -> str | None:
    """The intent whose pause also covers ``intent`` (None when only its own pause does)."""
    for prefix, family in FAMILIES.items():
        if intent and intent.startswith(prefix):
            return family
    return None


def active_pause(db: Database, *, user: str | None, intent: str | None) -> Pause | None:
    """The pause that applies to (user, intent), if any."""
    with db.read() as s:
        return s.execute(
            select(Pause)
            .where(Pause.active.is_(True))
            .where(or_(Pause.user.is_(None), Pause.user == user))
            .where(or_(Pause.intent.is_(None), Pause.intent == intent, Pause.intent == family_of(intent)))
            .limit(1)
        ).scalar_one_or_none()


def is_paused(session: Session, *, user: str | None, intent: str | None) -> bool:
    """``active_pause`` inside the caller's transaction, as one plain SELECT (the worker's hot path)."""
    return (
        session.execute(_PAUSED, {"user_": user, "intent_": intent, "family_": family_of(intent)}).first()
        is not None
    )


def pause(
    db: Database, *, by: str, user: str | None = None, intent: str | None = None, reason: str | None = None
) -> Pause:
    """Start a pause (audited)."""
    with db.session() as s:
        row = Pause(user=user, intent=intent, reason=reason, created_by=by)
        s.add(row)
        audit.append(
            s,
            actor=by,
            action="control.pause",
            target=f"user={user or '*'} intent={intent or '*'}",
            scope="admin",
            details={"reason": reason},
        )
    return row


def resume(db: Database, *, by: str, user: str | None = None, intent: str | None = None) -> int:
    """End matching pauses (all when no filter is given); returns how many (audited)."""
    with db.session() as s:
        stmt = update(Pause).where(Pause.active.is_(True))
        if user is not None:
            stmt = stmt.where(Pause.user == user)
        if intent is not None:
            stmt = stmt.where(Pause.intent == intent)
        n = s.execute(stmt.values(active=False)).rowcount
        audit.append(
            s,
            actor=by,
            action="control.resume",
            target=f"user={user or '*'} intent={intent or '*'}",
            scope="admin",
            details={"ended": n},
        )
    return n
