"""measurement: per-task facts for fast reports, state, and lookup indexes

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import bot.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


_DIM_INDEX = {
    "state": ("state", "created_at", "prompt_tokens", "completion_tokens", "cost"),
    "latency": ("latency_bucket", "created_at"),
    "people": ("requester", "created_at", "state"),
}


def upgrade() -> None:
    op.create_table(
        "measure_task_facts",
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("intent", sa.String(length=32), nullable=False),
        sa.Column("surface", sa.String(length=16), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("outcome_strength", sa.Integer(), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("latency_bucket", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("task_id"),
    )
    with op.batch_alter_table("measure_task_facts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_measure_facts_user_intent",
            ["requester", "intent", "state", "created_at", "prompt_tokens", "completion_tokens", "cost"],
        )
        batch_op.create_index(
            "ix_measure_facts_latency", ["requester", "intent", "latency_bucket", "created_at"]
        )
        for dim in ("surface", "day"):
            for suffix, cols in _DIM_INDEX.items():
                batch_op.create_index(f"ix_measure_facts_{dim}_{suffix}", [dim, *cols])
        batch_op.create_index(
            "ix_measure_facts_created",
            [
                "created_at",
                "requester",
                "intent",
                "surface",
                "channel_id",
                "day",
                "state",
                "prompt_tokens",
                "completion_tokens",
                "cost",
                "latency_bucket",
            ],
        )
    op.create_table(
        "measure_state",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    # incremental facts refresh (finished since the watermark) and follow-up detection (same thread)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_finished_at", ["finished_at"])
        batch_op.create_index("ix_tasks_thread", ["channel_id", "thread_ts"])
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.create_index("ix_outcomes_task_kind", ["task_id", "kind"])


def downgrade() -> None:
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_outcomes_task_kind")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_thread")
        batch_op.drop_index("ix_tasks_finished_at")
    op.drop_table("measure_state")
    with op.batch_alter_table("measure_task_facts", schema=None) as batch_op:
        batch_op.drop_index("ix_measure_facts_created")
        batch_op.drop_index("ix_measure_facts_latency")
        batch_op.drop_index("ix_measure_facts_user_intent")
        for dim in ("surface", "day"):
            for suffix in _DIM_INDEX:
                batch_op.drop_index(f"ix_measure_facts_{dim}_{suffix}")
    op.drop_table("measure_task_facts")
