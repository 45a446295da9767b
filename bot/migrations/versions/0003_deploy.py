"""deploy tables: requests, approvals, locks, history

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import bot.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deploy_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("plan_task_id", sa.String(length=32), nullable=True),
        sa.Column("execute_task_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("sha", sa.String(length=40), nullable=False),
        sa.Column("base_sha", sa.String(length=40), nullable=True),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("rollback_of", sa.String(length=32), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("thread_ts", sa.String(length=32), nullable=True),
        sa.Column("approval_ts", sa.String(length=32), nullable=True),
        sa.Column("run_ref", sa.String(length=512), nullable=True),
        sa.Column("run_url", sa.String(length=512), nullable=True),
        sa.Column("run_status", sa.String(length=16), nullable=True),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("executed_at", bot.db.UTCDateTime(), nullable=True),
        sa.Column("polled_at", bot.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", bot.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id"),
    )
    with op.batch_alter_table("deploy_requests", schema=None) as batch_op:
        batch_op.create_index("ix_deploy_requests_target", ["service", "environment", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_deploy_requests_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deploy_requests_requester"), ["requester"], unique=False)
        batch_op.create_index(batch_op.f("ix_deploy_requests_status"), ["status"], unique=False)

    op.create_table(
        "deploy_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", bot.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", bot.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["deploy_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "approver", name="uq_deploy_approvals_request_approver"),
    )
    with op.batch_alter_table("deploy_approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deploy_approvals_request_id"), ["request_id"], unique=False)

    op.create_table(
        "deploy_locks",
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("acquired_at", bot.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("service", "environment"),
    )
    op.create_table(
        "deploy_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("sha", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rolled_back", sa.Boolean(), nullable=False),
        sa.Column("deployed_at", bot.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deploy_history", schema=None) as batch_op:
        batch_op.create_index("ix_deploy_history_target", ["service", "environment", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("deploy_history")
    op.drop_table("deploy_locks")
    op.drop_table("deploy_approvals")
    with op.batch_alter_table("deploy_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deploy_requests_status"))
        batch_op.drop_index(batch_op.f("ix_deploy_requests_requester"))
        batch_op.drop_index(batch_op.f("ix_deploy_requests_created_at"))
        batch_op.drop_index("ix_deploy_requests_target")
    op.drop_table("deploy_requests")
