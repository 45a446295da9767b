"""earned autonomy: at most one pending promotion offer per (user, action, category), enforced by a unique
partial index, so two judges racing on PostgreSQL cannot both open one (duplicates already there are expired,
keeping the oldest)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.execute(
        """
        UPDATE autonomy_offers SET status = 'expired'
        WHERE status = 'pending' AND id NOT IN (
            SELECT MIN(id) FROM autonomy_offers WHERE status = 'pending' GROUP BY "user", action, category
        )
        """
    )
    op.create_index(
        "uq_autonomy_offers_pending",
        "autonomy_offers",
        ["user", "action", "category"],
        unique=True,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("uq_autonomy_offers_pending", table_name="autonomy_offers")
