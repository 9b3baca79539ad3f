"""/ogc: OGC API - Processes, Part 1: Core, over the same scripts and executions.

Same authentication (Bearer JWT), visibility, limits and queue as /api/v1: a process is a built
script, a job is an execution, and every call lands in execution_service / script_service via
gefapi.services.ogc_service. Answers follow the standard (201 + Location on asynchronous
execution, bare documents instead of the {"data"} envelope), and errors on these paths are RFC
7807 problem details (application/problem+json).
"""

from flask import current_app, request
from flask.views import MethodView
from flask_jwt_extended import current_user
from werkzeug.http import HTTP_STATUS_CODES

from gefapi.auth import login_required
from gefapi.errors import ERROR_RENDERERS
from gefapi.routes import Blueprint
from gefapi.schemas.ogc import (
    ConformanceSchema,
    ExecuteSchema,
    JobListArgs,
    JobListSchema,
    LandingPageSchema,
    ProblemSchema,
    ProcessListArgs,
    ProcessListSchema,
    ProcessSchema,
    ResultsSchema,
    StatusInfoSchema,
)
from gefapi.services import ogc_service
from gefapi.services.execution_service import Caller

PREFIX = "/ogc"
blp = Blueprint(
    "ogc",
    __name__,
    url_prefix=PREFIX,
    description="OGC API - Processes (Part 1: Core): processes are built scripts, jobs are "
    "executions. Errors are RFC 7807 problem details.",
)

PROBLEM_TYPES = {
    "script_not_found": ogc_service.EXCEPTIONS + "no-such-process",
    "execution_not_found": ogc_service.EXCEPTIONS + "no-such-job",
    "result_not_ready": ogc_service.EXCEPTIONS + "result-not-ready",
    "job_results_failed": ogc_service.EXCEPTIONS + "job-results-failed",
}
HIDDEN_KEYS = {"msg", "message"}  # the native shape's aliases of `detail`


def problem(body: dict):
    """The contract's error body as RFC 7807 problem details; error_code and errors stay."""
    status = body["status"]
    document = {
        "type": PROBLEM_TYPES.get(body["error_code"], "about:blank"),
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "instance": request.path,
        **{key: value for key, value in body.items() if key not in HIDDEN_KEYS},
    }
    return current_app.response_class(
        current_app.json.dumps(document), mimetype="application/problem+json"
    )


ERROR_RENDERERS[PREFIX] = problem


def problems(view):
    """Document the error answers of an operation as problem details."""
    for status in (400, 401, 403, 404, 409, 413, 415, 429, 503):
        view = blp.alt_response(
            status,
            schema=ProblemSchema,
            content_type="application/problem+json",
            description=HTTP_STATUS_CODES[status],
        )(view)
    return view


def base_url() -> str:
    return request.url_root.rstrip("/") + PREFIX


def link(href: str, rel: str, title: str, type_: str = ogc_service.JSON) -> dict:
    return {"href": href, "rel": rel, "type": type_, "title": title}


@blp.route("/", strict_slashes=False)
class LandingPage(MethodView):
    @problems
    @blp.alt_response(200, schema=LandingPageSchema, success=True)
    def get(self):
        """Landing page (no token needed)"""
        base, rel = base_url(), ogc_service.REL
        return {
            "title": "gefapi OGC API - Processes",
            "description": "Run published analysis scripts as OGC API processes.",
            "links": [
                link(base, "self", "This document"),
                link(
                    request.url_root.rstrip("/") + "/swagger.json",
                    "service-desc",
                    "The OpenAPI document",
                    "application/vnd.oai.openapi+json;version=3.0",
                ),
                link(f"{base}/conformance", f"{rel}conformance", "Conformance"),
                link(f"{base}/processes", f"{rel}processes", "Processes"),
                link(f"{base}/jobs", f"{rel}job-list", "Jobs"),
            ],
        }


@blp.route("/conformance", strict_slashes=False)
class Conformance(MethodView):
    @problems
    @blp.alt_response(200, schema=ConformanceSchema, success=True)
    def get(self):
        """Conformance classes (no token needed)"""
        return {"conformsTo": ogc_service.CONFORMANCE}


@blp.route("/processes", strict_slashes=False)
class Processes(MethodView):
    @problems
    @login_required
    @blp.arguments(ProcessListArgs, location="query")
    @blp.alt_response(200, schema=ProcessListSchema, success=True)
    def get(self, args):
        """The built scripts the caller may run (`limit` and `page` page them)"""
        base = base_url()
        processes, page = ogc_service.list_processes(by=current_user, base=base, **args)
        links = [link(f"{base}/processes", "self", "This document")]
        if page.page is not None and page.page * page.per_page < page.total:
            after = f"{base}/processes?limit={page.per_page}&page={page.page + 1}"
            links.append(link(after, "next", "Next page"))
        return {"processes": processes, "links": links}


@blp.route("/processes/<process_id>", strict_slashes=False)
class ProcessById(MethodView):
    @problems
    @login_required
    @blp.alt_response(200, schema=ProcessSchema, success=True)
    def get(self, process_id):
        """A process description: inputs from the script's params_schema"""
        return ogc_service.get_process(process_id, by=current_user, base=base_url())


def prefers_async() -> bool:
    prefer = request.headers.get("Prefer", "")
    return any(part.strip().lower() == "respond-async" for part in prefer.split(","))


@blp.route("/processes/<process_id>/execution", strict_slashes=False)
class Execute(MethodView):
    @problems
    @login_required
    @blp.arguments(ExecuteSchema)
    @blp.alt_response(201, schema=StatusInfoSchema, success=True)
    @blp.alt_response(200, schema=ResultsSchema, success=True)
    def post(self, body, process_id):
        """Execute: a new job (201 + Location). Synchronous only when the server allows it
        (OGC_SYNC_EXECUTE_SECONDS) and the job ends within that wait."""
        execution = ogc_service.execute(
            process_id,
            body["inputs"],
            by=current_user,
            subscriber=body.get("subscriber"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            client_header=request.headers.get("X-TE-Client"),
        )
        wait = current_app.config["OGC_SYNC_EXECUTE_SECONDS"]
        if not prefers_async() and wait > 0:
            execution = ogc_service.wait_finished(
                execution.id, caller=Caller(current_user), seconds=wait
            )
            if execution.status == "FINISHED":
                if body["response"] == "raw":
                    return current_app.json.response(execution.results)
                return ogc_service.results_document(execution)
        base = base_url()
        info = ogc_service.status_info(execution, base, process_id=process_id)
        headers = {"Location": f"{base}/jobs/{execution.id}", "Preference-Applied": "respond-async"}
        return info, 201, headers


@blp.route("/jobs", strict_slashes=False)
class Jobs(MethodView):
    @problems
    @login_required
    @blp.arguments(JobListArgs, location="query")
    @blp.alt_response(200, schema=JobListSchema, success=True)
    def get(self, args):
        """The caller's own jobs, newest first (`processID`, `status`, `limit`, `page`)"""
        base = base_url()
        page = ogc_service.list_jobs(
            caller=Caller(current_user),
            process_ids=args["processID"],
            statuses=args["status"],
            limit=args["limit"],
            page=args["page"],
        )
        links = [link(f"{base}/jobs", "self", "This document")]
        if page.page * page.per_page < page.total:
            after = f"{base}/jobs?limit={page.per_page}&page={page.page + 1}"
            links.append(link(after, "next", "Next page"))
        if page.page > 1:
            before = f"{base}/jobs?limit={page.per_page}&page={page.page - 1}"
            links.append(link(before, "prev", "Previous page"))
        return {
            "jobs": [ogc_service.status_info(execution, base) for execution in page.items],
            "links": links,
            "numberMatched": page.total,
            "numberReturned": len(page.items),
        }


@blp.route("/jobs/<job_id>", strict_slashes=False)
class Job(MethodView):
    @problems
    @login_required
    @blp.alt_response(200, schema=StatusInfoSchema, success=True)
    def get(self, job_id):
        """A job's status"""
        execution, detail = ogc_service.get_job(job_id, caller=Caller(current_user))
        return ogc_service.status_info(execution, base_url(), message=detail)

    @problems
    @login_required
    @blp.alt_response(200, schema=StatusInfoSchema, success=True)
    def delete(self, job_id):
        """Dismiss: cancel a job that runs (the container is stopped); delete a finished one"""
        execution, process_id = ogc_service.dismiss(job_id, caller=Caller(current_user))
        return ogc_service.status_info(execution, base_url(), process_id=process_id, dismissed=True)


@blp.route("/jobs/<job_id>/results", strict_slashes=False)
class Results(MethodView):
    @problems
    @login_required
    @blp.alt_response(200, schema=ResultsSchema, success=True)
    def get(self, job_id):
        """A successful job's results: {"results": {"value": ..., "mediaType": ...}}"""
        execution = ogc_service.results(job_id, caller=Caller(current_user))
        return ogc_service.results_document(execution)
