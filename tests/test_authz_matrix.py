"""Who may call what: every registered endpoint x every kind of caller (CONTRACT.md 2-6, 9).

Each call carries a valid body, so authorization is the only reason for an answer other than 200
(202 for a cancel, 409 where a row says the execution's state forbids the call): 401 for a missing
token or one that does not open this endpoint, 403 for an authenticated caller without the right,
404 for an object the caller may not see. A refused call must leave the database, the stored
archives and the outgoing mail untouched, and send no task.

Callers: anonymous, `self` (the USER who owns the scripts and executions the calls are about),
another USER, an ADMIN, a SUPERADMIN, and the runtime token of an execution (section 9: it opens
its own execution's GET, PATCH and POST log, nothing else). On the execution endpoints a seventh
caller holds the runtime token of another execution of the same user. On endpoints open to anyone
(/auth, registration, password recovery, health) a runtime token is not needed and changes nothing.
"""

import io
import json
import re
import tarfile
import uuid
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select

from gefapi.extensions import db
from gefapi.models import ExecutionStatus, Role, ScriptBuild
from gefapi.models.base import utcnow
from gefapi.storage import LocalStorage
from tests.helpers import database_state, stored_files

PASSWORD = "matrix password 0123"
NEW_PASSWORD = "a brand new passphrase 42"
ANON, SELF, OTHER, ADMIN, SUPER = "anonymous", "self", "other_user", "admin", "superadmin"
RUNTIME = "runtime"  # the runtime token of the execution the path names (else `execution`)
ELSEWHERE = "runtime_of_sibling"  # the runtime token of another execution of the same user
EXECUTION_LOGIN = "execution_login"  # tokens from /auth with that execution's API_USER/PASSWORD
CALLERS = (ANON, SELF, OTHER, ADMIN, SUPER, RUNTIME)
EXECUTION_CALLERS = (*CALLERS, ELSEWHERE)
# Registered rules that are documentation, not API.
NOT_API = {"static", "api-docs.openapi_json", "api-docs.openapi_swagger_ui"}
RESULTS = {"area_km2": 42.5, "layers": ["sdg"]}


# Script archives -------------------------------------------------------------------------------


def script_archive(name: str, **configuration) -> bytes:
    """A valid .tar.gz: configuration.json, requirements.txt and src/main.py at its root."""
    files = {
        "configuration.json": json.dumps({"name": name, **configuration}).encode(),
        "requirements.txt": b"numpy\n",
        "src/main.py": b"def run(params, logger):\n    return params\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class Upload:
    """A multipart upload of an archive in the field `file` (the filename has a space)."""

    def __init__(self, archive: bytes, filename: str = "my script.tar.gz"):
        self.archive, self.filename = archive, filename

    def request(self) -> dict:
        return {
            "data": {"file": (io.BytesIO(self.archive), self.filename)},
            "content_type": "multipart/form-data",
        }


def request_kwargs(body) -> dict:
    return body.request() if isinstance(body, Upload) else {"json": body}


# Accounts, objects and requests ----------------------------------------------------------------


class World:
    """The accounts, scripts and executions of one test: `self` is the USER the calls are about
    and owns every script and execution below."""

    def __init__(self, app, client, make_user, mailbox, factories, storage_root):
        make_script, make_execution, self.runtime_headers = factories
        self.app, self.client, self.mailbox = app, client, mailbox
        self.storage_root = storage_root
        self.accounts = {
            SELF: make_user(role=Role.USER, name="Subject", password=PASSWORD),
            OTHER: make_user(role=Role.USER, name="Other", password=PASSWORD),
            ADMIN: make_user(role=Role.ADMIN, name="Admin", password=PASSWORD),
            SUPER: make_user(role=Role.SUPERADMIN, name="Super", password=PASSWORD),
            "peer_admin": make_user(role=Role.ADMIN, name="Peer admin", password=PASSWORD),
        }
        self.new_email = f"new-{uuid.uuid4().hex[:8]}@example.org"
        owner, other = self.subject, self.accounts[OTHER]
        self.scripts = {
            # Neither public nor restricted: its owner and administrators only.
            "script": make_script(owner),
            "public": make_script(owner, public=True),
            "for_other": make_script(owner, restricted=True, allowed_users=[other.id]),
            "for_users": make_script(owner, restricted=True, allowed_roles=["USER"]),
            "for_admins": make_script(owner, restricted=True, allowed_roles=["ADMIN"]),
            "for_someone": make_script(
                owner, restricted=True, allowed_users=[self.accounts["peer_admin"].id]
            ),
            # Names the other user but is not restricted: the lists mean nothing.
            "not_restricted": make_script(
                owner, restricted=False, allowed_users=[other.id], allowed_roles=["USER"]
            ),
        }
        script = self.scripts["script"]
        self.executions = {
            "execution": make_execution(script, owner, status=ExecutionStatus.RUNNING),
            "sibling": make_execution(script, owner, status=ExecutionStatus.RUNNING),
            "finished": make_execution(
                script,
                owner,
                status=ExecutionStatus.FINISHED,
                progress=100,
                results=RESULTS,
                start_date=utcnow() - timedelta(minutes=5),
                end_date=utcnow(),
            ),
        }
        self.archives = {}
        storage = LocalStorage(storage_root)
        with app.app_context():
            for name, script in self.scripts.items():
                key = db.session.scalar(
                    select(ScriptBuild.archive_key).where(ScriptBuild.script_id == script.id)
                )
                self.archives[name] = script_archive(script.name)
                storage.put(key, io.BytesIO(self.archives[name]))

    @property
    def subject(self):
        return self.accounts[SELF]

    def path(self, template: str) -> str:
        return template.format(
            subject=self.subject.id,
            subject_email=quote(self.subject.email, safe=""),
            other=self.accounts[OTHER].id,
            peer_admin=self.accounts["peer_admin"].id,
            superadmin=self.accounts[SUPER].id,
            script_slug=self.scripts["script"].slug,
            **{name: script.id for name, script in self.scripts.items()},
            **{name: execution.id for name, execution in self.executions.items()},
        )

    def login(self, name: str) -> dict:
        body = {"email": self.accounts[name].email, "password": PASSWORD}
        response = self.client.post("/auth", json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def headers(self, caller: str, path: str = "") -> dict:
        if caller == ANON:
            return {}
        if caller in (RUNTIME, EXECUTION_LOGIN):
            named = re.search(r"\{(execution|sibling|finished)\}", path)
            execution = self.executions[named[1] if named else "execution"]
            if caller == RUNTIME:
                return self.runtime_headers(execution)
            return self.execution_login_headers(execution)
        if caller == ELSEWHERE:
            return self.runtime_headers(self.executions["sibling"])
        return {"Authorization": f"Bearer {self.login(caller)['access_token']}"}

    def execution_login_headers(self, execution) -> dict:
        """As gefcore logs in; an ended execution's login is refused, leaving no token."""
        from gefapi.services import execution_login

        with self.app.app_context():
            credentials = execution_login.credentials(execution)
        body = {"email": credentials["API_USER"], "password": credentials["API_PASSWORD"]}
        response = self.client.post("/auth", json=body)
        if execution.status in ("FINISHED", "FAILED", "CANCELLED"):
            assert response.status_code == 401
            return {}
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    def reset_token(self) -> str:
        path = self.path("/api/v1/user/{subject_email}/recover-password?legacy=false")
        assert self.client.post(path).status_code == 200
        content = self.mailbox.to(self.subject.email)[-1].get_body(("plain",)).get_content()
        return re.search(r"token=([A-Za-z0-9_-]+)", content).group(1)

    def read_back(self, name: str) -> dict:
        """An account as a SUPERADMIN sees it (404 answers are returned as their body)."""
        account = self.accounts[name]
        response = self.client.get(f"/api/v1/user/{account.id}", headers=self.headers(SUPER))
        return response.get_json().get("data") or {"status": response.status_code}

    def as_super(self, template: str, **query) -> dict | list:
        response = self.client.get(
            self.path(template), query_string=query, headers=self.headers(SUPER)
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]


@pytest.fixture
def world(
    app, client, make_user, mailbox, make_script, make_execution, runtime_headers, storage_root
):
    factories = (make_script, make_execution, runtime_headers)
    return World(app, client, make_user, mailbox, factories, storage_root)


def assert_error_shape(response, status: int) -> None:
    body = response.get_json()
    assert isinstance(body, dict), response.data[:200]
    assert {"status", "detail", "error_code", "msg", "message"} <= body.keys(), body
    assert body["status"] == status == response.status_code, body
    assert body["msg"] == body["message"] == body["detail"], body
    assert isinstance(body["error_code"], str) and body["error_code"], body


# Valid bodies ----------------------------------------------------------------------------------

ARGUMENTS = {"user": "<user_ref>", "script": "<script_ref>", "execution": "<execution_id>"}


def rule_of(template: str) -> str:
    """The url_map rule a path template calls."""
    path = template.split("?")[0]
    return re.sub(r"/(user|script|execution)/\{\w+\}", lambda m: f"/{m[1]}/{ARGUMENTS[m[1]]}", path)


def registration(world, **extra):
    return {"email": world.new_email, "name": "New Account", "password": NEW_PASSWORD, **extra}


# By (method, path template).
BODIES = {
    ("POST", "/auth"): lambda w: {"email": w.subject.email, "password": PASSWORD},
    ("POST", "/auth/refresh"): lambda w: {"refresh_token": w.login(SELF)["refresh_token"]},
    ("POST", "/api/v1/user"): registration,
    ("PATCH", "/api/v1/user/me"): lambda w: {"name": "Renamed"},
    ("PATCH", "/api/v1/user/me/change-password"): lambda w: {
        "old_password": PASSWORD,
        "new_password": NEW_PASSWORD,
    },
    ("POST", "/api/v1/user/reset-password"): lambda w: {
        "token": w.reset_token(),
        "password": NEW_PASSWORD,
    },
    ("PATCH", "/api/v1/user/{subject}"): lambda w: {"name": "Renamed"},
    ("PATCH", "/api/v1/user/{peer_admin}"): lambda w: {"name": "Renamed"},
    ("PATCH", "/api/v1/user/{superadmin}"): lambda w: {"name": "Renamed"},
    ("POST", "/api/v1/email"): lambda w: {
        "subject": "Hello",
        "text": "Hello there",
        "recipients": [w.subject.email],
    },
}
# By (method, rule), for every object the rule is called on.
RULE_BODIES = {
    ("POST", "/api/v1/script"): lambda w: Upload(script_archive(f"matrix {uuid.uuid4().hex}")),
    ("PATCH", "/api/v1/script/<script_ref>"): lambda w: Upload(script_archive("New version")),
    ("PUT", "/api/v1/script/<script_ref>/access"): lambda w: {
        "allowed_roles": ["ADMIN"],
        "allowed_users": [str(w.accounts[OTHER].id)],
    },
    ("POST", "/api/v1/script/<script_ref>/run"): lambda w: {"region": "Kenya", "year": 2020},
    ("PATCH", "/api/v1/execution/<execution_id>"): lambda w: {"progress": 50},
    ("POST", "/api/v1/execution/<execution_id>/log"): lambda w: {
        "text": "Halfway there",
        "level": "INFO",
    },
}


def body_for(method: str, path: str):
    return BODIES.get((method, path)) or RULE_BODIES.get((method, rule_of(path)), lambda w: None)


def make_admin(world):
    return {"role": "ADMIN"}


def move_email(world):
    return {"email": world.new_email}


def register_admin(world):
    return registration(world, role="ADMIN")


def register_superadmin(world):
    return registration(world, role="SUPERADMIN")


# The task a successful call sends after commit (every other successful call sends none).
TASKS = {
    ("POST", "/api/v1/script"): "scripts.build",
    ("PATCH", "/api/v1/script/<script_ref>"): "scripts.build",
    ("GET", "/api/v1/script/<script_ref>/run"): "executions.dispatch",
    ("POST", "/api/v1/script/<script_ref>/run"): "executions.dispatch",
    ("POST", "/api/v1/execution/<execution_id>/cancel"): "executions.stop",
}


# The matrix ------------------------------------------------------------------------------------

# Cases where the application disagrees with the contract: id -> reason.
KNOWN_BUGS: dict[str, str] = {}


def row(method, path, *statuses, body=None, callers=CALLERS, label=""):
    """One endpoint, its expected status for each caller in `callers`."""
    make_body = body or body_for(method, path)
    cases = []
    for caller, status in zip(callers, statuses, strict=True):
        case_id = f"{method} {path}{label} {caller}"
        bug = KNOWN_BUGS.get(case_id)
        marks = [pytest.mark.xfail(reason=f"BUG: {bug}", strict=True)] if bug else []
        cases.append(pytest.param(method, path, caller, status, make_body, id=case_id, marks=marks))
    return cases


def erow(method, path, *statuses, label=""):
    """An execution endpoint: also called with the runtime token of a sibling execution."""
    return row(method, path, *statuses, callers=EXECUTION_CALLERS, label=label)


S = "/api/v1/script"
E = "/api/v1/execution"

#                   method    path                                anon self other admin super rt
MATRIX = [
    *row("POST", "/auth",                                          200, 200, 200, 200, 200, 200),
    *row("POST", "/auth/refresh",                                  200, 200, 200, 200, 200, 200),
    *row("POST", "/auth/logout",                                   401, 200, 200, 200, 200, 401),
    *row("POST", "/auth/logout-all",                               401, 200, 200, 200, 200, 401),
    *row("GET", "/api/v1/user",                                    401, 403, 403, 200, 200, 401),
    *row("POST", "/api/v1/user",                                   200, 200, 200, 200, 200, 200),
    *row("GET", "/api/v1/user/me",                                 401, 200, 200, 200, 200, 401),
    *row("PATCH", "/api/v1/user/me",                               401, 200, 200, 200, 200, 401),
    *row("DELETE", "/api/v1/user/me",                              401, 200, 200, 200, 200, 401),
    *row("PATCH", "/api/v1/user/me/change-password",               401, 200, 200, 200, 200, 401),
    *row("POST", "/api/v1/user/reset-password",                    200, 200, 200, 200, 200, 200),
    *row("POST", "/api/v1/user/{subject_email}/recover-password",  200, 200, 200, 200, 200, 200),
    *row("GET", "/api/v1/user/{subject}",                          401, 200, 404, 200, 200, 401),
    *row("PATCH", "/api/v1/user/{subject}",                        401, 403, 404, 200, 200, 401),
    *row("DELETE", "/api/v1/user/{subject}",                       401, 200, 404, 403, 200, 401),
    *row("POST", "/api/v1/email",                                  401, 403, 403, 200, 200, 401),
    *row("GET", "/api-health",                                     200, 200, 200, 200, 200, 200),
    # Administrator accounts and roles: only a SUPERADMIN may touch them.
    *row("GET", "/api/v1/user/{peer_admin}",                       401, 404, 404, 200, 200, 401),
    *row("PATCH", "/api/v1/user/{peer_admin}",                     401, 404, 404, 403, 200, 401),
    *row("DELETE", "/api/v1/user/{peer_admin}",                    401, 404, 404, 403, 200, 401),
    *row("PATCH", "/api/v1/user/{superadmin}",                     401, 404, 404, 403, 200, 401),
    *row("PATCH", "/api/v1/user/{subject}",                        401, 403, 404, 403, 200, 401,
         body=make_admin, label=" role=ADMIN"),
    # Recovery mails go to an account's email: moving it takes the account, SUPERADMIN only.
    *row("PATCH", "/api/v1/user/{subject}",                        401, 403, 404, 403, 200, 401,
         body=move_email, label=" email"),
    # Anyone may register; only administrators may choose a role, never above their own.
    *row("POST", "/api/v1/user",                                        403, 403, 200, 200,
         body=register_admin, callers=(SELF, OTHER, ADMIN, SUPER), label=" role=ADMIN"),
    *row("POST", "/api/v1/user",                                        403, 403, 403, 200,
         body=register_superadmin, callers=(SELF, OTHER, ADMIN, SUPER), label=" role=SUPERADMIN"),

    # Scripts. `script` is private to its owner (a USER) and administrators.
    *row("GET", S,                                                 401, 200, 200, 200, 200, 401),
    *row("POST", S,                                                401, 403, 403, 200, 200, 401),
    *row("GET", S + "/{script}",                                   401, 200, 404, 200, 200, 401),
    *row("GET", S + "/{script_slug}",                              401, 200, 404, 200, 200, 401),
    *row("PATCH", S + "/{script}",                                 401, 200, 404, 200, 200, 401),
    *row("DELETE", S + "/{script}",                                401, 403, 403, 200, 200, 401),
    *row("PUT", S + "/{script}/access",                            401, 403, 403, 200, 200, 401),
    *row("POST", S + "/{script}/publish",                          401, 200, 404, 200, 200, 401),
    *row("POST", S + "/{script}/unpublish",                        401, 200, 404, 200, 200, 401),
    *row("GET", S + "/{script}/log",                               401, 200, 404, 200, 200, 401),
    *row("GET", S + "/{script}/download",                          401, 200, 404, 200, 200, 401),
    *row("GET", S + "/{script}/run?region=Kenya",                  401, 200, 404, 200, 200, 401),
    *row("POST", S + "/{script}/run",                              401, 200, 404, 200, 200, 401),
    # A public script: everyone may see and run it; only its owner and ADMINs change it.
    *row("GET", S + "/{public}",                                   401, 200, 200, 200, 200, 401),
    *row("PATCH", S + "/{public}",                                 401, 200, 403, 200, 200, 401),
    *row("DELETE", S + "/{public}",                                401, 403, 403, 200, 200, 401),
    *row("PUT", S + "/{public}/access",                            401, 403, 403, 200, 200, 401),
    *row("POST", S + "/{public}/publish",                          401, 200, 403, 200, 200, 401),
    *row("POST", S + "/{public}/unpublish",                        401, 200, 403, 200, 200, 401),
    *row("GET", S + "/{public}/log",                               401, 200, 200, 200, 200, 401),
    *row("GET", S + "/{public}/download",                          401, 200, 200, 200, 200, 401),
    *row("GET", S + "/{public}/run",                               401, 200, 200, 200, 200, 401),
    *row("POST", S + "/{public}/run",                              401, 200, 200, 200, 200, 401),
    # Restricted scripts: visible to the users and roles they name.
    *row("GET", S + "/{for_other}",                                401, 200, 200, 200, 200, 401),
    *row("GET", S + "/{for_other}/log",                            401, 200, 200, 200, 200, 401),
    *row("GET", S + "/{for_other}/download",                       401, 200, 200, 200, 200, 401),
    *row("POST", S + "/{for_other}/run",                           401, 200, 200, 200, 200, 401),
    *row("PATCH", S + "/{for_other}",                              401, 200, 403, 200, 200, 401),
    *row("POST", S + "/{for_other}/publish",                       401, 200, 403, 200, 200, 401),
    *row("GET", S + "/{for_users}",                                401, 200, 200, 200, 200, 401),
    *row("POST", S + "/{for_users}/run",                           401, 200, 200, 200, 200, 401),
    *row("GET", S + "/{for_admins}",                               401, 200, 404, 200, 200, 401),
    *row("POST", S + "/{for_admins}/run",                          401, 200, 404, 200, 200, 401),
    *row("GET", S + "/{for_someone}",                              401, 200, 404, 200, 200, 401),
    *row("GET", S + "/{for_someone}/download",                     401, 200, 404, 200, 200, 401),
    *row("GET", S + "/{not_restricted}",                           401, 200, 404, 200, 200, 401),
    *row("POST", S + "/{not_restricted}/run",                      401, 200, 404, 200, 200, 401),

    # Executions, all of `self`. rt = the runtime token of the execution in the path; the last
    # column the runtime token of `sibling`, another execution of the same user.
    *row("GET", E,                                                 401, 200, 200, 200, 200, 401),
    *row("GET", E + "?user_id={subject}",                          401, 200, 403, 200, 200, 401),
    *row("GET", E + "/user",                                       401, 200, 200, 200, 200, 401),
    #                                                             anon self other admin super rt sib
    *erow("GET", E + "/{execution}",                          401, 200, 404, 200, 200, 200, 404),
    *erow("PATCH", E + "/{execution}",                        401, 403, 404, 200, 200, 200, 404),
    *erow("DELETE", E + "/{finished}",                        401, 200, 404, 200, 200, 401, 401),
    *erow("DELETE", E + "/{execution}",                       401, 409, 404, 409, 409, 401, 401,
          label=" running"),
    *erow("POST", E + "/{execution}/cancel",                  401, 202, 404, 202, 202, 401, 401),
    *erow("POST", E + "/{finished}/cancel",                   401, 409, 404, 409, 409, 401, 401),
    *erow("GET", E + "/{execution}/log",                      401, 200, 404, 200, 200, 401, 401),
    *erow("POST", E + "/{execution}/log",                     401, 403, 404, 200, 200, 200, 404),
    *erow("GET", E + "/{finished}/download-results",          401, 200, 404, 200, 200, 401, 401),
]  # fmt: skip
# The per-execution login of legacy environment images (CONTRACT section 10) opens exactly what
# the runtime token opens: every runtime row again, with tokens from /auth with API_USER.
MATRIX += [
    pytest.param(
        *case.values[:2],
        EXECUTION_LOGIN,
        *case.values[3:],
        id=case.id.removesuffix(f" {RUNTIME}") + f" {EXECUTION_LOGIN}",
        marks=case.marks,
    )
    for case in MATRIX
    if case.values[2] == RUNTIME
]


def check_success(world, method, path, response, sent_tasks) -> None:
    rule = rule_of(path)
    if rule.endswith("/download"):
        script = re.search(r"/script/\{(\w+)\}", path)[1]
        assert response.mimetype == "application/gzip", response.headers
        assert "Content-Encoding" not in response.headers
        assert response.data == world.archives[script]
    elif rule.endswith("/download-results"):
        disposition = response.headers["Content-Disposition"]
        assert "attachment" in disposition and "results.json" in disposition, disposition
        assert json.loads(response.data) == RESULTS
    else:
        payload = response.get_json()
        assert isinstance(payload, dict) and payload, payload
        if path.startswith("/api/v1/"):
            assert "data" in payload, payload
    task = TASKS.get((method, rule))
    expected = [task] if task else []
    if method == "DELETE" and rule.startswith(("/api/v1/user", "/api/v1/script")):
        expected = ["executions.stop"] * len(stopped_by_deleting(world, response))
    assert [sent[0] for sent in sent_tasks] == expected, sent_tasks


def stopped_by_deleting(world, response) -> list:
    """Deleting a user or a script stops their running executions (issue 11, finding 8)."""
    deleted = response.get_json()["data"]["id"]
    return [
        execution
        for execution in world.executions.values()
        if execution.status == ExecutionStatus.RUNNING
        and deleted in (str(execution.user_id), str(execution.script_id))
    ]


@pytest.mark.parametrize(("method", "path", "caller", "expected", "make_body"), MATRIX)
def test_authorization(app, world, mailbox, sent_tasks, method, path, caller, expected, make_body):
    headers = world.headers(caller, path)
    body = make_body(world)
    before = (database_state(app), len(mailbox.messages), stored_files(world.storage_root))

    response = world.client.open(
        world.path(path), method=method, headers=headers, **request_kwargs(body)
    )

    assert response.status_code == expected, (
        response.status_code,
        response.get_data(as_text=True)[:300],
    )
    if expected in (200, 202):
        check_success(world, method, path, response, sent_tasks)
    else:
        assert_error_shape(response, expected)
        after = (database_state(app), len(mailbox.messages), stored_files(world.storage_root))
        assert after == before, "a refused call wrote"
        assert sent_tasks == [], "a refused call sent a task"


def test_matrix_covers_every_registered_endpoint(app):
    registered = {
        (method, re.sub(r"<\w+:", "<", rule.rule))  # converters aside
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in NOT_API
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    callers_of = {}
    for case in MATRIX:
        method, path, caller = case.values[:3]
        callers_of.setdefault((method, rule_of(path)), set()).add(caller)
    assert set(callers_of) == registered
    for (method, rule), callers in callers_of.items():
        wanted = set(EXECUTION_CALLERS if "<execution_id>" in rule else CALLERS)
        assert callers == wanted, (method, rule, wanted ^ callers)


# Refused writes, read back by a SUPERADMIN -----------------------------------------------------


def check_subject_name(world):
    assert world.read_back(SELF)["name"] == "Subject"


def check_subject_role(world):
    assert world.read_back(SELF)["role"] == "USER"


def check_subject_email(world):
    assert world.read_back(SELF)["email"] == world.subject.email


def check_subject_exists(world):
    assert world.read_back(SELF)["deleted"] is False
    world.login(SELF)  # and can still log in with the old password


def check_peer_admin(world):
    data = world.read_back("peer_admin")
    assert (data["name"], data["deleted"]) == ("Peer admin", False)


def check_superadmin_name(world):
    assert world.read_back(SUPER)["name"] == "Super"


def check_no_new_account(world):
    response = world.client.get(
        "/api/v1/user", query_string={"email": world.new_email}, headers=world.headers(SUPER)
    )
    assert response.get_json()["data"] == []


def check_no_mail(world):
    assert world.mailbox.messages == []


def check_session_alive(world):
    assert world.client.get("/api/v1/user/me", headers=world.session).status_code == 200


def check_scripts_unchanged(world):
    scripts = {script["id"]: script for script in world.as_super(S, include="access")}
    assert len(scripts) == len(world.scripts)
    for script in world.scripts.values():
        data = scripts[str(script.id)]
        assert (data["name"], data["status"]) == (script.name, "SUCCESS"), data
        assert (data["public"], data["restricted"]) == (script.public, script.restricted), data
        assert data["allowed_users"] == [str(user) for user in script.allowed_users], data


def check_execution_unchanged(world):
    data = world.as_super(E + "/{execution}")
    assert (data["status"], data["progress"]) == ("RUNNING", 0), data
    assert world.as_super(E + "/{execution}/log") == []


def check_executions_unchanged(world):
    executions = world.as_super(E)
    assert {item["id"] for item in executions} == {
        str(execution.id) for execution in world.executions.values()
    }
    assert {item["status"] for item in executions} == {"RUNNING", "FINISHED"}


REFUSED_WRITES = [
    # method, path, caller, body, check
    ("PATCH", "/api/v1/user/{subject}", OTHER, None, check_subject_name),
    ("PATCH", "/api/v1/user/{subject}", SELF, None, check_subject_name),
    ("PATCH", "/api/v1/user/{subject}", ADMIN, make_admin, check_subject_role),
    ("PATCH", "/api/v1/user/{subject}", SELF, make_admin, check_subject_role),
    ("PATCH", "/api/v1/user/{subject}", ADMIN, move_email, check_subject_email),
    ("PATCH", "/api/v1/user/{peer_admin}", ADMIN, None, check_peer_admin),
    ("PATCH", "/api/v1/user/{superadmin}", ADMIN, None, check_superadmin_name),
    ("PATCH", "/api/v1/user/{subject}", ANON, None, check_subject_name),
    ("PATCH", "/api/v1/user/{subject}", RUNTIME, None, check_subject_name),
    ("DELETE", "/api/v1/user/{subject}", OTHER, None, check_subject_exists),
    ("DELETE", "/api/v1/user/{subject}", ADMIN, None, check_subject_exists),
    ("DELETE", "/api/v1/user/{peer_admin}", ADMIN, None, check_peer_admin),
    ("DELETE", "/api/v1/user/{subject}", ANON, None, check_subject_exists),
    ("POST", "/api/v1/user", SELF, register_admin, check_no_new_account),
    ("POST", "/api/v1/user", ADMIN, register_superadmin, check_no_new_account),
    ("POST", "/api/v1/email", SELF, None, check_no_mail),
    ("POST", "/api/v1/email", ANON, None, check_no_mail),
    ("POST", "/api/v1/email", RUNTIME, None, check_no_mail),
    ("PATCH", "/api/v1/user/me", ANON, None, check_subject_name),
    ("PATCH", "/api/v1/user/me", RUNTIME, None, check_subject_name),
    ("DELETE", "/api/v1/user/me", ANON, None, check_subject_exists),
    ("DELETE", "/api/v1/user/me", RUNTIME, None, check_subject_exists),
    ("PATCH", "/api/v1/user/me/change-password", ANON, None, check_subject_exists),
    ("PATCH", "/api/v1/user/me/change-password", RUNTIME, None, check_subject_exists),
    ("POST", "/auth/logout", ANON, None, check_session_alive),
    ("POST", "/auth/logout-all", ANON, None, check_session_alive),
    ("POST", "/auth/logout-all", RUNTIME, None, check_session_alive),
    ("POST", S, SELF, None, check_scripts_unchanged),
    ("POST", S, RUNTIME, None, check_scripts_unchanged),
    ("PATCH", S + "/{script}", OTHER, None, check_scripts_unchanged),
    ("PATCH", S + "/{public}", OTHER, None, check_scripts_unchanged),
    ("PATCH", S + "/{script}", RUNTIME, None, check_scripts_unchanged),
    ("DELETE", S + "/{script}", SELF, None, check_scripts_unchanged),
    ("DELETE", S + "/{public}", OTHER, None, check_scripts_unchanged),
    ("PUT", S + "/{script}/access", SELF, None, check_scripts_unchanged),
    ("PUT", S + "/{for_other}/access", OTHER, None, check_scripts_unchanged),
    ("POST", S + "/{script}/publish", OTHER, None, check_scripts_unchanged),
    ("POST", S + "/{public}/unpublish", OTHER, None, check_scripts_unchanged),
    ("POST", S + "/{script}/publish", RUNTIME, None, check_scripts_unchanged),
    ("POST", S + "/{script}/run", OTHER, None, check_executions_unchanged),
    ("POST", S + "/{for_admins}/run", OTHER, None, check_executions_unchanged),
    ("POST", S + "/{script}/run", RUNTIME, None, check_executions_unchanged),
    ("GET", S + "/{script}/run", ANON, None, check_executions_unchanged),
    ("PATCH", E + "/{execution}", SELF, None, check_execution_unchanged),
    ("PATCH", E + "/{execution}", OTHER, None, check_execution_unchanged),
    ("PATCH", E + "/{execution}", ELSEWHERE, None, check_execution_unchanged),
    ("POST", E + "/{execution}/log", SELF, None, check_execution_unchanged),
    ("POST", E + "/{execution}/log", ELSEWHERE, None, check_execution_unchanged),
    ("POST", E + "/{execution}/cancel", OTHER, None, check_execution_unchanged),
    ("POST", E + "/{execution}/cancel", RUNTIME, None, check_execution_unchanged),
    ("DELETE", E + "/{finished}", OTHER, None, check_executions_unchanged),
    ("DELETE", E + "/{finished}", RUNTIME, None, check_executions_unchanged),
    ("DELETE", E + "/{execution}", SELF, None, check_executions_unchanged),
]


@pytest.mark.parametrize(
    ("method", "path", "caller", "make_body", "check"),
    REFUSED_WRITES,
    ids=[f"{m} {p} {c}" + (f" {b.__name__}" if b else "") for m, p, c, b, _ in REFUSED_WRITES],
)
def test_refused_write_changes_nothing(
    world, mailbox, sent_tasks, method, path, caller, make_body, check
):
    world.session = world.headers(SELF)  # a live session of the subject, for check_session_alive
    body = (make_body or body_for(method, path))(world)
    mailbox.messages.clear()

    response = world.client.open(
        world.path(path), method=method, headers=world.headers(caller, path), **request_kwargs(body)
    )

    assert response.status_code in (401, 403, 404, 409), response.get_json()
    assert_error_shape(response, response.status_code)
    assert sent_tasks == []
    check(world)


# What each caller sees -------------------------------------------------------------------------


def ids_of(items) -> set[str]:
    return {item["id"] for item in items}


def test_script_list_follows_visibility(world):
    def listed(caller):
        response = world.client.get(S, headers=world.headers(caller))
        assert response.status_code == 200, response.get_json()
        return ids_of(response.get_json()["data"])

    ids = {name: str(script.id) for name, script in world.scripts.items()}
    everything = set(ids.values())
    assert listed(SELF) == everything
    assert listed(ADMIN) == everything
    assert listed(SUPER) == everything
    assert listed(OTHER) == {ids["public"], ids["for_other"], ids["for_users"]}


def test_execution_lists_show_own_executions_only(world, make_execution):
    mine = {str(execution.id) for execution in world.executions.values()}
    theirs = make_execution(world.scripts["public"], world.accounts[OTHER])

    def listed(caller, path=E, **query):
        response = world.client.get(path, query_string=query, headers=world.headers(caller))
        assert response.status_code == 200, response.get_json()
        return ids_of(response.get_json()["data"])

    assert listed(SELF) == listed(SELF, E + "/user") == mine
    assert listed(OTHER) == listed(OTHER, E + "/user") == {str(theirs.id)}
    assert listed(OTHER, user_id=str(world.accounts[OTHER].id)) == {str(theirs.id)}
    assert listed(ADMIN) == listed(SUPER) == {*mine, str(theirs.id)}
    assert listed(ADMIN, user_id=str(world.subject.id)) == mine
    assert listed(ADMIN, E + "/user") == set()


def test_deleted_execution_is_hidden(world):
    response = world.client.delete(world.path(E + "/{finished}"), headers=world.headers(SELF))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["id"] == str(world.executions["finished"].id)
    finished = str(world.executions["finished"].id)
    assert finished not in ids_of(world.as_super(E))
    response = world.client.get(world.path(E + "/{finished}"), headers=world.headers(SELF))
    assert_error_shape(response, 404)


# Archives published through the API ------------------------------------------------------------


def test_published_archive_downloads(world, sent_tasks):
    archive = script_archive("productivity 2_3_2", description="Land productivity")
    response = world.client.post(
        S, headers=world.headers(ADMIN), **Upload(archive, "productivity 2_3_2.tar.gz").request()
    )
    assert response.status_code == 200, response.get_json()
    script = response.get_json()["data"]
    assert (script["slug"], script["status"]) == ("productivity-2-3-2", "BUILDING")
    assert [task[0] for task in sent_tasks] == ["scripts.build"]
    sent_tasks.clear()
    download = S + "/productivity-2-3-2/download"

    admin_token = world.login(ADMIN)["access_token"]
    for request in (
        {"headers": {"Authorization": f"Bearer {admin_token}"}},
        {"query_string": {"token": admin_token}},  # download endpoints accept ?token=
    ):
        response = world.client.get(download, **request)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert response.data == archive
        assert response.mimetype == "application/gzip"
        assert "Content-Encoding" not in response.headers
    for caller, status in ((ANON, 401), (SELF, 404), (OTHER, 404), (RUNTIME, 401)):
        response = world.client.get(download, headers=world.headers(caller))
        assert_error_shape(response, status)

    response = world.client.post(S + "/productivity-2-3-2/publish", headers=world.headers(ADMIN))
    assert response.status_code == 200, response.get_json()
    response = world.client.get(download, headers=world.headers(OTHER))
    assert response.status_code == 200, response.get_json()
    assert response.data == archive
    assert sent_tasks == []


# Runtime tokens ---------------------------------------------------------------------------------


def test_runtime_token_in_the_query_string_opens_nothing(world):
    """Only GET download endpoints read ?token=, and a runtime token opens none of them."""
    token = world.headers(RUNTIME)["Authorization"].removeprefix("Bearer ")
    for path in (E + "/{execution}", E + "/{finished}/download-results", S + "/{script}/download"):
        response = world.client.get(world.path(path), query_string={"token": token})
        assert_error_shape(response, 401)
    user_token = world.login(SELF)["access_token"]
    response = world.client.get(world.path(E + "/{execution}"), query_string={"token": user_token})
    assert_error_shape(response, 401)
    response = world.client.get(
        world.path(E + "/{finished}/download-results"), query_string={"token": user_token}
    )
    assert response.status_code == 200, response.get_json()
    assert json.loads(response.data) == RESULTS


def test_runtime_token_of_an_admin_execution_cannot_create_admins(
    app, world, mailbox, sent_tasks, make_execution
):
    """Section 9: the token opens its own execution, nothing else, whoever owns the execution."""
    execution = make_execution(
        world.scripts["script"], world.accounts[ADMIN], status=ExecutionStatus.RUNNING
    )
    headers = world.runtime_headers(execution)
    before = (database_state(app), len(mailbox.messages))

    response = world.client.post("/api/v1/user", json=register_admin(world), headers=headers)

    assert response.status_code in (401, 403), response.get_json()
    assert_error_shape(response, response.status_code)
    assert (database_state(app), len(mailbox.messages)) == before
    assert sent_tasks == []


def test_runtime_token_of_an_admin_execution_opens_only_that_execution(world, make_execution):
    admin = world.accounts[ADMIN]
    execution = make_execution(world.scripts["script"], admin, status=ExecutionStatus.RUNNING)
    another = make_execution(world.scripts["script"], admin, status=ExecutionStatus.RUNNING)
    headers = world.runtime_headers(execution)
    refused = [
        ("GET", f"{E}/{another.id}", None, 404),
        ("PATCH", f"{E}/{another.id}", {"progress": 5}, 404),
        ("POST", f"{E}/{another.id}/log", {"text": "x"}, 404),
        ("PATCH", world.path(E + "/{execution}"), {"progress": 5}, 404),
        ("GET", E, None, 401),
        ("GET", "/api/v1/user", None, 401),
        ("GET", "/api/v1/user/me", None, 401),
        ("POST", "/api/v1/email", BODIES[("POST", "/api/v1/email")](world), 401),
        ("DELETE", world.path(S + "/{script}"), None, 401),
        ("POST", f"{E}/{execution.id}/cancel", None, 401),
    ]
    for method, path, body, status in refused:
        response = world.client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == status, (method, path, response.get_json())
        assert_error_shape(response, status)
    response = world.client.patch(f"{E}/{execution.id}", json={"progress": 5}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["progress"] == 5
