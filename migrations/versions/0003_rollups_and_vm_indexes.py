"""Daily duration totals for /summary; indexes for checkout and pool counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "duration_days",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "day", "pool", name=op.f("pk_duration_days")),
    )
    op.execute("INSERT INTO duration_days (kind, day, pool, count, total, low, high) "
               "SELECT kind, day, pool, count(*), sum(seconds), min(seconds), max(seconds) "
               "FROM durations GROUP BY kind, day, pool")
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_index("ix_vms_pool_state")
        batch_op.create_index("ix_vms_pool_state_ready", ["pool", "state", "ready_at", "id"])
        batch_op.create_index("ix_vms_state_pool_counts", ["state", "pool", "cloned_at", "next_attempt_at"])


def downgrade():
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_index("ix_vms_state_pool_counts")
        batch_op.drop_index("ix_vms_pool_state_ready")
        batch_op.create_index("ix_vms_pool_state", ["pool", "state"])
    op.drop_table("duration_days")
