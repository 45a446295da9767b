"""Migration 0006 on a database at 0005 with data: the autonomy tables and actions.autonomy_level appear."""

from __future__ import annotations

from sqlalchemy import inspect, text

from bot import migrate
from bot.db import Database


def test_upgrade_from_0005_keeps_actions_and_adds_the_level(tmp_path):
    """An action row written at 0005 survives; its level is NULL (not governed); downgrade removes it all."""
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        migrate.upgrade(db, "0005")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    'INSERT INTO tasks (id, idempotency_key, requester, surface, intent, "trigger", status, '
                    "payload, result, redactions, attempts, created_at) VALUES ('t1', 'k1', 'U0A', 'dm', "
                    "'answer', 'human', 'done', '{}', '{}', 0, 0, '2026-01-01 00:00:00')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO actions (task_id, idempotency_key, kind, status, detail, result, created_at, "
                    "updated_at) VALUES ('t1', 'a1', 'slack.post', 'done', '{}', '{}', '2026-01-01 00:00:00', "
                    "'2026-01-01 00:00:00')"
                )
            )
        migrate.upgrade(db, "0006")
        assert migrate.current_revision(db) == "0006"
        names = set(inspect(db.engine).get_table_names())
        assert {"autonomy_levels", "autonomy_changes", "autonomy_decisions", "autonomy_offers"} <= names
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT kind, autonomy_level FROM actions")).all() == [
                ("slack.post", None)
            ]
        from alembic import command

        command.downgrade(migrate._config(db), "0005")
        assert "autonomy_levels" not in set(inspect(db.engine).get_table_names())
        columns = {c["name"] for c in inspect(db.engine).get_columns("actions")}
        assert "autonomy_level" not in columns
    finally:
        db.dispose()
