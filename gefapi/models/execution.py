import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gefapi.errors import Conflict
from gefapi.extensions import db
from gefapi.models.base import updated_at_column, utcnow, uuid_pk


class ExecutionStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


S = ExecutionStatus
# The same statuses in OGC API - Processes' words (its jobs and the webhooks' payloads).
OGC_STATUS = {
    S.PENDING: "accepted",
    S.READY: "accepted",
    S.RUNNING: "running",
    S.FINISHED: "successful",
    S.FAILED: "failed",
    S.CANCELLING: "dismissed",
    S.CANCELLED: "dismissed",
}
TERMINAL_STATUSES = frozenset({S.FINISHED, S.FAILED, S.CANCELLED})
UNFINISHED_STATUSES = frozenset(set(S) - TERMINAL_STATUSES)

# CONTRACT.md section 8. Same-status updates are no-ops and not listed here.
ALLOWED_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    S.PENDING: frozenset({S.READY, S.FAILED, S.CANCELLED, S.CANCELLING}),
    S.READY: frozenset({S.RUNNING, S.FINISHED, S.FAILED, S.CANCELLING}),
    S.RUNNING: frozenset({S.FINISHED, S.FAILED, S.CANCELLING}),
    S.CANCELLING: frozenset({S.CANCELLED, S.FINISHED, S.FAILED}),
    S.FINISHED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


class InvalidTransition(Conflict):
    error_code = "invalid_status_transition"


class Execution(db.Model):
    __tablename__ = "executions"
    # Lists order by "unfinished first, then newest" = end_date DESC NULLS FIRST, start_date DESC.
    __table_args__ = (
        Index(
            "ix_executions_user_order",
            "user_id",
            text("end_date DESC NULLS FIRST"),
            text("start_date DESC"),
            postgresql_where=text("NOT deleted"),
        ),
        Index(
            "ix_executions_user_start_date",
            "user_id",
            text("start_date DESC"),
            postgresql_where=text("NOT deleted"),
        ),
        Index(
            "ix_executions_order",
            text("end_date DESC NULLS FIRST"),
            text("start_date DESC"),
            postgresql_where=text("NOT deleted"),
        ),
        Index("ix_executions_start_date", text("start_date DESC")),
        Index(
            "ix_executions_unfinished",
            "status",
            "start_date",
            postgresql_where=text("status IN ('PENDING','READY','RUNNING','CANCELLING')"),
        ),
        Index("ix_executions_script_id", "script_id"),
        # What finished executions left on the engine: the reconciler's clean-up list.
        Index(
            "ix_executions_leftover_handle",
            "id",
            postgresql_where=text(
                "backend_handle IS NOT NULL AND status IN ('FINISHED','FAILED','CANCELLED')"
            ),
        ),
        Index(
            "uq_executions_user_id_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    script_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("scripts.id"), nullable=False)
    build_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("script_builds.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=S.PENDING)
    progress: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    params: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    results: Mapped[dict | list | None] = mapped_column(JSONB)
    start_date: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    end_date: Mapped[datetime | None] = mapped_column(DateTime)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    backend_handle: Mapped[str | None] = mapped_column(String(255))
    is_plugin_execution: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = updated_at_column()

    script = relationship("Script", lazy="raise_on_sql")
    user = relationship("User", lazy="raise_on_sql")

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration_seconds(self) -> float:
        return ((self.end_date or utcnow()) - self.start_date).total_seconds()

    def transition_to(self, new_status: ExecutionStatus) -> "StatusLog | None":
        """Move along the state machine; returns the status-log row to add, or None for a no-op."""
        current = ExecutionStatus(self.status)
        if new_status == current:
            return None
        if new_status not in ALLOWED_TRANSITIONS[current]:
            raise InvalidTransition(f"Execution cannot go from {current} to {new_status}")
        now = utcnow()
        self.status = new_status
        if new_status in TERMINAL_STATUSES:
            self.end_date = now
        if new_status == S.FINISHED:
            self.progress = 100
        return StatusLog(
            execution_id=self.id, status_from=current, status_to=new_status, timestamp=now
        )


class ExecutionLog(db.Model):
    __tablename__ = "execution_logs"
    __table_args__ = (Index("ix_execution_logs_execution_id_id", "execution_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    )
    level: Mapped[str] = mapped_column(String(16), nullable=False, default="INFO")
    text: Mapped[str] = mapped_column(Text, nullable=False)
    register_date: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class StatusLog(db.Model):
    __tablename__ = "status_logs"
    __table_args__ = (
        Index("ix_status_logs_execution_id", "execution_id"),
        Index("ix_status_logs_timestamp", "timestamp"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
    )
    status_from: Mapped[str | None] = mapped_column(String(16))
    status_to: Mapped[str] = mapped_column(String(16), nullable=False)
    timestamp: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    detail: Mapped[str | None] = mapped_column(Text)


class ExecutionTotal(db.Model):
    """How many undeleted executions each user has in each status, kept by a trigger on
    `executions` (migration 3c1d2e4f5a6b): list totals and status counts cost one row per
    (user, status), not one per execution."""

    __tablename__ = "execution_totals"
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger, default=0)


class ScriptExecutionTotal(db.Model):
    """The same per (script, user, status): totals of lists filtered by script (migration
    6e4f5a6b7c8d)."""

    __tablename__ = "script_execution_totals"
    script_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("scripts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
