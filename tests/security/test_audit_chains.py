"""The audit log as several hash chains: each chain verifies on its own, and a checkpoint vouches for every
chain's head, so tampering in any one chain (edit, deletion, move, truncation) is still found."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import select, text

from bot import audit
from bot.db import AuditCheckpoint, AuditEntry, Database

KEY = "test-audit-key"


def _fill(db: Database, n: int, prefix: str = "t") -> None:
    for i in range(n):
        audit.record(db, actor=f"U{i % 3}", action="test.action", task_id=f"{prefix}{i}", details={"i": i})


def _entries(db: Database) -> list[AuditEntry]:
    with db.session() as s:
        return list(s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())


def _chained(db: Database, chains: int = 4, before: int = 5, after: int = 40) -> list[AuditEntry]:
    """A log that was one chain for ``before`` entries, then ``chains`` chains for ``after`` more."""
    _fill(db, before, "old")
    assert audit.set_chains(db, chains) == 1
    _fill(db, after)
    return _entries(db)


def test_several_chains_verify_and_keep_each_task_in_one_chain(db):
    """Entries spread over the chains, seqs stay unique, a task's entries share a chain, verify passes."""
    rows = _chained(db)
    used = Counter(e.chain for e in rows)
    assert len(used) == 4 and len(rows) == 45
    for i in range(5):
        audit.record(db, actor="W", action="second", task_id="t7", details={"i": i})
    in_t7 = {e.chain for e in _entries(db) if e.task_id == "t7"}
    assert len(in_t7) == 1
    audit.checkpoint(db, KEY)
    result = audit.verify(db, key=KEY)
    assert result.ok and result.entries == 50 and result.uncovered == 0, result.reason


def _pick(rows: list[AuditEntry], chain: int, index: int) -> AuditEntry:
    return [e for e in rows if e.chain == chain][index]


def test_edit_in_one_chain_is_found(db):
    """Changing an entry of chain 3 (with its own hash recomputed) breaks chain 3 at the next entry."""
    rows = _chained(db)
    audit.checkpoint(db, KEY)
    victim, after = _pick(rows, 3, 2), _pick(rows, 3, 3)
    fields = {k: getattr(victim, k) for k in audit._FIELDS} | {"actor": "mallory", "chain": 3}
    forged = audit.entry_hash(fields, victim.prev_hash)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = :s"),
            {"h": forged, "s": victim.seq},
        )
    result = audit.verify(db, key=KEY)
    assert not result.ok and result.first_bad_seq == after.seq and "chain 3" in result.reason


def test_deletion_in_one_chain_is_found(db):
    """Deleting a middle entry of chain 2 is found at the entry after it."""
    rows = _chained(db)
    audit.checkpoint(db, KEY)
    victim, after = _pick(rows, 2, 1), _pick(rows, 2, 2)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": victim.seq})
    result = audit.verify(db, key=KEY)
    assert not result.ok and result.first_bad_seq == after.seq


def test_moving_an_entry_to_another_chain_is_found(db):
    """An entry's chain is part of its hash: relabelling it breaks verification."""
    rows = _chained(db)
    audit.checkpoint(db, KEY)
    victim = _pick(rows, 4, -1)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET chain = 2 WHERE seq = :s"), {"s": victim.seq})
    assert not audit.verify(db, key=KEY).ok


def _truncate_chain(db: Database, chain: int, keep: int) -> AuditEntry:
    """Delete chain ``chain`` after its ``keep``-th entry and point its head at the entry kept (no key used)."""
    kept = [e for e in _entries(db) if e.chain == chain][keep - 1]
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE chain = :c AND seq > :s"), {"c": chain, "s": kept.seq})
        conn.execute(
            text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = :c"),
            {"s": kept.seq, "h": kept.hash, "c": chain},
        )
    return kept


@pytest.mark.parametrize("chain", [1, 2, 3, 4])
def test_a_checkpoint_covers_every_chain_head(db, chain):
    """Truncating any one chain behind a checkpoint is found, whichever chain it is."""
    _chained(db)
    cp = audit.checkpoint(db, KEY)
    assert cp is not None and cp.heads is not None
    assert sorted(c for c, _, _ in audit._cp_heads(cp)) == [1, 2, 3, 4]
    _truncate_chain(db, chain, 1)
    result = audit.verify(db, key=KEY)
    assert not result.ok and f"chain {chain} truncated" in result.reason


def test_rewriting_a_checkpoints_heads_breaks_its_signature(db):
    """Editing the heads a checkpoint lists (to match a truncated chain) does not match what was signed."""
    _chained(db)
    audit.checkpoint(db, KEY)
    kept = _truncate_chain(db, 2, 1)
    with db.session() as s:
        cp = s.execute(select(AuditCheckpoint)).scalar_one()
        heads = [[c, kept.seq, kept.hash] if c == 2 else [c, q, h] for c, q, h in audit._cp_heads(cp)]
        cp.heads = audit.canonical(heads)
    result = audit.verify(db, key=KEY)
    assert not result.ok and "differ from what was signed" in result.reason


def test_deleting_a_chain_and_its_head_is_found(db):
    """Removing a whole chain (its entries and its head row) behind a checkpoint is found."""
    _chained(db)
    audit.checkpoint(db, KEY)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE chain = 4"))
        conn.execute(text("DELETE FROM audit_head WHERE id = 4"))
    result = audit.verify(db, key=KEY)
    assert not result.ok and "chain 4 truncated" in result.reason


def test_uncovered_counts_every_chain(db):
    """Entries written after the newest checkpoint are counted, in whichever chain they are."""
    _chained(db)
    audit.checkpoint(db, KEY)
    _fill(db, 12, "late")
    result = audit.verify(db, key=KEY)
    assert result.ok and result.uncovered == 12


def test_chains_are_only_ever_added(db):
    """Going back to fewer chains would strand entries: refused."""
    audit.set_chains(db, 4)
    with pytest.raises(ValueError, match="never removed"):
        audit.set_chains(db, 2)
    audit.set_chains(db, 8)
    _fill(db, 30)
    audit.checkpoint(db, KEY)
    assert audit.verify(db, key=KEY).ok


def test_checkpoint_file_copy_keeps_the_heads(db, tmp_path):
    """The file copy of a several-chain checkpoint carries its heads; deleting it from the database is caught."""
    _chained(db)
    copy = tmp_path / "cps.jsonl"
    audit.checkpoint(db, KEY, copy_to=copy)
    assert audit.verify(db, key=KEY, checkpoints_file=copy).ok
    _truncate_chain(db, 1, 3)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))
    result = audit.verify(db, key=KEY, checkpoints_file=copy)
    assert not result.ok


def _append_many(url: str, worker: int, n: int) -> None:
    db = Database(url)
    for i in range(n):
        audit.record(db, actor=f"W{worker}", action="concurrent", task_id=f"w{worker}-{i}", details={"i": i})
    db.dispose()


def test_concurrent_appends_keep_every_chain_linear(db):
    """Four processes appending 40 entries each over four chains leave four valid chains, 160 entries."""
    audit.set_chains(db, 4)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(db.url, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    audit.checkpoint(db, KEY)
    result = audit.verify(db, key=KEY)
    assert result.ok and result.entries == 160, result.reason


def test_cli_sets_chains(db, tmp_path):
    """`clawback audit chains 4` adds chains; asking for fewer fails with exit 1."""
    env = {**os.environ, "DATABASE_URL": db.url, "CLAWBACK_HOME": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bot.ops.cli", "audit", "chains", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
        )

    ok = cli("4")
    assert ok.returncode == 0 and "1 chain(s) before, 4 now" in ok.stdout
    assert cli("2").returncode == 1
