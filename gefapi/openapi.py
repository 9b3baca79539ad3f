"""The OpenAPI document at /swagger.json: what flask-smorest derives from each route, completed
with what only the whole API knows.

flask-smorest documents each route from its decorators (arguments, success body). The rest of
what a client meets is decided outside the route, and is added here once for every operation:

- who may call it: `login_required` / `optional_login` (gefapi.auth) wrap the view; the
  operation then carries the bearer scheme (and `?token=` on the download routes);
- the error answers, all in the one error shape (CONTRACT section 1): 400 from validation and
  from the checks every request goes through (NUL characters, bad gzip), 401/403 on protected
  operations, 404 where a path names something, 409 where the state can conflict, 413/415 on
  bodies, 429 from the rate limiter, 503 when a dependency is down;
- the rules the routes apply beyond their schemas, stated as schema constraints so a client
  (and a fuzzer) knows what is valid: the `sort` allow-lists, the execution statuses, no NUL
  character in any string, the multipart publish body and the free-form run body; and the
  field names `include`/`exclude` know.

`annotate` runs when a blueprint is registered (`Api` below) and records, per
operation, what the view function tells (auth, the resource it answers with); `finalize` turns
that into the document when /swagger.json is served.
"""

import copy
import functools
import inspect
import json
import re

from flask import current_app, render_template, url_for
from flask_smorest import Api as SmorestApi

from gefapi.errors import handle_http_exception
from gefapi.extensions import ErrorSchema

BEARER = "bearerAuth"
QUERY_TOKEN = "queryToken"
MARK = "x-gefapi"

SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /auth (or an execution's API_TOKEN where "
        "an operation says so). Every token problem is a 401.",
    },
    QUERY_TOKEN: {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The access token as `?token=`, accepted on GET download routes only.",
    },
}

# status: (component name, description)
ERRORS = {
    400: (
        "BadRequest",
        "Invalid input: a parameter or body field fails validation (`errors` names each), "
        "malformed JSON, a NUL character, or a body that is not valid gzip.",
    ),
    401: (
        "Unauthorized",
        "Missing, malformed, expired, revoked or wrong-scope token, or wrong credentials. "
        "While an account is locked, `/auth` answers `error_code: account_locked` with "
        "`minutes_remaining` and `requires_password_reset`.",
    ),
    403: ("Forbidden", "Authenticated, but not allowed to do this."),
    404: ("NotFound", "Missing, or not visible to the caller."),
    409: ("Conflict", "Conflicts with the current state (duplicate, not built, finished)."),
    413: ("PayloadTooLarge", "Body, decompressed body, archive or results too large."),
    415: ("UnsupportedMediaType", "Wrong Content-Type for this operation."),
    429: ("TooManyRequests", "Rate limited; `Retry-After` says when to try again."),
    503: ("ServiceUnavailable", "A dependency (database, broker, engine) is unavailable."),
}

# Operations whose answer can be a 409, by Flask endpoint and method.
CONFLICTS = {
    ("users.Users", "post"),
    ("users.Me", "patch"),
    ("users.UserByRef", "patch"),
    ("scripts.Scripts", "post"),
    ("scripts.ScriptByRef", "patch"),
    ("scripts.ScriptByRef", "delete"),
    ("scripts.Run", "get"),
    ("scripts.Run", "post"),
    ("executions.ExecutionById", "patch"),
    ("executions.ExecutionById", "delete"),
    ("executions.ExecutionLogs", "post"),
    ("executions.Cancel", "post"),
}

# Operations that answer 404 without naming anything in their path.
NOT_FOUND = {("users.ResetPassword", "post"), ("email.Email", "post")}

NO_NUL = "^[^\\u0000]*$"
# gefapi.schemas.email.single_line: no character of Unicode category Cc, Zl or Zp.
SINGLE_LINE = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"

# Any JSON value without a NUL character in a string (what the API stores). Spelled out to a
# fixed depth, below which anything goes: fuzzers and generators do not cope with a recursive
# schema. (OpenAPI 3.0 cannot constrain keys: a key with a NUL is a 400 too.)
JSON_DEPTH = 3


def json_value_schemas() -> dict:
    schemas = {}
    for level in range(JSON_DEPTH):
        name = "JsonValue" if level == 0 else f"JsonValue{level}"
        inner = (
            {"$ref": f"#/components/schemas/JsonValue{level + 1}"} if level + 1 < JSON_DEPTH else {}
        )
        schemas[name] = {
            "description": "Any JSON value; no string in it may contain a NUL character.",
            "nullable": True,
            "anyOf": [
                {"type": "string", "pattern": NO_NUL},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "array", "items": inner},
                {"type": "object", "additionalProperties": inner},
            ],
        }
    return schemas


PUBLISH_BODY = {
    "required": True,
    "description": "The script archive: a .tar.gz whose root holds configuration.json, "
    "requirements.txt and src/main.py.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The .tar.gz archive",
                    }
                },
                "required": ["file"],
            },
            "encoding": {"file": {"contentType": "application/gzip, application/octet-stream"}},
        }
    },
}

RUN_PARAMS_DESCRIPTION = (
    "The run's params: query-string arguments, with a JSON object body (POST) merged over "
    "them. Keys `task_name`, `task_notes` and `local_context` stay inside params. A script "
    "with a `params_schema` answers 400 for params that fail it."
)

RUN_BODY = {
    "required": False,
    "description": RUN_PARAMS_DESCRIPTION,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
            }
        }
    },
}

RUN_PARAMETERS = [
    {
        "in": "query",
        "name": "params",
        "description": RUN_PARAMS_DESCRIPTION + " (`token` is never a param.)",
        "required": False,
        "style": "form",
        "explode": True,
        "schema": {
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": NO_NUL},
        },
    },
    {
        "in": "header",
        "name": "Idempotency-Key",
        "description": "The same key from the same user returns the same execution.",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
]

# Constraints the services apply to request body fields, by component and property.
BODY_RULES = {
    "ExecutionUpdate": {
        "description": "Give `status`, `progress` or `results`.",
        "anyOf": [{"required": ["status"]}, {"required": ["progress"]}, {"required": ["results"]}],
    },
    "EmailSend": {
        "description": "Give `text`, `html` or both.",
        "properties": {
            "subject": {
                "pattern": SINGLE_LINE,
                "description": "One line: no control characters or line separators.",
            },
            "recipients": {
                "description": '"mailing_list", "all", or a list of user ids or emails.',
                "oneOf": [
                    {"type": "string", "enum": ["mailing_list", "all"]},
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10_000,
                        "items": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 254,
                            "anyOf": [{"format": "uuid"}, {"pattern": "^[^\\u0000]*@[^\\u0000]*$"}],
                        },
                    },
                ],
            },
        },
        "anyOf": [
            {"required": ["text"], "properties": {"text": {"minLength": 1}}},
            {"required": ["html"], "properties": {"html": {"minLength": 1}}},
        ],
    },
    "LogEntry": {
        "properties": {
            "level": {
                "type": "string",
                "enum": ["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"],
                "default": "INFO",
                "description": "Case-insensitive; WARN is stored as WARNING.",
            }
        }
    },
}

PASSWORD_RULE = (
    "At least 10 characters, at least 4 different ones, and not the account's email "
    "(400 `Password too weak` otherwise)."
)
PASSWORD_FIELDS = {
    "UserCreate": ("password",),
    "UserUpdateMe": ("password",),
    "ChangePassword": ("new_password",),
    "ResetPassword": ("password",),
}


# Annotation at registration ---------------------------------------------------------------


@functools.cache
def _auth_codes() -> dict:
    """The code objects of the wrappers that gefapi.auth puts around views: every wrapper a
    decorator makes shares its code, so a view's chain of wrappers tells which it went through."""
    from gefapi.auth import login_required, optional_login

    def probe():
        return None

    return {
        login_required(probe).__code__: "required",
        optional_login(probe).__code__: "optional",
    }


def auth_of(function) -> dict | None:
    codes = _auth_codes()
    layer = function
    while layer is not None:
        mode = codes.get(getattr(layer, "__code__", None))
        if mode is not None:
            options = inspect.getclosurevars(layer).nonlocals
            return {
                "mode": mode,
                "query_token": bool(options.get("query_token")),
                "execution_token": bool(options.get("allow_execution_token")),
            }
        layer = getattr(layer, "__wrapped__", None)
    return None


def resource_of(doc_info: dict) -> type | None:
    """The ResourceSchema an operation answers with (Blueprint.documents' envelope)."""
    from gefapi.routes import _ENVELOPES

    for response in doc_info.get("response", {}).get("responses", {}).get(200, []):
        schema = response.get("schema") if isinstance(response, dict) else None
        schema = schema if isinstance(schema, type) else type(schema)
        for key, envelope in _ENVELOPES.items():
            if envelope is schema:
                return key[0]
    return None


def annotate(app, blueprint, name: str) -> None:
    """Record, in each operation's manual doc, what its view function tells."""
    for endpoint, methods in blueprint._docs.items():
        view = app.view_functions.get(f"{name}.{endpoint}")
        view_class = getattr(view, "view_class", None)
        for method, doc_info in methods.items():
            if method == "parameters" or not isinstance(doc_info, dict):
                continue
            function = getattr(view_class, method, view)
            resource = resource_of(doc_info)
            mark = {
                "endpoint": f"{name}.{endpoint}",
                "auth": auth_of(function),
                "fields": field_names(resource) if resource else None,
            }
            doc_info.setdefault("manual_doc", {})[MARK] = mark


def field_names(resource) -> list[str]:
    return sorted({*resource._declared_fields, *getattr(resource, "ALIASES", {})})


# The finished document ----------------------------------------------------------------------


def finalize(document: dict, config) -> dict:
    document = copy.deepcopy(document)
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    responses = components.setdefault("responses", {})
    for name, description in ERRORS.values():
        responses[name] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    responses.pop("DEFAULT_ERROR", None)
    schemas = components.setdefault("schemas", {})
    schemas.update(json_value_schemas())
    _body_rules(schemas, config)

    request_schemas = set()
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if method in ("parameters", "summary", "description", "servers"):
                continue
            _operation(path, method, operation, config)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                request_schemas.update(_refs(content.get("schema")))
    _forbid_nul(schemas, request_schemas)
    for name in list(responses):
        if name.isupper():  # flask-smorest's own names, replaced by the ones above
            del responses[name]
    return document


def _operation(path: str, method: str, operation: dict, config) -> None:
    mark = operation.pop(MARK, {}) or {}
    endpoint, auth = mark.get("endpoint"), mark.get("auth")
    key = (endpoint, method)

    if auth:
        schemes = [{BEARER: []}]
        if auth["query_token"]:
            schemes.append({QUERY_TOKEN: []})
        operation["security"] = [{}, *schemes] if auth["mode"] == "optional" else schemes
        if auth["execution_token"]:
            operation["description"] = (
                operation.get("description", "")
                + "\n\nAlso accepts the execution's own runtime token (API_TOKEN)."
            ).strip()

    from gefapi.routes import MULTIPART_ENDPOINTS

    if (endpoint, method.upper()) in MULTIPART_ENDPOINTS:
        operation["requestBody"] = copy.deepcopy(PUBLISH_BODY)
    if endpoint == "scripts.Run":
        operation.setdefault("parameters", []).extend(copy.deepcopy(RUN_PARAMETERS))
        if method == "post":
            operation["requestBody"] = copy.deepcopy(RUN_BODY)
    if endpoint == "executions.ExecutionLogs" and method == "post":
        body = operation.get("requestBody", {})
        body["required"] = True
        for content in body.get("content", {}).values():
            for option in content.get("schema", {}).get("oneOf", []):
                if option.get("type") == "array":
                    option["minItems"] = 1
                    option["description"] = (
                        f"At most {config['MAX_LOG_BATCH']} lines per request (413 beyond)"
                    )

    for parameter in operation.get("parameters", []):
        _parameter(parameter, endpoint, mark.get("fields"))

    statuses = {400, 503}
    if endpoint != "health.Health":
        statuses.add(429)
    if auth:
        statuses.update({401, 403})
    if endpoint in ("auth.Login", "auth.Refresh"):
        statuses.add(401)
    if "{" in path or key in NOT_FOUND:
        statuses.add(404)
    if key in CONFLICTS:
        statuses.add(409)
    if method != "get":
        statuses.update({413, 415})
    answers = operation.setdefault("responses", {})
    answers.pop("default", None)
    for status in sorted(statuses):
        answers.setdefault(str(status), {"$ref": f"#/components/responses/{ERRORS[status][0]}"})
    for status, answer in list(answers.items()):
        if isinstance(answer, dict) and answer.get("$ref", "").rsplit("/", 1)[-1].isupper():
            name = ERRORS[int(status)][0]
            answers[status] = {"$ref": f"#/components/responses/{name}"}


def _names_pattern(names) -> str:
    choice = "(" + "|".join(re.escape(name) for name in names) + ")"
    return f"^({choice})?(,({choice})?)*$"


def _parameter(parameter: dict, endpoint: str | None, fields: list[str] | None) -> None:
    schema = parameter.setdefault("schema", {})
    name = parameter.get("name")
    if parameter.get("in") != "query":
        return
    if name in ("include", "exclude") and fields:
        schema["pattern"] = NO_NUL
        parameter["description"] = "Comma-separated field names (others are ignored): " + ", ".join(
            fields
        )
    elif name == "sort" and endpoint in SORTS:
        allowed = sorted(SORTS[endpoint]())
        schema["pattern"] = (
            "^((-?(" + "|".join(allowed) + "))( (asc|desc))?)?"
            "(,((-?(" + "|".join(allowed) + "))( (asc|desc))?)?)*$"
        )
        parameter["description"] = (
            "`field`, `field desc` or `-field`, comma-separated; fields: " + ", ".join(allowed)
        )
    elif name == "status" and endpoint in ("executions.Executions", "executions.OwnExecutions"):
        from gefapi.schemas.execution import STATUSES

        schema["pattern"] = _names_pattern(STATUSES)
        parameter["description"] = "Comma-separated statuses: " + ", ".join(STATUSES)
    elif name in ("updated_at", "start"):
        schema.clear()
        schema.update(
            {
                "anyOf": [
                    {"type": "string", "format": "date"},
                    {"type": "string", "format": "date-time"},
                ]
            }
        )
        parameter["description"] = "A date or datetime (naive means UTC)."
    elif _free_text(schema):
        schema["pattern"] = NO_NUL


def _free_text(schema: dict) -> bool:
    """A string schema that nothing else keeps free of NUL characters."""
    return (
        schema.get("type") == "string"
        and not {"pattern", "enum"} & schema.keys()
        and schema.get("format") not in ("uuid", "date", "date-time", "email", "binary")
    )


def _sortable(module: str):
    def load():
        import importlib

        return importlib.import_module(f"gefapi.services.{module}").SORTABLE

    return load


SORTS = {
    "users.Users": _sortable("user_service"),
    "scripts.Scripts": _sortable("script_service"),
    "executions.Executions": _sortable("execution_service"),
    "executions.OwnExecutions": _sortable("execution_service"),
}


def _refs(schema) -> set[str]:
    found = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[-1])
        for value in schema.values():
            found |= _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _refs(value)
    return found


def _body_rules(schemas: dict, config) -> None:
    for name, rules in BODY_RULES.items():
        if name not in schemas:
            continue
        target = schemas[name]
        for key, value in rules.items():
            if key == "properties":
                for prop, override in value.items():
                    target.setdefault("properties", {}).setdefault(prop, {})
                    target["properties"][prop].update(copy.deepcopy(override))
            else:
                target[key] = copy.deepcopy(value)
    for name, fields in PASSWORD_FIELDS.items():
        for field in fields:
            prop = schemas.get(name, {}).get("properties", {}).get(field)
            if prop is not None:
                prop["minLength"] = max(prop.get("minLength", 0), 10)
                prop["description"] = PASSWORD_RULE
    for name in ("ExecutionUpdate",):
        results = schemas.get(name, {}).get("properties", {}).get("results")
        if results is not None:
            results.clear()
            results["$ref"] = "#/components/schemas/JsonValue"


def _forbid_nul(schemas: dict, names: set[str]) -> None:
    """The API refuses NUL anywhere in a JSON body: say so on every string a body can hold."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending.extend(_refs(schemas[name]))
        _no_nul_strings(schemas[name])


ANNOTATIONS = frozenset({"description", "title", "default", "nullable", "example"})


def _no_nul_strings(schema) -> None:
    if isinstance(schema, list):
        for item in schema:
            _no_nul_strings(item)
        return
    if not isinstance(schema, dict):
        return
    if _free_text(schema):
        schema["pattern"] = NO_NUL
    # Unknown body fields are ignored, but a NUL in one is still refused; so is one in a value
    # the schema leaves free (a Raw field).
    if schema.get("type") == "object" and schema.get("additionalProperties", True) is True:
        schema["additionalProperties"] = {"$ref": "#/components/schemas/JsonValue"}
    for name, prop in schema.get("properties", {}).items():
        if isinstance(prop, dict) and prop.keys() <= ANNOTATIONS:
            schema["properties"][name] = {
                **prop,
                "allOf": [{"$ref": "#/components/schemas/JsonValue"}],
            }
    for key, value in schema.items():
        if key not in ("$ref", "additionalProperties"):
            _no_nul_strings(value)


class Api(SmorestApi):
    """flask-smorest with the contract's error shape, and the document completed here
    (security, error answers, the rules the routes apply)."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        return handle_http_exception(error)

    def register_blueprint(self, blp, *, parameters=None, **options):
        """flask-smorest's, with each operation annotated from its view function between
        the blueprint's registration in the app and in the document."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        annotate(self._app, blp, name)
        blp.register_views_in_doc(self, self._app, self.spec, name=name, parameters=parameters)
        self.spec.tag({"name": name, "description": blp.description})

    def document(self) -> dict:
        """The OpenAPI document as served at /swagger.json."""
        cached = self._app.extensions.get("openapi_document")
        if cached is None:
            cached = finalize(self.spec.to_dict(), self._app.config)
            self._app.extensions["openapi_document"] = cached
        return cached

    def _openapi_swagger_ui(self):
        """Swagger UI served from gefapi/static/swagger-ui (a vendored swagger-ui-dist, see
        its README.md there), never from a CDN: /api/docs works offline."""
        return render_template(
            "swagger_ui.html",
            title=self.spec.title,
            spec_url=url_for(f"{self._make_doc_blueprint_name()}.openapi_json"),
            swagger_ui_url=url_for("static", filename="swagger-ui/"),
            swagger_ui_config=self.config.get("OPENAPI_SWAGGER_UI_CONFIG", {}),
        )

    def _openapi_json(self):
        return current_app.response_class(
            json.dumps(self.document(), indent=2), mimetype="application/json"
        )
