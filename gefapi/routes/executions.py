"""/api/v1/execution: reading, reporting (the runtime), logs, cancel, listings."""

import functools
import json
import uuid
from dataclasses import dataclass

from flask import Response, current_app, jsonify, request
from flask.views import MethodView
from flask_jwt_extended import current_user, get_jwt
from marshmallow import ValidationError as SchemaError

from gefapi.auth import EXECUTION_SCOPE, login_required
from gefapi.cache import request_cache
from gefapi.errors import PayloadTooLarge, ValidationError
from gefapi.routes import Blueprint
from gefapi.schemas.common import FieldSelectionArgs, envelope, list_filters
from gefapi.schemas.execution import (
    ExecutionListArgs,
    ExecutionLogSchema,
    ExecutionSchema,
    ExecutionUpdateSchema,
    LogEntrySchema,
    dump_new_log_lines,
    is_plain_log_line,
)
from gefapi.schemas.script import LogPollArgs
from gefapi.services import execution_service
from gefapi.services.execution_service import Caller

blp = Blueprint("executions", __name__, url_prefix="/api/v1/execution", description="Executions")


def caller() -> Caller:
    claims = get_jwt()
    if claims.get("scope") == EXECUTION_SCOPE:
        return Caller(current_user, runtime_execution_id=uuid.UUID(claims["execution_id"]))
    return Caller(current_user)


def loading(args) -> list:
    """How to load just what the answer shows."""
    return execution_service.loading_options(
        ExecutionSchema.expand(args.get("include")), ExecutionSchema.expand(args.get("exclude"))
    )


def dump_execution(execution, args, *, many: bool = False) -> dict:
    include = ExecutionSchema.expand(args.get("include"))
    execution_service.load_logs(execution if many else [execution], include)
    schema = ExecutionSchema.for_request(args.get("include"), args.get("exclude"), many=many)
    return schema.dump(execution)


@dataclass(frozen=True)
class Cacheable:
    """A read's body, and the users whose changes must drop it from the cache."""

    body: dict
    owners: frozenset


# `logs` and `duration` change without the execution's row changing.
UNCACHED_FIELDS = frozenset({"logs", "duration"})


def cacheable(body: dict, args, owners) -> Cacheable | dict:
    if ExecutionSchema.expand(args.get("include")) & UNCACHED_FIELDS:
        return body
    return Cacheable(body, frozenset(owners))


def cached_read(view):
    """Answer a repeated read from this process's cache (gefapi/cache.py), before parsing it.

    The key is the request as sent and who sent it. The entry goes when the reader or an owner
    of what it shows changes, so both the content and the reader's access stay current."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        cache, generation = request_cache()
        who = caller()
        key = (request.path, request.query_string, who.user.id, who.runtime_execution_id)
        body = cache.get(key) if generation is not None else None
        if body is not None:
            return current_app.response_class(body, mimetype="application/json")
        result = view(*args, **kwargs)
        if not isinstance(result, Cacheable):
            return result
        response = jsonify(result.body)
        if generation is not None:
            data = response.get_data()
            tags = tuple({f"user:{user_id}" for user_id in (who.user.id, *result.owners)})
            cache.put(key, data, tags=tags, generation=generation, size=len(data))
        return response

    return wrapper


def _list(args, *, own_only: bool):
    who = caller()
    page = execution_service.list_executions(
        caller=who, own_only=own_only, options=loading(args), **list_filters(args)
    )
    body = envelope(dump_execution(page.items, args, many=True), **page.meta())
    if who.is_admin and not own_only:  # anybody's executions: not kept
        return body
    return cacheable(body, args, owners={who.user.id})


@blp.route("")
class Executions(MethodView):
    @login_required
    @cached_read
    @blp.arguments(ExecutionListArgs, location="query")
    @blp.documents(ExecutionSchema, many=True, paginated=True)
    def get(self, args):
        """The caller's executions (ADMIN: everybody's, `user_id` filters)"""
        return _list(args, own_only=False)


@blp.route("/user")
class OwnExecutions(MethodView):
    @login_required
    @cached_read
    @blp.arguments(ExecutionListArgs, location="query")
    @blp.documents(ExecutionSchema, many=True, paginated=True)
    def get(self, args):
        """The caller's own executions"""
        return _list(args, own_only=True)


@blp.route("/<uuid:execution_id>")
class ExecutionById(MethodView):
    @login_required(allow_execution_token=True)
    @cached_read
    @blp.arguments(FieldSelectionArgs, location="query")
    @blp.documents(ExecutionSchema)
    def get(self, args, execution_id):
        """One execution (also readable with its own runtime token)"""
        execution = execution_service.get(execution_id, caller=caller(), options=loading(args))
        body = envelope(dump_execution(execution, args))
        return cacheable(body, args, owners={execution.user_id})

    @login_required(allow_execution_token=True)
    @blp.arguments(ExecutionUpdateSchema)
    @blp.documents(ExecutionSchema)
    def patch(self, body, execution_id):
        """Report status, progress or results (the runtime, or ADMIN)"""
        execution = execution_service.update(execution_id, body, caller=caller())
        return envelope(dump_execution(execution, {}))

    @login_required
    @blp.documents(ExecutionSchema)
    def delete(self, execution_id):
        """Hide a finished execution from lists (owner or ADMIN)"""
        execution = execution_service.delete(execution_id, caller=caller())
        return envelope(dump_execution(execution, {}))


@blp.route("/<uuid:execution_id>/log")
class ExecutionLogs(MethodView):
    @login_required
    @blp.arguments(LogPollArgs, location="query")
    @blp.documents(ExecutionLogSchema, many=True)
    def get(self, args, execution_id):
        """Log lines after `start` (a time) or `last-id`"""
        lines = execution_service.logs(execution_id, caller=caller(), **args)
        return envelope(ExecutionLogSchema.for_request(many=True).dump(lines))

    @login_required(allow_execution_token=True)
    @blp.doc(
        requestBody={
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [LogEntrySchema, {"type": "array", "items": LogEntrySchema}]
                    }
                }
            }
        }
    )
    @blp.documents(ExecutionLogSchema)
    def post(self, execution_id):
        """Add one log line or a batch (the runtime, or ADMIN)"""
        body = request.get_json(silent=True)
        entries = log_entries(body)
        rows = execution_service.add_logs(execution_id, entries, caller=caller())
        dumped = dump_new_log_lines(rows)
        return envelope(dumped if isinstance(body, list) else dumped[0])


LOG_ENTRY, LOG_ENTRIES = LogEntrySchema(), LogEntrySchema(many=True)


def log_entries(body) -> list[dict]:
    from flask import current_app

    single = isinstance(body, dict)
    lines = [body] if single else body
    if not isinstance(lines, list) or not lines:
        raise ValidationError("Send a log object {text, level} or a non-empty array of them")
    if len(lines) > current_app.config["MAX_LOG_BATCH"]:
        raise PayloadTooLarge(f"At most {current_app.config['MAX_LOG_BATCH']} lines per request")
    if all(map(is_plain_log_line, lines)):
        entries = [{"text": line["text"], "level": line.get("level", "INFO")} for line in lines]
    else:  # the schema finds what is wrong and says so
        try:
            entries = [LOG_ENTRY.load(body)] if single else LOG_ENTRIES.load(body)
        except SchemaError as exc:
            raise ValidationError("Invalid log lines", errors=exc.normalized_messages()) from None
    for entry in entries:
        entry["level"] = execution_service.normalise_level(entry["level"])
    return entries


@blp.route("/<uuid:execution_id>/cancel")
class Cancel(MethodView):
    @login_required
    @blp.alt_response(202, schema=ExecutionSchema, success=True)
    def post(self, execution_id):
        """Cancel: CANCELLING until the container is stopped (owner or ADMIN)"""
        execution, previous = execution_service.cancel(execution_id, caller=caller())
        dumped = dump_execution(execution, {})
        details = {
            "execution_id": str(execution.id),
            "previous_status": previous,
            "new_status": execution.status,
            "queued": execution.status == "CANCELLING",
        }
        # The execution's fields, plus the admin UI's {execution, cancellation_details}.
        return envelope({**dumped, "execution": dumped, "cancellation_details": details}), 202


@blp.route("/<uuid:execution_id>/download-results")
class DownloadResults(MethodView):
    @login_required(query_token=True)
    @blp.alt_response(200, content_type="application/json", success=True, description="The file")
    def get(self, execution_id):
        """The results as a results.json attachment (a token may come as ?token= here)"""
        execution = execution_service.get(execution_id, caller=caller())
        return Response(
            json.dumps(execution.results),
            mimetype="application/json",
            headers={"Content-Disposition": "attachment; filename=results.json"},
        )
