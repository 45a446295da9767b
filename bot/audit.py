"""Append-only, hash-chained audit log with signed checkpoints.

Each entry's ``hash`` is SHA-256 over a canonical JSON encoding of the entry including ``prev_hash``.
The log is one chain by default, or several (``set_chains``): each chain has its own ``audit_head`` row, an
append locks the row of its chain (chosen by task id, else actor; ``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
transactions begin IMMEDIATE), so concurrent writers keep every chain linear without all queueing on one row.
A task's entries stay in one chain, in order. Checkpoints sign (seq, hash) of the head — with several chains,
every chain's head at once — with a key the workers do not hold, so truncating or rewriting entries a
checkpoint vouches for is detected in any chain; ``verify`` refuses to say "intact" without a checkpoint it can
check, and counts the newest entries that no checkpoint covers yet (the window a database writer still has).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import weakref
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Engine
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
    """Hash of an entry's fields chained to ``prev_hash``; the chain number is hashed too, except chain 1's (so
    a single-chain log hashes exactly as before chains existed, and no entry can move between chains)."""
    body = {k: fields.get(k) for k in _FIELDS}
    body["prev_hash"] = prev_hash
    if (fields.get("chain") or 1) != 1:
        body["chain"] = fields["chain"]
    return hashlib.sha256(canonical(body).encode()).hexdigest()


_HEAD = AuditHead.__table__
_LOG = AuditEntry.__table__
_INSERT = _LOG.insert()
# SQLite's writer already holds the database lock (BEGIN IMMEDIATE); elsewhere the head row is locked.
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.hash, _HEAD.c.next_seq, _HEAD.c.step).where(
    _HEAD.c.id == bindparam("chain_id")
)
_LOCK_HEAD = _READ_HEAD.with_for_update()
_ADVANCE = (
    _HEAD.update()
    .where(_HEAD.c.id == bindparam("chain_id"))
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"), next_seq=bindparam("new_next"))
)
_chain_counts: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def chain_of(session: Session, key: str) -> int:
    """The chain an entry keyed ``key`` (task id, else actor) goes to: 1..number of head rows.

    The count is read once per engine: adding chains (``set_chains``) takes effect as processes restart; until
    then they keep using the chains they knew, which stays correct.
    """
    engine = session.get_bind().engine
    n = _chain_counts.get(engine)
    if n is None:
        n = session.execute(select(func.count()).select_from(_HEAD)).scalar_one() or 1
        _chain_counts[engine] = n
    return 1 if n == 1 else zlib.crc32(key.encode()) % n + 1


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
    # One transaction appends to one chain only (the first it locked): two transactions can never wait on
    # each other's chains in opposite orders.
    txn = session.get_transaction()
    held = session.info.get("audit_chain")
    chain = held[1] if held is not None and held[0] is txn else chain_of(session, task_id or actor)
    session.info["audit_chain"] = (txn, chain)
    stmt = _READ_HEAD if session.get_bind().dialect.name == "sqlite" else _LOCK_HEAD
    last, prev, next_seq, step = session.execute(stmt, {"chain_id": chain}).one()
    seq = next_seq if next_seq is not None else last + 1
    fields = {
        "seq": seq,
        "ts": utcnow().isoformat(timespec="microseconds"),
        "actor": actor,
        "on_behalf_of": on_behalf_of,
        "action": action,
        "target": target,
        "scope": scope,
        "decision": decision,
        "task_id": task_id,
        "details": canonical(details or {}),
        "chain": chain,
    }
    digest = entry_hash(fields, prev)
    row = {**fields, "prev_hash": prev, "hash": digest}
    session.execute(_INSERT, row)  # one cached statement, parameters apart: cheap on the ack path
    session.execute(
        _ADVANCE, {"chain_id": chain, "new_seq": seq, "new_hash": digest, "new_next": seq + (step or 1)}
    )
    return row


def set_chains(db: Database, chains: int) -> int:
    """Run the log as ``chains`` chains from now on (only ever more); returns the number before.

    Locks every head, then gives chain ``c`` the next sequence number ``M + c`` and a step of ``chains``, where
    ``M`` is the highest number handed out so far: numbers stay unique across chains, each chain stays linked.
    Processes pick the new count up as they restart (``chain_of``).
    """
    if not 1 <= chains <= 256:
        raise ValueError("chains must be between 1 and 256")
    with db.session() as s:
        stmt = select(AuditHead).order_by(AuditHead.id)
        if not db.is_sqlite:
            stmt = stmt.with_for_update()
        heads = list(s.execute(stmt).scalars())
        before = len(heads)
        if chains < before:
            raise ValueError(f"the log already runs as {before} chains; chains can be added, never removed")
        top = s.execute(select(func.max(AuditEntry.seq))).scalar() or 0
        top = max([top] + [h.seq for h in heads] + [(h.next_seq or 0) - 1 for h in heads])
        by_id = {h.id: h for h in heads}
        for c in range(1, chains + 1):
            head = by_id.get(c)
            if head is None:
                head = AuditHead(id=c, seq=0, hash=GENESIS)
                s.add(head)
            head.next_seq, head.step = top + c, chains
    _chain_counts.clear()
    return before


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


def heads_digest(heads: list[list[Any]]) -> str:
    """What a several-chain checkpoint signs in place of one head's hash: SHA-256 of every [chain, seq, hash]."""
    return hashlib.sha256(canonical(heads).encode()).hexdigest()


def _cp_heads(cp: AuditCheckpoint) -> list[tuple[int, int, str]]:
    """The chain heads a checkpoint vouches for (a single-chain checkpoint: chain 1 at its seq)."""
    if not cp.heads:
        return [(1, cp.seq, cp.hash)]
    return [(int(c), int(q), str(h)) for c, q, h in json.loads(cp.heads)]


def checkpoint(db: Database, key: str, *, copy_to: Path | None = None) -> AuditCheckpoint | None:
    """Sign the current head (every chain's head, when there are several); returns None when the log is empty.

    ``copy_to`` appends the checkpoint as a JSON line to a file kept apart from the database (another disk,
    a log shipper), so deleting the newest entries *and* their checkpoints from the database is still caught.
    """
    if not key:
        raise ValueError("a checkpoint needs CLAWBACK_AUDIT_KEY")
    with db.session() as s:
        rows = list(s.execute(select(AuditHead).order_by(AuditHead.id)).scalars())
        if not rows or all(h.hash == GENESIS for h in rows):
            return None
        if len(rows) == 1:
            seq, digest, heads = rows[0].seq, rows[0].hash, None
        else:
            listed = [[h.id, h.seq, h.hash] for h in rows]
            seq, digest, heads = max(h.seq for h in rows), heads_digest(listed), canonical(listed)
        signed_at = utcnow().isoformat(timespec="seconds")
        cp = AuditCheckpoint(
            seq=seq,
            hash=digest,
            signed_at=signed_at,
            key_id=key_id(key),
            signature=_sign(key, seq, digest, signed_at),
            heads=heads,
        )
        s.add(cp)
    if copy_to is not None:
        doc = {"seq": cp.seq, "hash": cp.hash, "signed_at": cp.signed_at, "key_id": cp.key_id}
        doc["signature"] = cp.signature
        if heads is not None:
            doc["heads"] = json.loads(heads)
        with open(copy_to, "a", encoding="utf-8") as f:
            f.write(canonical(doc) + "\n")
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
                    heads=canonical(d["heads"]) if d.get("heads") is not None else None,
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
    """Recompute every chain and check the checkpoints (database and file copy); names the first bad seq.

    ``progress(entries checked, entries the heads announce)`` is called every 1,000 entries (CLI progress bar).

    Not ok (with the reason) when: a chain or its head is broken; no checkpoint vouches for the log; the
    signatures cannot be checked (no ``key``) or one is bad; a checkpoint vouches for entries that are gone or
    differ, in any chain; the file copy (when configured) is missing or disagrees with the database; or the
    newest checkpoint is older than ``max_age`` (the auditor's cadence allows; None or zero: not checked).
    """
    count = 0
    with db.session() as s:
        db_cps = list(s.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).scalars())
        heads = {h.id: (h.seq, h.hash) for h in s.execute(select(AuditHead)).scalars()}
    single = len(heads) <= 1
    file_cps = _file_checkpoints(checkpoints_file)
    seen = {(c.seq, c.hash, c.signature) for c in db_cps}
    cps = db_cps + [c for c in file_cps if (c.seq, c.hash, c.signature) not in seen]
    cps.sort(key=lambda c: c.seq)
    try:
        vouched = {id(cp): _cp_heads(cp) for cp in cps}
    except (ValueError, TypeError):
        return VerifyResult(False, 0, len(cps), None, "a checkpoint's list of chain heads cannot be read")
    wanted = {q for listed in vouched.values() for _, q, h in listed if h != GENESIS}
    covered: dict[int, int] = {}
    for listed in vouched.values():
        for c, q, _ in listed:
            covered[c] = max(covered.get(c, 0), q)
    announced = sum(q for q, _ in heads.values()) if single else 0
    tails: dict[int, tuple[int, str]] = {}  # chain -> (last seq, last hash)
    hashes: dict[int, tuple[int, str]] = {}  # seq -> (chain, hash), for the entries checkpoints name
    uncovered = 0

    def bad(seq: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, count, len(cps), seq, reason)

    for e in _iter_entries(db):
        chain = e.chain or 1
        last_seq, prev = tails.get(chain, (0, GENESIS))
        if single and e.seq != last_seq + 1:
            return bad(last_seq + 1, f"entry {last_seq + 1} is missing")
        if chain not in heads and heads:
            return bad(e.seq, f"entry {e.seq} is in chain {chain}, which has no head")
        fields = {k: getattr(e, k) for k in _FIELDS}
        fields["chain"] = chain
        if e.prev_hash != prev:
            what = (
                "the previous entry"
                if single
                else f"the previous entry of chain {chain} (one is missing or moved)"
            )
            return bad(e.seq, f"prev_hash does not match {what}")
        if entry_hash(fields, e.prev_hash) != e.hash:
            return bad(e.seq, "hash does not match the entry's content")
        if e.seq in wanted:
            hashes[e.seq] = (chain, e.hash)
        if e.seq > covered.get(chain, 0):
            uncovered += 1
        tails[chain] = (e.seq, e.hash)
        count += 1
        if progress is not None and count % 1000 == 0:
            progress(count, max(announced, count))
    for c, (head_seq, head_hash) in sorted(heads.items()):
        last_seq, last_hash = tails.get(c, (0, GENESIS))
        if head_hash != last_hash or head_seq != last_seq:
            where = "" if single else f" of chain {c}"
            return bad(min(head_seq, last_seq) + 1, f"log tail{where} does not match the head")
    if not heads and tails:
        return bad(None, "the log has entries but no chain head")
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
        listed = vouched[id(cp)]
        if cp.heads and heads_digest([list(x) for x in listed]) != cp.hash:
            return bad(cp.seq, f"checkpoint at {cp.seq}: its chain heads differ from what was signed")
        for c, q, h in listed:
            if h == GENESIS:
                continue  # that chain was empty when signed
            last_seq = tails.get(c, (0, GENESIS))[0]
            where = "" if single else f" of chain {c}"
            if q > last_seq:
                return bad(last_seq + 1, f"log{where} truncated: checkpoint vouches for entry {q}")
            if hashes.get(q) != (c, h):
                return bad(q, f"entry {q} differs from its signed checkpoint")
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
            "chain": e.chain or 1,
        }


def count(db: Database) -> int:
    """Number of entries."""
    with db.session() as s:
        return s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
