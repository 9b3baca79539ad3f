"""Runs of scripts: creation, the state machine on every write, logs, cancel, listings."""

import json
import uuid
from dataclasses import dataclass

import jsonschema
from flask import current_app
from sqlalchemy import BigInteger, and_, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer, selectinload

from gefapi.errors import (
    AuthenticationFailed,
    Conflict,
    ExecutionNotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationError,
)
from gefapi.extensions import db
from gefapi.models import Execution, ExecutionLog, ExecutionStatus, Script, ScriptStatus, User
from gefapi.models.base import utcnow
from gefapi.models.execution import (
    TERMINAL_STATUSES,
    ExecutionTotal,
    ScriptExecutionTotal,
    StatusLog,
)
from gefapi.queue import enqueue
from gefapi.services import client_service, script_service
from gefapi.services.execution_state import request_cancel, transition
from gefapi.services.listing import (
    Page,
    paginate,
    paginate_parts,
    parse_sort,
    part_counts,
    poll_logs,
)

SORTABLE = {
    "start_date": Execution.start_date,
    "end_date": Execution.end_date,
    "status": Execution.status,
    "progress": Execution.progress,
    "script_id": Execution.script_id,
    "user_id": Execution.user_id,
    "id": Execution.id,
}
DEFAULT_ORDER = (Execution.end_date.desc().nulls_first(), Execution.start_date.desc())
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
# An execution's runtime token ends when the execution does. While it is being cancelled the
# runtime may still report its completion (CONTRACT section 8).
RUNTIME_ENDED = TERMINAL_STATUSES


class ScriptNotBuilt(Conflict):
    error_code = "script_not_built"


class ExecutionFinished(Conflict):
    error_code = "execution_finished"


@dataclass(frozen=True)
class Caller:
    """A user, or the runtime of one execution (whose token opens that execution only)."""

    user: User
    runtime_execution_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.runtime_execution_id is None and self.user.is_admin

    def may_read(self, execution: Execution) -> bool:
        if self.runtime_execution_id is not None:
            return execution.id == self.runtime_execution_id
        return self.user.is_admin or execution.user_id == self.user.id

    def may_report(self, execution: Execution) -> bool:
        """PATCH and log posts: the execution's runtime, or an administrator."""
        return execution.id == self.runtime_execution_id or self.is_admin

    def may_manage(self, execution: Execution) -> bool:
        """Cancel and delete: the owner or an administrator."""
        return self.runtime_execution_id is None and (
            self.user.is_admin or execution.user_id == self.user.id
        )


# Running ---------------------------------------------------------------------------------


def run(
    script_ref: str,
    params: dict,
    *,
    by: User,
    idempotency_key: str | None = None,
    client_header: str | None = None,
) -> Execution:
    """A PENDING execution, committed, with its dispatch enqueued."""
    if idempotency_key:
        existing = _by_idempotency_key(by, idempotency_key)
        if existing is not None:
            return existing
    script = script_service.get_visible(script_ref, by=by)
    if script.status != ScriptStatus.SUCCESS or script.current_build_id is None:
        raise ScriptNotBuilt(f"Script {script.slug} is not built (status {script.status})")
    _validate_params(script, params)
    plugin = (client_service.parse_header(client_header) or {}).get("client_type") == "qgis_plugin"
    execution = Execution(
        id=uuid.uuid4(),
        script_id=script.id,
        build_id=script.current_build_id,
        user_id=by.id,
        params=params,
        is_plugin_execution=plugin,
        idempotency_key=idempotency_key,
    )
    db.session.add(execution)
    db.session.add(StatusLog(execution_id=execution.id, status_to=ExecutionStatus.PENDING))
    if plugin and not by.is_plugin_user:
        client_service.mark_plugin_user(by)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        existing = _by_idempotency_key(by, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing
    enqueue("executions.dispatch", str(execution.id))
    db.session.commit()
    return execution


def _by_idempotency_key(user: User, key: str) -> Execution | None:
    return db.session.scalar(
        select(Execution).where(Execution.user_id == user.id, Execution.idempotency_key == key)
    )


def _validate_params(script: Script, params: dict) -> None:
    if not script.params_schema:
        return
    validator = jsonschema.validators.validator_for(script.params_schema)(script.params_schema)
    errors: dict[str, list[str]] = {}
    for error in validator.iter_errors(params):
        field = ".".join(str(part) for part in error.absolute_path) or "_schema"
        errors.setdefault(field, []).append(error.message)
    if errors:
        raise ValidationError(
            "The parameters do not match the script's params_schema", errors=errors
        )


# Reading ---------------------------------------------------------------------------------


def get(execution_id: str, *, caller: Caller, for_update: bool = False, options=()) -> Execution:
    """404 when missing, deleted, malformed or not readable by the caller."""
    try:
        key = uuid.UUID(str(execution_id))
    except ValueError:
        raise ExecutionNotFound(f"Execution {execution_id} not found") from None
    query = select(Execution).where(Execution.id == key, ~Execution.deleted).options(*options)
    execution = db.session.scalar(query.with_for_update() if for_update else query)
    if execution is None or not caller.may_read(execution):
        raise ExecutionNotFound(f"Execution {execution_id} not found")
    if caller.runtime_execution_id is not None and execution.status in RUNTIME_ENDED:
        raise AuthenticationFailed(
            f"Execution {execution.id} is {execution.status}: its token no longer works",
            error_code="token_revoked",
        )
    return execution


def loading_options(include: set[str], exclude: set[str]) -> list:
    """Load what the answer shows: related rows in one query per relation for the whole page,
    and the large JSON columns only when they are not excluded."""
    options = []
    if include & {"script", "script_name"}:
        options.append(selectinload(Execution.script))
    if include & {"user", "user_name", "user_email"}:
        options.append(selectinload(Execution.user))
    options += [
        defer(getattr(Execution, name)) for name in ("params", "results") if name in exclude
    ]
    return options


def load_logs(executions: list[Execution], include: set[str]) -> None:
    if "logs" in include:
        for execution in executions:
            execution.recent_logs = poll_logs(ExecutionLog, ExecutionLog.execution_id, execution.id)


def list_executions(
    *,
    caller: Caller,
    own_only: bool,
    page=None,
    per_page=None,
    sort=None,
    status=None,
    script_id=None,
    user_id=None,
    updated_at=None,
    options=(),
) -> Page:
    if own_only or not caller.is_admin:
        if user_id is not None and user_id != caller.user.id:
            raise PermissionDenied("You may only list your own executions")
        user_id = caller.user.id
    conditions = [~Execution.deleted]
    if user_id is not None:
        conditions.append(Execution.user_id == user_id)
    statuses = _statuses(status) if status else None
    if statuses:
        conditions.append(Execution.status.in_(statuses))
    if script_id is not None:
        conditions.append(Execution.script_id == script_id)
    custom_order = parse_sort(sort, SORTABLE)
    order = [*(custom_order or DEFAULT_ORDER), Execution.id]
    cap = current_app.config["MAX_UNPAGINATED_EXECUTIONS"]
    if updated_at is None:
        query = select(Execution).where(*conditions).options(*options).order_by(*order)
        count = _stored_total(user_id, statuses, script_id)
        return paginate(query, page=page, per_page=per_page, cap=cap, count=count)
    # "Started or ended on or after t", as two disjoint index ranges (end_date >= start_date):
    # the unfinished, then the finished, which is also the default order.
    branches = (
        and_(Execution.end_date.is_(None), Execution.start_date >= updated_at),
        Execution.end_date >= updated_at,
    )
    parts = [
        select(Execution).where(*conditions, branch).options(*options).order_by(*order)
        for branch in branches
    ]
    if not custom_order:
        return paginate_parts(parts, page=page, per_page=per_page, cap=cap)
    query = select(Execution).where(*conditions, or_(*branches)).options(*options).order_by(*order)
    count = select(sum(part_counts(parts)))
    return paginate(query, page=page, per_page=per_page, cap=cap, count=count)


def _stored_total(user_id, statuses: list[str] | None, script_id=None):
    """The undeleted executions of one user or of everybody, of one script or of all, in some
    statuses or in all: a sum over the stored totals, never a count of executions."""
    totals = ExecutionTotal if script_id is None else ScriptExecutionTotal
    query = select(func.coalesce(func.sum(totals.total), 0).cast(BigInteger))
    if script_id is not None:
        query = query.where(ScriptExecutionTotal.script_id == script_id)
    if user_id is not None:
        query = query.where(totals.user_id == user_id)
    if statuses:
        query = query.where(totals.status.in_(statuses))
    return query


def _statuses(value: str) -> list[str]:
    names = [name.strip().upper() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in ExecutionStatus.__members__]
    if unknown:
        raise ValidationError(
            "Unknown status", errors={"status": [f"Unknown status: {name}" for name in unknown]}
        )
    return names


def logs(execution_id: str, *, caller: Caller, start=None, last_id=None) -> list[ExecutionLog]:
    execution = get(execution_id, caller=caller)
    return poll_logs(
        ExecutionLog, ExecutionLog.execution_id, execution.id, start=start, last_id=last_id
    )


# Reporting (the runtime, administrators) ---------------------------------------------------


def update(execution_id: str, changes: dict, *, caller: Caller) -> Execution:
    """Status along the state machine, progress clamped to 0-100, results size-capped.

    A finished execution accepts only a repeat of what it already holds (a runtime retrying).
    """
    if not changes:
        raise ValidationError("Give status, progress or results")
    execution = get(execution_id, caller=caller, for_update=True)
    if not caller.may_report(execution):
        raise PermissionDenied("Only the execution's runtime or an administrator may report")
    if "results" in changes:
        _check_results_size(changes["results"])
    if execution.is_finished:
        if _changes_anything(execution, changes):
            raise ExecutionFinished(f"Execution {execution.id} is {execution.status}")
        return execution
    if "results" in changes:
        execution.results = changes["results"]
    if "progress" in changes:
        execution.progress = clamp_progress(changes["progress"])
    if "status" in changes:
        transition(execution, ExecutionStatus(changes["status"]))
    db.session.commit()
    return execution


def _changes_anything(execution: Execution, changes: dict) -> bool:
    if "status" in changes and changes["status"] != execution.status:
        return True
    if "results" in changes and changes["results"] != execution.results:
        return True
    return "progress" in changes and clamp_progress(changes["progress"]) != execution.progress


def clamp_progress(value: float) -> int:
    return max(0, min(100, int(value)))


def _check_results_size(results) -> None:
    limit = current_app.config["RESULTS_MAX_BYTES"]
    if len(json.dumps(results, separators=(",", ":"))) > limit:
        raise PayloadTooLarge(f"Results larger than {limit} bytes")


def add_logs(execution_id: str, entries: list[dict], *, caller: Caller) -> list[dict]:
    """The stored lines, oldest first, as plain rows: one INSERT ... RETURNING for the batch,
    and no ORM objects that the commit would expire and the answer would reload one by one."""
    execution = get(
        execution_id, caller=caller, options=[defer(Execution.params), defer(Execution.results)]
    )
    if not caller.may_report(execution):
        raise PermissionDenied("Only the execution's runtime or an administrator may post logs")
    now = utcnow()
    rows = [
        {
            "execution_id": execution.id,
            "text": entry["text"],
            "level": entry["level"],
            "register_date": now,
        }
        for entry in entries
    ]
    table = ExecutionLog.__table__  # Core, not the ORM's bulk insert: no per-row bookkeeping
    ids = db.session.scalars(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
    ).all()
    db.session.commit()
    return [{"id": id_, **row} for id_, row in zip(ids, rows, strict=True)]


def normalise_level(level: str) -> str:
    level = level.strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in LEVELS:
        raise ValidationError(
            "Unknown log level", errors={"level": [f"Use one of {', '.join(sorted(LEVELS))}."]}
        )
    return level


# Managing (owners, administrators) ---------------------------------------------------------


def cancel(execution_id: str, *, caller: Caller) -> tuple[Execution, str]:
    """Before dispatch: straight to CANCELLED. After: CANCELLING, and the stop task ends it."""
    execution = get(execution_id, caller=caller, for_update=True)
    if not caller.may_manage(execution):
        raise ExecutionNotFound(f"Execution {execution_id} not found")
    previous = execution.status
    if execution.is_finished:
        raise ExecutionFinished(f"Execution {execution.id} is already {execution.status}")
    request_cancel(execution, "Cancelled on request")
    db.session.commit()
    return execution, previous


def delete(execution_id: str, *, caller: Caller) -> Execution:
    execution = get(execution_id, caller=caller, for_update=True)
    if not caller.may_manage(execution):
        raise ExecutionNotFound(f"Execution {execution_id} not found")
    if execution.status not in TERMINAL_STATUSES:
        raise Conflict("Cancel the execution before deleting it", error_code="execution_running")
    execution.deleted = True
    db.session.commit()
    return execution
