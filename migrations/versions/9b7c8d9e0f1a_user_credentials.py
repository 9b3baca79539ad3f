"""per-user Earth Engine and openEO credentials, and pending Earth Engine authorizations

Revision ID: 9b7c8d9e0f1a
Revises: 8a6b7c8d9e0f
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "9b7c8d9e0f1a"
down_revision = "8a6b7c8d9e0f"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "gee_credentials",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("secret_enc", sa.Text(), nullable=True),
        sa.Column("google_email", sa.String(length=254), nullable=True),
        sa.Column("cloud_project", sa.String(length=64), nullable=True),
        sa.Column("connected_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_gee_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_gee_credentials")),
    )
    op.create_table(
        "gee_oauth_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_verifier_enc", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_gee_oauth_states_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_gee_oauth_states")),
    )
    op.create_index("ix_gee_oauth_states_expires_at", "gee_oauth_states", ["expires_at"])
    op.create_index("ix_gee_oauth_states_user_id", "gee_oauth_states", ["user_id"])
    op.create_table(
        "openeo_credentials",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_openeo_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_openeo_credentials")),
    )


def downgrade():
    op.drop_table("openeo_credentials")
    op.drop_index("ix_gee_oauth_states_user_id", table_name="gee_oauth_states")
    op.drop_index("ix_gee_oauth_states_expires_at", table_name="gee_oauth_states")
    op.drop_table("gee_oauth_states")
    op.drop_table("gee_credentials")
