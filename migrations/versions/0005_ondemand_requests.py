"""On-demand requests and what they asked for; VMs tied to a request; an index for per-user quotas.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ondemand_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("token_user", sa.String(length=255), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ondemand_requests")),
        sa.UniqueConstraint("request_id", name=op.f("uq_ondemand_requests_request_id")),
    )
    op.create_index("ix_ondemand_requests_state", "ondemand_requests", ["state"])
    op.create_index("ix_ondemand_requests_user_state", "ondemand_requests", ["token_user", "state"])
    op.create_table(
        "ondemand_wants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_ref", sa.Integer(), nullable=False),
        sa.Column("requested", sa.String(length=100), nullable=False),
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["request_ref"], ["ondemand_requests.id"],
                                name=op.f("fk_ondemand_wants_request_ref_ondemand_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ondemand_wants")),
    )
    op.create_index(op.f("ix_ondemand_wants_request_ref"), "ondemand_wants", ["request_ref"])
    with op.batch_alter_table("vms") as batch_op:
        batch_op.add_column(sa.Column("want_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(op.f("fk_vms_want_id_ondemand_wants"), "ondemand_wants", ["want_id"], ["id"])
        batch_op.create_index(op.f("ix_vms_want_id"), ["want_id"])
        batch_op.drop_index("ix_vms_state_pool_counts")
        batch_op.create_index("ix_vms_state_pool_counts", ["state", "pool", "cloned_at", "next_attempt_at", "want_id"])
        batch_op.create_index("ix_vms_token_user_state", ["token_user", "state"])


def downgrade():
    with op.batch_alter_table("vms") as batch_op:
        batch_op.drop_index("ix_vms_token_user_state")
        batch_op.drop_index("ix_vms_state_pool_counts")
        batch_op.create_index("ix_vms_state_pool_counts", ["state", "pool", "cloned_at", "next_attempt_at"])
        batch_op.drop_index(op.f("ix_vms_want_id"))
        batch_op.drop_constraint(op.f("fk_vms_want_id_ondemand_wants"), type_="foreignkey")
        batch_op.drop_column("want_id")
    op.drop_index(op.f("ix_ondemand_wants_request_ref"), table_name="ondemand_wants")
    op.drop_table("ondemand_wants")
    op.drop_index("ix_ondemand_requests_user_state", table_name="ondemand_requests")
    op.drop_index("ix_ondemand_requests_state", table_name="ondemand_requests")
    op.drop_table("ondemand_requests")
