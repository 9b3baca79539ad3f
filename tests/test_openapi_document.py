"""/swagger.json is a valid OpenAPI document that says what the API really does: who may call
each operation, the error answers, and the request bodies the routes read themselves."""

import re

import pytest
from openapi_spec_validator import validate

from gefapi.models import Role

METHODS = ("get", "post", "put", "patch", "delete")

# A sample of operations anyone may call, and of ones that need a token.
PUBLIC = {
    ("post", "/auth"),
    ("post", "/auth/refresh"),
    ("post", "/api/v1/user/reset-password"),
    ("post", "/api/v1/user/{user_ref}/recover-password"),
    ("get", "/api-health"),
}
OPTIONAL_LOGIN = {("post", "/api/v1/user")}  # admins may set a role
PROTECTED = {
    ("post", "/auth/logout"),
    ("get", "/api/v1/user/me"),
    ("get", "/api/v1/user"),
    ("post", "/api/v1/script"),
    ("post", "/api/v1/script/{script_ref}/run"),
    ("get", "/api/v1/execution"),
    ("patch", "/api/v1/execution/{execution_id}"),
    ("post", "/api/v1/execution/{execution_id}/log"),
    ("post", "/api/v1/email"),
}


@pytest.fixture(scope="module")
def document(app):
    with app.test_client() as client:
        response = client.get("/swagger.json")
    assert response.status_code == 200
    return response.get_json()


def operations(document):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def resolve(document, node):
    while isinstance(node, dict) and "$ref" in node:
        kind, name = node["$ref"].removeprefix("#/components/").split("/")
        node = document["components"][kind][name]
    return node


def all_refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


def test_document_is_valid_openapi(document):
    validate(document)


def test_every_reference_resolves(document):
    for ref in set(all_refs(document)):
        assert ref.startswith("#/components/"), ref
        kind, name = ref.removeprefix("#/components/").split("/")
        assert name in document["components"].get(kind, {}), f"{ref} does not resolve"


def test_log_entry_reference_resolves(document):
    body = document["paths"]["/api/v1/execution/{execution_id}/log"]["post"]["requestBody"]
    assert body["required"] is True
    one_of = body["content"]["application/json"]["schema"]["oneOf"]
    assert one_of[0] == {"$ref": "#/components/schemas/LogEntry"}
    assert one_of[1]["items"] == {"$ref": "#/components/schemas/LogEntry"}
    entry = document["components"]["schemas"]["LogEntry"]
    assert entry["required"] == ["text"]
    assert entry["properties"]["text"]["maxLength"] == 10_000
    assert "WARNING" in entry["properties"]["level"]["enum"]


def test_bearer_scheme_is_declared(document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def test_bearer_scheme_is_applied_to_protected_operations(document):
    seen = set()
    for method, path, operation in operations(document):
        seen.add((method, path))
        security = operation.get("security")
        if (method, path) in PUBLIC:
            assert not security, (method, path)
        if not security:
            continue
        assert {"bearerAuth": []} in security, (method, path)
        assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert seen >= PUBLIC | OPTIONAL_LOGIN | PROTECTED
    for method, path in PROTECTED:
        assert document["paths"][path][method].get("security") == [{"bearerAuth": []}]
    for method, path in OPTIONAL_LOGIN:
        assert document["paths"][path][method].get("security") == [{}, {"bearerAuth": []}]
    downloads = (
        "/api/v1/script/{script_ref}/download",
        "/api/v1/execution/{execution_id}/download-results",
    )
    for path in downloads:
        security = document["paths"][path]["get"]["security"]
        assert security == [{"bearerAuth": []}, {"queryToken": []}], path
    assert document["components"]["securitySchemes"]["queryToken"]["in"] == "query"


def test_the_document_says_which_operations_need_a_token(client, document):
    """Without a token, an operation documented as protected answers 401, and one documented
    as public does not."""
    for method, path, operation in operations(document):
        url = re.sub(r"\{[^}]+\}", "3f1b0c7e-0000-4000-8000-000000000000", path)
        response = client.open(url, method=method.upper())
        security = operation.get("security") or [{}]
        if {} in security:
            assert response.status_code != 401, (method, path, response.get_json())
        else:
            assert response.status_code == 401, (method, path, response.status_code)


def test_publish_is_a_multipart_upload(document):
    for method, path in (("post", "/api/v1/script"), ("patch", "/api/v1/script/{script_ref}")):
        body = document["paths"][path][method]["requestBody"]
        assert body["required"] is True
        assert list(body["content"]) == ["multipart/form-data"]
        schema = body["content"]["multipart/form-data"]["schema"]
        assert schema["required"] == ["file"]
        assert schema["properties"]["file"] == {**schema["properties"]["file"], "format": "binary"}


def test_run_body_and_params_are_described(document):
    run = document["paths"]["/api/v1/script/{script_ref}/run"]
    body = run["post"]["requestBody"]
    assert body["required"] is False
    schema = body["content"]["application/json"]["schema"]
    assert schema["type"] == "object" and schema["additionalProperties"]
    for method in ("get", "post"):
        names = {(p["in"], p["name"]) for p in run[method]["parameters"]}
        assert ("query", "params") in names and ("header", "Idempotency-Key") in names
        assert "409" in run[method]["responses"]


def test_400_is_documented_where_input_is_validated(document):
    for method, path, operation in operations(document):
        validates = "requestBody" in operation or any(
            p["in"] == "query" for p in operation.get("parameters", [])
        )
        if validates:
            answer = resolve(document, operation["responses"].get("400"))
            assert answer, f"{method.upper()} {path} validates input but documents no 400"
    for method, path in (("post", "/auth"), ("get", "/api/v1/execution")):
        answer = resolve(document, document["paths"][path][method]["responses"]["400"])
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}


def test_error_answers_are_listed_not_defaulted(document):
    """Every answer is listed, so an undocumented status is a finding, not a 'default'."""
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        if path != "/api-health":
            assert "429" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if method != "get":
            assert {"413", "415"} <= set(responses), (method, path)


def test_error_schema_has_the_locked_account_fields(document):
    error = document["components"]["schemas"]["Error"]
    assert {"status", "detail", "error_code", "msg", "message"} <= set(error["required"])
    properties = error["properties"]
    assert properties["minutes_remaining"]["type"] == "integer"
    assert properties["minutes_remaining"]["nullable"] is True
    assert properties["requires_password_reset"]["type"] == "boolean"
    assert properties["errors"]["type"] == "object"
    assert error.get("additionalProperties", True) is not False
    unauthorized = resolve(document, document["paths"]["/auth"]["post"]["responses"]["401"])
    assert "account_locked" in unauthorized["description"]


def test_query_rules_are_stated(document):
    executions = {p["name"]: p for p in document["paths"]["/api/v1/execution"]["get"]["parameters"]}
    for name in ("sort", "status"):
        assert executions[name]["schema"]["pattern"].startswith("^"), name
    assert "script_name" in executions["include"]["description"]
    assert "script_name" in executions["exclude"]["description"]
    assert "start_date" in executions["sort"]["description"]
    dates = executions["updated_at"]["schema"]["anyOf"]
    assert {"format": "date-time", "type": "string"} in dates


def test_documented_patterns_match_what_the_api_accepts(client, make_user, auth, document):
    """The sort and status patterns accept what the API takes, and refuse what it refuses."""
    headers = auth(make_user(Role.ADMIN))
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/execution"]["get"]["parameters"]}
    for name, value, ok in (
        ("sort", "-start_date,status desc", True),
        ("sort", "secret", False),
        ("status", "FINISHED,FAILED", True),
        ("status", "DONE", False),
    ):
        pattern = parameters[name]["schema"]["pattern"]
        assert bool(re.fullmatch(pattern, value)) is ok, (name, value)
        response = client.get(f"/api/v1/execution?{name}={value}", headers=headers)
        assert (response.status_code == 200) is ok, (name, value, response.status_code)


def test_extreme_documented_dates_are_not_server_errors(client, make_user, auth):
    """Found by schemathesis: an RFC 3339 time whose offset moves it out of Python's range."""
    headers = auth(make_user())
    for value in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        response = client.get(
            "/api/v1/execution", query_string={"updated_at": value}, headers=headers
        )
        assert response.status_code == 200, (value, response.get_json())


def test_an_undeclared_method_is_a_405_whatever_its_body(client):
    """Found by schemathesis: the body checks answered 415 before routing said 405."""
    response = client.open(
        "/api/v1/script", method="TRACE", data=b"x", content_type="multipart/form-data"
    )
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    response = client.put("/api/v1/user/me", data=b"x", content_type="text/plain")
    assert response.status_code == 405
