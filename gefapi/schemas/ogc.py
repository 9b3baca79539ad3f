"""OGC API - Processes: request arguments, and the documents for the OpenAPI description."""

from marshmallow import EXCLUDE, Schema, fields, validate

from gefapi.schemas.common import QuerySchema

JOB_STATUSES = ("accepted", "running", "successful", "failed", "dismissed")


class ProcessListArgs(QuerySchema):
    limit = fields.Integer(validate=validate.Range(min=1, max=100))
    page = fields.Integer(validate=validate.Range(min=1, max=100_000))


class JobListArgs(QuerySchema):
    processID = fields.List(fields.String(), load_default=list)
    status = fields.List(fields.String(), load_default=list)  # comma-separated or repeated
    limit = fields.Integer(validate=validate.Range(min=1, max=100), load_default=10)
    page = fields.Integer(validate=validate.Range(min=1, max=100_000), load_default=1)


class SubscriberSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    successUri = fields.Url(require_tld=False, schemes={"http", "https"})
    inProgressUri = fields.Url(require_tld=False, schemes={"http", "https"})
    failedUri = fields.Url(require_tld=False, schemes={"http", "https"})


class ExecuteSchema(Schema):
    """An execute request. Unknown members are ignored (CONTRACT section 1)."""

    class Meta:
        unknown = EXCLUDE

    inputs = fields.Dict(keys=fields.String(), load_default=dict)
    outputs = fields.Dict(keys=fields.String())
    response = fields.String(validate=validate.OneOf(("document", "raw")), load_default="document")
    subscriber = fields.Nested(SubscriberSchema)


# Documents (answers are built by gefapi.services.ogc_service; these describe them) ----------


class LinkSchema(Schema):
    href = fields.String(required=True)
    rel = fields.String()
    type = fields.String()
    title = fields.String()


class LandingPageSchema(Schema):
    title = fields.String()
    description = fields.String()
    links = fields.List(fields.Nested(LinkSchema))


class ConformanceSchema(Schema):
    conformsTo = fields.List(fields.String())


class ProcessSummarySchema(Schema):
    id = fields.String()
    title = fields.String()
    description = fields.String()
    version = fields.String()
    jobControlOptions = fields.List(fields.String())
    outputTransmission = fields.List(fields.String())
    links = fields.List(fields.Nested(LinkSchema))


class ProcessListSchema(Schema):
    processes = fields.List(fields.Nested(ProcessSummarySchema))
    links = fields.List(fields.Nested(LinkSchema))


class ProcessSchema(ProcessSummarySchema):
    inputs = fields.Dict(metadata={"description": "From the script's params_schema"})
    outputs = fields.Dict()


class StatusInfoSchema(Schema):
    jobID = fields.String()
    processID = fields.String(allow_none=True)
    type = fields.String()
    status = fields.String(metadata={"enum": list(JOB_STATUSES)})
    message = fields.String()
    created = fields.String(metadata={"format": "date-time"})
    started = fields.String(allow_none=True, metadata={"format": "date-time"})
    finished = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated = fields.String(metadata={"format": "date-time"})
    progress = fields.Integer()
    links = fields.List(fields.Nested(LinkSchema))


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(StatusInfoSchema))
    links = fields.List(fields.Nested(LinkSchema))
    numberMatched = fields.Integer()
    numberReturned = fields.Integer()


class ResultsSchema(Schema):
    results = fields.Dict(metadata={"description": '{"value": <results>, "mediaType": ...}'})


class ProblemSchema(Schema):
    """RFC 7807 problem details (application/problem+json)."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    instance = fields.String()
    error_code = fields.String()
    errors = fields.Dict(metadata={"description": "Per field, what is wrong (400)"})
