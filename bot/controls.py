"""Kill switch: pause side effects for everyone, one user, or one intent — queued jobs included."""

from __future__ import annotations

from sqlalchemy import or_, select, update

from bot import audit
from bot.db import Database, Pause


def active_pause(db: Database, *, user: str | None, intent: str | None) -> Pause | None:
    """The pause that applies to (user, intent), if any."""
    with db.read() as s:
        return s.execute(
            select(Pause)
            .where(Pause.active.is_(True))
            .where(or_(Pause.user.is_(None), Pause.user == user))
            .where(or_(Pause.intent.is_(None), Pause.intent == intent))
            .limit(1)
        ).scalar_one_or_none()


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
