"""message lookup: an index on (channel_id, message_ts) for the dedupe of a person's message across deliveries

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_channel_message", "tasks", ["channel_id", "message_ts"])


def downgrade() -> None:
    op.drop_index("ix_tasks_channel_message", table_name="tasks")
