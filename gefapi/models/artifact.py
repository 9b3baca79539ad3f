"""Files an execution produced, uploaded by its runtime and kept until they expire."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db
from gefapi.models.base import created_at_column, updated_at_column, utcnow, uuid_pk


class Artifact(db.Model):
    """One stored file. The stored object's key never contains the given name; replacing a
    name makes a new artifact (a new id), so links to the old content stop working."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("execution_id", "name"),
        Index("ix_artifacts_user_id", "user_id"),
        Index("ix_artifacts_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    )
    # The execution's owner, kept here for storage accounting and quotas.
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    media_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    md5: Mapped[str] = mapped_column(String(32), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    storage_key: Mapped[str] = mapped_column(String(512), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    # None: kept until the execution is deleted.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or utcnow())


class ArtifactPolicy(db.Model):
    """A script's own artifact settings, overriding the server's defaults."""

    __tablename__ = "artifact_policies"

    script_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scripts.id", ondelete="CASCADE"), primary_key=True
    )
    # Days the files of this script's runs are kept; 0 keeps them; None: the server's default.
    retention_days: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = updated_at_column()
