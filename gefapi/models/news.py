"""News items shown in the clients, with their translations. `message` is markdown as the
administrator wrote it; `message_html` is what the service rendered and sanitized from it."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ARRAY, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gefapi.extensions import db
from gefapi.models.base import created_at_column, updated_at_column, utcnow, uuid_pk


class NewsType(StrEnum):
    ANNOUNCEMENT = "announcement"
    WARNING = "warning"
    RELEASE = "release"
    TIP = "tip"
    MAINTENANCE = "maintenance"


class Platform(StrEnum):
    """Where a news item is shown (the names today's clients send)."""

    QGIS_PLUGIN = "qgis_plugin"
    WEB = "web"
    API_UI = "api_ui"


class NewsItem(db.Model):
    __tablename__ = "news_items"
    __table_args__ = (Index("ix_news_items_publish_at", "publish_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    message_html: Mapped[str] = mapped_column(Text, nullable=False)
    # The language of title, message and link_text: what every other language falls back to.
    language: Mapped[str] = mapped_column(String(16), nullable=False, default="en")
    link_url: Mapped[str | None] = mapped_column(String(2000))
    link_text: Mapped[str | None] = mapped_column(String(100))
    news_type: Mapped[str] = mapped_column(
        String(20), nullable=False, default=NewsType.ANNOUNCEMENT
    )
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Empty means every platform / every role (and anonymous readers).
    target_platforms: Mapped[list[str]] = mapped_column(
        ARRAY(String(32)), nullable=False, default=list
    )
    target_roles: Mapped[list[str]] = mapped_column(ARRAY(String(16)), nullable=False, default=list)
    min_version: Mapped[str | None] = mapped_column(String(32))
    max_version: Mapped[str | None] = mapped_column(String(32))
    publish_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    translations = relationship(
        "NewsTranslation",
        lazy="selectin",
        cascade="all, delete-orphan",
        order_by="NewsTranslation.language",
        back_populates="news_item",
    )

    def translation(self, language: str | None):
        """The translation for `language` (`pt-BR` falls back to `pt`), or None."""
        if not language:
            return None
        wanted = language.replace("_", "-").lower()
        by_language = {t.language: t for t in self.translations}
        return by_language.get(wanted) or by_language.get(wanted.split("-")[0])


class NewsTranslation(db.Model):
    __tablename__ = "news_translations"

    news_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("news_items.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(16), primary_key=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    message_html: Mapped[str] = mapped_column(Text, nullable=False)
    link_text: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    news_item = relationship("NewsItem", back_populates="translations")
