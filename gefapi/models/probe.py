"""What the worker last learnt of the execution engine (gefapi/tasks/metrics.py), for /metrics:
the API itself never talks to the engine."""

from datetime import datetime

from sqlalchemy import Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gefapi.extensions import db


class EngineProbe(db.Model):
    __tablename__ = "engine_probes"
    backend: Mapped[str] = mapped_column(String(32), primary_key=True)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    checked_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
