"""The whole service as processes (gunicorn, Celery worker and beat) on a real Docker Swarm,
driven over HTTP the way the clients drive it."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import admin_sql, free_port, fresh_database_url

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
ADMIN = {"email": "admin@e2e.local", "password": "e2e admin password"}
LOCAL_BASE_IMAGE = "local/debian-python:bookworm"


def base_image() -> str:
    import docker

    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    try:
        docker.from_env(version="auto").images.get(LOCAL_BASE_IMAGE)
        return LOCAL_BASE_IMAGE
    except docker.errors.ImageNotFound:
        return "python:3.11-slim"


class Stack:
    def __init__(self, tmp):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_name, database_url = fresh_database_url()
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            **self.broker(database_url),
            "STORAGE_URL": str(tmp / "storage"),
            "PORT": str(self.port),
            "EXECUTION_BACKEND": os.environ.get("E2E_BACKEND", "swarm"),
            "EXECUTION_NETWORK": "host",
            "BUILD_NETWORK": "host",
            "BUILD_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
            "BASE_IMAGE": base_image(),
            "ENVIRONMENT_IMAGE": "gefapi/environment:e2e",
            "EXECUTION_API_URL": f"http://127.0.0.1:{self.port}",
            "RECONCILE_SECONDS": "1",
            "EXECUTION_REPORT_GRACE_SECONDS": "2",
            "EXECUTION_MAX_RUNTIME_SECONDS": "30",
            "EXECUTION_MAX_PER_USER": "2",
            "DISPATCH_STALE_SECONDS": "3",
            "BUILD_STALE_SECONDS": "30",
            "RATE_LIMIT_DEFAULT": "100000 per minute",  # the tests poll far faster than clients
            "ADMIN_EMAIL": ADMIN["email"],
            "ADMIN_PASSWORD": ADMIN["password"],
            "FLASK_APP": "main",
            "PYTHONPATH": ROOT,
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, tuple] = {}
        self.held: set[str] = set()  # killed by a test, which restarts them itself
        self.restarts: list[tuple[str, int]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        # Outside pytest's rotating temp folders, so they survive for a post-mortem.
        self.logs = Path(os.environ.get("E2E_LOG_DIR", "/tmp/gefapi-e2e")) / self.db_name
        self.logs.mkdir(parents=True)

    @staticmethod
    def broker(database_url: str) -> dict:
        """Redis when the tests have one (a database of its own), else the SQLAlchemy broker."""
        if os.environ.get("TEST_REDIS_URL"):
            return {"REDIS_URL": os.environ.get("TEST_E2E_REDIS_URL", "redis://127.0.0.1:6379/13")}
        return {"CELERY_BROKER_URL": "sqla+" + database_url}

    def flask(self, *args) -> None:
        subprocess.run(
            [f"{BIN}/flask", *args], cwd=ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL
        )

    def spawn(self, name: str, *command) -> None:
        log = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 (lives as long as the process)
        self.commands[name] = command
        self.processes[name] = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        """SIGKILL a process and its children (a worker dying mid-task)."""
        with self.lock:
            self.held.add(name)
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def respawn(self, name: str) -> None:
        with self.lock:
            self.spawn(name, *self.commands[name])
            self.held.discard(name)

    def supervise(self) -> None:
        """Restart a process that exits on its own, as the stacks' restart policy does (a
        Celery worker can exit when Redis goes away under it)."""
        while not self.stopping.wait(1):
            with self.lock:
                for name, process in list(self.processes.items()):
                    if self.stopping.is_set():
                        return
                    if name not in self.held and process.poll() is not None:
                        self.restarts.append((name, process.returncode))
                        self.spawn(name, *self.commands[name])

    def start(self) -> "Stack":
        if self.env.get("REDIS_URL"):
            import redis

            redis.Redis.from_url(self.env["REDIS_URL"]).flushdb()
        self.flask("db", "upgrade")
        self.flask("create-admin")
        self.flask("build-environment")
        self.spawn("api", f"{BIN}/gunicorn", "-b", f"127.0.0.1:{self.port}", "-w", "2", "main:app")
        self.spawn(
            "worker", f"{BIN}/celery", "-A", "gefapi.celery", "worker", "-c", "4", "--loglevel=INFO"
        )
        self.spawn(
            "beat",
            f"{BIN}/celery",
            "-A",
            "gefapi.celery",
            "beat",
            "--loglevel=INFO",
            "--schedule",
            str(self.logs / "beat-schedule"),
        )
        threading.Thread(target=self.supervise, daemon=True).start()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/api-health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError("the API did not come up:\n" + self.log("api"))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        remove_execution_containers()
        admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


def remove_execution_containers() -> None:
    """Services, containers and script images the tests made."""
    import docker

    client = docker.from_env(version="auto")
    for service in client.services.list(filters={"label": "gefapi.execution"}):
        service.remove()
    for container in client.containers.list(all=True, filters={"label": "gefapi.execution"}):
        container.remove(force=True)
    for image in client.images.list(filters={"label": "gefapi.build"}):
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("e2e")).start()
    yield stack
    stack.stop()


class Client:
    """The API as the CLI and the plugin use it."""

    def __init__(self, url: str, email: str, password: str):
        self.url = url
        self.session = requests.Session()
        token = self.session.post(f"{url}/auth", json={"email": email, "password": password})
        token.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def __getattr__(self, method):
        def call(path, **kwargs):
            return self.session.request(method.upper(), self.url + path, timeout=30, **kwargs)

        return call

    def wait(self, path: str, until, timeout: float = 120, every: float = 0.3) -> dict:
        deadline = time.time() + timeout
        body = None
        while time.time() < deadline:
            body = self.get(path).json()["data"]
            if until(body):
                return body
            time.sleep(every)
        raise AssertionError(f"timed out waiting on {path}: {body}")

    def publish(self, archive: bytes, name: str = "script.tar.gz", ref: str | None = None) -> dict:
        files = {"file": (name, archive)}
        response = (
            self.patch(f"/api/v1/script/{ref}", files=files)
            if ref
            else self.post("/api/v1/script", files=files)
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def built(self, script_id: str) -> dict:
        return self.wait(
            f"/api/v1/script/{script_id}", lambda s: s["status"] in ("SUCCESS", "FAIL"), timeout=300
        )

    def finished(self, execution_id: str, timeout: float = 120) -> dict:
        return self.wait(
            f"/api/v1/execution/{execution_id}",
            lambda e: e["status"] in ("FINISHED", "FAILED", "CANCELLED"),
            timeout,
        )

    def run(self, script: dict, **params) -> dict:
        """A new execution of `script` with `params`."""
        response = self.post(f"/api/v1/script/{script['id']}/run", json=params)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def logs(self, execution_id: str) -> list[dict]:
        return self.get(f"/api/v1/execution/{execution_id}/log").json()["data"]


@pytest.fixture(scope="session")
def admin(stack):
    return Client(stack.url, **ADMIN)


@pytest.fixture
def user(stack, admin):
    """A fresh USER per test (each has its own concurrency slots)."""
    email, password = f"{uuid.uuid4().hex[:8]}@e2e.local", "a user password"
    response = admin.post(
        "/api/v1/user", json={"email": email, "name": "E2E", "password": password}
    )
    assert response.status_code == 200, response.text
    return Client(stack.url, email, password)
