import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db
from gefapi.models.base import created_at_column, updated_at_column, utcnow, uuid_pk


class Role(StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"
    SUPERADMIN = "SUPERADMIN"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


PROFILE_FIELDS = (
    "name",
    "country",
    "institution",
    "role_title",
    "sector",
    "sector_other",
    "gender_identity",
    "gender_identity_description",
    "gee_license_acknowledged",
    "purpose_of_use",
    "purpose_of_use_other",
    "email_notifications_enabled",
    "email_subscription_news",
    "email_subscription_engagement",
    "email_subscription_system_updates",
    "is_in_mailing_list",
)


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        # Soft-deleted accounts free their email for a new registration.
        Index(
            "uq_users_email_active",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text("NOT deleted"),
        ),
        Index("ix_users_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), nullable=False, default=Role.USER)
    country: Mapped[str | None] = mapped_column(String(120))
    institution: Mapped[str | None] = mapped_column(String(255))
    role_title: Mapped[str | None] = mapped_column(String(255))
    sector: Mapped[str | None] = mapped_column(String(64))
    sector_other: Mapped[str | None] = mapped_column(String(255))
    gender_identity: Mapped[str | None] = mapped_column(String(64))
    gender_identity_description: Mapped[str | None] = mapped_column(String(255))
    gee_license_acknowledged: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    purpose_of_use: Mapped[str | None] = mapped_column(String(64))
    purpose_of_use_other: Mapped[str | None] = mapped_column(Text)
    email_notifications_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    email_subscription_news: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    email_subscription_engagement: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False
    )
    email_subscription_system_updates: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True
    )
    is_in_mailing_list: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_plugin_user: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    max_concurrent_executions: Mapped[int | None] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)
    failed_login_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    # Access tokens issued before this instant are revoked (password change, deletion).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    def has_role(self, role: Role) -> bool:
        """At least `role`."""
        return Role(self.role).rank >= role.rank

    @property
    def is_admin(self) -> bool:
        return self.has_role(Role.ADMIN)

    def is_locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or utcnow())


class UserClient(db.Model):
    """The latest X-TE-Client header a user sent, per client type (usage statistics)."""

    __tablename__ = "user_clients"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str | None] = mapped_column(String(64))
    os: Mapped[str | None] = mapped_column(String(64))
    qgis_version: Mapped[str | None] = mapped_column(String(64))
    lang: Mapped[str | None] = mapped_column(String(16))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
