"""one task per Slack message: tasks.message_key (team, channel, ts of a person's message) with a unique index,
so SQL alone decides between deliveries of one message under several event_ids (rows from before stay NULL);
the (channel_id, message_ts) index of 0005 served the lookup this replaces, and nothing else reads by it: dropped

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("message_key", sa.String(160), nullable=True))
    op.create_index("uq_tasks_message_key", "tasks", ["message_key"], unique=True)
    op.drop_index("ix_tasks_channel_message", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_channel_message", "tasks", ["channel_id", "message_ts"])
    op.drop_index("uq_tasks_message_key", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("message_key")
