"""Artifacts: what an upload, a listing and the storage report show."""

from marshmallow import EXCLUDE, Schema, fields, validate

from gefapi.schemas.common import QuerySchema, Timestamp


class EtagSchema(Schema):
    """te_schemas' Etag: the hex MD5 the plugin checks a download against."""

    hash = fields.String(metadata={"description": "Hex MD5 of the file"})
    type = fields.String(metadata={"example": "AWS MD5 Etag"})


class UriSchema(Schema):
    """te_schemas' URI, ready to put into a RasterResults/FileResults `uri`."""

    uri = fields.String(metadata={"description": "The signed download URL"})
    type = fields.String(metadata={"example": "cloud"})
    etag = fields.Nested(EtagSchema)


class ArtifactSchema(Schema):
    id = fields.UUID()
    execution_id = fields.UUID()
    name = fields.String(metadata={"description": "The sanitized file name"})
    media_type = fields.String()
    size = fields.Integer(metadata={"description": "Bytes"})
    md5 = fields.String()
    sha256 = fields.String()
    created_at = Timestamp()
    expires_at = Timestamp(
        allow_none=True, metadata={"description": "When the file is deleted (null: kept)"}
    )
    url = fields.String(
        metadata={"description": "Download without a token: HEAD, GET, Range; expires"}
    )
    url_expires_at = Timestamp()
    etag = fields.Nested(EtagSchema)
    uri = fields.Nested(UriSchema)


class UploadArgs(QuerySchema):
    media_type = fields.String(
        validate=validate.Length(max=255),
        metadata={"description": "The file's media type (default: guessed from the name)"},
    )


class DownloadArgs(QuerySchema):
    expires = fields.String(metadata={"description": "Unix time the link ends (from `url`)"})
    signature = fields.String(metadata={"description": "The link's signature (from `url`)"})


class UsageArgs(QuerySchema):
    user_id = fields.UUID()


class UsageSchema(Schema):
    user_id = fields.UUID()
    email = fields.String()
    artifacts = fields.Integer()
    bytes = fields.Integer()
    quota_bytes = fields.Integer(allow_none=True)


class PolicySchema(Schema):
    script_id = fields.UUID()
    retention_days = fields.Integer(allow_none=True)
    effective_retention_days = fields.Integer(
        allow_none=True, metadata={"description": "Days a run's files are kept (null: kept)"}
    )


class PolicyUpdateSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    retention_days = fields.Integer(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0, max=100_000),
        metadata={
            "description": "Days the files of this script's runs are kept; 0 keeps "
            "them (where the server allows); null: the server's default"
        },
    )
