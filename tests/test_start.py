"""`./gefapi.sh start` from a fresh clone with nothing configured: embedded PostgreSQL, the
database as broker, the local backend (no Docker engine reachable). Driven over HTTP."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.archives import script_archive
from tests.conftest import free_port, reachable_folder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"email": "first@admin.local", "password": "first admin password"}
SCRIPTS = {
    "ok": """
        def run(params, logger):
            logger.info("computing")
            logger.send_progress(50)
            return {"sum": params["a"] + params["b"]}
    """,
    "hog": """
        def run(params, logger):
            hog = []
            while True:
                hog.append(bytearray(16 * 1024 * 1024))
    """,
    "sleeper": """
        import os
        import time

        def run(params, logger):
            logger.info(f"pid {os.getpid()}")
            time.sleep(600)
    """,
}


def nothing_configured(port: int) -> dict:
    """This process's environment less every setting a fresh clone would not have."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DATABASE_URL", "REDIS_URL", "CELERY_", "EXECUTION_", "TEST_", "SMTP_", "GEFAPI_")
        )
    }
    env.update(
        PORT=str(port),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        GEFAPI_VENV=str(Path(sys.executable).parent.parent),
        ADMIN_EMAIL=ADMIN["email"],
        ADMIN_PASSWORD=ADMIN["password"],
        RECONCILE_SECONDS="1",
        EXECUTION_REPORT_GRACE_SECONDS="1",
    )
    return env


def gefapi_sh(clone: Path, port: int, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`./gefapi.sh <args>` in the clone with nothing configured, its output as text."""
    return subprocess.run(
        ["./gefapi.sh", *args],
        cwd=clone,
        env=nothing_configured(port),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


class Service:
    def __init__(self, clone: Path, port: int):
        self.url = f"http://127.0.0.1:{port}"
        env = nothing_configured(port)
        self.log = open(clone / "start.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["./gefapi.sh", "start"], cwd=clone, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + 300  # a loaded 2-core machine boots slowly
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/api-health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            raise AssertionError((clone / "start.log").read_text()[-5000:])
        token = requests.post(self.url + "/auth", json=ADMIN).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method, path, **kwargs):
        return requests.request(method, self.url + path, headers=self.headers, timeout=30, **kwargs)

    def wait(self, path, until, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            body = self.call("GET", path).json()["data"]
            if until(body):
                return body
            time.sleep(0.3)
        raise AssertionError(body)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=60) == 0
        self.log.close()


def publish(service: Service, kind: str, memory_limit: int = 2**30) -> dict:
    archive = script_archive(
        {"name": f"start {kind}", "memory_limit": memory_limit, "memory_reservation": 2**20},
        main=textwrap.dedent(SCRIPTS[kind]),
    )
    script = service.call(
        "POST", "/api/v1/script", files={"file": ("start script.tar.gz", archive)}
    ).json()["data"]
    built = service.wait(
        f"/api/v1/script/{script['id']}", lambda s: s["status"] in ("SUCCESS", "FAIL")
    )
    assert built["status"] == "SUCCESS", service.call(
        "GET", f"/api/v1/script/{script['id']}/log"
    ).text
    return script


def run(service: Service, script: dict, **params) -> dict:
    return service.call("POST", f"/api/v1/script/{script['id']}/run", json=params).json()["data"]


def finished(service: Service, execution: dict) -> dict:
    return service.wait(
        f"/api/v1/execution/{execution['id']}",
        lambda e: e["status"] in ("FINISHED", "FAILED", "CANCELLED"),
    )


def running(pid: int, wait: float = 5) -> bool:
    """Alive and not a zombie (this machine's init may reap orphans late), after `wait` s."""
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.2)
    return True


def log_text(service: Service, execution: dict) -> str:
    lines = service.call("GET", f"/api/v1/execution/{execution['id']}/log").json()["data"]
    return "\n".join(line["text"] for line in lines)


@pytest.fixture
def clone_folder():
    """Where to clone: the local backend's run users must reach the instance folder inside."""
    folder = Path(reachable_folder())
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_fresh_clone_starts_with_nothing_configured(clone_folder):
    clone = clone_folder / "gefapi"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = free_port()

    # A taken port: refused at once, naming PORT, before anything is spawned.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        refused = gefapi_sh(clone, port, "start")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"port {port}" in refused.stdout and "PORT=" in refused.stdout
    assert not (clone / "instance" / "postgres").exists()

    service = Service(clone, port)
    try:
        # A clean start warns about nothing (no XDG_RUNTIME_DIR, Celery as root, ...).
        started = (clone / "start.log").read_text()
        assert not re.search(r"\w+Warning\b", started), started

        # A second start on the same instance folder says where the first one is.
        second = gefapi_sh(clone, port, "start")
        assert second.returncode == 1, second.stdout + second.stderr
        assert "already running" in second.stdout
        assert f"pid {service.process.pid}" in second.stdout and service.url in second.stdout

        # The operator commands use the running instance's embedded database.
        for args in (["migrate"], ["migrate", "check"]):
            done = gefapi_sh(clone, port, *args)
            assert done.returncode == 0, done.stdout + done.stderr
        assert "No new upgrade operations" in done.stdout + done.stderr
        admin = gefapi_sh(clone, port, "create-admin")
        assert admin.returncode == 0 and "already exists" in admin.stdout, admin.stderr
        lines = "from gefapi.models import User\nprint('ADMINS', [u.email for u in User.query])\n"
        shell = gefapi_sh(clone, port, "shell", stdin=lines)
        assert shell.returncode == 0, shell.stderr
        assert f"ADMINS ['{ADMIN['email']}']" in shell.stdout
        assert requests.get(service.url + "/api-health", timeout=30).status_code == 200

        ok = publish(service, "ok")
        done = finished(service, run(service, ok, a=2, b=40))
        assert done["status"] == "FINISHED" and done["results"] == {"sum": 42}
        assert "computing" in log_text(service, done)

        hog = publish(service, "hog", memory_limit=256 * 2**20)
        failed = finished(service, run(service, hog))
        assert failed["status"] == "FAILED"
        assert "out of memory" in log_text(service, failed)

        sleeper = run(service, publish(service, "sleeper"))
        service.wait(f"/api/v1/execution/{sleeper['id']}", lambda e: "pid " in log_text(service, e))
        pid = int(log_text(service, sleeper).split("pid ")[1].split()[0])
        assert service.call("POST", f"/api/v1/execution/{sleeper['id']}/cancel").status_code == 202
        assert finished(service, sleeper)["status"] == "CANCELLED"
        assert not running(pid), "cancel kills the script's process"
    finally:
        service.stop()

    # Stopped: a command starts the embedded database for itself, and stops it after.
    check = gefapi_sh(clone, port, "migrate", "check")
    assert check.returncode == 0, check.stdout + check.stderr

    # A second start reuses the data: the same administrator and scripts are there.
    again = Service(clone, port)
    try:
        scripts = again.call("GET", "/api/v1/script").json()["data"]
        assert {s["name"] for s in scripts} == {"start ok", "start hog", "start sleeper"}
    finally:
        again.stop()
