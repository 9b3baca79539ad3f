"""Script builds record what they build FROM and whether it is a legacy environment image

Revision ID: 8a6b7c8d9e0f
Revises: 4457b16d123f
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "8a6b7c8d9e0f"
down_revision = "4457b16d123f"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("script_builds", sa.Column("base_image", sa.String(512), nullable=True))
    op.add_column(
        "script_builds",
        sa.Column("legacy", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade():
    op.drop_column("script_builds", "legacy")
    op.drop_column("script_builds", "base_image")
