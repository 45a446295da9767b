"""Append-only, hash-chained audit log with signed checkpoints.

Each entry's ``hash`` is SHA-256 over a canonical JSON encoding of the entry including ``prev_hash``.
Appends lock the single ``audit_head`` row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions
begin IMMEDIATE), so concurrent writers in many processes keep one linear chain. Checkpoints sign
(seq, hash) with a key the workers do not hold, so truncating or rewriting entries a checkpoint vouches for is
detected; ``verify`` refuses to say "intact" without a checkpoint it can check, and counts the newest entries
that no checkpoint covers yet (the window a database writer still has).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db import AuditCheckpoint, AuditEntry, AuditHead, Database, utcnow

GENESIS = "0" * 64
_FIELDS = (
    "seq",
    "ts",
    "actor",
    "on_behalf_of",
    "action",
    "target",
    "scope",
    "decision",
    "task_id",
    "details",
)


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(fields: dict[str, Any], prev_hash: str) -> str:
    """Hash of an entry's fields chained to ``prev_hash``."""
    body = {k: fields.get(k) for k in _FIELDS}
    body["prev_hash"] = prev_hash
    return hashlib.sha256(canonical(body).encode()).hexdigest()


# Built once (building a statement costs more than running it on SQLite); append runs on every ack.
_HEAD = select(AuditHead.__table__.c.seq, AuditHead.__table__.c.hash).where(AuditHead.__table__.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_INSERT_ENTRY = AuditEntry.__table__.insert()
_MOVE_HEAD = AuditHead.__table__.update().where(AuditHead.__table__.c.id == 1)


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    decision: str = "allow",
    task_id: str | None = None,
    on_behalf_of: str | None = None,
    target: str | None = None,
    scope: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one entry inside the caller's transaction (commit it with the decision it records).

    Plain SQL statements (no ORM unit of work): this runs on the ack path of every Slack request.
    Returns the entry's fields, ``hash`` and ``prev_hash`` included.
    """
    if decision not in ("allow", "deny", "info"):
        raise ValueError(f"bad audit decision {decision!r}")
    stmt = _HEAD if session.get_bind().dialect.name == "sqlite" else _HEAD_LOCKED
    seq, prev = session.execute(stmt).one()
    fields = {
        "seq": seq + 1,
        "ts": utcnow().isoformat(timespec="microseconds"),
        "actor": actor,
        "on_behalf_of": on_behalf_of,
        "action": action,
        "target": target,
        "scope": scope,
        "decision": decision,
        "task_id": task_id,
        "details": canonical(details or {}),
    }
    digest = entry_hash(fields, prev)
    row = {**fields, "prev_hash": prev, "hash": digest}
    session.execute(_INSERT_ENTRY, row)
    session.execute(_MOVE_HEAD, {"seq": fields["seq"], "hash": digest})
    return row


def record(db: Database, **kwargs: Any) -> dict[str, Any]:
    """Append one entry in its own transaction."""
    with db.session() as s:
        return append(s, **kwargs)


# -- checkpoints -------------------------------------------------------------------------------------
def _sign(key: str, seq: int, digest: str, signed_at: str) -> str:
    return hmac.new(key.encode(), f"{seq}:{digest}:{signed_at}".encode(), hashlib.sha256).hexdigest()


def key_id(key: str) -> str:
    """A short public identifier of a signing key (never the key)."""
    return hashlib.sha256(b"clawback-audit-key:" + key.encode()).hexdigest()[:12]


def checkpoint(db: Database, key: str, *, copy_to: Path | None = None) -> AuditCheckpoint | None:
    """Sign the current head; returns None when the log is empty.

    ``copy_to`` appends the checkpoint as a JSON line to a file kept apart from the database (another disk,
    a log shipper), so deleting the newest entries *and* their checkpoints from the database is still caught.
    """
    if not key:
        raise ValueError("a checkpoint needs CLAWBACK_AUDIT_KEY")
    with db.session() as s:
        head = s.get(AuditHead, 1)
        if head is None or head.seq == 0:
            return None
        signed_at = utcnow().isoformat(timespec="seconds")
        cp = AuditCheckpoint(
            seq=head.seq,
            hash=head.hash,
            signed_at=signed_at,
            key_id=key_id(key),
            signature=_sign(key, head.seq, head.hash, signed_at),
        )
        s.add(cp)
    if copy_to is not None:
        line = canonical(
            {
                "seq": cp.seq,
                "hash": cp.hash,
                "signed_at": cp.signed_at,
                "key_id": cp.key_id,
                "signature": cp.signature,
            }
        )
        with open(copy_to, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    return cp


def _file_checkpoints(path: Path | None) -> list[AuditCheckpoint]:
    """Checkpoints from the copy kept apart (unreadable lines are ignored: the signatures decide)."""
    if path is None or not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
            out.append(
                AuditCheckpoint(
                    seq=int(d["seq"]),
                    hash=str(d["hash"]),
                    signed_at=str(d["signed_at"]),
                    key_id=str(d["key_id"]),
                    signature=str(d["signature"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


# -- verification ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ok, or why not (and the first bad sequence number when there is one).

    ``uncovered`` counts the entries after the newest checkpoint: nothing vouches for them yet, so a database
    writer could still truncate or rewrite them unnoticed until the auditor signs again.
    """

    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None = None
    reason: str | None = None
    uncovered: int = 0
    newest_checkpoint_at: str | None = None


def _iter_entries(db: Database, batch: int = 5000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        with db.session() as s:
            rows = s.execute(
                select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
            )
            chunk = list(rows.scalars())
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].seq


def _signed_at(cp: AuditCheckpoint) -> datetime | None:
    try:
        at = datetime.fromisoformat(cp.signed_at)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def verify(
    db: Database,
    key: str | None = None,
    *,
    checkpoints_file: Path | None = None,
    max_age: timedelta | None = None,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyResult:
    """Recompute the chain and check the checkpoints (database and file copy); names the first bad seq.

    ``progress(entries checked, entries the head announces)`` is called every 1,000 entries (CLI progress bar).

    Not ok (with the reason) when: the chain or the head is broken; no checkpoint vouches for the log; the
    signatures cannot be checked (no ``key``) or one is bad; a checkpoint vouches for entries that are gone or
    differ; the file copy (when configured) is missing or disagrees with the database; or the newest
    checkpoint is older than ``max_age`` (the auditor's cadence allows; None or zero: not checked).
    """
    expected_seq, prev, count = 1, GENESIS, 0
    hashes: dict[int, str] = {}
    with db.session() as s:
        db_cps = list(s.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).scalars())
        head = s.get(AuditHead, 1)
    file_cps = _file_checkpoints(checkpoints_file)
    seen = {(c.seq, c.hash, c.signature) for c in db_cps}
    cps = db_cps + [c for c in file_cps if (c.seq, c.hash, c.signature) not in seen]
    cps.sort(key=lambda c: c.seq)
    wanted = {cp.seq for cp in cps}

    def bad(seq: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, count, len(cps), seq, reason)

    for e in _iter_entries(db):
        if e.seq != expected_seq:
            return bad(expected_seq, f"entry {expected_seq} is missing")
        fields = {k: getattr(e, k) for k in _FIELDS}
        if e.prev_hash != prev:
            return bad(e.seq, "prev_hash does not match the previous entry")
        if entry_hash(fields, e.prev_hash) != e.hash:
            return bad(e.seq, "hash does not match the entry's content")
        if e.seq in wanted:
            hashes[e.seq] = e.hash
        prev, expected_seq, count = e.hash, expected_seq + 1, count + 1
        if progress is not None and count % 1000 == 0:
            progress(count, max(head.seq if head is not None else 0, count))
    last_seq = expected_seq - 1
    if head is not None and (head.seq != last_seq or (last_seq and head.hash != prev)):
        return bad(min(head.seq, last_seq) + 1, "log tail does not match the head")
    if checkpoints_file is not None and not Path(checkpoints_file).exists():
        return bad(None, f"the checkpoint file {checkpoints_file} does not exist")
    if not cps:
        return bad(
            None,
            "no signed checkpoint vouches for the log (checkpoints deleted, or the auditor never ran "
            "`clawback audit checkpoint`)",
        )
    if not key:
        return bad(
            None,
            f"cannot check the signatures of {len(cps)} checkpoint(s): CLAWBACK_AUDIT_KEY is not set "
            "(verify needs the auditor's key)",
        )
    for cp in cps:
        if not hmac.compare_digest(cp.signature, _sign(key, cp.seq, cp.hash, cp.signed_at)):
            return bad(cp.seq, f"checkpoint at {cp.seq} has a bad signature")
        if cp.seq > last_seq:
            return bad(last_seq + 1, f"log truncated: checkpoint vouches for {cp.seq} entries")
        if hashes.get(cp.seq) != cp.hash:
            return bad(cp.seq, f"entry {cp.seq} differs from its signed checkpoint")
    if checkpoints_file is not None:
        in_db = {(c.seq, c.hash, c.signature) for c in db_cps}
        in_file = {(c.seq, c.hash, c.signature) for c in file_cps}
        lost = sorted(c.seq for c in file_cps if (c.seq, c.hash, c.signature) not in in_db)
        if lost:
            return bad(lost[0], f"checkpoint at {lost[0]} is in the checkpoint file but not in the database")
        newest_db = max(db_cps, key=lambda c: (c.seq, c.signed_at))
        if (newest_db.seq, newest_db.hash, newest_db.signature) not in in_file:
            return bad(
                newest_db.seq,
                f"the newest checkpoint (at {newest_db.seq}) is not in the checkpoint file {checkpoints_file}",
            )
    newest = max(cps, key=lambda c: c.signed_at)
    uncovered = last_seq - max(c.seq for c in cps)
    if max_age is not None and max_age.total_seconds() > 0:
        at = _signed_at(newest)
        now = now or utcnow()
        if at is None or now - at > max_age:
            return VerifyResult(
                False,
                count,
                len(cps),
                None,
                f"the newest checkpoint ({newest.signed_at}) is older than the allowed "
                f"{max_age.total_seconds():g} s: the auditor is not signing, or newer checkpoints were "
                f"deleted; {uncovered} entries are not covered by a checkpoint",
                uncovered,
                newest.signed_at,
            )
    return VerifyResult(True, count, len(cps), uncovered=uncovered, newest_checkpoint_at=newest.signed_at)


def export(db: Database, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Entries as dicts (oldest first), optionally only those at or after ``since``."""
    cutoff = since.isoformat(timespec="microseconds") if since else None
    for e in _iter_entries(db):
        if cutoff and e.ts < cutoff:
            continue
        yield {
            "seq": e.seq,
            "ts": e.ts,
            "actor": e.actor,
            "on_behalf_of": e.on_behalf_of,
            "action": e.action,
            "target": e.target,
            "scope": e.scope,
            "decision": e.decision,
            "task_id": e.task_id,
            "details": json.loads(e.details),
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }


def count(db: Database) -> int:
    """Number of entries."""
    with db.session() as s:
        return s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
