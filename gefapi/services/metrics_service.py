"""What /metrics reads from the database, and the worker's probe of the execution engine."""

from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import func, select

from gefapi.extensions import db
from gefapi.models import Execution, ExecutionStatus, ExecutionTotal
from gefapi.models.base import utcnow
from gefapi.models.probe import EngineProbe


@dataclass(frozen=True)
class Probe:
    backend: str
    ok: bool
    age_seconds: float


@dataclass
class Snapshot:
    executions_by_status: dict[str, int] = field(default_factory=dict)
    queue_length: int = 0
    queue_oldest_seconds: float = 0.0
    engine_probes: list[Probe] = field(default_factory=list)


def snapshot() -> Snapshot:
    """Three small queries: the stored totals (one row per user and status), the PENDING
    executions through the unfinished-executions index, the engine probes."""
    now = utcnow()
    state = Snapshot()
    totals = db.session.execute(
        select(ExecutionTotal.status, func.coalesce(func.sum(ExecutionTotal.total), 0)).group_by(
            ExecutionTotal.status
        )
    )
    state.executions_by_status = {status.value: 0 for status in ExecutionStatus}
    state.executions_by_status.update({status: int(total) for status, total in totals})
    count, oldest = db.session.execute(
        select(func.count(), func.min(Execution.start_date)).where(
            Execution.status == ExecutionStatus.PENDING
        )
    ).one()
    state.queue_length = count
    state.queue_oldest_seconds = (now - oldest).total_seconds() if oldest else 0.0
    state.engine_probes = [
        Probe(probe.backend, probe.ok, (now - probe.checked_at).total_seconds())
        for probe in db.session.scalars(select(EngineProbe))
    ]
    db.session.rollback()  # nothing to keep; end the read transaction
    return state


def probe_engine() -> bool:
    """Ask the configured execution engine whether it answers, and record what it said (the
    worker's periodic task: the API never talks to the engine)."""
    from gefapi.executors import get_backend

    name = current_app.config.get("EXECUTION_BACKEND", "auto")
    ok, detail = True, None
    try:
        backend = get_backend()
        name = getattr(backend, "name", name)
        client = getattr(backend, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()
    except Exception as exc:  # any failure is the answer
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:1000]
    probe = db.session.get(EngineProbe, name) or EngineProbe(backend=name)
    probe.ok, probe.checked_at, probe.detail = ok, utcnow(), detail
    db.session.add(probe)
    db.session.commit()
    return ok
