"""OGC API - Processes, Part 1: Core, as a view over scripts and executions.

A process is a built script the caller may run (id = the script's slug), a job is an execution.
Everything here maps: running, reading, listing and cancelling are execution_service's and
script_service's, with their visibility, limits and queue. No request, no HTTP types: the
route passes the base URL the links are built on.
"""

import time
import uuid
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from gefapi.errors import NotFound, ScriptNotFound, ValidationError
from gefapi.extensions import db
from gefapi.models import Execution, ExecutionStatus, Script, ScriptStatus, User
from gefapi.models.execution import OGC_STATUS, StatusLog
from gefapi.services import execution_service, script_service, webhook_service
from gefapi.services.execution_service import Caller, ExecutionFinished

EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/callback",
]
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
JSON = "application/json"

S = ExecutionStatus
NATIVE = {}
for _native, _ogc in OGC_STATUS.items():
    NATIVE.setdefault(_ogc, []).append(_native.value)
MESSAGES = {
    S.PENDING: "Queued",
    S.READY: "Starting",
    S.RUNNING: "Running",
    S.FINISHED: "Finished",
    S.FAILED: "Failed",
    S.CANCELLING: "Dismissed: stopping",
    S.CANCELLED: "Dismissed",
}
QUALIFIED_VALUE_KEYS = {"value", "mediaType", "encoding", "schema"}


class ResultNotReady(NotFound):
    error_code = "result_not_ready"
    message = "The job has no results yet"


class JobFailed(NotFound):
    error_code = "job_results_failed"
    message = "The job ended without results"


# Processes ---------------------------------------------------------------------------------


def job_control_options() -> list[str]:
    sync = ["sync-execute"] if current_app.config["OGC_SYNC_EXECUTE_SECONDS"] > 0 else []
    return ["async-execute", *sync, "dismiss"]


def list_processes(*, by: User, base: str, limit: int | None = None, page: int | None = None):
    """The built scripts `by` may run, as process summaries, and the page they are on."""
    if limit is not None and page is None:
        page = 1
    result = script_service.list_scripts(
        by=by, status=ScriptStatus.SUCCESS, page=page, per_page=limit
    )
    processes = [process_summary(s, base) for s in result.items if s.current_build_id]
    return processes, result


def get_process(process_id: str, *, by: User, base: str) -> dict:
    script = runnable_script(process_id, by=by)
    return process_description(script, base)


def runnable_script(process_id: str, *, by: User) -> Script:
    """A process is a script that is built: others are not processes (404 no-such-process)."""
    script = script_service.get_visible(process_id, by=by)
    if script.status != ScriptStatus.SUCCESS or script.current_build_id is None:
        raise ScriptNotFound(f"Process {process_id} not found")
    return script


def process_summary(script: Script, base: str) -> dict:
    href = f"{base}/processes/{script.slug}"
    return {
        "id": script.slug,
        "title": script.name,
        "description": script.description or "",
        "version": str(script.current_build_id),
        "jobControlOptions": job_control_options(),
        "outputTransmission": ["value"],
        "links": [
            {"href": href, "rel": "self", "type": JSON, "title": "Process description"},
            {"href": f"{href}/execution", "rel": f"{REL}execute", "title": "Execute"},
        ],
    }


def process_description(script: Script, base: str) -> dict:
    return {
        **process_summary(script, base),
        "inputs": process_inputs(script.params_schema),
        "outputs": {
            "results": {
                "title": "Results",
                "description": "What the script's run() returned",
                "schema": {},
            }
        },
    }


def process_inputs(params_schema: dict | None) -> dict:
    """One input per property of the script's params_schema; none (free-form: any named
    inputs are accepted and become the run's params) without a schema of properties."""
    if not isinstance(params_schema, dict):
        return {}
    properties = params_schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    required = set(params_schema.get("required") or ())
    inputs = {}
    for name, schema in properties.items():
        schema = schema if isinstance(schema, dict) else {}
        inputs[name] = {
            "title": schema.get("title", name),
            "description": schema.get("description", ""),
            "schema": schema,
            "minOccurs": 1 if name in required else 0,
            "maxOccurs": 1,
        }
    return inputs


# Executing ---------------------------------------------------------------------------------


def params_from_inputs(inputs: dict) -> dict:
    """Execute-request inputs as run params: a qualified value ({"value": ..., "mediaType":
    ...}) is its value; anything else is taken as it is."""
    params = {}
    for name, value in inputs.items():
        if isinstance(value, dict) and "value" in value and value.keys() <= QUALIFIED_VALUE_KEYS:
            value = value["value"]
        params[name] = value
    return params


def execute(
    process_id: str,
    inputs: dict,
    *,
    by: User,
    subscriber: dict | None = None,
    idempotency_key: str | None = None,
    client_header: str | None = None,
) -> Execution:
    """A new job: execution_service.run, with its rules, limits and queue. The subscriber's
    URIs are checked first (400 for a refused target) and stored with the execution."""
    runnable_script(process_id, by=by)
    webhook_service.subscribe_next_execution(webhook_service.check_subscriber(subscriber or {}))
    try:
        return execution_service.run(
            process_id,
            params_from_inputs(inputs),
            by=by,
            idempotency_key=idempotency_key,
            client_header=client_header,
        )
    finally:
        webhook_service.forget_pending_subscriber()


def wait_finished(execution_id: uuid.UUID, *, caller: Caller, seconds: float) -> Execution:
    """The job once finished, or as it is after `seconds` (synchronous execution). Holds no
    transaction while waiting."""
    deadline = time.monotonic() + seconds
    while True:
        db.session.rollback()
        execution = execution_service.get(str(execution_id), caller=caller)
        if execution.is_finished or time.monotonic() >= deadline:
            return execution
        db.session.rollback()
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


# Jobs --------------------------------------------------------------------------------------


def rfc3339(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


def status_info(
    execution: Execution,
    base: str,
    *,
    message: str | None = None,
    process_id: str | None = None,
    dismissed: bool = False,
) -> dict:
    status = ExecutionStatus(execution.status)
    href = f"{base}/jobs/{execution.id}"
    links = [{"href": href, "rel": "self", "type": JSON, "title": "Job status"}]
    if status == S.FINISHED:
        links.append(
            {"href": f"{href}/results", "rel": f"{REL}results", "type": JSON, "title": "Results"}
        )
    script = execution.__dict__.get("script")  # loaded where the caller could
    if process_id is None and script is not None:
        process_id = script.slug
    return {
        "jobID": str(execution.id),
        "processID": process_id,
        "type": "process",
        "status": "dismissed" if dismissed else OGC_STATUS[status],
        "message": message or MESSAGES[status],
        "created": rfc3339(execution.start_date),
        "started": rfc3339(execution.dispatched_at),
        "finished": rfc3339(execution.end_date),
        "updated": rfc3339(execution.updated_at),
        "progress": execution.progress,
        "links": links,
    }


def get_job(job_id: str, *, caller: Caller) -> tuple[Execution, str | None]:
    """The job and the reason recorded with its latest status change, if any."""
    execution = execution_service.get(
        job_id, caller=caller, options=execution_service.loading_options({"script"}, set())
    )
    detail = db.session.scalar(
        select(StatusLog.detail)
        .where(StatusLog.execution_id == execution.id)
        .order_by(StatusLog.id.desc())
        .limit(1)
    )
    return execution, detail


def list_jobs(
    *,
    caller: Caller,
    process_ids: list[str],
    statuses: list[str],
    limit: int,
    page: int,
):
    """The caller's own jobs (OGC recommends that nobody lists others' jobs), newest first."""
    script_id = None
    process_ids = split(process_ids)
    if len(process_ids) > 1:
        raise ValidationError(
            "Filter by one process at a time",
            errors={"processID": ["Give at most one processID."]},
        )
    if process_ids:
        script_id = script_service.get_visible(process_ids[0], by=caller.user).id
    native = []
    for status in split(statuses):
        if status not in NATIVE:
            raise ValidationError(
                "Unknown job status",
                errors={"status": [f"Use one of {', '.join(NATIVE)}."]},
            )
        native += NATIVE[status]
    return execution_service.list_executions(
        caller=caller,
        own_only=True,
        page=page,
        per_page=limit,
        status=",".join(native) or None,
        script_id=script_id,
        options=execution_service.loading_options({"script"}, {"params", "results"}),
    )


def split(values: list[str]) -> list[str]:
    """Query values given repeated or comma-separated."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def results(job_id: str, *, caller: Caller) -> Execution:
    execution = execution_service.get(job_id, caller=caller)
    if execution.status == S.FINISHED:
        return execution
    if execution.is_finished or execution.status == S.CANCELLING:
        raise JobFailed(f"Job {execution.id} is {OGC_STATUS[ExecutionStatus(execution.status)]}")
    raise ResultNotReady(f"Job {execution.id} is not finished")


def results_document(execution: Execution) -> dict:
    return {"results": {"value": execution.results, "mediaType": JSON}}


def dismiss(job_id: str, *, caller: Caller) -> tuple[Execution, str | None]:
    """Dismiss = cancel a job that is not finished; a finished one is deleted (hidden, and its
    results with it), after which it no longer exists for this API. Also the process id."""
    try:
        execution, _previous = execution_service.cancel(job_id, caller=caller)
    except ExecutionFinished:
        db.session.rollback()
        execution = execution_service.delete(job_id, caller=caller)
    slug = db.session.scalar(select(Script.slug).where(Script.id == execution.script_id))
    return execution, slug
