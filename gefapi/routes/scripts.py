"""/api/v1/script: publishing, visibility, build logs, runs."""

from flask import request, send_file
from flask.views import MethodView
from flask_jwt_extended import current_user

from gefapi.auth import login_required
from gefapi.errors import ValidationError
from gefapi.routes import MULTIPART_ENDPOINTS, Blueprint
from gefapi.routes.executions import dump_execution
from gefapi.schemas.common import FieldSelectionArgs, envelope, list_filters
from gefapi.schemas.execution import ExecutionSchema
from gefapi.schemas.script import (
    LogPollArgs,
    ScriptAccessSchema,
    ScriptListArgs,
    ScriptLogSchema,
    ScriptSchema,
)
from gefapi.services import execution_service, script_service

blp = Blueprint("scripts", __name__, url_prefix="/api/v1/script", description="Scripts")


def dump_scripts(scripts, args, *, many: bool) -> dict:
    include = ScriptSchema.expand(args.get("include"))
    script_service.load_includes(scripts if many else [scripts], include, by=current_user)
    schema = ScriptSchema.for_request(args.get("include"), args.get("exclude"), many=many)
    return schema.dump(scripts)


def upload():
    return request.files.get("file")


@blp.route("")
class Scripts(MethodView):
    @login_required
    @blp.arguments(ScriptListArgs, location="query")
    @blp.documents(ScriptSchema, many=True, paginated=True)
    def get(self, args):
        """Scripts the caller may see"""
        page = script_service.list_scripts(by=current_user, **list_filters(args))
        return envelope(dump_scripts(page.items, args, many=True), **page.meta())

    @login_required
    @blp.documents(ScriptSchema)
    def post(self):
        """Publish a script: multipart field `file`, a .tar.gz (ADMIN)"""
        script = script_service.create(upload(), by=current_user)
        return envelope(ScriptSchema.for_request().dump(script))


@blp.route("/<script_ref>")
class ScriptByRef(MethodView):
    @login_required
    @blp.arguments(FieldSelectionArgs, location="query")
    @blp.documents(ScriptSchema)
    def get(self, args, script_ref):
        """One script, by UUID or slug"""
        script = script_service.get_visible(script_ref, by=current_user)
        return envelope(dump_scripts(script, args, many=False))

    @login_required
    @blp.documents(ScriptSchema)
    def patch(self, script_ref):
        """Publish a new version of the archive (owner or ADMIN)"""
        script = script_service.update(script_ref, upload(), by=current_user)
        return envelope(ScriptSchema.for_request().dump(script))

    @login_required
    @blp.documents(ScriptSchema)
    def delete(self, script_ref):
        """Delete a script (ADMIN)"""
        return envelope(
            ScriptSchema.for_request().dump(script_service.delete(script_ref, by=current_user))
        )


@blp.route("/<script_ref>/publish")
class Publish(MethodView):
    @login_required
    @blp.documents(ScriptSchema)
    def post(self, script_ref):
        """Make a script public (owner or ADMIN)"""
        script = script_service.set_public(script_ref, True, by=current_user)
        return envelope(ScriptSchema.for_request().dump(script))


@blp.route("/<script_ref>/unpublish")
class Unpublish(MethodView):
    @login_required
    @blp.documents(ScriptSchema)
    def post(self, script_ref):
        """Make a script private (owner or ADMIN)"""
        script = script_service.set_public(script_ref, False, by=current_user)
        return envelope(ScriptSchema.for_request().dump(script))


@blp.route("/<script_ref>/access")
class Access(MethodView):
    @login_required
    @blp.arguments(ScriptAccessSchema)
    @blp.documents(ScriptSchema)
    def put(self, body, script_ref):
        """Restrict a script to roles and users (ADMIN)"""
        script = script_service.set_access(script_ref, by=current_user, **body)
        return envelope(ScriptSchema.for_request(include="access").dump(script))


@blp.route("/<script_ref>/download")
class Download(MethodView):
    @login_required(query_token=True)
    @blp.alt_response(200, content_type="application/gzip", success=True, description="The file")
    def get(self, script_ref):
        """The uploaded archive (a token may come as ?token= here)"""
        script, archive = script_service.open_archive(script_ref, by=current_user)
        return send_file(
            archive,
            mimetype="application/gzip",
            as_attachment=True,
            download_name=f"{script.slug}.tar.gz",
        )


@blp.route("/<script_ref>/log")
class Logs(MethodView):
    @login_required
    @blp.arguments(LogPollArgs, location="query")
    @blp.documents(ScriptLogSchema, many=True)
    def get(self, args, script_ref):
        """Build log lines after `start` (a time) or `last-id`"""
        lines = script_service.logs(script_ref, by=current_user, **args)
        return envelope(ScriptLogSchema.for_request(many=True).dump(lines))


@blp.route("/<script_ref>/run")
class Run(MethodView):
    @login_required
    @blp.documents(ExecutionSchema)
    def post(self, script_ref):
        """Run a script: JSON body params over query-string params"""
        return self._run(script_ref)

    @login_required
    @blp.documents(ExecutionSchema)
    def get(self, script_ref):
        """Run a script with query-string params (legacy)"""
        return self._run(script_ref)

    @staticmethod
    def _run(script_ref):
        params = run_params()
        execution = execution_service.run(
            script_ref,
            params,
            by=current_user,
            idempotency_key=request.headers.get("Idempotency-Key"),
            client_header=request.headers.get("X-TE-Client"),
        )
        return envelope(dump_execution(execution, {}))


def run_params() -> dict:
    params = {key: value for key, value in request.args.items() if key != "token"}
    if request.method == "POST" and request.content_length:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValidationError("The run body must be a JSON object of parameters")
        params.update(body)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 255:
        raise ValidationError("Idempotency-Key must be 1 to 255 characters")
    return params


MULTIPART_ENDPOINTS.update({("scripts.Scripts", "POST"), ("scripts.ScriptByRef", "PATCH")})
