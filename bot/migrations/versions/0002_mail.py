"""mail tables: sync state per (mailbox, folder) and triage records

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import bot.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_sync_state",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mailbox", sa.String(length=255), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("sync_state", sa.Text(), nullable=True),
        sa.Column("complete", sa.Integer(), nullable=False),
        sa.Column("items_seen", sa.Integer(), nullable=False),
        sa.Column("tasks_created", sa.Integer(), nullable=False),
        sa.Column("skipped_old", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", bot.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox", "folder", name="uq_mail_sync_state_mailbox_folder"),
    )
    op.create_table(
        "mail_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("mailbox", sa.String(length=255), nullable=False),
        sa.Column("item_id", sa.String(length=512), nullable=False),
        sa.Column("current_item_id", sa.String(length=512), nullable=False),
        sa.Column("internet_message_id", sa.String(length=998), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("sender", sa.String(length=255), nullable=True),
        sa.Column("received_at", bot.db.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("draft_id", sa.String(length=512), nullable=True),
        sa.Column("draft_text", sa.Text(), nullable=True),
        sa.Column("draft_status", sa.String(length=16), nullable=True),
        sa.Column("corrected", sa.Integer(), nullable=False),
        sa.Column("feedback", sa.String(length=64), nullable=True),
        sa.Column("body_tokens", sa.Integer(), nullable=False),
        sa.Column("raw_tokens", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("digest_key", sa.String(length=32), nullable=True),
        sa.Column("slack_channel", sa.String(length=32), nullable=True),
        sa.Column("slack_ts", sa.String(length=32), nullable=True),
        sa.Column("created_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", bot.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id"),
    )
    with op.batch_alter_table("mail_items", schema=None) as batch_op:
        batch_op.create_index("ix_mail_items_current", ["mailbox", "current_item_id"], unique=False)
        batch_op.create_index("ix_mail_items_draft", ["mailbox", "draft_id"], unique=False)
        batch_op.create_index("ix_mail_items_digest", ["mailbox", "status", "digest_key"], unique=False)
        batch_op.create_index("ix_mail_items_slack", ["slack_channel", "slack_ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mail_items", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_items_slack")
        batch_op.drop_index("ix_mail_items_digest")
        batch_op.drop_index("ix_mail_items_draft")
        batch_op.drop_index("ix_mail_items_current")
    op.drop_table("mail_items")
    op.drop_table("mail_sync_state")
