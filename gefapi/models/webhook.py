"""Webhooks: a user's endpoint and signing secret, an execution's OGC subscriber URIs, and every
delivery with its attempts (sent by the worker, gefapi/tasks/webhooks.py)."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db
from gefapi.models.base import created_at_column, updated_at_column, utcnow, uuid_pk


class UserWebhook(db.Model):
    """The secret that signs every delivery to the user's targets, and optionally a URL told of
    every status change of all their executions."""

    __tablename__ = "user_webhooks"
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str | None] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class ExecutionSubscriber(db.Model):
    """OGC API - Processes `subscriber` of one execution."""

    __tablename__ = "execution_subscribers"
    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    success_uri: Mapped[str | None] = mapped_column(String(2048))
    in_progress_uri: Mapped[str | None] = mapped_column(String(2048))
    failed_uri: Mapped[str | None] = mapped_column(String(2048))


class DeliveryState:
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"  # every attempt failed
    REFUSED = "REFUSED"  # the target resolved to a forbidden address when sent


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_execution_id", "execution_id"),
        # The retry sweep's list: pending deliveries by when they are due.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("state = 'PENDING'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    event: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict] = mapped_column(JSONB, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    created_at: Mapped[datetime] = created_at_column()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
