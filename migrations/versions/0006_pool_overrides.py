"""Run-time pool configuration: overrides, drain requests and their audit trail.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pool_overrides",
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("setting", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pool", "setting", name=op.f("pk_pool_overrides")),
    )
    op.create_table(
        "pool_drains",
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pool", name=op.f("pk_pool_drains")),
    )
    op.create_table(
        "pool_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pool_events")),
    )
    op.create_index(op.f("ix_pool_events_pool"), "pool_events", ["pool"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_pool_events_pool"), table_name="pool_events")
    op.drop_table("pool_events")
    op.drop_table("pool_drains")
    op.drop_table("pool_overrides")
