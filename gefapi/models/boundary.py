"""geoBoundaries metadata: one row per country and level (ADM0, ADM1) of a release type, and
the ADM1 units of each country. Geometry is never stored: clients download it from the URLs."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db
from gefapi.models.base import created_at_column, updated_at_column


class ReleaseType(StrEnum):
    """geoBoundaries' three releases."""

    OPEN = "gbOpen"
    HUMANITARIAN = "gbHumanitarian"
    AUTHORITATIVE = "gbAuthoritative"


RELEASE_TYPES = tuple(release.value for release in ReleaseType)


class Boundary(db.Model):
    """A geoBoundaries metadata record of one country at one level (0 = ADM0, 1 = ADM1)."""

    __tablename__ = "boundaries"
    __table_args__ = (
        Index("ix_boundaries_release_type_level_name", "release_type", "level", "boundary_name"),
        Index("ix_boundaries_updated_at", "updated_at"),
    )

    release_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    boundary_iso: Mapped[str] = mapped_column(String(10), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    boundary_id: Mapped[str | None] = mapped_column(String(100))
    boundary_name: Mapped[str] = mapped_column(String(255), nullable=False)
    boundary_type: Mapped[str] = mapped_column(String(10), nullable=False)
    boundary_canonical: Mapped[str | None] = mapped_column(String(255))
    boundary_year_represented: Mapped[str | None] = mapped_column(String(50))
    boundary_source: Mapped[str | None] = mapped_column(Text)
    boundary_source_url: Mapped[str | None] = mapped_column(Text)
    boundary_license: Mapped[str | None] = mapped_column(Text)
    license_detail: Mapped[str | None] = mapped_column(Text)
    license_source: Mapped[str | None] = mapped_column(Text)
    source_data_update_date: Mapped[str | None] = mapped_column(String(100))
    build_date: Mapped[str | None] = mapped_column(String(100))
    continent: Mapped[str | None] = mapped_column(String(100))
    unsdg_region: Mapped[str | None] = mapped_column(String(100))
    unsdg_subregion: Mapped[str | None] = mapped_column(String(100))
    world_bank_income_group: Mapped[str | None] = mapped_column(String(100))
    adm_unit_count: Mapped[int | None] = mapped_column(Integer)
    mean_vertices: Mapped[float | None] = mapped_column(Float)
    min_vertices: Mapped[int | None] = mapped_column(Integer)
    max_vertices: Mapped[int | None] = mapped_column(Integer)
    mean_perimeter_length_km: Mapped[float | None] = mapped_column(Float)
    min_perimeter_length_km: Mapped[float | None] = mapped_column(Float)
    max_perimeter_length_km: Mapped[float | None] = mapped_column(Float)
    mean_area_sq_km: Mapped[float | None] = mapped_column(Float)
    min_area_sq_km: Mapped[float | None] = mapped_column(Float)
    max_area_sq_km: Mapped[float | None] = mapped_column(Float)
    static_download_link: Mapped[str | None] = mapped_column(Text)
    gj_download_url: Mapped[str | None] = mapped_column(Text)
    tj_download_url: Mapped[str | None] = mapped_column(Text)
    simplified_geometry_geojson: Mapped[str | None] = mapped_column(Text)
    image_preview: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class BoundaryUnit(db.Model):
    """One ADM1 unit (state, province…) of a country, as its geoBoundaries GeoJSON names it."""

    __tablename__ = "boundary_units"
    __table_args__ = (
        Index("ix_boundary_units_release_type_boundary_iso", "release_type", "boundary_iso"),
        Index("ix_boundary_units_updated_at", "updated_at"),
    )

    release_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    shape_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    boundary_iso: Mapped[str] = mapped_column(String(10), nullable=False)
    shape_name: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
