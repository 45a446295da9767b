"""audit chains: the log may run as several hash chains (one head row each) so appenders do not all queue on one
row; checkpoints sign every chain's head

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("chain", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("next_seq", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("step", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.add_column(sa.Column("heads", sa.Text(), nullable=True))


def downgrade() -> None:
    # Only a single-chain log can go back: the older code knows one head row and contiguous seqs.
    bind = op.get_bind()
    chains = bind.execute(sa.text("SELECT count(*) FROM audit_head")).scalar_one()
    if chains > 1:
        raise RuntimeError("the audit log runs as several chains; 0005 knows only one")
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.drop_column("heads")
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("step")
        batch.drop_column("next_seq")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("chain")
