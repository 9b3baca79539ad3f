"""Earth Engine and openEO credentials: what clients send, and the status answers. No answer
schema has a field for a secret."""

import json
import re

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from gefapi.schemas.common import QuerySchema, StrictSchema, Timestamp

# Google Cloud project ids (6-30 of a-z 0-9 -, starting with a letter), optionally with the
# legacy "domain.com:" prefix.
CLOUD_PROJECT_RE = r"^(?:[a-z][a-z0-9.-]{0,62}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$"
NO_CONTROL = re.compile(r"^[^\x00-\x1f\x7f]*$")


class CredentialsBody(StrictSchema):
    """Tolerant bodies (CONTRACT section 1): unknown keys ignored, "" for an optional field is
    the field not given."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _blank_is_absent(self, data, **kwargs):
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if not (value == "" and key in self.fields and not self.fields[key].required)
        }


def _token(max_length: int, **kwargs) -> fields.String:
    return fields.String(
        validate=[validate.Length(min=1, max=max_length), validate.Regexp(NO_CONTROL)], **kwargs
    )


# Earth Engine ------------------------------------------------------------------------------


class GeeCredentialsSchema(Schema):
    has_credentials = fields.Boolean(required=True)
    credentials_type = fields.String(
        allow_none=True,
        metadata={"enum": ["oauth", "service_account", None], "description": "null when none"},
    )
    cloud_project = fields.String(allow_none=True)
    google_email = fields.String(
        allow_none=True, metadata={"description": "The service account's email, when known"}
    )
    created_at = Timestamp(allow_none=True)
    updated_at = Timestamp(allow_none=True)


class GeeOAuthInitiateSchema(CredentialsBody):
    """The plugin sends `{}`; nothing is read from the body."""


class GeeOAuthStartSchema(Schema):
    auth_url = fields.String(
        required=True, metadata={"description": "Open this in a browser to grant access"}
    )
    state = fields.String(required=True, metadata={"description": "Single use, expiring"})


class GeeOAuthCallbackSchema(CredentialsBody):
    code = _token(4096, required=True)
    state = _token(512, required=True)


class GeeOAuthCallbackArgs(QuerySchema):
    """The provider's redirect of the browser: `code` and `state`, or `error`."""

    code = _token(4096)
    state = _token(512, required=True)
    error = _token(256)


class ServiceAccountKey(fields.Field):
    """A service-account key as a JSON object, or as a string holding one."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValidationError("Not valid JSON.") from None
        if not isinstance(value, dict):
            raise ValidationError("A service-account key is a JSON object.")
        return value


class GeeServiceAccountSchema(CredentialsBody):
    service_account_key = ServiceAccountKey(
        required=True,
        metadata={
            "description": "The key file Google issues for a service account (an object, or "
            'a string holding its JSON), with `"type": "service_account"`, `client_email` and '
            "`private_key`",
            "oneOf": [{"type": "object"}, {"type": "string"}],
        },
    )


class GeeProjectSchema(CredentialsBody):
    cloud_project = fields.String(
        required=True,
        allow_none=True,
        validate=validate.Regexp(
            CLOUD_PROJECT_RE, error="Not a Google Cloud project id (6-30 of a-z, 0-9 and -)."
        ),
        metadata={"description": "null removes the project"},
    )


class GeeTestResultSchema(Schema):
    valid = fields.Boolean(required=True)
    credentials_type = fields.String()
    cloud_project = fields.String(allow_none=True)
    message = fields.String()


# openEO ------------------------------------------------------------------------------------

OPENEO_TYPES = ("basic", "oidc_refresh_token")
OPENEO_REQUIRED = {
    "basic": ("username", "password"),
    "oidc_refresh_token": ("client_id", "refresh_token"),
}


class OpenEOCredentialsSchema(Schema):
    has_credentials = fields.Boolean(required=True)
    credentials_type = fields.String(
        allow_none=True, metadata={"enum": [*OPENEO_TYPES, None], "description": "null when none"}
    )
    created_at = Timestamp(allow_none=True)
    updated_at = Timestamp(allow_none=True)


class OpenEOCredentialsSetSchema(CredentialsBody):
    type = fields.String(required=True, validate=validate.OneOf(OPENEO_TYPES))
    username = _token(512, metadata={"description": "basic"})
    password = _token(4096, metadata={"description": "basic"})
    client_id = _token(512, metadata={"description": "oidc_refresh_token"})
    client_secret = _token(4096, metadata={"description": "oidc_refresh_token, optional"})
    refresh_token = _token(8192, metadata={"description": "oidc_refresh_token"})
    provider_id = _token(256, metadata={"description": "oidc_refresh_token, optional"})

    @validates_schema
    def _required_for_type(self, data, **kwargs):
        errors = {
            name: ["Missing data for required field."]
            for name in OPENEO_REQUIRED.get(data.get("type"), ())
            if not data.get(name)
        }
        if errors:
            raise ValidationError(errors)
