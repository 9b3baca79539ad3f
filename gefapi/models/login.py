from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db
from gefapi.models.base import utcnow


class FailedLogins(db.Model):
    """Failed logins per email address tried, whether or not an account has that address: known
    and unknown addresses get the same rows, the same work and the same answers."""

    __tablename__ = "failed_logins"
    __table_args__ = (Index("ix_failed_logins_last_failure_at", "last_failure_at"),)

    # SHA-256 of the lower-cased address.
    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Locks in a row: each lasts twice as long as the one before, up to a maximum.
    locks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
