"""Partial index of finished executions that still hold an engine handle (reconcile's clean-up)

Revision ID: 7f5a6b7c8d9e
Revises: 6e4f5a6b7c8d
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "7f5a6b7c8d9e"
down_revision = "6e4f5a6b7c8d"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_executions_leftover_handle",
        "executions",
        ["id"],
        postgresql_where=sa.text(
            "backend_handle IS NOT NULL AND status IN ('FINISHED','FAILED','CANCELLED')"
        ),
    )


def downgrade():
    op.drop_index("ix_executions_leftover_handle", table_name="executions")
