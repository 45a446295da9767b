"""Attacks on `audit verify` by someone with database write access but no audit key (issue 11, item 7).

Each test tampers with the real database the way the reviewer did, then runs the real `clawback audit verify`
command (a subprocess, settings from the environment) and shows that it does not say "intact": it exits 1 and
names why. What stays undetectable by design (the entries written since the newest checkpoint) is reported as a
count, never hidden.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import text

from bot import audit
from bot.db import AuditEntry, Database, utcnow

KEY = "auditor-key"


def _fill(db: Database, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        audit.record(db, actor=f"U{i % 3}", action="test.action", task_id=f"t{i}", details={"i": i})


def _verify(
    db: Database, tmp_path, *args: str, key: str | None = KEY, copy=None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWBACK_AUDIT")}
    env.update({"DATABASE_URL": db.url, "CLAWBACK_HOME": str(tmp_path)})
    if key is not None:
        env["CLAWBACK_AUDIT_KEY"] = key
    if copy is not None:
        env["CLAWBACK_AUDIT_CHECKPOINTS"] = str(copy)
    return subprocess.run(
        [sys.executable, "-m", "bot.ops.cli", "audit", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )


def _truncate_to(db: Database, seq: int) -> None:
    """Delete the entries after ``seq`` and rewind the head to it (what a database writer can do)."""
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > :s"), {"s": seq})
        h = conn.execute(text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": seq}).scalar_one()
        conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": seq, "h": h})


def test_intact_log_with_a_fresh_checkpoint_verifies_and_counts_uncovered_entries(db, tmp_path):
    """The honest case: exit 0, and the entries written since the newest checkpoint are counted."""
    _fill(db, 6)
    audit.checkpoint(db, KEY)
    _fill(db, 3, start=6)
    ok = _verify(db, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "9 entries" in ok.stdout and "3 entries not yet covered by a checkpoint" in ok.stdout


def test_deleting_every_checkpoint_is_not_intact(db, tmp_path):
    """Truncate the tail and delete all checkpoints: before, "intact"; now exit 1, "no signed checkpoint"."""
    _fill(db, 10)
    audit.checkpoint(db, KEY)
    _truncate_to(db, 6)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))
    out = _verify(db, tmp_path)
    assert out.returncode == 1, out.stdout
    assert "no signed checkpoint" in out.stderr
    assert "intact" not in out.stdout


def test_signatures_that_cannot_be_checked_are_not_intact(db, tmp_path):
    """Without CLAWBACK_AUDIT_KEY a forged checkpoint used to verify; now verify refuses to vouch."""
    _fill(db, 4)
    audit.checkpoint(db, "a-key-the-attacker-made-up")
    out = _verify(db, tmp_path, key=None)
    assert out.returncode == 1
    assert "cannot check" in out.stderr and "CLAWBACK_AUDIT_KEY" in out.stderr
    forged = _verify(db, tmp_path)  # with the real key the forgery is named
    assert forged.returncode == 1 and "bad signature" in forged.stderr


def test_truncating_after_a_stale_checkpoint_is_caught_by_the_cadence(db, tmp_path):
    """Entries after the newest checkpoint are unvouched; if that checkpoint is older than the allowed age
    (the auditor stopped, or newer checkpoints were deleted) verify fails instead of saying intact."""
    _fill(db, 10)
    audit.checkpoint(db, KEY)
    _fill(db, 5, start=10)
    _truncate_to(db, 12)  # two of the five unvouched entries vanish
    assert _verify(db, tmp_path).returncode == 0  # within the cadence: the window the README documents
    result = audit.verify(db, key=KEY, max_age=timedelta(minutes=15), now=utcnow() + timedelta(minutes=20))
    assert not result.ok and "older than" in result.reason and result.uncovered == 2
    time.sleep(1.2)
    out = _verify(db, tmp_path, "--max-age", "1")
    assert out.returncode == 1 and "older than" in out.stderr


def test_rewriting_and_rechaining_a_recent_entry_is_counted_as_uncovered(db, tmp_path):
    """A re-chained entry after the newest checkpoint cannot be told apart from an honest one: verify says how
    many entries nothing vouches for yet; once the auditor signs again the rewrite is locked in, so the cadence
    is the exposure window (README "Audit log")."""
    _fill(db, 5)
    audit.checkpoint(db, KEY)
    _fill(db, 2, start=5)
    with db.session() as s:
        e = s.get(AuditEntry, 7)
        e.actor = "mallory"
        e.hash = audit.entry_hash({k: getattr(e, k) for k in audit._FIELDS}, e.prev_hash)
        s.execute(text("UPDATE audit_head SET hash = :h"), {"h": e.hash})
    result = audit.verify(db, key=KEY)
    assert result.ok and result.uncovered == 2


def test_rewriting_a_vouched_entry_is_detected_even_when_rechained(db, tmp_path):
    """Rewriting entry 3 and re-chaining everything after it breaks the signed checkpoint at 5."""
    _fill(db, 5)
    audit.checkpoint(db, KEY)
    with db.session() as s:
        prev = s.get(AuditEntry, 2).hash
        for seq in range(3, 6):
            e = s.get(AuditEntry, seq)
            if seq == 3:
                e.actor = "mallory"
            e.prev_hash = prev
            e.hash = prev = audit.entry_hash({k: getattr(e, k) for k in audit._FIELDS}, prev)
        s.execute(text("UPDATE audit_head SET hash = :h"), {"h": prev})
    out = _verify(db, tmp_path)
    assert out.returncode == 1 and "differs from its signed checkpoint" in out.stderr


def test_checkpoint_file_disagreeing_with_the_database_fails(db, tmp_path):
    """The copy kept apart names checkpoints the database lost (or the database has ones the copy lacks)."""
    copy = tmp_path / "checkpoints.jsonl"
    _fill(db, 4)
    audit.checkpoint(db, KEY, copy_to=copy)
    assert _verify(db, tmp_path, copy=copy).returncode == 0
    _fill(db, 2, start=4)
    audit.checkpoint(db, KEY)  # signed, but never written to the copy
    out = _verify(db, tmp_path, copy=copy)
    assert out.returncode == 1 and "not in the checkpoint file" in out.stderr
    with db.engine.begin() as conn:  # drop every checkpoint from the database only
        conn.execute(text("DELETE FROM audit_checkpoints"))
    out = _verify(db, tmp_path, copy=copy)
    assert out.returncode == 1 and "in the checkpoint file but not in the database" in out.stderr
    missing = _verify(db, tmp_path, copy=tmp_path / "elsewhere.jsonl")
    assert missing.returncode == 1 and "checkpoint file" in missing.stderr
