import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db
from gefapi.models.base import created_at_column, uuid_pk


class RefreshToken(db.Model):
    """Opaque refresh tokens; only their SHA-256 is stored."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class OneTimeTokenKind(StrEnum):
    PASSWORD_RESET = "PASSWORD_RESET"  # a link to choose a new password
    ACCOUNT_SETUP = "ACCOUNT_SETUP"  # the set-password link of a new account
    TEMPORARY_PASSWORD = "TEMPORARY_PASSWORD"  # legacy recovery: an emailed password


class OneTimeToken(db.Model):
    """Password links and legacy temporary passwords; hashed, expiring, single use."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (Index("ix_one_time_tokens_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    # SHA-256 for links; an Argon2 hash for temporary passwords.
    secret_hash: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class RevokedAccessToken(db.Model):
    """Logged-out access tokens, kept until they would have expired anyway."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)
