"""Executions as local processes: a virtualenv per build, a detached supervisor per run.

Isolation (when the server runs as root): every build and every run gets its own unprivileged
uid (never in /etc/passwd, never reused while it could matter), a build folder readable only by
its build's group, a private home folder, and an environment built from scratch. A run's spec
(with its token) is readable only by the server and deleted once the supervisor has read it.
The server's processes run as root, so their /proc/*/environ is closed to the runs.
Without root there is no isolation: scripts run as the server's own user, which is for trusted
scripts only, and outside development and testing needs LOCAL_BACKEND_TRUSTED_SCRIPTS.

Memory is limited with RLIMIT_AS. CPU limits need cgroups, which this backend does not manage:
the process only runs at a lower priority (nice 10). A run's folder holds its output and, once
it ends, the exit status written by the supervisor; the run survives restarts of the server.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from gefapi import archives
from gefapi.executors.base import (
    BackendError,
    BuildFailed,
    BuildResult,
    BuildSpec,
    RunSpec,
    RunState,
    RunStatus,
)
from gefapi.executors.local_supervisor import kill_user_processes, process_start_time

RUNTIME = Path(__file__).resolve().parent.parent / "runner" / "runtime.py"
SUPERVISOR = Path(__file__).resolve().parent / "local_supervisor.py"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
ID_RANGE = 1_000_000
# What a build's pip may need from the server's environment (proxies, index settings).
BUILD_ENV_PREFIXES = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
TRUSTED_ONLY = "local backend: scripts run as the server's own user; for trusted scripts only"
INTERRUPTED = "The execution was interrupted by a server shutdown."
SUPERVISOR_DIED = "The execution's supervisor process ended without recording how the run ended."

log = logging.getLogger(__name__)


def can_switch_users() -> bool:
    return os.geteuid() == 0


class LocalBackend:
    name = "local"

    def __init__(
        self,
        root: str,
        limits: archives.Limits,
        ca_bundle: str | None = None,
        uid_base: int = 3_000_000_000,
    ):
        self.root = Path(root).resolve()
        self.builds, self.runs = self.root / "builds", self.root / "runs"
        self.isolated = can_switch_users()
        self.uid_base = uid_base
        self.limits = limits
        self.ca_bundle = ca_bundle
        for folder in (self.root, self.builds, self.runs):
            folder.mkdir(parents=True, exist_ok=True)
            # Runs may pass through (to their build and home) but not list anything.
            folder.chmod(0o711 if self.isolated else 0o700)
        if self.isolated:
            _check_reachable(self.root)

    @classmethod
    def from_config(cls, config, limits: archives.Limits) -> "LocalBackend":
        root = config.get("LOCAL_BACKEND_DIR") or os.path.join(config["INSTANCE_PATH"], "local")
        if not can_switch_users():
            trusted = config.get("LOCAL_BACKEND_TRUSTED_SCRIPTS")
            if config.get("ENVIRONMENT") not in ("development", "testing") and not trusted:
                raise BackendError(
                    f"{TRUSTED_ONLY}. Run the server as root (each run then gets its own "
                    "unprivileged user), use the docker or swarm backend, or set "
                    "LOCAL_BACKEND_TRUSTED_SCRIPTS=1 if every script is trusted."
                )
            log.warning(TRUSTED_ONLY)
        return cls(
            root,
            limits,
            config.get("BUILD_CA_BUNDLE"),
            uid_base=config.get("LOCAL_BACKEND_UID_BASE") or 3_000_000_000,
        )

    def describe_isolation(self) -> str:
        if self.isolated:
            return "local backend: each build and run as its own unprivileged user"
        return TRUSTED_ONLY

    def _next_id(self) -> int:
        """A uid/gid not used by any live build or run (a counter over a large range)."""
        with open(os.open(self.root / "ids", os.O_RDWR | os.O_CREAT, 0o600), "r+") as counter:
            fcntl.flock(counter, fcntl.LOCK_EX)
            issued = int(counter.read() or 0)
            counter.seek(0)
            counter.truncate()
            counter.write(str(issued + 1))
        return self.uid_base + issued % ID_RANGE

    # Builds: a virtualenv with the requirements, and the script beside it ----------------

    def build(self, spec: BuildSpec, on_line: Callable[[str], None]) -> BuildResult:
        target = self.builds / _safe(spec.image)
        if (target / "ready").exists():
            return BuildResult(image=str(target), digest=_sha256(spec.archive_path))
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.builds))
        (work / "source").mkdir()
        builder = self._next_id() if self.isolated else None
        try:
            with open(spec.archive_path, "rb") as archive:
                archives.extract(archive, str(work / "source"), self.limits)
            if builder is not None:
                _chown_tree(work, builder, builder)
            self._run(["python3", "-m", "venv", str(work / "venv")], on_line, work, builder)
            pip = [
                str(work / "venv" / "bin" / "pip"),
                "install",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "-r",
                str(work / "source" / "requirements.txt"),
            ]
            self._run(pip, on_line, work, builder)
            if builder is not None:
                # The build's files are the server's now; its runs read them through the group.
                _chown_tree(work, 0, builder)
                work.chmod(0o750)
            shutil.move(work / "source" / "src", work / "script")
            (work / "ready").touch()
            shutil.rmtree(target, ignore_errors=True)
            work.rename(target)
        finally:
            if builder is not None:
                kill_user_processes(builder)  # nothing the build started outlives it
            shutil.rmtree(work, ignore_errors=True)
        return BuildResult(image=str(target), digest=_sha256(spec.archive_path))

    def _run(self, command: list[str], on_line, work: Path, builder: int | None) -> None:
        on_line("$ " + " ".join(command))
        env = {"PATH": SYSTEM_PATH, "HOME": str(work), "LANG": "C.UTF-8"}
        passed = {k: v for k, v in os.environ.items() if k.upper().startswith(BUILD_ENV_PREFIXES)}
        env.update(passed)
        if self.ca_bundle:
            env["PIP_CERT"] = self.ca_bundle
        identity = {}
        if builder is not None:
            identity = {"user": builder, "group": builder, "extra_groups": []}
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=work,
            **identity,
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
            folder.mkdir(mode=0o700)
        except FileExistsError:
            return spec.name  # started already: one run per name
        build = Path(spec.image)
        home = folder / "home"
        home.mkdir(mode=0o700)
        settings = {
            "memory_limit": spec.memory_limit,
            "command": self._command(spec, build),
            "env": self._run_env(spec, build, home),
            "cwd": str(home),
        }
        if self.isolated:
            settings["uid"] = self._next_id()
            # Builds made before isolation belong to root's group: never hand a run gid 0.
            settings["gid"] = build.stat().st_gid or settings["uid"]
            os.chown(home, settings["uid"], settings["gid"])
            folder.chmod(0o711)
        _write_private(folder / "spec.json", json.dumps(settings))
        # The supervisor forks and this child exits at once: waiting for it leaves no zombie.
        subprocess.run(
            [sys.executable, str(SUPERVISOR), str(folder)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
            cwd=str(folder),
            check=True,
        )
        return spec.name

    @staticmethod
    def _command(spec: RunSpec, build: Path) -> list[str]:
        python = str(build / "venv" / "bin" / "python")
        if spec.command:
            return [python if part == "python" else part for part in spec.command]
        return [python, str(RUNTIME)]

    @staticmethod
    def _run_env(spec: RunSpec, build: Path, home: Path) -> dict[str, str]:
        """From scratch: nothing of the server's environment reaches the script."""
        return {
            "PATH": f"{build / 'venv' / 'bin'}:{SYSTEM_PATH}",
            "HOME": str(home),
            "TMPDIR": str(home),
            "LANG": "C.UTF-8",
            **spec.env,
            "GEFAPI_SCRIPT_DIR": str(build / "script"),
            "PYTHONUNBUFFERED": "1",
        }

    def status(self, handle: str) -> RunStatus:
        folder = self.runs / handle
        if not folder.exists():
            return RunStatus(RunState.MISSING)
        exit_file = folder / "exit.json"
        if not exit_file.exists():
            supervisor = _read_supervisor(folder)
            if supervisor is None:
                return RunStatus(RunState.STARTING)
            if _alive(*supervisor):
                return RunStatus(RunState.RUNNING)
        if (folder / "interrupted").exists():
            return RunStatus(RunState.EXITED, detail=INTERRUPTED)
        if not exit_file.exists():
            return RunStatus(RunState.EXITED, detail=SUPERVISOR_DIED)
        ended = json.loads(exit_file.read_text())
        return RunStatus(
            RunState.EXITED,
            exit_code=ended["exit_code"],
            out_of_memory=ended["out_of_memory"],
            finished_at=datetime.fromisoformat(ended["finished_at"]),
        )

    def logs(self, handle: str, tail: int = 50) -> list[str]:
        output = self.runs / handle / "output.log"
        if not output.exists():
            return []
        return output.read_text(errors="replace").splitlines()[-tail:]

    def stop(self, handle: str) -> None:
        """Kills the script and everything it started; the supervisor then exits by itself."""
        folder = self.runs / handle
        group = _read_int(folder / "group")
        if group is not None:
            _kill_group(group)
        elif (supervisor := _read_supervisor(folder)) and _alive(*supervisor):
            _kill_group(supervisor[0])  # not started yet: stop it before it starts anything
        with contextlib.suppress(FileNotFoundError):
            owner = (folder / "home").stat().st_uid
            if self.isolated and owner != os.geteuid():
                kill_user_processes(owner)

    def remove(self, handle: str) -> None:
        self.stop(handle)
        shutil.rmtree(self.runs / handle, ignore_errors=True)

    def stop_all(self) -> None:
        """Kill every run, saying why (`flask stop-local-runs`; the launcher lets runs live on)."""
        for folder in self.runs.iterdir():
            if not (folder / "exit.json").exists():
                (folder / "interrupted").touch()
                self.stop(folder.name)


def _check_reachable(root: Path) -> None:
    """Runs reach their build and home through every parent folder: each needs o+x."""
    for folder in (root, *root.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            raise BackendError(
                f"The local backend's folder {root} is not reachable by its runs' users: "
                f"{folder} lacks o+x. Set LOCAL_BACKEND_DIR to a folder whose parents all allow "
                "others to pass through (e.g. /var/lib/gefapi/local)."
            )


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.lchown(top, uid, gid)
    for folder, subfolders, files in os.walk(top):
        for name in subfolders + files:
            os.lchown(os.path.join(folder, name), uid, gid)


def _write_private(path: Path, text: str) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _read_supervisor(folder: Path) -> tuple[int, str | None] | None:
    """The supervisor's pid and start time (a pid alone may name another process later)."""
    try:
        pid, *started = (folder / "pid").read_text().split()
        return int(pid), started[0] if started else None  # runs of older versions: pid only
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            state = stat_file.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    if state == "Z":  # exited, not yet reaped
        return False
    return started is None or process_start_time(pid) == started


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
