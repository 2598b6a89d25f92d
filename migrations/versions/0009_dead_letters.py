"""The dead-letter queue: every VM that failed (clone given up, pending timeout, ready VM
unreachable, purged), kept with its cause for operators.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=True),
        sa.Column("vm_name", sa.String(length=64), nullable=False),
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("pool_alias", sa.String(length=100), nullable=True),
        sa.Column("queue_from", sa.String(length=16), nullable=False),
        sa.Column("error_class", sa.String(length=100), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_failed_at", "dead_letters", ["failed_at"])
    op.create_index("ix_dead_letters_pool_failed_at", "dead_letters", ["pool", "failed_at"])


def downgrade():
    op.drop_index("ix_dead_letters_pool_failed_at", table_name="dead_letters")
    op.drop_index("ix_dead_letters_failed_at", table_name="dead_letters")
    op.drop_table("dead_letters")
