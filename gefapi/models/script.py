import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gefapi.extensions import db
from gefapi.models.base import created_at_column, updated_at_column, utcnow, uuid_pk


class ScriptStatus(StrEnum):
    PENDING = "PENDING"
    BUILDING = "BUILDING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


class Script(db.Model):
    __tablename__ = "scripts"
    __table_args__ = (
        # A deleted script frees its slug.
        Index("uq_scripts_slug_active", "slug", unique=True, postgresql_where=text("NOT deleted")),
        Index("ix_scripts_user_id", "user_id"),
        Index("ix_scripts_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    slug: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    # PENDING is only a build's (ScriptBuild.status); a script is BUILDING from its publish.
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=ScriptStatus.BUILDING)
    public: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    restricted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    allowed_roles: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), nullable=False, default=list
    )
    allowed_users: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), nullable=False, default=list
    )
    cpu_reservation: Mapped[float] = mapped_column(Float, nullable=False, default=1e8)
    cpu_limit: Mapped[float] = mapped_column(Float, nullable=False, default=5e8)
    memory_reservation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=100_000_000)
    memory_limit: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1_000_000_000)
    environment: Mapped[str | None] = mapped_column(String(255))
    environment_version: Mapped[str | None] = mapped_column(String(64))
    params_schema: Mapped[dict | None] = mapped_column(JSONB)
    build_error: Mapped[str | None] = mapped_column(Text)
    # The build whose image new runs use; only set by a successful build.
    current_build_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("script_builds.id", use_alter=True, ondelete="SET NULL")
    )
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    user = relationship("User", lazy="raise_on_sql")
    current_build = relationship("ScriptBuild", foreign_keys=[current_build_id], lazy="select")

    @property
    def uses_legacy_environment(self) -> bool:
        """Built FROM a Trends.Earth environment image and run by its gefcore (CONTRACT 10)."""
        return bool(self.environment and self.environment_version)

    @property
    def current_image(self) -> str | None:
        return self.current_build.image if self.current_build else None

    def visible_to(self, user) -> bool:
        if user.is_admin or self.user_id == user.id or self.public:
            return True
        return self.restricted and (
            user.role in self.allowed_roles or user.id in self.allowed_users
        )


class ScriptBuild(db.Model):
    """One upload of a script's archive and what building it produced."""

    __tablename__ = "script_builds"
    __table_args__ = (Index("ix_script_builds_script_id", "script_id", "created_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    script_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scripts.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=ScriptStatus.PENDING)
    archive_key: Mapped[str] = mapped_column(String(512), nullable=False)
    # What it builds FROM, fixed at upload: a later change of the script's environment never
    # changes how this build's image is made or run.
    base_image: Mapped[str | None] = mapped_column(String(512))
    legacy: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    image: Mapped[str | None] = mapped_column(String(512))
    image_digest: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class ScriptLog(db.Model):
    __tablename__ = "script_logs"
    __table_args__ = (Index("ix_script_logs_script_id_id", "script_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    script_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scripts.id", ondelete="CASCADE"), nullable=False
    )
    build_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("script_builds.id", ondelete="SET NULL")
    )
    text: Mapped[str] = mapped_column(Text, nullable=False)
    register_date: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
