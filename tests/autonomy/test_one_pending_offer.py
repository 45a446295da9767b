"""At most one pending promotion offer per (user, action, category), even when two judges race to open it
(PostgreSQL's read committed lets both see "none pending"; the unique partial index of migration 0008 refuses
the second). Two threads here on SQLite (and on PostgreSQL when TEST_DATABASE_URL names one)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from bot import autonomy, migrate
from bot.db import AutonomyOffer, Database
from tests.autonomy.conftest import decide, policy


def _due(db: Database, pol) -> autonomy.OfferDue:
    change = None
    for _ in range(5):
        _, change = decide(db, pol, "accepted")
    assert isinstance(change, autonomy.OfferDue)
    return change


def test_two_threads_racing_open_one_offer(db: Database) -> None:
    pol = policy()
    due = _due(db, pol)
    barrier = threading.Barrier(2, timeout=10)
    results: list[int | None] = []

    def judge_side() -> None:
        barrier.wait()
        results.append(autonomy.open_offer(db, pol, due))

    threads = [threading.Thread(target=judge_side) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2 and results.count(None) == 1
    with db.read() as s:
        pending = s.execute(select(AutonomyOffer).where(AutonomyOffer.status == "pending")).scalars().all()
    assert len(pending) == 1


def test_the_database_refuses_a_second_pending_offer(db: Database) -> None:
    """What the check in ``open_offer`` cannot promise under concurrency, the index does."""
    row = dict(
        user="U0ALICE", action="mail.move", category="", from_level="suggest", to_level="auto", judged=5
    )
    with db.session() as s:
        s.add(AutonomyOffer(status="pending", **row))
        s.add(AutonomyOffer(status="declined", **row))  # answered offers are not limited
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(AutonomyOffer(status="pending", **row))
    with db.session() as s:
        s.add(AutonomyOffer(status="pending", **{**row, "category": "newsletter"}))  # another key


def test_migration_0008_expires_duplicates_keeping_the_oldest(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        migrate.upgrade(db, "0007")
        with db.engine.begin() as conn:
            for _ in range(3):
                conn.execute(
                    text(
                        'INSERT INTO autonomy_offers ("user", action, category, from_level, to_level, status, '
                        "judged, evidence, created_at) VALUES ('U0A', 'mail.move', '', 'suggest', 'auto', "
                        "'pending', 5, '{}', '2026-01-01 00:00:00')"
                    )
                )
        migrate.upgrade(db, "0008")
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status FROM autonomy_offers ORDER BY id")).all()
        assert [r[1] for r in rows] == ["pending", "expired", "expired"]
        names = {i["name"] for i in inspect(db.engine).get_indexes("autonomy_offers")}
        assert "uq_autonomy_offers_pending" in names
        from alembic import command

        command.downgrade(migrate._config(db), "0007")
        names = {i["name"] for i in inspect(db.engine).get_indexes("autonomy_offers")}
        assert "uq_autonomy_offers_pending" not in names
    finally:
        db.dispose()
