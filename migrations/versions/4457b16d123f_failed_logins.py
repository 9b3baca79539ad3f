"""failed logins counted per email address tried, known or not

Revision ID: 4457b16d123f
Revises: 7f5a6b7c8d9e
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "4457b16d123f"
down_revision = "7f5a6b7c8d9e"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "failed_logins",
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locks", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name=op.f("pk_failed_logins")),
    )
    op.create_index(
        "ix_failed_logins_last_failure_at", "failed_logins", ["last_failure_at"], unique=False
    )


def downgrade():
    op.drop_index("ix_failed_logins_last_failure_at", table_name="failed_logins")
    op.drop_table("failed_logins")
