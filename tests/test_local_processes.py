"""Issue 11, finding 9: the local backend's process hygiene. No zombie is left under the
process that started or stopped a run, nothing a script started outlives it, and a run ended
by `flask stop-local-runs` says it was interrupted by a server shutdown, once."""

import shutil
import textwrap
import time
import uuid

import psutil
import pytest

from gefapi import archives
from gefapi.executors.base import BuildSpec, RunSpec, RunState, RunStatus
from gefapi.executors.local import INTERRUPTED, LocalBackend
from gefapi.extensions import db
from gefapi.models import Execution, ExecutionLog
from gefapi.services import dispatch_service
from tests.archives import script_archive
from tests.conftest import reachable_folder

LIMITS = archives.Limits(max_unpacked_bytes=10**8, max_members=1000, max_member_bytes=10**8)


@pytest.fixture(scope="module")
def backend():
    root = reachable_folder()
    yield LocalBackend(root, LIMITS, ca_bundle="/etc/ssl/certs/ca-certificates.crt")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image(backend, tmp_path_factory):
    path = tmp_path_factory.mktemp("archive") / "script.tar.gz"
    path.write_bytes(script_archive())
    return backend.build(BuildSpec(str(path), "processes", "unused"), lambda line: None).image


def start(backend, image, code: str) -> str:
    return backend.start(
        RunSpec(
            name=f"gefapi-processes-{uuid.uuid4().hex[:12]}",
            image=image,
            env={},
            command=["python", "-c", textwrap.dedent(code)],
        )
    )


def eventually(condition, what: str, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def printed_pid(backend, handle: str, label: str) -> int:
    eventually(lambda: any(x.startswith(label) for x in backend.logs(handle)), f"{label} printed")
    line = next(x for x in backend.logs(handle) if x.startswith(label))
    return int(line.split()[1])


def gone(pid: int) -> bool:
    """Ended and reaped (a zombie still holds its pid)."""
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return False


def zombie_children() -> list:
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if child.status() == psutil.STATUS_ZOMBIE
    ]


def test_a_run_that_ends_leaves_no_zombie_behind(backend, image):
    handle = start(backend, image, "print('done')")
    eventually(lambda: backend.status(handle).state == RunState.EXITED, "the run ended")
    assert backend.status(handle).exit_code == 0
    assert zombie_children() == []
    backend.remove(handle)


def test_a_stopped_run_ends_with_its_script_and_leaves_no_zombie(backend, image):
    handle = start(
        backend,
        image,
        """
        import os, time
        print("script", os.getpid(), flush=True)
        time.sleep(600)
        """,
    )
    script = printed_pid(backend, handle, "script")
    backend.stop(handle)
    eventually(lambda: gone(script), "the script ended and was reaped")
    eventually(lambda: backend.status(handle).state == RunState.EXITED, "the run ended")
    assert zombie_children() == []
    backend.remove(handle)


def test_what_a_script_leaves_running_ends_with_it(backend, image):
    handle = start(
        backend,
        image,
        """
        import subprocess
        # A daemon in its own session, which the script neither waits for nor stops.
        daemon = subprocess.Popen(["sleep", "600"], start_new_session=True)
        print("daemon", daemon.pid, flush=True)
        """,
    )
    daemon = printed_pid(backend, handle, "daemon")
    eventually(lambda: backend.status(handle).state == RunState.EXITED, "the run ended")
    eventually(lambda: gone(daemon), "the script's daemon ended and was reaped")
    backend.remove(handle)


def test_stopping_every_run_says_they_were_interrupted_by_a_server_shutdown(backend, image):
    handle = start(backend, image, "import time; print('up', 0, flush=True); time.sleep(600)")
    printed_pid(backend, handle, "up")
    backend.stop_all()
    eventually(lambda: backend.status(handle).state == RunState.EXITED, "the run ended")
    status = backend.status(handle)
    assert status.exit_code is None and status.detail == INTERRUPTED
    backend.remove(handle)


class ExitedBackend:
    """A run that printed what its runtime posted, then something nobody posted."""

    def __init__(self, status: RunStatus, lines: list[str]):
        self.run_status, self.lines, self.removed = status, lines, []

    def status(self, handle):
        return self.run_status

    def logs(self, handle, tail=50):
        return self.lines[-tail:]

    def remove(self, handle):
        self.removed.append(handle)


def reconcile_with(app, monkeypatch, execution, backend) -> tuple[Execution, list[tuple]]:
    monkeypatch.setattr(dispatch_service, "get_backend", lambda: backend)
    with app.app_context():
        dispatch_service.reconcile_one(str(execution.id))
        stored = db.session.get(Execution, execution.id)
        logs = db.session.execute(
            db.select(ExecutionLog.level, ExecutionLog.text)
            .where(ExecutionLog.execution_id == execution.id)
            .order_by(ExecutionLog.id)
        ).all()
        return stored, [tuple(row) for row in logs]


def test_an_interrupted_run_fails_with_that_reason_and_no_line_twice(
    app, make_user, make_script, make_execution, monkeypatch
):
    owner = make_user()
    execution = make_execution(
        make_script(owner), owner, status="RUNNING", backend_handle="gefapi-execution-x"
    )
    with app.app_context():
        for text in ("computing", "step 1 of 2\nhalfway"):
            db.session.add(ExecutionLog(execution_id=execution.id, level="INFO", text=text))
        db.session.commit()
    printed = ["INFO: computing", "INFO: step 1 of 2", "halfway", "Killed: the last words"]
    backend = ExitedBackend(RunStatus(RunState.EXITED, detail=INTERRUPTED), printed)

    stored, logs = reconcile_with(app, monkeypatch, execution, backend)

    assert stored.status == "FAILED"
    assert logs == [
        ("INFO", "computing"),
        ("INFO", "step 1 of 2\nhalfway"),
        ("ERROR", "Killed: the last words"),
        ("ERROR", INTERRUPTED),
    ]
    assert backend.removed == ["gefapi-execution-x"]
