"""Who may call what: every registered endpoint x every kind of caller (CONTRACT.md 2-6, 9).

Each call carries a valid body, so authorization is the only reason for an answer other than 200
(201 for an OGC execute, 202 for a cancel, 409 where a row says the execution's state forbids the
call, 400 where a row says why): 401 for a missing token or one that does not open this endpoint,
403 for an authenticated caller without the right, 404 for an object the caller may not see. A
refused call must leave the database, the stored archives and artifacts and the outgoing mail
untouched, and send no task. Under /ogc errors are RFC 7807 problem details.

Callers: anonymous, `self` (the USER who owns the scripts and executions the calls are about),
another USER, an ADMIN, a SUPERADMIN, and the runtime token of an execution (section 9: it opens
its own execution's GET, PATCH and POST log, nothing else). On the execution endpoints a seventh
caller holds the runtime token of another execution of the same user. On endpoints open to anyone
(/auth, registration, password recovery, health, public news and boundaries, signed artifact links,
the OGC landing page, metrics, the OAuth browser callback) a runtime token is not needed and changes
nothing.
"""

import functools
import io
import json
import re
import string
import tarfile
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from gefapi.extensions import db
from gefapi.models import Execution, ExecutionStatus, Role, ScriptBuild, User
from gefapi.models.base import utcnow
from gefapi.models.webhook import DeliveryState, WebhookDelivery
from gefapi.schemas.news import NewsCreateBody
from gefapi.services import (
    artifact_service,
    boundary_service,
    gee_credentials_service,
    news_service,
    openeo_credentials_service,
    webhook_service,
)
from gefapi.services.execution_service import Caller
from gefapi.storage import LocalStorage
from tests.conftest import add_script
from tests.helpers import database_state, stored_files
from tests.oauth_standin import Provider

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
ARTIFACT_NAME, ARTIFACT, NEW_ARTIFACT = "map.tif", b"a raster of the matrix", b"its next version"
# Webhook targets are IP literals in an allow-listed documentation range: tests look up no names.
WEBHOOK_NETWORK, WEBHOOK_URL = "192.0.2.0/24", "http://192.0.2.10/hook"
# Earth Engine against the local OAuth stand-in (tests/oauth_standin.py), never Google.
OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET = "matrix.apps.example.org", "matrix-client-secret"
OAUTH_REDIRECT_URI = "http://localhost/api/v1/gee-oauth/callback"
GEE_PROJECT = "matrix-ee-project"
BOUNDARIES = Path(__file__).parent / "data" / "geoboundaries" / "gbOpen_meta.json"


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


class Raw:
    """A file's bytes as the raw body (artifact uploads)."""

    def __init__(self, content: bytes):
        self.content = content

    def request(self) -> dict:
        return {"data": self.content, "content_type": "application/octet-stream"}


class Query:
    """Arguments in the query string (the provider's redirect of the browser)."""

    def __init__(self, **args):
        self.args = args

    def request(self) -> dict:
        return {"query_string": self.args}


def request_kwargs(body) -> dict:
    return body.request() if isinstance(body, Upload | Raw | Query) else {"json": body}


@functools.cache
def password_hash() -> str:
    """PASSWORD's hash, made once for every account of every world."""
    from gefapi.services import passwords

    return passwords.hash_password(PASSWORD)


@functools.cache
def service_account_key() -> tuple[dict, object]:
    """An Earth Engine service-account key the OAuth stand-in knows (made once: RSA is slow)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key = {
        "type": "service_account",
        "project_id": GEE_PROJECT,
        "private_key_id": "matrix",
        "private_key": pem,
        "client_email": f"runner@{GEE_PROJECT}.iam.gserviceaccount.com",
        "client_id": "1234567890",
    }
    return key, private.public_key()


# Accounts, objects and requests ----------------------------------------------------------------


class World:
    """The accounts, scripts and executions of one test: `self` is the USER the calls are about
    and owns every script and execution below."""

    def __init__(self, app, client, mailbox, runtime_headers, storage_root):
        self.app, self.client, self.mailbox = app, client, mailbox
        self.runtime_headers, self.storage_root = runtime_headers, storage_root
        self.new_email = f"new-{uuid.uuid4().hex[:8]}@example.org"
        # Every row in one transaction (a commit each made the world a third of a case's time).
        with app.app_context():
            accounts = {
                name: User(
                    email=f"{uuid.uuid4().hex[:8]}@example.org",
                    name=full_name,
                    role=role,
                    password_hash=password_hash(),
                )
                for name, role, full_name in (
                    (SELF, Role.USER, "Subject"),
                    (OTHER, Role.USER, "Other"),
                    (ADMIN, Role.ADMIN, "Admin"),
                    (SUPER, Role.SUPERADMIN, "Super"),
                    ("peer_admin", Role.ADMIN, "Peer admin"),
                )
            }
            db.session.add_all(accounts.values())
            db.session.flush()
            owner, other = accounts[SELF].id, accounts[OTHER].id
            scripts = {
                # Neither public nor restricted: its owner and administrators only.
                "script": add_script(owner),
                "public": add_script(owner, public=True),
                "for_other": add_script(owner, restricted=True, allowed_users=[other]),
                "for_users": add_script(owner, restricted=True, allowed_roles=["USER"]),
                "for_admins": add_script(owner, restricted=True, allowed_roles=["ADMIN"]),
                "for_someone": add_script(
                    owner, restricted=True, allowed_users=[accounts["peer_admin"].id]
                ),
                # Names the other user but is not restricted: the lists mean nothing.
                "not_restricted": add_script(
                    owner, restricted=False, allowed_users=[other], allowed_roles=["USER"]
                ),
            }
            script = scripts["script"]
            run = {"script_id": script.id, "build_id": script.current_build_id, "user_id": owner}
            executions = {
                "execution": Execution(**run, status=ExecutionStatus.RUNNING),
                "sibling": Execution(**run, status=ExecutionStatus.RUNNING),
                "finished": Execution(
                    **run,
                    status=ExecutionStatus.FINISHED,
                    progress=100,
                    results=RESULTS,
                    start_date=utcnow() - timedelta(minutes=5),
                    end_date=utcnow(),
                ),
            }
            db.session.add_all(executions.values())
            db.session.flush()
            made = [*accounts.values(), *scripts.values(), *executions.values()]
            for row in made:
                db.session.refresh(row)
            keys = dict(
                db.session.execute(
                    select(ScriptBuild.script_id, ScriptBuild.archive_key).where(
                        ScriptBuild.script_id.in_([script.id for script in scripts.values()])
                    )
                ).all()
            )
            db.session.expunge_all()
            db.session.commit()
        self.accounts, self.scripts, self.executions = accounts, scripts, executions
        self.archives = {}
        storage = LocalStorage(storage_root)
        for name, script in self.scripts.items():
            self.archives[name] = script_archive(script.name)
            storage.put(keys[script.id], io.BytesIO(self.archives[name]))

    @property
    def subject(self):
        return self.accounts[SELF]

    def path(self, template: str) -> str:
        """The path a template names; the objects only some rows need are made on first use
        (so before the call: test_authorization takes the path first)."""
        values = {
            "subject": lambda: self.subject.id,
            "subject_email": lambda: quote(self.subject.email, safe=""),
            "other": lambda: self.accounts[OTHER].id,
            "peer_admin": lambda: self.accounts["peer_admin"].id,
            "superadmin": lambda: self.accounts[SUPER].id,
            "script_slug": lambda: self.scripts["script"].slug,
            "news": lambda: self.news["news"],
            "admin_news": lambda: self.news["admin_news"],
            "lang": lambda: "fr",
            "artifact": lambda: self.artifact[0],
            "artifact_name": lambda: self.artifact and ARTIFACT_NAME,
            "artifact_link": lambda: self.artifact[1],
            **{name: lambda s=script: s.id for name, script in self.scripts.items()},
            **{name: lambda e=execution: e.id for name, execution in self.executions.items()},
        }
        names = {field for _, field, _, _ in string.Formatter().parse(template) if field}
        return template.format(**{name: values[name]() for name in names})

    @functools.cached_property
    def news(self) -> dict:
        """A published news item with a French translation, and one meant for ADMINs only."""
        with self.app.app_context():
            admin = self.accounts[ADMIN]
            bodies = {
                "news": {
                    "title": "New release",
                    "message": "Version **2.3** is out.",
                    "translations": {"fr": {"title": "Nouvelle version", "message": "Sortie."}},
                },
                "admin_news": {"title": "Admins only", "message": "x", "target_roles": ["ADMIN"]},
            }
            return {
                name: news_service.create(NewsCreateBody().load(body), by=admin).id
                for name, body in bodies.items()
            }

    @functools.cached_property
    def artifact(self) -> tuple[uuid.UUID, str]:
        """An artifact of `execution` (uploaded as an ADMIN may): its id and its signed link's
        query."""
        with self.app.app_context():
            artifact = artifact_service.upload(
                self.executions["execution"].id,
                name=ARTIFACT_NAME,
                stream=io.BytesIO(ARTIFACT),
                length=len(ARTIFACT),
                media_type=None,
                caller=Caller(self.accounts[ADMIN]),
            )
            return artifact.id, urlsplit(artifact.url).query

    @functools.cached_property
    def delivery(self) -> uuid.UUID:
        """A webhook delivery of the subject's finished execution."""
        with self.app.app_context():
            delivery = WebhookDelivery(
                id=uuid.uuid4(),
                execution_id=self.executions["finished"].id,
                user_id=self.subject.id,
                url=WEBHOOK_URL,
                event=webhook_service.EVENT,
                payload={"status": "FINISHED"},
                state=DeliveryState.DELIVERED,
                attempts=1,
                last_status_code=200,
                delivered_at=utcnow(),
            )
            db.session.add(delivery)
            db.session.commit()
            return delivery.id

    @functools.cached_property
    def boundaries(self) -> None:
        """geoBoundaries metadata, as `flask boundaries import` stores it."""
        with self.app.app_context():
            boundary_service.import_document(json.loads(BOUNDARIES.read_text()))

    def set_gee_credentials(self) -> None:
        """The subject's Earth Engine service-account key (the stand-in knows it)."""
        with self.app.app_context():
            gee_credentials_service.set_service_account(self.subject, service_account_key()[0])

    def set_openeo_credentials(self) -> None:
        with self.app.app_context():
            openeo_credentials_service.set_credentials(self.subject, openeo_basic())

    def oauth_redirect(self) -> dict:
        """The code and state the provider sends the browser back with, for an authorization
        the subject started."""
        with self.app.app_context():
            auth_url = gee_credentials_service.initiate(self.subject)["auth_url"]
        answer = requests.get(auth_url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text
        query = parse_qs(urlsplit(answer.headers["Location"]).query)
        return {"code": query["code"][0], "state": query["state"][0]}

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


@pytest.fixture(scope="module")
def oauth_provider():
    """The local stand-in for Google's OAuth and Earth Engine endpoints."""
    provider = Provider(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET).start()
    key, public = service_account_key()
    provider.service_accounts[key["client_email"]] = public
    provider.projects.add(GEE_PROJECT)
    yield provider
    provider.stop()


@pytest.fixture
def world(
    app,
    client,
    mailbox,
    runtime_headers,
    storage_root,
    oauth_provider,
    monkeypatch,
):
    for key, value in {
        "GOOGLE_OAUTH_CLIENT_ID": OAUTH_CLIENT_ID,
        "GOOGLE_OAUTH_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
        "GOOGLE_OAUTH_AUTHORIZATION_URI": oauth_provider.authorize_url,
        "GOOGLE_OAUTH_TOKEN_URI": oauth_provider.token_url,
        "GOOGLE_OAUTH_REDIRECT_URI": OAUTH_REDIRECT_URI,
        "GEE_CREDENTIALS_TEST_URL": oauth_provider.test_url,
        "GEE_HTTP_TIMEOUT_SECONDS": 10,
        "WEBHOOK_ALLOWED_NETWORKS": [WEBHOOK_NETWORK],
    }.items():
        monkeypatch.setitem(app.config, key, value)
    return World(app, client, mailbox, runtime_headers, storage_root)


def assert_error_shape(response, status: int) -> None:
    body = response.get_json()
    assert isinstance(body, dict), response.data[:200]
    if response.request.path.startswith("/ogc"):
        # RFC 7807 problem details: the contract's keys but for detail's aliases msg and message.
        assert response.mimetype == "application/problem+json", response.headers
        assert {"type", "title", "status", "detail", "error_code", "instance"} <= body.keys(), body
        assert body["status"] == status == response.status_code, body
        assert isinstance(body["error_code"], str) and body["error_code"], body
        return
    assert {"status", "detail", "error_code", "msg", "message"} <= body.keys(), body
    assert body["status"] == status == response.status_code, body
    assert body["msg"] == body["message"] == body["detail"], body
    assert isinstance(body["error_code"], str) and body["error_code"], body


# Valid bodies ----------------------------------------------------------------------------------

# The rule argument a placeholder fills, by the path segment before it.
ARGUMENTS = {
    "user": "<user_ref>",
    "script": "<script_ref>",
    "execution": "<execution_id>",
    "news": "<news_id>",
    "translations": "<lang>",
    "artifacts": "<name>",
    "artifact": "<artifact_id>",
    "processes": "<process_id>",
    "jobs": "<job_id>",
}
# Rules whose argument is named unlike the others of their family.
RULE_NAMES = {
    "/api/v1/script/<script_ref>/artifact-policy": "/api/v1/script/<script>/artifact-policy",
    "/api/v1/artifact/<artifact_id>/{artifact_name}": "/api/v1/artifact/<artifact_id>/<name>",
}


def rule_of(template: str) -> str:
    """The url_map rule a path template calls."""
    path = template.split("?")[0]
    rule = re.sub(r"/([\w-]+)/\{\w+\}", lambda m: f"/{m[1]}/{ARGUMENTS[m[1]]}", path)
    return RULE_NAMES.get(rule, rule)


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
    # The subject's own authorization: only they complete it on the logged-in callback.
    ("POST", "/api/v1/user/me/gee-oauth/callback"): lambda w: w.oauth_redirect(),
    ("POST", "/api/v1/gee-oauth/callback"): lambda w: w.oauth_redirect(),
    ("GET", "/api/v1/gee-oauth/callback"): lambda w: Query(**w.oauth_redirect()),
    ("POST", "/api/v1/user/me/gee-oauth/initiate"): lambda w: {},
    ("GET", "/api/v1/webhook/deliveries"): lambda w: w.delivery and None,
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
    ("POST", "/api/v1/admin/news"): lambda w: {"title": "Webinar", "message": "Join *us*"},
    ("PUT", "/api/v1/admin/news/<news_id>"): lambda w: {"title": "Renamed", "priority": 5},
    ("PATCH", "/api/v1/admin/news/<news_id>"): lambda w: {"priority": 5},
    ("PUT", "/api/v1/admin/news/<news_id>/translations"): lambda w: {
        "translations": {"es": {"title": "Hola", "message": "Hola *mundo*"}, "fr": None}
    },
    # Replaces the artifact of that name.
    ("PUT", "/api/v1/execution/<execution_id>/artifacts/<name>"): lambda w: Raw(NEW_ARTIFACT),
    ("GET", "/api/v1/execution/<execution_id>/artifacts"): lambda w: w.artifact and None,
    ("GET", "/api/v1/artifacts/usage"): lambda w: w.artifact and None,
    ("PUT", "/api/v1/script/<script>/artifact-policy"): lambda w: {"retention_days": 7},
    ("GET", "/api/v1/data/boundaries"): lambda w: w.boundaries,
    ("GET", "/api/v1/data/boundaries/list"): lambda w: w.boundaries,
    ("GET", "/api/v1/data/boundaries/last-updated"): lambda w: w.boundaries,
    # Credentials to read, test or remove: a refused call must leave them.
    ("GET", "/api/v1/user/<user_ref>/gee-credentials"): lambda w: w.set_gee_credentials(),
    ("DELETE", "/api/v1/user/<user_ref>/gee-credentials"): lambda w: w.set_gee_credentials(),
    ("POST", "/api/v1/user/<user_ref>/gee-credentials/test"): lambda w: w.set_gee_credentials(),
    ("PATCH", "/api/v1/user/<user_ref>/gee-credentials/project"): lambda w: {
        "cloud_project": GEE_PROJECT
    },
    ("POST", "/api/v1/user/<user_ref>/gee-service-account"): lambda w: {
        "service_account_key": service_account_key()[0]
    },
    ("GET", "/api/v1/user/<user_ref>/openeo-credentials"): lambda w: w.set_openeo_credentials(),
    ("POST", "/api/v1/user/<user_ref>/openeo-credentials"): lambda w: openeo_basic(),
    ("DELETE", "/api/v1/user/<user_ref>/openeo-credentials"): lambda w: w.set_openeo_credentials(),
    ("PUT", "/api/v1/webhook"): lambda w: {"url": WEBHOOK_URL},
    ("POST", "/ogc/processes/<process_id>/execution"): lambda w: {
        "inputs": {"region": "Kenya", "year": {"value": 2020}},
        "subscriber": {"successUri": WEBHOOK_URL},
    },
}


def openeo_basic() -> dict:
    return {"type": "basic", "username": "someone@example.org", "password": "openeo secret 0"}


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
    ("POST", "/ogc/processes/<process_id>/execution"): "executions.dispatch",
    ("DELETE", "/ogc/jobs/<job_id>"): "executions.stop",  # dismissing a running job cancels it
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
N = "/api/v1/admin/news"
A = E + "/{execution}/artifacts"
LINK = "/api/v1/artifact/{artifact}/{artifact_name}"
B = "/api/v1/data/boundaries"
C = "/api/v1/user/{subject}"  # a USER's credentials
W = "/api/v1/webhook"

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
    # Artifacts: the runtime (or an ADMIN) uploads; whoever reads the execution lists and reads
    # them; its owner or an ADMIN deletes one. The signed link needs no token, and no token
    # replaces its signature.
    *erow("GET", A,                                           401, 200, 404, 200, 200, 200, 404),
    *erow("PUT", A + "/{artifact_name}",                      401, 403, 404, 200, 200, 200, 404),
    *erow("GET", A + "/{artifact_name}",                      401, 200, 404, 200, 200, 200, 404),
    *erow("DELETE", A + "/{artifact_name}",                   401, 200, 404, 200, 200, 401, 401),
    #                                                             anon self other admin super rt
    *row("GET", LINK + "?{artifact_link}",                         200, 200, 200, 200, 200, 200),
    *row("GET", LINK,                                              403, 403, 403, 403, 403, 403,
         label=" unsigned"),
    *row("GET", "/api/v1/artifacts/usage",                         401, 403, 403, 200, 200, 401),
    *row("GET", S + "/{script}/artifact-policy",                   401, 200, 404, 200, 200, 401),
    *row("PUT", S + "/{script}/artifact-policy",                   401, 200, 404, 200, 200, 401),
    *row("PUT", S + "/{public}/artifact-policy",                   401, 200, 403, 200, 200, 401),

    # News: anyone reads what is published (a token adds the items meant for its role; a
    # runtime token is nobody); ADMINs manage.
    *row("GET", "/api/v1/news",                                    200, 200, 200, 200, 200, 200),
    *row("GET", "/api/v1/news/{news}",                             200, 200, 200, 200, 200, 200),
    # target_roles name roles exactly, as a script's allowed_roles do: ADMIN's are not SUPERADMIN's.
    *row("GET", "/api/v1/news/{admin_news}",                       404, 404, 404, 200, 404, 404),
    *row("GET", N,                                                 401, 403, 403, 200, 200, 401),
    *row("POST", N,                                                401, 403, 403, 200, 200, 401),
    *row("GET", N + "/{news}",                                     401, 403, 403, 200, 200, 401),
    *row("PUT", N + "/{news}",                                     401, 403, 403, 200, 200, 401),
    *row("PATCH", N + "/{news}",                                   401, 403, 403, 200, 200, 401),
    *row("DELETE", N + "/{news}",                                  401, 403, 403, 200, 200, 401),
    *row("GET", N + "/{news}/translations",                        401, 403, 403, 200, 200, 401),
    *row("PUT", N + "/{news}/translations",                        401, 403, 403, 200, 200, 401),
    *row("DELETE", N + "/{news}/translations/{lang}",              401, 403, 403, 200, 200, 401),

    # Boundaries: public data.
    *row("GET", B + "?level=0,1",                                  200, 200, 200, 200, 200, 200),
    *row("GET", B + "/list",                                       200, 200, 200, 200, 200, 200),
    *row("GET", B + "/last-updated",                               200, 200, 200, 200, 200, 200),

    # Earth Engine and openEO credentials: the user's own, or (ADMIN) a USER's.
    *row("GET", C + "/gee-credentials",                            401, 200, 404, 200, 200, 401),
    *row("DELETE", C + "/gee-credentials",                         401, 200, 404, 200, 200, 401),
    *row("PATCH", C + "/gee-credentials/project",                  401, 200, 404, 200, 200, 401),
    *row("POST", C + "/gee-service-account",                       401, 200, 404, 200, 200, 401),
    *row("POST", C + "/gee-credentials/test",                      401, 200, 404, 200, 200, 401),
    *row("GET", C + "/openeo-credentials",                         401, 200, 404, 200, 200, 401),
    *row("POST", C + "/openeo-credentials",                        401, 200, 404, 200, 200, 401),
    *row("DELETE", C + "/openeo-credentials",                      401, 200, 404, 200, 200, 401),
    # Another administrator's: ADMINs read them; changing them is a SUPERADMIN's, as changing
    # the account is.
    *row("GET", "/api/v1/user/{peer_admin}/gee-credentials",       401, 404, 404, 200, 200, 401),
    *row("DELETE", "/api/v1/user/{peer_admin}/gee-credentials",    401, 404, 404, 403, 200, 401),
    *row("POST", "/api/v1/user/{peer_admin}/gee-service-account",  401, 404, 404, 403, 200, 401),
    *row("POST", "/api/v1/user/{peer_admin}/openeo-credentials",   401, 404, 404, 403, 200, 401),
    *row("POST", "/api/v1/user/me/gee-oauth/initiate",             401, 200, 200, 200, 200, 401),
    # The body is the subject's authorization: on the logged-in callback it must be the
    # caller's own, else 400 invalid_oauth_state (the state says nothing else); the browser's
    # callback has no token, the state names the user.
    *row("POST", "/api/v1/user/me/gee-oauth/callback",             401, 200, 400, 400, 400, 401),
    *row("POST", "/api/v1/gee-oauth/callback",                     200, 200, 200, 200, 200, 200),
    *row("GET", "/api/v1/gee-oauth/callback",                      200, 200, 200, 200, 200, 200),

    # Webhooks: every logged-in user's own URL, secret and deliveries.
    *row("GET", W,                                                 401, 200, 200, 200, 200, 401),
    *row("PUT", W,                                                 401, 200, 200, 200, 200, 401),
    *row("DELETE", W,                                              401, 200, 200, 200, 200, 401),
    *row("POST", W + "/secret",                                    401, 200, 200, 200, 200, 401),
    *row("GET", W + "/deliveries",                                 401, 200, 200, 200, 200, 401),

    # OGC API - Processes: the same scripts and executions, the same rules.
    *row("GET", "/ogc/",                                           200, 200, 200, 200, 200, 200),
    *row("GET", "/ogc/conformance",                                200, 200, 200, 200, 200, 200),
    *row("GET", "/ogc/processes",                                  401, 200, 200, 200, 200, 401),
    *row("GET", "/ogc/processes/{script_slug}",                    401, 200, 404, 200, 200, 401),
    *row("POST", "/ogc/processes/{script_slug}/execution",         401, 201, 404, 201, 201, 401),
    *row("POST", "/ogc/processes/{public}/execution",              401, 201, 201, 201, 201, 401),
    *row("GET", "/ogc/jobs",                                       401, 200, 200, 200, 200, 401),
    *row("GET", "/ogc/jobs/{execution}",                           401, 200, 404, 200, 200, 401),
    *row("DELETE", "/ogc/jobs/{execution}",                        401, 200, 404, 200, 200, 401),
    *row("GET", "/ogc/jobs/{finished}/results",                    401, 200, 404, 200, 200, 401),

    # Loopback may read the metrics (METRICS_ALLOWED_NETWORKS' default); the test client is.
    *row("GET", "/metrics",                                        200, 200, 200, 200, 200, 200),
    # The page the emailed reset link opens.
    *row("GET", "/api/v1/user/reset-password",                     200, 200, 200, 200, 200, 200),
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


def check_success(world, method, path, caller, response, sent_tasks) -> None:
    rule = rule_of(path)
    if rule == "/api/v1/artifact/<artifact_id>/<name>":
        assert response.data == ARTIFACT, response.data[:200]
        assert "attachment" in response.headers["Content-Disposition"], response.headers
    elif rule == "/metrics":
        assert response.mimetype == "text/plain", response.headers
        assert b"# TYPE" in response.data, response.data[:200]
    elif response.mimetype == "text/html":  # the reset page, the OAuth browser callback
        assert response.data.startswith(b"<!doctype html>"), response.data[:200]
        if rule == "/api/v1/gee-oauth/callback":
            assert b"is connected" in response.data, response.data
    elif rule.endswith("/download"):
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
        if (method, rule) in CHECKS:
            CHECKS[method, rule](world, caller, payload)
    task = TASKS.get((method, rule))
    expected = [task] if task else []
    if method == "DELETE" and rule in DELETIONS:
        expected = ["executions.stop"] * len(stopped_by_deleting(world, response))
    assert [sent[0] for sent in sent_tasks] == expected, sent_tasks


DELETIONS = {"/api/v1/user/me", "/api/v1/user/<user_ref>", "/api/v1/script/<script_ref>"}


def check_own_jobs(world, caller, payload):
    """OGC lists nobody's jobs but the caller's own, administrators' included."""
    mine = {str(execution.id) for execution in world.executions.values()}
    assert {job["jobID"] for job in payload["jobs"]} == (mine if caller == SELF else set())


def check_own_deliveries(world, caller, payload):
    expected = {str(world.delivery)} if caller == SELF else set()
    assert {delivery["id"] for delivery in payload["data"]} == expected, payload


def check_news(world, caller, payload):
    assert payload["data"]["id"] in {str(news) for news in world.news.values()}, payload


def check_artifacts(world, caller, payload):
    assert [artifact["name"] for artifact in payload["data"]] == [ARTIFACT_NAME], payload


def check_upload(world, caller, payload):
    assert (payload["data"]["name"], payload["data"]["size"]) == (
        ARTIFACT_NAME,
        len(NEW_ARTIFACT),
    ), payload


def check_gee_test(world, caller, payload):
    assert payload["data"]["valid"] is True, payload


def check_boundaries(world, caller, payload):
    assert payload["boundaries"], payload


def check_webhook(world, caller, payload):
    assert payload["data"]["url"] == WEBHOOK_URL, payload


def check_job(status):
    def check(world, caller, payload):
        assert payload["status"] == status, payload

    return check


def check_results(world, caller, payload):
    assert payload["results"]["value"] == RESULTS, payload


# What a successful answer says, by (method, rule): called with (world, caller, JSON body).
CHECKS = {
    ("GET", "/api/v1/news/<news_id>"): check_news,
    ("GET", "/api/v1/execution/<execution_id>/artifacts"): check_artifacts,
    ("PUT", "/api/v1/execution/<execution_id>/artifacts/<name>"): check_upload,
    ("POST", "/api/v1/user/<user_ref>/gee-credentials/test"): check_gee_test,
    ("GET", "/api/v1/data/boundaries/list"): check_boundaries,
    ("PUT", "/api/v1/webhook"): check_webhook,
    ("GET", "/api/v1/webhook/deliveries"): check_own_deliveries,
    ("GET", "/ogc/jobs"): check_own_jobs,
    ("POST", "/ogc/processes/<process_id>/execution"): check_job("accepted"),
    ("DELETE", "/ogc/jobs/<job_id>"): check_job("dismissed"),
    ("GET", "/ogc/jobs/<job_id>/results"): check_results,
}


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
    url = world.path(path)
    body = make_body(world)
    before = (database_state(app), len(mailbox.messages), stored_files(world.storage_root))

    response = world.client.open(url, method=method, headers=headers, **request_kwargs(body))

    assert response.status_code == expected, (
        response.status_code,
        response.get_data(as_text=True)[:300],
    )
    if expected in (200, 201, 202):
        check_success(world, method, path, caller, response, sent_tasks)
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
        wanted = {*(EXECUTION_CALLERS if "<execution_id>" in rule else CALLERS), EXECUTION_LOGIN}
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
