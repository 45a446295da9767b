"""Schema migrations (Alembic), driven from code so ``clawback db upgrade`` needs no alembic.ini.

Also ``ensure_schema``, the check every process runs at start: SQLite upgrades itself, an outdated
PostgreSQL schema is refused. It imports ``bot.db``; ``bot.db`` never imports it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bot.db import Database
from bot.errors import SchemaOutdated

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    cfg.attributes["engine"] = db.engine
    return cfg


def head_revision() -> str | None:
    """The newest revision this code ships."""
    return ScriptDirectory(str(_SCRIPTS)).get_current_head()


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema up to ``revision``."""
    command.upgrade(_config(db), revision)


def ensure_schema(db: Database, *, auto_upgrade_sqlite: bool = True) -> None:
    """Upgrade SQLite automatically; refuse to run on an outdated PostgreSQL schema."""
    current, head = current_revision(db), head_revision()
    if current == head:
        return
    if db.is_sqlite and auto_upgrade_sqlite:
        upgrade(db)
        return
    raise SchemaOutdated(
        f"database schema is at {current or 'nothing'}, this code needs {head}: run `clawback db upgrade`"
    )
