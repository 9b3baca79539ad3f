from marshmallow import fields, validate

from gefapi.models import Role
from gefapi.schemas.common import (
    ANSWERED_STATUSES,
    Description,
    ListArgs,
    QueryDateTime,
    QuerySchema,
    ResourceSchema,
    ScriptStatusField,
    StrictSchema,
    Timestamp,
)
from gefapi.schemas.user import UserSummarySchema


class ScriptLogSchema(ResourceSchema):
    id = fields.Integer()
    text = fields.String()
    register_date = Timestamp()
    script_id = fields.UUID()


class ScriptSchema(ResourceSchema):
    OPTIONAL = frozenset(
        {"logs", "user", "executions", "params_schema", "allowed_roles", "allowed_users"}
    )
    ALIASES = {
        "environment": ("params_schema",),
        "access": ("allowed_roles", "allowed_users"),
        # The built image (a registry name, or a server folder on the local backend) is
        # internal (CONTRACT section 5); the name is still accepted, and shows nothing.
        "image": (),
    }

    id = fields.UUID()
    name = fields.String()
    slug = fields.String()
    description = Description()
    created_at = Timestamp()
    updated_at = Timestamp()
    user_id = fields.UUID()
    status = ScriptStatusField()
    public = fields.Boolean()
    restricted = fields.Boolean()
    cpu_reservation = fields.Float()
    cpu_limit = fields.Float()
    memory_reservation = fields.Integer()
    memory_limit = fields.Integer()
    environment = fields.String()
    environment_version = fields.String()
    build_error = fields.String()
    params_schema = fields.Raw()
    allowed_roles = fields.List(fields.String())
    allowed_users = fields.List(fields.UUID())
    logs = fields.List(fields.Nested(ScriptLogSchema), attribute="recent_logs")
    user = fields.Nested(UserSummarySchema, attribute="owner_as_seen")
    executions = fields.Method("_executions")

    def _executions(self, script):
        from gefapi.schemas.execution import ExecutionSchema

        return ExecutionSchema.for_request(exclude="params,results").dump(
            script.visible_executions, many=True
        )


class ScriptListArgs(ListArgs):
    # PENDING, the name older releases stored for a queued build, is the same as BUILDING.
    status = fields.String(validate=validate.OneOf(["PENDING", *ANSWERED_STATUSES]))
    public = fields.Boolean()


class LogPollArgs(QuerySchema):
    start = QueryDateTime()
    last_id = fields.Integer(data_key="last-id", validate=validate.Range(min=0))


class ScriptAccessSchema(StrictSchema):
    allowed_roles = fields.List(fields.String(validate=validate.OneOf([r.value for r in Role])))
    allowed_users = fields.List(fields.UUID())
