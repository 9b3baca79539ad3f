"""Executions as local processes: a virtualenv per build, a detached supervisor per run.

Memory is limited with RLIMIT_AS. CPU limits need cgroups, which this backend does not manage:
the process only runs at a lower priority (nice 10). A run's folder holds its output and, once
it ends, the exit status written by the supervisor; the run survives worker restarts.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from gefapi import archives
from gefapi.executors.base import BuildFailed, BuildResult, BuildSpec, RunSpec, RunState, RunStatus

RUNTIME = Path(__file__).resolve().parent.parent / "runner" / "runtime.py"
SUPERVISOR = Path(__file__).resolve().parent / "local_supervisor.py"


class LocalBackend:
    name = "local"

    def __init__(self, root: str, limits: archives.Limits, ca_bundle: str | None = None):
        self.root = Path(root)
        self.builds, self.runs = self.root / "builds", self.root / "runs"
        self.builds.mkdir(parents=True, exist_ok=True)
        self.runs.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self.ca_bundle = ca_bundle

    @classmethod
    def from_config(cls, config, limits: archives.Limits) -> "LocalBackend":
        root = config.get("LOCAL_BACKEND_DIR") or os.path.join(config["INSTANCE_PATH"], "local")
        return cls(root, limits, config.get("BUILD_CA_BUNDLE"))

    # Builds: a virtualenv with the requirements, and the script beside it ----------------

    def build(self, spec: BuildSpec, on_line: Callable[[str], None]) -> BuildResult:
        target = self.builds / _safe(spec.image)
        if (target / "ready").exists():
            return BuildResult(image=str(target), digest=_sha256(spec.archive_path))
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.builds))
        (work / "source").mkdir()
        try:
            with open(spec.archive_path, "rb") as archive:
                archives.extract(archive, str(work / "source"), self.limits)
            self._run(["python3", "-m", "venv", str(work / "venv")], on_line)
            pip = [
                str(work / "venv" / "bin" / "pip"),
                "install",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "-r",
                str(work / "source" / "requirements.txt"),
            ]
            self._run(pip, on_line)
            shutil.move(work / "source" / "src", work / "script")
            (work / "ready").touch()
            shutil.rmtree(target, ignore_errors=True)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return BuildResult(image=str(target), digest=_sha256(spec.archive_path))

    def _run(self, command: list[str], on_line) -> None:
        on_line("$ " + " ".join(command))
        env = dict(os.environ)
        if self.ca_bundle:
            env["PIP_CERT"] = self.ca_bundle
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for line in process.stdout:
            if line.strip():
                on_line(line.rstrip())
        if process.wait() != 0:
            raise BuildFailed(f"{Path(command[0]).name} exited with code {process.returncode}")

    # Runs ---------------------------------------------------------------------------------

    def start(self, spec: RunSpec) -> str:
        folder = self.runs / spec.name
        try:
            folder.mkdir()
        except FileExistsError:
            return spec.name  # started already: one run per name
        build = Path(spec.image)
        python = str(build / "venv" / "bin" / "python")
        command = [python, str(RUNTIME)]
        if spec.command:
            command = [python if part == "python" else part for part in spec.command]
        env = {
            "PATH": os.environ.get("PATH", ""),
            **spec.env,
            "GEFAPI_SCRIPT_DIR": str(build / "script"),
            "PYTHONUNBUFFERED": "1",
        }
        settings = {"memory_limit": spec.memory_limit, "command": command, "env": env}
        (folder / "spec.json").write_text(json.dumps(settings))
        subprocess.Popen(
            [sys.executable, str(SUPERVISOR), str(folder)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(folder),
        )
        return spec.name

    def status(self, handle: str) -> RunStatus:
        folder = self.runs / handle
        if not folder.exists():
            return RunStatus(RunState.MISSING)
        exit_file = folder / "exit.json"
        if exit_file.exists():
            ended = json.loads(exit_file.read_text())
            return RunStatus(
                RunState.EXITED,
                exit_code=ended["exit_code"],
                out_of_memory=ended["out_of_memory"],
                finished_at=datetime.fromisoformat(ended["finished_at"]),
            )
        pid = _read_pid(folder)
        if pid is None:
            return RunStatus(RunState.STARTING)
        if _alive(pid):
            return RunStatus(RunState.RUNNING)
        return RunStatus(RunState.EXITED, detail="The supervisor died")

    def logs(self, handle: str, tail: int = 50) -> list[str]:
        output = self.runs / handle / "output.log"
        if not output.exists():
            return []
        return output.read_text(errors="replace").splitlines()[-tail:]

    def stop(self, handle: str) -> None:
        pid = _read_pid(self.runs / handle)
        if pid is not None:
            _kill_group(pid)

    def remove(self, handle: str) -> None:
        self.stop(handle)
        shutil.rmtree(self.runs / handle, ignore_errors=True)

    def stop_all(self) -> None:
        """Kill every run (the embedded launcher does this when it stops)."""
        for folder in self.runs.iterdir():
            self.stop(folder.name)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _read_pid(folder: Path) -> int | None:
    try:
        return int((folder / "pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
