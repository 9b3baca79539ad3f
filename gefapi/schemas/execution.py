from marshmallow import fields, validate

from gefapi.models import ExecutionStatus
from gefapi.schemas.common import (
    Description,
    ListArgs,
    QueryDateTime,
    ResourceSchema,
    ScriptStatusField,
    StrictSchema,
    Timestamp,
    timestamp,
)
from gefapi.schemas.user import UserSummarySchema

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_TEXT_MAX = 10_000
STATUSES = [status.value for status in ExecutionStatus]


class ExecutionLogSchema(ResourceSchema):
    id = fields.Integer()
    text = fields.String()
    level = fields.String()
    register_date = Timestamp()
    execution_id = fields.UUID()


def dump_new_log_lines(rows: list[dict]) -> list[dict]:
    """ExecutionLogSchema's output for the lines of one batch (one execution, one time),
    written out: batches are the busiest write, and dumping field by field cost a tenth of it."""
    if not rows:
        return []
    execution_id, register_date = str(rows[0]["execution_id"]), rows[0]["register_date"]
    stamp = timestamp(register_date)
    return [
        {
            "execution_id": execution_id,
            "id": row["id"],
            "level": row["level"],
            "register_date": stamp,
            "text": row["text"],
        }
        for row in rows
    ]


class ExecutionScriptSchema(ResourceSchema):
    id = fields.UUID()
    name = fields.String()
    slug = fields.String()
    description = Description()
    status = ScriptStatusField()


class ExecutionSchema(ResourceSchema):
    OPTIONAL = frozenset(
        {"script", "user", "logs", "duration", "script_name", "user_name", "user_email"}
    )

    id = fields.UUID()
    script_id = fields.UUID()
    user_id = fields.UUID()
    start_date = Timestamp()
    end_date = Timestamp()
    status = fields.String()
    progress = fields.Integer()
    params = fields.Raw()
    results = fields.Raw()
    is_plugin_execution = fields.Boolean()
    queued_at = Timestamp()
    dispatched_at = Timestamp()
    updated_at = Timestamp()
    script = fields.Nested(ExecutionScriptSchema)
    user = fields.Nested(UserSummarySchema)
    logs = fields.List(fields.Nested(ExecutionLogSchema), attribute="recent_logs")
    duration = fields.Float(attribute="duration_seconds")
    script_name = fields.String(attribute="script.name")
    user_name = fields.String(attribute="user.name")
    user_email = fields.String(attribute="user.email")


class ExecutionListArgs(ListArgs):
    status = fields.String()
    script_id = fields.UUID()
    user_id = fields.UUID()
    updated_at = QueryDateTime()


class ExecutionUpdateSchema(StrictSchema):
    # Fields of the execution that only the server sets (CONTRACT 6: status, progress, results).
    REFUSED = frozenset(
        {"id", "script_id", "user_id", "start_date", "end_date", "params", "deleted"}
    )

    status = fields.String(validate=validate.OneOf(STATUSES))
    progress = fields.Float(allow_nan=False)
    results = fields.Raw(allow_none=True)


class LogEntrySchema(StrictSchema):
    text = fields.String(required=True, validate=validate.Length(max=LOG_TEXT_MAX))
    level = fields.String(load_default="INFO")


def is_plain_log_line(line) -> bool:
    """A line that LogEntrySchema accepts as it is, checked in a twentieth of the time the
    schema takes (batches of hundreds of lines are the busiest write)."""
    return (
        type(line) is dict
        and line.keys() <= {"text", "level"}
        and type(line.get("text")) is str
        and len(line["text"]) <= LOG_TEXT_MAX
        and type(line.get("level", "INFO")) is str
        and line.get("level") != ""  # "" is the level not given: the schema's default
    )
