"""Executions on the container engine: dispatch (with per-user limits), stop, and reconciling
what the database believes with what the engine shows. Every step is idempotent."""

import base64
import logging
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta

from flask import current_app
from sqlalchemy import Engine, func, select

from gefapi.executors import get_backend
from gefapi.executors.base import BackendError, BackendUnavailable, RunSpec, RunState, RunStatus
from gefapi.extensions import db
from gefapi.models import Execution, ExecutionLog, ExecutionStatus, Script, ScriptBuild, User
from gefapi.models.base import utcnow
from gefapi.models.execution import TERMINAL_STATUSES, StatusLog
from gefapi.services import execution_login
from gefapi.services.execution_state import transition

log = logging.getLogger(__name__)
S = ExecutionStatus
ACTIVE = (S.READY, S.RUNNING, S.CANCELLING)
LAST_LINES = 30


def service_name(execution_id) -> str:
    return f"gefapi-execution-{execution_id}"


def _locked(execution_id) -> Execution | None:
    """The row, locked; None if another worker holds it."""
    return db.session.scalar(
        select(Execution)
        .where(Execution.id == uuid.UUID(str(execution_id)))
        .with_for_update(skip_locked=True)
    )


# Dispatch ----------------------------------------------------------------------------------


def dispatch(execution_id: str) -> None:
    execution = _locked(execution_id)
    if execution is None or execution.status != S.PENDING:
        db.session.rollback()
        return
    user = db.session.scalar(select(User).where(User.id == execution.user_id).with_for_update())
    if not _has_free_slot(user) or _queued_ahead(execution):
        if execution.queued_at is None:
            execution.queued_at = utcnow()
        db.session.commit()
        return
    try:
        handle = get_backend().start(run_spec(execution))
    except BackendUnavailable:
        db.session.rollback()
        raise
    except Exception as exc:
        if not isinstance(exc, BackendError):
            log.exception("Execution %s could not be started", execution_id)
            exc = "an internal error (the worker's log has the details)"
        _fail(execution, f"The execution could not be started: {exc}")
        db.session.commit()
        return
    execution.backend_handle = handle
    execution.dispatched_at = utcnow()
    transition(execution, S.READY)
    db.session.commit()


def _has_free_slot(user: User) -> bool:
    limit = user.max_concurrent_executions or current_app.config["EXECUTION_MAX_PER_USER"]
    active = db.session.scalar(
        select(func.count())
        .select_from(Execution)
        .where(Execution.user_id == user.id, Execution.status.in_(ACTIVE))
    )
    return active < limit


def _queued_ahead(execution: Execution) -> bool:
    """FIFO per user: an older execution still waiting goes first."""
    return (
        db.session.scalar(
            select(Execution.id)
            .where(
                Execution.user_id == execution.user_id,
                Execution.status == S.PENDING,
                Execution.start_date < execution.start_date,
                Execution.id != execution.id,
            )
            .limit(1)
        )
        is not None
    )


def run_spec(execution: Execution) -> RunSpec:
    script = db.session.get(Script, execution.script_id)
    build = db.session.get(ScriptBuild, execution.build_id) if execution.build_id else None
    if build is None or not build.image:
        raise BackendError("the script's build no longer exists")
    return RunSpec(
        name=service_name(execution.id),
        image=build.image,
        env=runtime_env(execution),
        cpu_reservation=script.cpu_reservation,
        cpu_limit=script.cpu_limit,
        memory_reservation=script.memory_reservation,
        memory_limit=script.memory_limit,
        labels={"gefapi.execution": str(execution.id), "gefapi.script": str(script.id)},
    )


def runtime_env(execution: Execution) -> dict[str, str]:
    """What the code in the container receives, and nothing else: CONTRACT section 9 for
    gefapi's own environment image, section 10 for a legacy environment image (gefcore)."""
    config = current_app.config
    env = {
        "EXECUTION_ID": str(execution.id),
        "API_URL": config["EXECUTION_API_URL"].rstrip("/"),
        "API_TOKEN": execution_login.runtime_token(execution),
        "ENV": "prod",
    }
    if config.get("API_ENVIRONMENT_USER") and config.get("LEGACY_ENVIRONMENT_PASSWORD"):
        env["API_USER"] = config["API_ENVIRONMENT_USER"]
        env["API_PASSWORD"] = config["LEGACY_ENVIRONMENT_PASSWORD"]
    build = db.session.get(ScriptBuild, execution.build_id) if execution.build_id else None
    if build is not None and build.legacy:
        env = {**execution_login.credentials(execution), **env}  # the shared account wins
        env.update(_s3_access_env(config))
        env.update(_earth_engine_env(config))
    if config.get("PARAMS_S3_BUCKET"):
        from gefapi.storage.params import write_params

        write_params(config, execution)
        env["PARAMS_S3_BUCKET"] = config["PARAMS_S3_BUCKET"]
        env["PARAMS_S3_PREFIX"] = config["PARAMS_S3_PREFIX"]
    from gefapi.services import credentials_service

    credentials_service.apply_execution_env(env, execution)  # the owner's own GEE and openEO
    return env


def _s3_access_env(config) -> dict[str, str]:
    """How gefcore's boto3 reaches the params: the settings made for executions, never the
    server's own keys (none at all when the nodes carry an instance role)."""
    names = {
        "AWS_ENDPOINT_URL_S3": "EXECUTION_S3_ENDPOINT_URL",
        "AWS_DEFAULT_REGION": "EXECUTION_AWS_REGION",
        "AWS_ACCESS_KEY_ID": "EXECUTION_AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "EXECUTION_AWS_SECRET_ACCESS_KEY",
    }
    return {name: config[setting] for name, setting in names.items() if config.get(setting)}


def _earth_engine_env(config) -> dict[str, str]:
    """The server's Earth Engine setup for a run: its service account, else SKIP_GEE_INIT so
    that scripts that do not need Earth Engine run and those that do fail with gefcore's own
    message. The owner's own credentials replace it (credentials_service)."""
    env = {name: config[name] for name in ("GOOGLE_PROJECT_ID", "GEE_ENDPOINT") if config.get(name)}
    account = config.get("EE_SERVICE_ACCOUNT_JSON")
    if account:
        env["EE_SERVICE_ACCOUNT_JSON"] = _as_base64_json(account)
    else:
        env["SKIP_GEE_INIT"] = "true"
    return env


def _as_base64_json(value: str) -> str:
    """A service-account key given as JSON or as its base64, as base64 (what gefcore reads)."""
    if value.lstrip().startswith("{"):
        return base64.b64encode(value.encode()).decode()
    return value.strip()


def dispatch_waiting() -> None:
    """Periodic: executions waiting for a slot, or whose dispatch message was lost."""
    with exclusive("dispatch_waiting") as mine:
        if not mine:
            log.info("Another dispatch pass is still running; skipping this one")
            return
        stale = utcnow() - timedelta(seconds=current_app.config["DISPATCH_STALE_SECONDS"])
        waiting = db.session.scalars(
            select(Execution.id)
            .where(
                Execution.status == S.PENDING,
                Execution.queued_at.is_not(None) | (Execution.start_date < stale),
            )
            .order_by(Execution.start_date)
            .limit(current_app.config["RECONCILE_BATCH"])
        ).all()
        db.session.rollback()
        each_isolated(waiting, dispatch)


def each_isolated(execution_ids, step) -> None:
    """`step` on each id, one transaction each: an unexpected error on one is logged and the
    rest go on; an unreachable engine ends the pass (the next one retries)."""
    for execution_id in execution_ids:
        try:
            step(str(execution_id))
        except BackendUnavailable:
            db.session.rollback()
            log.warning("Container engine unavailable; trying again on the next pass")
            return
        except Exception:
            db.session.rollback()
            log.exception("%s failed on execution %s; going on", step.__name__, execution_id)


def lock_key(name: str) -> int:
    return zlib.crc32(f"gefapi:{name}".encode())


@contextmanager
def exclusive(name: str) -> Iterator[bool]:
    """Whether this process holds the cluster-wide lock `name` (a PostgreSQL advisory lock on
    a connection of its own), so that a periodic pass never overlaps a slower previous one."""
    key = lock_key(name)
    bind = db.engine
    with bind.connect() if isinstance(bind, Engine) else nullcontext(bind) as connection:
        mine = connection.scalar(select(func.pg_try_advisory_lock(key)))
        try:
            yield mine
        finally:
            if mine:
                connection.scalar(select(func.pg_advisory_unlock(key)))


# Stop --------------------------------------------------------------------------------------


def stop(execution_id: str) -> None:
    """Ends a CANCELLING execution: the container is removed, then the status is CANCELLED."""
    execution = _locked(execution_id)
    if execution is None or execution.status != S.CANCELLING:
        db.session.rollback()
        return
    if execution.backend_handle:
        get_backend().remove(execution.backend_handle)
        execution.backend_handle = None
    reason = _cancel_reason(execution)
    transition(execution, S.CANCELLED, detail=reason)
    _log(execution, f"Cancelled ({reason}): the container was stopped.", "INFO")
    db.session.commit()


def _cancel_reason(execution: Execution) -> str:
    """Why it is being cancelled, as recorded when it entered CANCELLING."""
    reason = db.session.scalar(
        select(StatusLog.detail)
        .where(StatusLog.execution_id == execution.id, StatusLog.status_to == S.CANCELLING)
        .order_by(StatusLog.id.desc())
        .limit(1)
    )
    return reason or "Cancelled on request"


# Reconcile ---------------------------------------------------------------------------------


def reconcile() -> None:
    """Periodic: compare dispatched, unfinished executions with the engine (the longest
    unchecked first), then remove what finished executions left on it; a bounded batch of
    each per pass, and never two passes at once."""
    from gefapi.services import build_service

    with exclusive("reconcile") as mine:
        if not mine:
            log.info("Another reconcile pass is still running; skipping this one")
            return
        config = current_app.config
        build_service.recover_stale()
        batch = config["RECONCILE_BATCH"]
        active = select(Execution.id).where(Execution.status.in_(ACTIVE))
        leftovers = select(Execution.id).where(
            Execution.status.in_(TERMINAL_STATUSES), Execution.backend_handle.is_not(None)
        )
        ids = [
            *db.session.scalars(active.order_by(Execution.updated_at).limit(batch)),
            *db.session.scalars(leftovers.limit(batch)),
        ]
        db.session.rollback()
        each_isolated(ids, reconcile_one)
        _expire_queue(config["EXECUTION_MAX_QUEUE_SECONDS"])


def reconcile_one(execution_id: str) -> None:
    execution = _locked(execution_id)
    if execution is None or execution.backend_handle is None:
        db.session.rollback()
        return
    backend = get_backend()
    if execution.is_finished:
        backend.remove(execution.backend_handle)
        execution.backend_handle = None
        db.session.commit()
        return
    if execution.status == S.CANCELLING:
        db.session.rollback()
        stop(execution_id)
        return
    status = backend.status(execution.backend_handle)
    if status.state == RunState.MISSING:
        _fail(execution, "The execution's container disappeared without reporting.")
        execution.backend_handle = None
    elif status.state == RunState.EXITED and _grace_over(status):
        _fail_exited(execution, status, backend.logs(execution.backend_handle, LAST_LINES))
        backend.remove(execution.backend_handle)
        execution.backend_handle = None
    elif _over_runtime(execution):
        limit = current_app.config["EXECUTION_MAX_RUNTIME_SECONDS"]
        backend.remove(execution.backend_handle)
        execution.backend_handle = None
        _fail(execution, f"Stopped: the execution ran longer than the maximum of {limit} s.")
    db.session.commit()


def _grace_over(status: RunStatus) -> bool:
    grace = timedelta(seconds=current_app.config["EXECUTION_REPORT_GRACE_SECONDS"])
    return status.finished_at is None or utcnow() - status.finished_at > grace


def _over_runtime(execution: Execution) -> bool:
    limit = timedelta(seconds=current_app.config["EXECUTION_MAX_RUNTIME_SECONDS"])
    return utcnow() - (execution.dispatched_at or execution.start_date) > limit


def _fail_exited(execution: Execution, status: RunStatus, last_lines: list[str]) -> None:
    posted = _posted_lines(execution)
    for line in last_lines:
        if line not in posted:  # the runtime prints what it posts: only the rest is news
            _log(execution, line, "ERROR")
    if status.out_of_memory or status.exit_code == 137:
        limit = db.session.get(Script, execution.script_id).memory_limit
        reason = f"The execution ran out of memory (limit {limit} bytes) and was killed."
    elif status.exit_code is None and status.detail:
        reason = status.detail
    else:
        reason = f"The execution's container exited (code {status.exit_code}) without reporting."
    _fail(execution, reason)


def _posted_lines(execution: Execution, recent: int = 1000) -> set[str]:
    """The output lines of its recent log entries, as the runtime prints them ("LEVEL: text")."""
    entries = db.session.execute(
        select(ExecutionLog.level, ExecutionLog.text)
        .where(ExecutionLog.execution_id == execution.id)
        .order_by(ExecutionLog.id.desc())
        .limit(recent)
    )
    return {line for level, text in entries for line in f"{level}: {text}".splitlines()}


def _fail(execution: Execution, reason: str) -> None:
    _log(execution, reason, "ERROR")
    transition(execution, S.FAILED, detail=reason)


def _log(execution: Execution, text: str, level: str) -> None:
    db.session.add(ExecutionLog(execution_id=execution.id, text=text[:10_000], level=level))


def _expire_queue(max_seconds: int) -> None:
    cutoff = utcnow() - timedelta(seconds=max_seconds)
    expired = db.session.scalars(
        select(Execution)
        .where(Execution.status == S.PENDING, Execution.start_date < cutoff)
        .order_by(Execution.user_id)  # the totals' rows locked in one order (see the trigger)
        .with_for_update(skip_locked=True)
        .limit(500)
    ).all()
    for execution in expired:
        _fail(execution, f"Waited longer than {max_seconds} s for a free slot; not started.")
    db.session.commit()
