"""earned autonomy: levels in force, their history, governed decisions, offers; the level on every action row

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import bot.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _key() -> list[sa.Column]:
    return [
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "autonomy_levels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        *_key(),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("since", bot.db.UTCDateTime(), nullable=False),
        sa.Column("since_decision", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user", "action", "category", name="uq_autonomy_levels_key"),
    )
    op.create_table(
        "autonomy_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        *_key(),
        sa.Column("from_level", sa.String(length=8), nullable=False),
        sa.Column("to_level", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", bot.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_autonomy_changes_user", "autonomy_changes", ["user"])
    op.create_table(
        "autonomy_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=32), nullable=False),
        *_key(),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("created_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=True),
        sa.Column("outcome_id", sa.Integer(), nullable=True),
        sa.Column("judged_at", bot.db.UTCDateTime(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_autonomy_decisions_task_id", "autonomy_decisions", ["task_id"])
    op.create_index("ix_autonomy_decisions_created_at", "autonomy_decisions", ["created_at"])
    op.create_index(
        "ix_autonomy_decisions_key", "autonomy_decisions", ["user", "action", "category", "level", "id"]
    )
    op.create_table(
        "autonomy_offers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        *_key(),
        sa.Column("from_level", sa.String(length=8), nullable=False),
        sa.Column("to_level", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("judged", sa.Integer(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("answered_at", bot.db.UTCDateTime(), nullable=True),
        sa.Column("answered_by", sa.String(length=64), nullable=True),
        sa.Column("slack_channel", sa.String(length=32), nullable=True),
        sa.Column("slack_ts", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_autonomy_offers_key", "autonomy_offers", ["user", "action", "category", "status"])
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("autonomy_level", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("autonomy_level")
    op.drop_index("ix_autonomy_offers_key", table_name="autonomy_offers")
    op.drop_table("autonomy_offers")
    op.drop_index("ix_autonomy_decisions_key", table_name="autonomy_decisions")
    op.drop_index("ix_autonomy_decisions_created_at", table_name="autonomy_decisions")
    op.drop_index("ix_autonomy_decisions_task_id", table_name="autonomy_decisions")
    op.drop_table("autonomy_decisions")
    op.drop_index("ix_autonomy_changes_user", table_name="autonomy_changes")
    op.drop_table("autonomy_changes")
    op.drop_table("autonomy_levels")
