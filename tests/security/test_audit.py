"""The audit log: hash chain, signed checkpoints, tamper detection, concurrent writers, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

from sqlalchemy import text

from bot import audit
from bot.db import Database

KEY = "test-audit-key"


def _fill(db: Database, n: int) -> None:
    for i in range(n):
        audit.record(
            db,
            actor=f"U{i % 3}",
            action="test.action",
            decision="allow" if i % 2 else "deny",
            task_id=f"t{i}",
            details={"i": i, "note": "ünïcode ✓"},
        )


def test_untouched_log_verifies(db):
    """A fresh chain with a checkpoint verifies."""
    _fill(db, 20)
    audit.checkpoint(db, KEY)
    result = audit.verify(db, key=KEY)
    assert result.ok and result.entries == 20 and result.checkpoints == 1


def test_edit_is_detected_at_the_edited_entry(db):
    """Changing any field of entry 7 breaks the chain at 7."""
    _fill(db, 12)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET decision = 'allow' WHERE seq = 7 AND decision = 'deny'"))
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 7"))
    result = audit.verify(db, key=KEY)
    assert not result.ok and result.first_bad_seq == 7


def test_edit_with_recomputed_hash_is_detected_at_the_next_entry(db):
    """Rewriting entry 5 and its own hash still breaks the link from entry 6."""
    _fill(db, 10)
    with db.session() as s:
        from bot.db import AuditEntry

        e = s.get(AuditEntry, 5)
        e.actor = "mallory"
        fields = {k: getattr(e, k) for k in audit._FIELDS}
        e.hash = audit.entry_hash(fields, e.prev_hash)
    result = audit.verify(db)
    assert not result.ok and result.first_bad_seq == 6


def test_delete_is_detected(db):
    """Deleting entry 4 is reported at 4."""
    _fill(db, 10)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 4"))
    result = audit.verify(db)
    assert not result.ok and result.first_bad_seq == 4


def test_reorder_is_detected(db):
    """Swapping the contents of entries 3 and 8 is reported at 3."""
    _fill(db, 10)
    cols = "ts, actor, on_behalf_of, action, target, scope, decision, task_id, details, prev_hash, hash"
    with db.engine.begin() as conn:
        a = conn.execute(text(f"SELECT {cols} FROM audit_log WHERE seq = 3")).mappings().one()
        b = conn.execute(text(f"SELECT {cols} FROM audit_log WHERE seq = 8")).mappings().one()
        sets = ", ".join(f"{c.strip()} = :{c.strip()}" for c in cols.split(","))
        conn.execute(text(f"UPDATE audit_log SET {sets} WHERE seq = 3"), dict(b))
        conn.execute(text(f"UPDATE audit_log SET {sets} WHERE seq = 8"), dict(a))
    result = audit.verify(db)
    assert not result.ok and result.first_bad_seq == 3


def test_truncation_past_a_checkpoint_is_detected_even_with_the_head_rewritten(db):
    """Deleting the newest entries and rewinding the head is caught by the signed checkpoint."""
    _fill(db, 10)
    audit.checkpoint(db, KEY)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > 6"))
        h = conn.execute(text("SELECT hash FROM audit_log WHERE seq = 6")).scalar_one()
        conn.execute(text("UPDATE audit_head SET seq = 6, hash = :h"), {"h": h})
    result = audit.verify(db, key=KEY)
    assert not result.ok and result.first_bad_seq == 7


def test_truncation_without_checkpoint_is_detected_by_the_head(db):
    """Deleting the tail while the head row still points further is reported."""
    _fill(db, 10)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > 8"))
    result = audit.verify(db)
    assert not result.ok and result.first_bad_seq == 9


def test_forged_checkpoint_is_detected(db):
    """A checkpoint not signed with the auditor's key fails verification."""
    _fill(db, 3)
    audit.checkpoint(db, "some-other-key")
    result = audit.verify(db, key=KEY)
    assert not result.ok and "bad signature" in result.reason


def _append_many(url: str, worker: int, n: int) -> None:
    db = Database(url)
    for i in range(n):
        audit.record(db, actor=f"W{worker}", action="concurrent", details={"i": i})
    db.dispose()


def test_concurrent_appends_from_several_processes_keep_one_chain(db):
    """Four processes appending 40 entries each leave one valid chain of 160."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(db.url, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    audit.checkpoint(db, KEY)
    result = audit.verify(db, key=KEY)
    assert result.ok and result.entries == 160


def test_export_jsonl_has_the_documented_fields(db):
    """Export yields one object per entry with the documented keys."""
    _fill(db, 3)
    rows = list(audit.export(db))
    assert [r["seq"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"seq", "ts", "actor", "action", "decision", "task_id", "prev_hash", "hash"} <= set(r)
    assert rows[1]["prev_hash"] == rows[0]["hash"]


def _cli(args: list[str], db: Database, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": db.url, "CLAWBACK_AUDIT_KEY": KEY, "CLAWBACK_HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "bot.ops.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )


def test_cli_verify_exit_codes_and_export(db, tmp_path):
    """`clawback audit verify` exits 0 on an intact, checkpointed log, 1 naming the first bad seq; export prints
    JSON lines."""
    _fill(db, 5)
    audit.checkpoint(db, KEY)
    ok = _cli(["audit", "verify"], db, tmp_path)
    assert ok.returncode == 0, ok.stderr
    out = _cli(["audit", "export", "--format", "jsonl"], db, tmp_path)
    assert [json.loads(line)["seq"] for line in out.stdout.splitlines()] == [1, 2, 3, 4, 5]
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET target = 'x' WHERE seq = 2"))
    bad = _cli(["audit", "verify"], db, tmp_path)
    assert bad.returncode == 1 and "seq 2" in bad.stderr


def test_checkpoint_copy_kept_apart_catches_truncation_with_checkpoints_deleted(db, tmp_path):
    """Deleting the tail, its checkpoints and rewinding the head is still caught by the file copy."""
    copy = tmp_path / "checkpoints.jsonl"
    _fill(db, 10)
    audit.checkpoint(db, KEY, copy_to=copy)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > 5"))
        conn.execute(text("DELETE FROM audit_checkpoints"))
        h = conn.execute(text("SELECT hash FROM audit_log WHERE seq = 5")).scalar_one()
        conn.execute(text("UPDATE audit_head SET seq = 5, hash = :h"), {"h": h})
    alone = audit.verify(db, key=KEY)  # the database alone no longer has a checkpoint: it cannot vouch
    assert not alone.ok and "no signed checkpoint" in alone.reason
    result = audit.verify(db, key=KEY, checkpoints_file=copy)
    assert not result.ok and result.first_bad_seq == 6
    copy.write_text(copy.read_text().replace('"seq":10', '"seq":99'))  # a forged copy fails its signature
    forged = audit.verify(db, key=KEY, checkpoints_file=copy)
    assert not forged.ok and "bad signature" in forged.reason
