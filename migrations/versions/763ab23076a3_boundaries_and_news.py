"""geoBoundaries metadata and ADM1 units; news items and their translations

Revision ID: 763ab23076a3
Revises: a16f0a1b2c3d
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "763ab23076a3"
down_revision = "a16f0a1b2c3d"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "boundaries",
        sa.Column("release_type", sa.String(length=20), nullable=False),
        sa.Column("boundary_iso", sa.String(length=10), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("boundary_id", sa.String(length=100), nullable=True),
        sa.Column("boundary_name", sa.String(length=255), nullable=False),
        sa.Column("boundary_type", sa.String(length=10), nullable=False),
        sa.Column("boundary_canonical", sa.String(length=255), nullable=True),
        sa.Column("boundary_year_represented", sa.String(length=50), nullable=True),
        sa.Column("boundary_source", sa.Text(), nullable=True),
        sa.Column("boundary_source_url", sa.Text(), nullable=True),
        sa.Column("boundary_license", sa.Text(), nullable=True),
        sa.Column("license_detail", sa.Text(), nullable=True),
        sa.Column("license_source", sa.Text(), nullable=True),
        sa.Column("source_data_update_date", sa.String(length=100), nullable=True),
        sa.Column("build_date", sa.String(length=100), nullable=True),
        sa.Column("continent", sa.String(length=100), nullable=True),
        sa.Column("unsdg_region", sa.String(length=100), nullable=True),
        sa.Column("unsdg_subregion", sa.String(length=100), nullable=True),
        sa.Column("world_bank_income_group", sa.String(length=100), nullable=True),
        sa.Column("adm_unit_count", sa.Integer(), nullable=True),
        sa.Column("mean_vertices", sa.Float(), nullable=True),
        sa.Column("min_vertices", sa.Integer(), nullable=True),
        sa.Column("max_vertices", sa.Integer(), nullable=True),
        sa.Column("mean_perimeter_length_km", sa.Float(), nullable=True),
        sa.Column("min_perimeter_length_km", sa.Float(), nullable=True),
        sa.Column("max_perimeter_length_km", sa.Float(), nullable=True),
        sa.Column("mean_area_sq_km", sa.Float(), nullable=True),
        sa.Column("min_area_sq_km", sa.Float(), nullable=True),
        sa.Column("max_area_sq_km", sa.Float(), nullable=True),
        sa.Column("static_download_link", sa.Text(), nullable=True),
        sa.Column("gj_download_url", sa.Text(), nullable=True),
        sa.Column("tj_download_url", sa.Text(), nullable=True),
        sa.Column("simplified_geometry_geojson", sa.Text(), nullable=True),
        sa.Column("image_preview", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "release_type", "boundary_iso", "level", name=op.f("pk_boundaries")
        ),
    )
    op.create_index(
        "ix_boundaries_release_type_level_name",
        "boundaries",
        ["release_type", "level", "boundary_name"],
        unique=False,
    )
    op.create_index("ix_boundaries_updated_at", "boundaries", ["updated_at"], unique=False)

    op.create_table(
        "boundary_units",
        sa.Column("release_type", sa.String(length=20), nullable=False),
        sa.Column("shape_id", sa.String(length=100), nullable=False),
        sa.Column("boundary_iso", sa.String(length=10), nullable=False),
        sa.Column("shape_name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("release_type", "shape_id", name=op.f("pk_boundary_units")),
    )
    op.create_index(
        "ix_boundary_units_release_type_boundary_iso",
        "boundary_units",
        ["release_type", "boundary_iso"],
        unique=False,
    )
    op.create_index("ix_boundary_units_updated_at", "boundary_units", ["updated_at"], unique=False)

    op.create_table(
        "news_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("message_html", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("link_url", sa.String(length=2000), nullable=True),
        sa.Column("link_text", sa.String(length=100), nullable=True),
        sa.Column("news_type", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("target_platforms", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("target_roles", sa.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column("min_version", sa.String(length=32), nullable=True),
        sa.Column("max_version", sa.String(length=32), nullable=True),
        sa.Column("publish_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_news_items_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_news_items")),
    )
    op.create_index("ix_news_items_publish_at", "news_items", ["publish_at"], unique=False)

    op.create_table(
        "news_translations",
        sa.Column("news_id", sa.Uuid(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("message_html", sa.Text(), nullable=False),
        sa.Column("link_text", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["news_id"],
            ["news_items.id"],
            name=op.f("fk_news_translations_news_id_news_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("news_id", "language", name=op.f("pk_news_translations")),
    )


def downgrade():
    op.drop_table("news_translations")
    op.drop_index("ix_news_items_publish_at", table_name="news_items")

    op.drop_table("news_items")
    op.drop_index("ix_boundary_units_updated_at", table_name="boundary_units")
    op.drop_index("ix_boundary_units_release_type_boundary_iso", table_name="boundary_units")

    op.drop_table("boundary_units")
    op.drop_index("ix_boundaries_updated_at", table_name="boundaries")
    op.drop_index("ix_boundaries_release_type_level_name", table_name="boundaries")

    op.drop_table("boundaries")
