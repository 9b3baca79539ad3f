"""Bad input on every endpoint that takes input (CONTRACT.md sections 1, 5, 6 and 8).

Malformed or invalid input is a 400 (never 422 or 500), a wrong content type 415, a body too
large (also once decompressed) 413, a missing, malformed or invisible account, script or execution
404, a change the current state forbids 409. Every refusal has the contract's error shape, names
the offending field where there is one, writes nothing (database, stored archives, mail) and sends
no task.
"""

import gzip
import io
import json
import os
import tarfile
from datetime import timedelta

import pytest

from gefapi.models import ExecutionStatus, Role, ScriptStatus
from gefapi.models.base import utcnow
from tests.helpers import database_state, stored_files

PASSWORD = "bad input password 0123"
NEW_PASSWORD = "a brand new passphrase 42"
ANON, USER, SUPER = "anonymous", "user", "superadmin"
RUNTIME = "runtime"  # the runtime token of the user's running execution
NEW_EMAIL = "new-account@example.org"
REGISTRATION = {"email": NEW_EMAIL, "name": "New Account", "password": NEW_PASSWORD}
PARAMS_SCHEMA = {
    "type": "object",
    "properties": {"year": {"type": "integer"}},
    "required": ["year"],
}


# Accounts, objects, snapshots and error shape --------------------------------------------------


class World:
    """Two accounts; the USER owns a built script, one with a params_schema, one still building,
    a running execution (whose runtime token is the RUNTIME caller) and a finished one."""

    def __init__(self, app, client, make_user, factories, sent_tasks, storage_root):
        make_script, make_execution, self.runtime_headers = factories
        self.app, self.client, self.sent_tasks = app, client, sent_tasks
        self.storage_root = storage_root
        self.accounts = {
            USER: make_user(role=Role.USER, name="Profile", password=PASSWORD),
            SUPER: make_user(role=Role.SUPERADMIN, name="Super", password=PASSWORD),
        }
        owner = self.accounts[USER]
        self.scripts = {
            "script": make_script(owner, name="bad input script"),
            "schema_script": make_script(owner, params_schema=PARAMS_SCHEMA),
            "unbuilt": make_script(owner, status=ScriptStatus.BUILDING),
        }
        script = self.scripts["script"]
        self.executions = {
            "execution": make_execution(script, owner, status=ExecutionStatus.RUNNING),
            "finished": make_execution(
                script,
                owner,
                status=ExecutionStatus.FINISHED,
                progress=100,
                results={"area": 1},
                start_date=utcnow() - timedelta(minutes=5),
                end_date=utcnow(),
            ),
        }
        self.tokens = {}

    def login(self, caller: str) -> dict:
        if caller not in self.tokens:
            body = {"email": self.accounts[caller].email, "password": PASSWORD}
            response = self.client.post("/auth", json=body)
            assert response.status_code == 200, response.get_json()
            self.tokens[caller] = response.get_json()
        return self.tokens[caller]

    def headers(self, caller: str) -> dict:
        if caller == ANON:
            return {}
        if caller == RUNTIME:
            return self.runtime_headers(self.executions["execution"])
        return {"Authorization": f"Bearer {self.login(caller)['access_token']}"}

    def path(self, template: str) -> str:
        return template.format(
            user=self.accounts[USER].id,
            **{name: script.id for name, script in self.scripts.items()},
            **{name: execution.id for name, execution in self.executions.items()},
        )


@pytest.fixture
def world(
    app, client, make_user, make_script, make_execution, runtime_headers, sent_tasks, storage_root
):
    factories = (make_script, make_execution, runtime_headers)
    return World(app, client, make_user, factories, sent_tasks, storage_root)


def names_field(errors: dict, field: str) -> bool:
    """`field` at the top of `errors`, or under a line's index for a batch of log lines."""
    return field in errors or any(
        isinstance(line, dict) and field in line for line in errors.values()
    )


def assert_error_shape(response, status: int, field: str | None = None) -> dict:
    body = response.get_json()
    assert isinstance(body, dict), response.data[:200]
    assert {"status", "detail", "error_code", "msg", "message"} <= body.keys(), body
    assert body["status"] == status == response.status_code, body
    assert body["msg"] == body["message"] == body["detail"], body
    assert "Traceback" not in response.get_data(as_text=True)
    if field is not None:
        assert isinstance(body.get("errors"), dict), body
        assert names_field(body["errors"], field), body
    return body


def snapshot(app, mailbox, world) -> tuple:
    return (
        database_state(app),
        len(mailbox.messages),
        stored_files(world.storage_root),
        list(world.sent_tasks),
    )


def assert_refused(app, mailbox, world, caller, method, path, expected, field=None, **request):
    """Send one request and check its refusal: status, error shape, nothing written, stored,
    mailed or sent."""
    headers = {**world.headers(caller), **request.pop("headers", {})}
    before = snapshot(app, mailbox, world)
    response = world.client.open(world.path(path), method=method, headers=headers, **request)
    assert response.status_code == expected, (
        response.status_code,
        response.get_data(as_text=True)[:300],
    )
    body = assert_error_shape(response, expected, field)
    assert snapshot(app, mailbox, world) == before, "a refused request wrote or sent"
    assert world.sent_tasks == [], "a refused request sent a task"
    return body


# Bodies ----------------------------------------------------------------------------------------

MALFORMED = {"data": '{"email": ', "content_type": "application/json"}
FORM = {"data": "name=Form+Name&email=form%40example.org",
        "content_type": "application/x-www-form-urlencoded"}  # fmt: skip
PLAIN_TEXT = {"data": '{"name": "Plain"}', "content_type": "text/plain"}
NOT_GZIP = {"data": b'{"name": "Not gzip"}', "content_type": "application/json",
            "headers": {"Content-Encoding": "gzip"}}  # fmt: skip
TRUNCATED_GZIP = {**NOT_GZIP, "data": gzip.compress(b'{"name": "Truncated"}')[:-12]}


def body(**fields) -> dict:
    return {"json": fields}


# Every endpoint with a body: (caller, method, path)
JSON_ENDPOINTS = {
    "login": (ANON, "POST", "/auth"),
    "refresh": (ANON, "POST", "/auth/refresh"),
    "logout": (USER, "POST", "/auth/logout"),
    "register": (ANON, "POST", "/api/v1/user"),
    "register-as-superadmin": (SUPER, "POST", "/api/v1/user"),
    "update-me": (USER, "PATCH", "/api/v1/user/me"),
    "change-password": (USER, "PATCH", "/api/v1/user/me/change-password"),
    "reset-password": (ANON, "POST", "/api/v1/user/reset-password"),
    "update-user": (SUPER, "PATCH", "/api/v1/user/{user}"),
    "email": (SUPER, "POST", "/api/v1/email"),
    "update-execution": (SUPER, "PATCH", "/api/v1/execution/{execution}"),
    "runtime-update": (RUNTIME, "PATCH", "/api/v1/execution/{execution}"),
    "post-log": (SUPER, "POST", "/api/v1/execution/{execution}/log"),
    "runtime-log": (RUNTIME, "POST", "/api/v1/execution/{execution}/log"),
    "script-access": (SUPER, "PUT", "/api/v1/script/{script}/access"),
    "run": (USER, "POST", "/api/v1/script/{script}/run"),
    "run-with-schema": (USER, "POST", "/api/v1/script/{schema_script}/run"),
}


def raw_json(data: str) -> dict:
    return {"data": data, "content_type": "application/json"}


def lines(*entries) -> dict:
    return {"json": list(entries)}


TOO_LONG = "x" * 10_001

# endpoint, label, request, expected status, field named in `errors`
BODY_CASES = [
    # Wrong types, bad values and missing fields. Unknown fields and "" for an optional field
    # are accepted (CONTRACT section 1): tests/test_tolerant_input.py.
    ("login", "email int", body(email=123, password=PASSWORD), 400, "email"),
    ("login", "password list", body(email="a@example.org", password=["x"]), 400, "password"),
    ("login", "missing password", body(email="a@example.org"), 400, "password"),
    ("refresh", "token int", body(refresh_token=123), 400, "refresh_token"),
    ("refresh", "missing token", body(), 400, "refresh_token"),
    ("logout", "token int", body(refresh_token=123), 400, "refresh_token"),
    ("register", "email int", body(email=123, name="N", password=NEW_PASSWORD), 400, "email"),
    ("register", "email not an email", body(email="nobody", name="N"), 400, "email"),
    ("register", "name list", body(email=NEW_EMAIL, name=["x"]), 400, "name"),
    ("register", "mailing list maybe",
     body(**REGISTRATION, is_in_mailing_list="maybe"), 400, "is_in_mailing_list"),
    ("register", "sector unknown", body(**REGISTRATION, sector="piracy"), 400, "sector"),
    ("register", "weak password", body(email=NEW_EMAIL, name="N", password="aaaaaaaaaaaa"),
     400, "password"),
    ("register-as-superadmin", "role GOD", body(**REGISTRATION, role="GOD"), 400, "role"),
    ("register-as-superadmin", "role int", body(**REGISTRATION, role=1), 400, "role"),
    ("update-me", "name list", body(name=["x"]), 400, "name"),
    ("update-me", "name int", body(name=123), 400, "name"),
    ("update-me", "email int", body(email=123), 400, "email"),
    ("update-me", "mailing list maybe", body(is_in_mailing_list="maybe"), 400,
     "is_in_mailing_list"),
    ("update-me", "role ADMIN", body(role="ADMIN"), 400, "role"),
    ("update-me", "role GOD", body(role="GOD"), 400, "role"),
    ("update-me", "raise own limit", body(max_concurrent_executions=50), 400,
     "max_concurrent_executions"),
    ("update-me", "undelete", body(deleted=False), 400, "deleted"),
    ("update-me", "plugin flag", body(is_plugin_user=True), 400, "is_plugin_user"),
    ("update-me", "role with a name", body(name="Fine", role="ADMIN"), 400, "role"),
    ("update-me", "sector unknown", body(sector="piracy"), 400, "sector"),
    ("update-me", "nothing known", body(favourite_colour="green"), 400, None),
    ("update-user", "password", body(password=NEW_PASSWORD), 400, "password"),
    ("update-user", "undelete", body(deleted=False), 400, "deleted"),
    ("change-password", "old int", body(old_password=123, new_password=NEW_PASSWORD), 400,
     "old_password"),
    ("change-password", "missing new", body(old_password=PASSWORD), 400, "new_password"),
    ("reset-password", "token int", body(token=123, password=NEW_PASSWORD), 400, "token"),
    ("update-user", "role GOD", body(role="GOD"), 400, "role"),
    ("update-user", "role lowercase", body(role="admin"), 400, "role"),
    ("update-user", "name list", body(name=["x"]), 400, "name"),
    ("update-user", "mailing list maybe", body(is_in_mailing_list="maybe"), 400,
     "is_in_mailing_list"),
    ("update-user", "limit text", body(max_concurrent_executions="lots"), 400,
     "max_concurrent_executions"),
    ("update-user", "limit zero", body(max_concurrent_executions=0), 400,
     "max_concurrent_executions"),
    ("email", "subject int", body(subject=123, text="t", recipients="all"), 400, "subject"),
    ("email", "recipients int", body(subject="s", text="t", recipients=5), 400, "recipients"),
    ("email", "recipients unknown", body(subject="s", text="t", recipients="everyone"), 400,
     "recipients"),
    ("email", "no text or html", body(subject="s", recipients="all"), 400, "text"),
    # Execution reports: PATCH /execution/<id> (an administrator, or the execution's runtime).
    ("update-execution", "progress text", body(progress="fast"), 400, "progress"),
    ("update-execution", "progress bool", body(progress=True), 400, "progress"),
    ("update-execution", "progress list", body(progress=[50]), 400, "progress"),
    # Not JSON numbers: refused where the body is decoded, before any field is known.
    ("update-execution", "progress NaN", raw_json('{"progress": NaN}'), 400, None),
    ("update-execution", "progress infinite", raw_json('{"progress": 1e400}'), 400, None),
    ("update-execution", "status DONE", body(status="DONE"), 400, "status"),
    ("update-execution", "status int", body(status=5), 400, "status"),
    ("update-execution", "status lowercase", body(status="finished"), 400, "status"),
    ("update-execution", "status null", body(status=None), 400, "status"),
    ("update-execution", "owner", body(user_id="00000000-0000-0000-0000-000000000000"), 400,
     "user_id"),
    ("update-execution", "end date", body(end_date="2024-01-01T00:00:00.000000"), 400,
     "end_date"),
    ("update-execution", "undelete", body(deleted=False), 400, "deleted"),
    ("update-execution", "params", body(params={}), 400, "params"),
    ("update-execution", "owner with progress",
     body(progress=5, user_id="00000000-0000-0000-0000-000000000000"), 400, "user_id"),
    ("update-execution", "only unknown fields", body(colour="red"), 400, None),
    ("update-execution", "nothing", body(), 400, None),
    ("update-execution", "a list", {"json": [{"progress": 5}]}, 400, None),
    ("runtime-update", "progress text", body(progress="fast"), 400, "progress"),
    ("runtime-update", "status DONE", body(status="DONE"), 400, "status"),
    ("runtime-update", "status int", body(status=5), 400, "status"),
    # Log lines: one object or a non-empty array of them; nothing is stored unless all are valid.
    ("post-log", "text int", body(text=123), 400, "text"),
    ("post-log", "text list", body(text=["a"]), 400, "text"),
    ("post-log", "text null", body(text=None), 400, "text"),
    ("post-log", "text too long", body(text=TOO_LONG), 400, "text"),
    ("post-log", "missing text", body(level="INFO"), 400, "text"),
    ("post-log", "level LOUD", body(text="t", level="LOUD"), 400, "level"),
    ("post-log", "level int", body(text="t", level=5), 400, "level"),
    ("post-log", "empty array", lines(), 400, None),
    ("post-log", "array of numbers", lines(1, 2), 400, None),
    ("post-log", "a string", {"json": "just text"}, 400, None),
    ("post-log", "a number", {"json": 5}, 400, None),
    ("post-log", "null", raw_json("null"), 400, None),
    ("post-log", "batch, one text int", lines({"text": "fine"}, {"text": 123}), 400, "text"),
    ("post-log", "batch, one level LOUD",
     lines({"text": "fine"}, {"text": "t", "level": "LOUD"}), 400, "level"),
    ("post-log", "batch, one too long", lines({"text": "fine"}, {"text": TOO_LONG}), 400,
     "text"),
    ("runtime-log", "text int", body(text=123), 400, "text"),
    ("runtime-log", "level LOUD", body(text="t", level="LOUD"), 400, "level"),
    ("runtime-log", "text too long", body(text=TOO_LONG), 400, "text"),
    ("runtime-log", "batch, one level LOUD",
     lines({"text": "fine", "level": "INFO"}, {"text": "t", "level": "LOUD"}), 400, "level"),
    # Script access.
    ("script-access", "role GOD", body(allowed_roles=["GOD"]), 400, "allowed_roles"),
    ("script-access", "roles a string", body(allowed_roles="USER"), 400, "allowed_roles"),
    ("script-access", "user not a UUID", body(allowed_users=["nobody"]), 400, "allowed_users"),
    ("script-access", "users a string", body(allowed_users="everyone"), 400, "allowed_users"),
    # Run bodies: a JSON object of parameters, valid for the script's params_schema if any.
    ("run", "a list", {"json": [1, 2]}, 400, None),
    ("run", "a string", {"json": "params"}, 400, None),
    ("run", "a number", {"json": 5}, 400, None),
    ("run", "true", {"json": True}, 400, None),
    ("run", "null", raw_json("null"), 400, None),
    ("run-with-schema", "year text", body(year="recent"), 400, "year"),
    ("run-with-schema", "year float", body(year=2020.5), 400, "year"),
    ("run-with-schema", "year missing", body(), 400, None),
    # The same transport problems everywhere.
    *[(name, "malformed JSON", MALFORMED, 400, None) for name in JSON_ENDPOINTS],
    *[(name, "form-encoded", FORM, 415, None) for name in JSON_ENDPOINTS],
    *[(name, "text/plain", PLAIN_TEXT, 415, None) for name in JSON_ENDPOINTS],
    *[(name, "claims gzip, is not", NOT_GZIP, 400, None) for name in JSON_ENDPOINTS],
    *[(name, "truncated gzip", TRUNCATED_GZIP, 400, None) for name in JSON_ENDPOINTS],
]  # fmt: skip


@pytest.mark.parametrize(
    ("endpoint", "label", "request_kwargs", "expected", "field"),
    BODY_CASES,
    ids=[f"{case[0]}: {case[1]}" for case in BODY_CASES],
)
def test_bad_body(app, mailbox, world, endpoint, label, request_kwargs, expected, field):
    caller, method, path = JSON_ENDPOINTS[endpoint]
    assert_refused(app, mailbox, world, caller, method, path, expected, field, **request_kwargs)


# Query strings ---------------------------------------------------------------------------------

# caller, path, query, field named in `errors` (None: only the shape is checked)
QUERY_CASES = [
    (SUPER, "/api/v1/user", {"sort": "password"}, "sort"),
    (SUPER, "/api/v1/user", {"sort": "email sideways"}, "sort"),
    (SUPER, "/api/v1/user", {"sort": "email desc extra"}, "sort"),
    (SUPER, "/api/v1/user", {"sort": "name,-password_hash"}, "sort"),
    (SUPER, "/api/v1/user", {"sort": "-"}, "sort"),
    (SUPER, "/api/v1/user", {"per_page": "0"}, "per_page"),
    (SUPER, "/api/v1/user", {"per_page": "101"}, "per_page"),
    (SUPER, "/api/v1/user", {"per_page": "-5"}, "per_page"),
    (SUPER, "/api/v1/user", {"page": "0"}, "page"),
    (SUPER, "/api/v1/user", {"page": "abc"}, "page"),
    (SUPER, "/api/v1/user", {"page": "1.5"}, "page"),
    (SUPER, "/api/v1/user", {"role": "GOD"}, "role"),
    (SUPER, "/api/v1/user", {"include_deleted": "maybe"}, "include_deleted"),
    # Execution lists.
    *[
        (caller, path, query, field)
        for caller, path in ((SUPER, "/api/v1/execution"), (USER, "/api/v1/execution/user"))
        for query, field in (
            ({"sort": "password"}, "sort"),
            ({"sort": "-params"}, "sort"),
            ({"sort": "start_date sideways"}, "sort"),
            ({"sort": "start_date desc extra"}, "sort"),
            ({"sort": "status,-results"}, "sort"),
            ({"status": "DONE"}, "status"),
            ({"status": "RUNNING,DONE"}, "status"),
            ({"status": "5"}, "status"),
            ({"updated_at": "yesterday"}, "updated_at"),
            ({"updated_at": "2024-13-45"}, "updated_at"),
            ({"updated_at": "2024-01-01T25:00:00"}, "updated_at"),
            ({"per_page": "0"}, "per_page"),
            ({"per_page": "101"}, "per_page"),
            ({"per_page": "-1"}, "per_page"),
            ({"per_page": "ten"}, "per_page"),
            ({"page": "0"}, "page"),
            ({"page": "-3"}, "page"),
            ({"page": "abc"}, "page"),
            ({"script_id": "not-a-uuid"}, "script_id"),
            ({"user_id": "nobody"}, "user_id"),
        )
    ],
    # Script lists and single objects.
    (SUPER, "/api/v1/script", {"sort": "password"}, "sort"),
    (SUPER, "/api/v1/script", {"sort": "-user_id"}, "sort"),
    (SUPER, "/api/v1/script", {"status": "DONE"}, "status"),
    (SUPER, "/api/v1/script", {"public": "maybe"}, "public"),
    (SUPER, "/api/v1/script", {"per_page": "0"}, "per_page"),
    (SUPER, "/api/v1/script", {"per_page": "101"}, "per_page"),
    (SUPER, "/api/v1/script", {"page": "0"}, "page"),
    # Log polling.
    *[
        (USER, path, query, field)
        for path in ("/api/v1/execution/{execution}/log", "/api/v1/script/{script}/log")
        for query, field in (
            ({"last-id": "-1"}, "last-id"),
            ({"last-id": "abc"}, "last-id"),
            ({"last-id": "1.5"}, "last-id"),
            ({"start": "yesterday"}, "start"),
            ({"start": "2024-02-30"}, "start"),
        )
    ],
]


@pytest.mark.parametrize(
    ("caller", "path", "query", "field"),
    QUERY_CASES,
    ids=[f"{path} {query}" for _, path, query, _ in QUERY_CASES],
)
def test_bad_query(app, mailbox, world, caller, path, query, field):
    assert_refused(app, mailbox, world, caller, "GET", path, 400, field, query_string=query)


def test_refresh_rotate_must_be_a_boolean(app, mailbox, world):
    token = world.login(USER)["refresh_token"]
    assert_refused(app, mailbox, world, ANON, "POST", "/auth/refresh?rotate=maybe", 400,
                   "rotate", json={"refresh_token": token})  # fmt: skip


# Malformed account references ------------------------------------------------------------------

BAD_REFS = [
    "not-a-uuid",
    "123",
    "%00",
    "%FF",
    "00000000-0000-0000-0000-000000000000",
    "d3b07384-d9a0-4c9b-8f6e-0a1b2c3d4e5fx",
    "nobody%40example.org",
    "x" * 300,
]


@pytest.mark.parametrize("ref", BAD_REFS)
@pytest.mark.parametrize(
    ("method", "request_kwargs"),
    [("GET", {}), ("PATCH", {"json": {"name": "Renamed"}}), ("DELETE", {})],
)
def test_malformed_or_unknown_account_is_404(app, mailbox, world, ref, method, request_kwargs):
    assert_refused(app, mailbox, world, SUPER, method, f"/api/v1/user/{ref}", 404,
                   **request_kwargs)  # fmt: skip


@pytest.mark.parametrize("ref", [ref for ref in BAD_REFS if ref != "%00"])
def test_recover_password_of_malformed_account_is_neutral(app, mailbox, world, ref):
    before = (database_state(app), len(mailbox.messages))
    response = world.client.post(f"/api/v1/user/{ref}/recover-password")
    assert response.status_code == 200, response.get_json()
    assert "message" in response.get_json()["data"]
    assert (database_state(app), len(mailbox.messages)) == before


# Every call on one execution or script, with a valid body: (method, path suffix, request).
EXECUTION_CALLS = [
    ("GET", "", {}),
    ("PATCH", "", {"json": {"progress": 5}}),
    ("DELETE", "", {}),
    ("GET", "/log", {}),
    ("POST", "/log", {"json": {"text": "a line"}}),
    ("POST", "/cancel", {}),
    ("GET", "/download-results", {}),
]
RUNTIME_CALLS = [
    call for call in EXECUTION_CALLS if call[:2] in {("GET", ""), ("PATCH", ""), ("POST", "/log")}
]
# Also NUL after a real id: the path is refused before any lookup.
OBJECT_REFS = [*BAD_REFS, "{execution}%00", "{finished}%00", "{script}%00"]


def valid_upload() -> dict:
    return upload(script_archive())


SCRIPT_CALLS = [
    ("GET", "", {}),
    ("PATCH", "", "upload"),
    ("DELETE", "", {}),
    ("PUT", "/access", {"json": {"allowed_roles": ["USER"]}}),
    ("POST", "/publish", {}),
    ("POST", "/unpublish", {}),
    ("GET", "/log", {}),
    ("GET", "/download", {}),
    ("GET", "/run", {}),
    ("POST", "/run", {"json": {"year": 2020}}),
]


@pytest.mark.parametrize("ref", OBJECT_REFS)
@pytest.mark.parametrize(("method", "suffix", "request_kwargs"), EXECUTION_CALLS,
                         ids=[f"{m} {s}" for m, s, _ in EXECUTION_CALLS])  # fmt: skip
def test_malformed_or_unknown_execution_is_404(
    app, mailbox, world, ref, method, suffix, request_kwargs
):
    assert_refused(app, mailbox, world, SUPER, method, f"/api/v1/execution/{ref}{suffix}", 404,
                   **request_kwargs)  # fmt: skip


@pytest.mark.parametrize("ref", [ref for ref in OBJECT_REFS if "{execution}" not in ref])
@pytest.mark.parametrize(("method", "suffix", "request_kwargs"), RUNTIME_CALLS,
                         ids=[f"{m} {s}" for m, s, _ in RUNTIME_CALLS])  # fmt: skip
def test_runtime_token_on_a_malformed_execution_is_404(
    app, mailbox, world, ref, method, suffix, request_kwargs
):
    assert_refused(app, mailbox, world, RUNTIME, method, f"/api/v1/execution/{ref}{suffix}", 404,
                   **request_kwargs)  # fmt: skip


@pytest.mark.parametrize("ref", [ref for ref in OBJECT_REFS if "execution" not in ref])
@pytest.mark.parametrize(("method", "suffix", "request_kwargs"), SCRIPT_CALLS,
                         ids=[f"{m} {s}" for m, s, _ in SCRIPT_CALLS])  # fmt: skip
def test_malformed_or_unknown_script_is_404(
    app, mailbox, world, ref, method, suffix, request_kwargs
):
    if request_kwargs == "upload":
        request_kwargs = valid_upload()
    assert_refused(app, mailbox, world, SUPER, method, f"/api/v1/script/{ref}{suffix}", 404,
                   **request_kwargs)  # fmt: skip


def test_nul_in_a_path_is_404(app, mailbox, world):
    """A NUL character never names an account; the path is refused before any lookup."""
    assert_refused(app, mailbox, world, ANON, "POST", "/api/v1/user/%00/recover-password", 404)


# NUL characters -------------------------------------------------------------------------------

# caller, method, path, request, acceptable statuses (200 only where an empty answer is fine)
NUL_CASES = [
    pytest.param(ANON, "POST", "/auth", {"email": "a\x00@example.org", "password": PASSWORD},
                 (400, 401), id="login email"),
    pytest.param(ANON, "POST", "/api/v1/user", {**REGISTRATION, "name": "a\x00b"}, (400,),
                 id="register name"),
    pytest.param(ANON, "POST", "/api/v1/user", {**REGISTRATION, "email": "nul\x00@example.org"},
                 (400,), id="register email"),
    pytest.param(USER, "PATCH", "/api/v1/user/me", {"name": "a\x00b"}, (400,),
                 id="update-me name"),
    pytest.param(USER, "PATCH", "/api/v1/user/me/change-password",
                 {"old_password": "a\x00b", "new_password": NEW_PASSWORD}, (400,),
                 id="change-password old"),
    pytest.param(SUPER, "PATCH", "/api/v1/user/{user}", {"name": "a\x00b"}, (400,),
                 id="update-user name"),
    pytest.param(SUPER, "POST", "/api/v1/email",
                 {"subject": "s", "text": "t", "recipients": ["a\x00@example.org"]}, (200, 400),
                 id="email recipient"),
    pytest.param(SUPER, "GET", "/api/v1/user?email=%00", None, (200, 400),
                 id="list email filter"),
    pytest.param(RUNTIME, "POST", "/api/v1/execution/{execution}/log", {"text": "a\x00b"},
                 (400,), id="log text"),
    pytest.param(RUNTIME, "POST", "/api/v1/execution/{execution}/log",
                 [{"text": "fine"}, {"text": "a\x00b"}], (400,), id="log batch text"),
    pytest.param(RUNTIME, "POST", "/api/v1/execution/{execution}/log",
                 {"text": "t", "level": "INFO\x00"}, (400,), id="log level"),
    pytest.param(RUNTIME, "PATCH", "/api/v1/execution/{execution}",
                 {"results": {"name": "a\x00b"}}, (400,), id="results value"),
    pytest.param(RUNTIME, "PATCH", "/api/v1/execution/{execution}",
                 {"results": {"a\x00": 1}}, (400,), id="results key"),
    pytest.param(RUNTIME, "PATCH", "/api/v1/execution/{execution}", {"status": "RUNNING\x00"},
                 (400,), id="status"),
    pytest.param(USER, "POST", "/api/v1/script/{script}/run", {"region": "a\x00b"}, (400,),
                 id="run param"),
    pytest.param(USER, "GET", "/api/v1/script/{script}/run?region=%00", None, (400,),
                 id="run query param"),
    pytest.param(SUPER, "PUT", "/api/v1/script/{script}/access", {"allowed_roles": ["USER\x00"]},
                 (400,), id="access role"),
    pytest.param(SUPER, "GET", "/api/v1/execution?status=%00", None, (400,),
                 id="execution list status"),
    pytest.param(USER, "GET", "/api/v1/execution/{execution}/log?start=%00", None, (400,),
                 id="log poll start"),
]  # fmt: skip


@pytest.mark.parametrize(("caller", "method", "path", "payload", "acceptable"), NUL_CASES)
def test_nul_characters_are_refused_not_500(
    app, mailbox, world, caller, method, path, payload, acceptable
):
    headers = world.headers(caller)
    before = (database_state(app), len(mailbox.messages))
    response = world.client.open(world.path(path), method=method, json=payload, headers=headers)
    assert response.status_code in acceptable, response.get_json()
    if response.status_code != 200:
        assert_error_shape(response, response.status_code)
    assert (database_state(app), len(mailbox.messages)) == before
    assert world.sent_tasks == []


# Sizes and compression -------------------------------------------------------------------------


def gzipped(payload: bytes) -> dict:
    return {"data": gzip.compress(payload), "content_type": "application/json",
            "headers": {"Content-Encoding": "gzip"}}  # fmt: skip


SIZE_LIMIT = 32
# Valid bodies, each a little longer than SIZE_LIMIT bytes as the test client sends them.
SIZE_ENDPOINTS = [
    (ANON, "POST", "/api/v1/user", REGISTRATION),
    (USER, "PATCH", "/api/v1/user/me", {"name": "A valid name", "institution": "Some institute"}),
    (SUPER, "PATCH", "/api/v1/user/{user}", {"name": "A valid name", "country": "Some country"}),
    (ANON, "POST", "/auth", {"email": "someone@example.org", "password": PASSWORD}),
    (SUPER, "POST", "/api/v1/email", {"subject": "Hello", "text": "Hi", "recipients": "all"}),
    (SUPER, "PATCH", "/api/v1/execution/{execution}", {"progress": 50, "results": {"area": 12.5}}),
    (RUNTIME, "PATCH", "/api/v1/execution/{execution}", {"status": "FINISHED", "results": [1, 2]}),
    (
        RUNTIME,
        "POST",
        "/api/v1/execution/{execution}/log",
        {"text": "A valid log line", "level": "INFO"},
    ),
    (USER, "POST", "/api/v1/script/{script}/run", {"region": "Kenya", "year": 2020, "period": 5}),
    (SUPER, "PUT", "/api/v1/script/{script}/access", {"allowed_roles": ["USER", "SUPERADMIN"]}),
]


@pytest.mark.parametrize(("caller", "method", "path", "valid"), SIZE_ENDPOINTS)
def test_oversized_json_body_is_413(app, mailbox, world, monkeypatch, caller, method, path, valid):
    world.headers(caller)  # log in while logging in still fits
    monkeypatch.setitem(app.config, "MAX_JSON_BODY_SIZE", SIZE_LIMIT)
    assert len(app.json.dumps(valid)) > SIZE_LIMIT  # what the test client sends
    assert_refused(app, mailbox, world, caller, method, path, 413, json=valid)


@pytest.mark.parametrize(("caller", "method", "path", "valid"), SIZE_ENDPOINTS)
def test_gzip_bomb_is_413(app, mailbox, world, monkeypatch, caller, method, path, valid):
    monkeypatch.setitem(app.config, "MAX_DECOMPRESSED_REQUEST_SIZE", 64 * 1024)
    # Inflates far past the lowered limit and also past the default 20 MiB one: the gzip
    # middleware reads its cap when the app is created, so lowering it here alone has no effect.
    inflated = 21 * 1024 * 1024
    bomb = gzipped(b'{"name": "' + b"0" * inflated + b'"}')
    assert len(bomb["data"]) < 64 * 1024
    assert_refused(app, mailbox, world, caller, method, path, 413, **bomb)


def test_gzip_body_is_accepted(world):
    headers = world.headers(USER)
    request = gzipped(json.dumps({"name": "Zipped"}).encode())
    request["headers"].update(headers)
    response = world.client.patch("/api/v1/user/me", **request)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["name"] == "Zipped"
    assert world.client.get("/api/v1/user/me", headers=headers).get_json()["data"]["name"] == (
        "Zipped"
    )


def test_gzip_registration_is_accepted(world):
    response = world.client.post("/api/v1/user", **gzipped(json.dumps(REGISTRATION).encode()))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["email"] == NEW_EMAIL


# Reports past the configured limits ------------------------------------------------------------


@pytest.mark.parametrize("caller", [SUPER, RUNTIME])
@pytest.mark.parametrize(
    "report",
    [{"results": {"values": list(range(100))}},
     {"results": {"values": list(range(100))}, "status": "FINISHED"},
     {"results": ["x" * 200], "progress": 100}],
    ids=["results", "results and status", "results and progress"],
)  # fmt: skip
def test_results_over_the_limit_are_413(app, mailbox, world, monkeypatch, caller, report):
    monkeypatch.setitem(app.config, "RESULTS_MAX_BYTES", 100)
    assert len(json.dumps(report["results"])) > 100
    assert_refused(app, mailbox, world, caller, "PATCH", "/api/v1/execution/{execution}", 413,
                   json=report)  # fmt: skip


@pytest.mark.parametrize("caller", [SUPER, RUNTIME])
def test_log_batch_over_the_limit_is_413(app, mailbox, world, monkeypatch, caller):
    monkeypatch.setitem(app.config, "MAX_LOG_BATCH", 3)
    batch = [{"text": f"line {n}", "level": "INFO"} for n in range(4)]
    assert_refused(app, mailbox, world, caller, "POST", "/api/v1/execution/{execution}/log", 413,
                   json=batch)  # fmt: skip
    # A full batch still fits.
    response = world.client.post(
        world.path("/api/v1/execution/{execution}/log"),
        json=batch[:3],
        headers=world.headers(caller),
    )
    assert response.status_code == 200, response.get_json()
    assert [line["text"] for line in response.get_json()["data"]] == ["line 0", "line 1", "line 2"]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"text": 123}, "text"),
        ({"text": "x" * 10_001}, "text"),
        ({"level": "INFO", "x": 1}, "text"),
    ],
    ids=["text int", "text too long", "text missing"],
)
def test_single_log_line_error_names_the_field(app, mailbox, world, line, field):
    body = assert_refused(app, mailbox, world, RUNTIME, "POST",
                          "/api/v1/execution/{execution}/log", 400, json=line)  # fmt: skip
    assert isinstance(body["errors"].get(field), list), body


# Idempotency keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_idempotency_key_over_255_characters_is_400(app, mailbox, world, method):
    request = {"json": {"year": 2020}} if method == "POST" else {"query_string": {"year": "2020"}}
    assert_refused(app, mailbox, world, USER, method, "/api/v1/script/{script}/run", 400,
                   headers={"Idempotency-Key": "k" * 256}, **request)  # fmt: skip


def test_idempotency_key_of_255_characters_returns_the_same_execution(world):
    headers = {**world.headers(USER), "Idempotency-Key": "k" * 255}
    path = world.path("/api/v1/script/{script}/run")
    first = world.client.post(path, json={"year": 2020}, headers=headers)
    again = world.client.post(path, json={"year": 2020}, headers=headers)
    assert first.status_code == again.status_code == 200, (first.get_json(), again.get_json())
    assert first.get_json()["data"]["id"] == again.get_json()["data"]["id"]
    assert first.get_json()["data"]["status"] == "PENDING"
    assert world.sent_tasks == [("executions.dispatch", first.get_json()["data"]["id"])]


# States that forbid the change (409) -----------------------------------------------------------

# caller, method, path, request
CONFLICT_CASES = [
    pytest.param(SUPER, "PATCH", "/api/v1/execution/{execution}", {"json": {"status": "PENDING"}},
                 id="running back to PENDING"),
    pytest.param(RUNTIME, "PATCH", "/api/v1/execution/{execution}", {"json": {"status": "READY"}},
                 id="running back to READY"),
    pytest.param(SUPER, "PATCH", "/api/v1/execution/{finished}", {"json": {"status": "RUNNING"}},
                 id="finished to RUNNING"),
    pytest.param(SUPER, "PATCH", "/api/v1/execution/{finished}", {"json": {"status": "FAILED"}},
                 id="finished to FAILED"),
    pytest.param(SUPER, "PATCH", "/api/v1/execution/{finished}", {"json": {"progress": 5}},
                 id="finished progress"),
    pytest.param(SUPER, "PATCH", "/api/v1/execution/{finished}", {"json": {"results": [2]}},
                 id="finished results"),
    pytest.param(USER, "POST", "/api/v1/execution/{finished}/cancel", {},
                 id="cancel finished"),
    pytest.param(USER, "DELETE", "/api/v1/execution/{execution}", {}, id="delete running"),
    pytest.param(USER, "POST", "/api/v1/script/{unbuilt}/run", {"json": {"year": 2020}},
                 id="run unbuilt script"),
    pytest.param(USER, "GET", "/api/v1/script/{unbuilt}/run", {}, id="GET run unbuilt script"),
]  # fmt: skip


@pytest.mark.parametrize(("caller", "method", "path", "request_kwargs"), CONFLICT_CASES)
def test_state_conflict_is_409(app, mailbox, world, caller, method, path, request_kwargs):
    assert_refused(app, mailbox, world, caller, method, path, 409, **request_kwargs)


def test_repeating_a_finished_report_is_a_no_op(app, mailbox, world):
    """A runtime retrying its last report gets 200 and changes nothing."""
    headers = world.headers(SUPER)
    before = snapshot(app, mailbox, world)
    response = world.client.patch(
        world.path("/api/v1/execution/{finished}"),
        json={"status": "FINISHED", "results": {"area": 1}},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    assert snapshot(app, mailbox, world) == before


# Legitimate reports are accepted ---------------------------------------------------------------


def test_log_text_is_stored_verbatim(world):
    texts = ["x" * 10_000, "<script>alert('x')</script> \"quoted\" ünïcode 🌍 \\ \t tab", ""]
    batch = [{"text": texts[0], "level": "warn"}, {"text": texts[1], "level": "DEBUG"},
             {"text": texts[2]}]  # fmt: skip
    response = world.client.post(
        world.path("/api/v1/execution/{execution}/log"), json=batch, headers=world.headers(RUNTIME)
    )
    assert response.status_code == 200, response.get_json()
    response = world.client.get(
        world.path("/api/v1/execution/{execution}/log"), headers=world.headers(USER)
    )
    assert [(line["text"], line["level"]) for line in response.get_json()["data"]] == [
        (texts[0], "WARNING"),
        (texts[1], "DEBUG"),
        (texts[2], "INFO"),
    ]


@pytest.mark.parametrize(("progress", "stored"), [(150.7, 100), (-3, 0), (1e9, 100), (42, 42)])
def test_progress_is_clamped(world, progress, stored):
    response = world.client.patch(
        world.path("/api/v1/execution/{execution}"),
        json={"progress": progress},
        headers=world.headers(RUNTIME),
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["progress"] == stored


def test_gzip_report_from_the_runtime_is_accepted(world):
    request = gzipped(json.dumps({"status": "FINISHED", "results": {"rows": [0] * 500}}).encode())
    request["headers"].update(world.headers(RUNTIME))
    response = world.client.patch(world.path("/api/v1/execution/{execution}"), **request)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert (data["status"], data["progress"], data["results"]) == (
        "FINISHED", 100, {"rows": [0] * 500}
    )  # fmt: skip


# Script archives -------------------------------------------------------------------------------

CONFIGURATION = {"name": "Bad input upload"}
MAIN = b"def run(params, logger):\n    return params\n"


def member(name: str, content: bytes | None = b"", **attributes) -> tuple:
    """One tar member: its name, its content (None: no data) and TarInfo attributes."""
    return name, content, attributes


def tar_gz(members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content, attributes in members:
            info = tarfile.TarInfo(name)
            for key, value in attributes.items():
                setattr(info, key, value)
            if content is None:
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def script_archive(*extra, configuration=CONFIGURATION, without=(), prefix="") -> bytes:
    """A valid archive (configuration.json, requirements.txt, src/main.py at its root), changed."""
    raw = configuration if isinstance(configuration, bytes) else json.dumps(configuration).encode()
    members = [
        member("configuration.json", raw),
        member("requirements.txt", b"numpy\n"),
        member("src/main.py", MAIN),
    ]
    kept = [(prefix + name, *rest) for name, *rest in members if name not in without]
    return tar_gz([*kept, *extra])


def upload(archive: bytes, filename: str = "bad input.tar.gz", field: str = "file") -> dict:
    return {"data": {field: (io.BytesIO(archive), filename)}, "content_type": "multipart/form-data"}


UPLOAD_TARGETS = [(SUPER, "POST", "/api/v1/script"), (SUPER, "PATCH", "/api/v1/script/{script}"),
                  (USER, "PATCH", "/api/v1/script/{script}")]  # fmt: skip
UPLOAD_IDS = ["publish", "new version", "new version by owner"]

# label, request (made per test: an upload is read once), expected status, field in `errors`
UPLOAD_CASES = [
    ("JSON body", lambda: {"json": {"file": "archive.tar.gz"}}, 415, None),
    ("form-encoded", lambda: {"data": "file=archive.tar.gz",
                              "content_type": "application/x-www-form-urlencoded"}, 415, None),
    ("raw gzip", lambda: {"data": script_archive(), "content_type": "application/gzip"}, 415,
     None),
    ("missing file field", lambda: upload(script_archive(), field="archive"), 400, "file"),
    ("file is a text field", lambda: {"data": {"file": "archive.tar.gz"},
                                      "content_type": "multipart/form-data"}, 400, "file"),
    ("no body", dict, 400, "file"),
]  # fmt: skip

# label, archive, field named in `errors`
BAD_ARCHIVES = [
    ("not gzip", b"just some text, no archive", None),
    ("empty file", b"", None),
    ("zip", b"PK\x03\x04" + b"\x00" * 60, None),
    ("gzip, not tar", gzip.compress(b"not a tar archive " * 40), None),
    ("truncated", script_archive()[:-60], None),
    ("member with ..", script_archive(member("../evil.py", b"x")), None),
    ("member with inner ..", script_archive(member("src/../../evil.py", b"x")), None),
    ("absolute member", script_archive(member("/tmp/evil.py", b"x")), None),
    ("symlink to absolute", script_archive(
        member("src/passwd", None, type=tarfile.SYMTYPE, linkname="/etc/passwd")), None),
    ("symlink outside", script_archive(
        member("src/up", None, type=tarfile.SYMTYPE, linkname="../../etc/passwd")), None),
    ("hard link outside", script_archive(
        member("src/hard", None, type=tarfile.LNKTYPE, linkname="../outside")), None),
    ("device file", script_archive(
        member("src/null", None, type=tarfile.CHRTYPE, devmajor=1, devminor=3)), None),
    ("fifo", script_archive(member("src/pipe", None, type=tarfile.FIFOTYPE)), None),
    ("files in a folder", script_archive(prefix="my script/"), None),
    ("no src/main.py", script_archive(without=("src/main.py",)), None),
    ("no requirements.txt", script_archive(without=("requirements.txt",)), None),
    ("no configuration.json", script_archive(without=("configuration.json",)), None),
    ("configuration not JSON", script_archive(configuration=b"{name: "), None),
    ("configuration a list", script_archive(configuration=["name"]), None),
    ("no name", script_archive(configuration={"description": "nameless"}), "name"),
    ("name int", script_archive(configuration={"name": 123}), "name"),
    ("cpu_limit text", script_archive(configuration={**CONFIGURATION, "cpu_limit": "lots"}),
     "cpu_limit"),
    ("memory_limit negative",
     script_archive(configuration={**CONFIGURATION, "memory_limit": -1}), "memory_limit"),
    ("reservation above limit", script_archive(
        configuration={**CONFIGURATION, "cpu_reservation": 2e9, "cpu_limit": 1e9}),
     "cpu_reservation"),
    ("params_schema invalid", script_archive(
        configuration={**CONFIGURATION, "params_schema": {"type": "nonsense"}}), "params_schema"),
    ("params_schema a list",
     script_archive(configuration={**CONFIGURATION, "params_schema": [1]}), "params_schema"),
]  # fmt: skip


@pytest.mark.parametrize(("caller", "method", "path"), UPLOAD_TARGETS, ids=UPLOAD_IDS)
@pytest.mark.parametrize(("label", "make_request", "expected", "field"), UPLOAD_CASES,
                         ids=[case[0] for case in UPLOAD_CASES])  # fmt: skip
def test_bad_upload(
    app, mailbox, world, caller, method, path, label, make_request, expected, field
):
    assert_refused(app, mailbox, world, caller, method, path, expected, field, **make_request())


@pytest.mark.parametrize(("caller", "method", "path"), UPLOAD_TARGETS, ids=UPLOAD_IDS)
@pytest.mark.parametrize(("label", "archive", "field"), BAD_ARCHIVES,
                         ids=[case[0] for case in BAD_ARCHIVES])  # fmt: skip
def test_bad_archive_is_400(app, mailbox, world, caller, method, path, label, archive, field):
    assert_refused(app, mailbox, world, caller, method, path, 400, field, **upload(archive))


def incompressible(size: int) -> bytes:
    return os.urandom(size)


# config key, lowered limit, an archive past it
ARCHIVE_LIMITS = [
    ("SCRIPT_MAX_ARCHIVE_BYTES", 1024, lambda: script_archive(
        member("src/data.bin", incompressible(4096)))),
    ("MAX_CONTENT_LENGTH", 1024, lambda: script_archive(
        member("src/data.bin", incompressible(4096)))),
    ("SCRIPT_MAX_UNPACKED_BYTES", 64 * 1024, lambda: script_archive(
        member("src/zeros.bin", b"\x00" * 512 * 1024))),
    ("SCRIPT_MAX_MEMBERS", 5, lambda: script_archive(
        *[member(f"src/module_{n}.py", b"x = 1\n") for n in range(10)])),
]  # fmt: skip


@pytest.mark.parametrize(("caller", "method", "path"), UPLOAD_TARGETS, ids=UPLOAD_IDS)
@pytest.mark.parametrize(("setting", "limit", "make_archive"), ARCHIVE_LIMITS,
                         ids=[case[0] for case in ARCHIVE_LIMITS])  # fmt: skip
def test_archive_past_a_limit_is_413(
    app, mailbox, world, monkeypatch, caller, method, path, setting, limit, make_archive
):
    archive = make_archive()
    world.headers(caller)  # log in while logging in still fits
    monkeypatch.setitem(app.config, setting, limit)
    assert_refused(app, mailbox, world, caller, method, path, 413, **upload(archive))


def test_publishing_a_name_without_a_slug_is_400(app, mailbox, world):
    """A new script's slug comes from its name (a new version keeps its slug, so may be named
    anything)."""
    archive = script_archive(configuration={"name": "!!! ???"})
    assert_refused(app, mailbox, world, SUPER, "POST", "/api/v1/script", 400, "name",
                   **upload(archive))  # fmt: skip


def test_duplicate_slug_is_409(app, mailbox, world):
    """`bad input script` exists: a new script of that name would take its slug."""
    archive = script_archive(configuration={"name": "Bad Input   Script"})
    assert_refused(app, mailbox, world, SUPER, "POST", "/api/v1/script", 409, **upload(archive))


def test_valid_archive_is_accepted(world):
    """The control for the cases above: the unchanged archive publishes and builds."""
    response = world.client.post(
        "/api/v1/script", headers=world.headers(SUPER), **upload(script_archive())
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert (data["slug"], data["status"]) == ("bad-input-upload", "BUILDING")
    assert [task[0] for task in world.sent_tasks] == ["scripts.build"]
    assert len(stored_files(world.storage_root)) == 1
