"""Alembic environment: uses the engine handed over by ``bot.migrate``."""

from alembic import context

import bot.models  # noqa: F401  (registers every model on Base.metadata)
from bot.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
