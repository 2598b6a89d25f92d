"""Covering indexes for /summary over long ranges.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("durations") as batch_op:
        batch_op.drop_index("ix_durations_kind_day")
        batch_op.create_index("ix_durations_kind_day_pool_seconds", ["kind", "day", "pool", "seconds"])
    with op.batch_alter_table("vm_tags") as batch_op:
        batch_op.drop_index("ix_vm_tags_day")
        batch_op.create_index("ix_vm_tags_day_name_value", ["day", "name", "value"])


def downgrade():
    with op.batch_alter_table("vm_tags") as batch_op:
        batch_op.drop_index("ix_vm_tags_day_name_value")
        batch_op.create_index("ix_vm_tags_day", ["day"])
    with op.batch_alter_table("durations") as batch_op:
        batch_op.drop_index("ix_durations_kind_day_pool_seconds")
        batch_op.create_index("ix_durations_kind_day", ["kind", "day"])
