"""Per-user credentials for Earth Engine and openEO; every secret column is Fernet ciphertext
(gefapi/crypto.py), never plaintext."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db
from gefapi.models.base import created_at_column, updated_at_column


class GeeCredentialsType(StrEnum):
    OAUTH = "oauth"
    SERVICE_ACCOUNT = "service_account"


class GeeCredential(db.Model):
    """One user's Earth Engine credentials and cloud project. `kind` is null while only a
    cloud project is set."""

    __tablename__ = "gee_credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str | None] = mapped_column(String(32))
    # oauth: {"access_token", "refresh_token", "expires_at"}; service_account: the key JSON.
    secret_enc: Mapped[str | None] = mapped_column(Text)
    google_email: Mapped[str | None] = mapped_column(String(254))
    cloud_project: Mapped[str | None] = mapped_column(String(64))
    connected_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class GeeOAuthState(db.Model):
    """A started authorization: single use, expiring. Only the state's SHA-256 is stored."""

    __tablename__ = "gee_oauth_states"
    __table_args__ = (
        Index("ix_gee_oauth_states_user_id", "user_id"),
        Index("ix_gee_oauth_states_expires_at", "expires_at"),
    )

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    code_verifier_enc: Mapped[str] = mapped_column(Text, nullable=False)
    redirect_uri: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class OpenEOCredential(db.Model):
    """One user's openEO credentials (`basic` or `oidc_refresh_token`), as one encrypted JSON."""

    __tablename__ = "openeo_credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    secret_enc: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
