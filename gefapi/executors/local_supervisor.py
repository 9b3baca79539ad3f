"""Runs one local execution and records how it ended. Standard library only.

Usage: python local_supervisor.py RUN_FOLDER (spec.json inside: command, env, cwd,
memory_limit, and uid/gid when the run gets its own unprivileged user).

It detaches at once (the caller only waits for that fork), so no server process keeps a
zombie child, and it lives in its own session, so stopping the server does not stop the run.
As a child subreaper it reaps every process of the run, and when the script ends it kills what
the script left behind. It reads spec.json (the run's token) and deletes it before the script
starts.
"""

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the pid, it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, IndexError):
        return None


def kill_user_processes(uid: int) -> None:
    """SIGKILL every process of `uid` (kill(-1) as that user), wherever it has wandered.
    A bare fork, not a new interpreter: the server's python may be out of that user's reach."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # every process we may signal, except ourselves
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def detach() -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def become_subreaper() -> None:
    """Orphans of the run are reparented to us (and reaped here) instead of to init."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def limit_resources(memory_limit: int | None):
    def apply():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        os.nice(10)

    return apply


def start_script(spec: dict, output) -> subprocess.Popen:
    uid, gid = spec.get("uid"), spec.get("gid")
    return subprocess.Popen(
        spec["command"],
        env=spec["env"],
        cwd=spec.get("cwd"),
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        user=uid,
        group=gid,
        extra_groups=[] if uid is not None else None,
        process_group=0,
        preexec_fn=limit_resources(spec.get("memory_limit")),
    )


def wait_reaping_orphans(pid: int) -> int:
    """The script's wait status; orphans that end meanwhile are reaped as they come."""
    while True:
        ended, status = os.waitpid(-1, 0)
        if ended == pid:
            return status


def end_leftovers(group: int, uid: int | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    if uid is not None:
        kill_user_processes(uid)
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)


def record_exit(folder: Path, status: int) -> None:
    code = os.waitstatus_to_exitcode(status)
    tail = (folder / "output.log").read_text(errors="replace")[-20_000:]
    ended = {
        "exit_code": code if code >= 0 else 128 - code,
        "out_of_memory": "MemoryError" in tail or "Cannot allocate memory" in tail,
        "finished_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
    }
    partial = folder / "exit.json.partial"
    partial.write_text(json.dumps(ended))
    partial.rename(folder / "exit.json")


def main(folder: Path) -> None:
    detach()
    become_subreaper()
    os.umask(0o077)
    spec = json.loads((folder / "spec.json").read_text())
    (folder / "spec.json").unlink()
    (folder / "pid").write_text(f"{os.getpid()} {process_start_time(os.getpid())}")
    with open(folder / "output.log", "ab") as output:
        try:
            script = start_script(spec, output)
        except OSError as exc:
            output.write(f"gefapi: the execution could not start: {exc}\n".encode())
            output.flush()
            record_exit(folder, 127 << 8)  # the shell's "command not found"
            return
    (folder / "group").write_text(str(script.pid))
    status = wait_reaping_orphans(script.pid)
    script.returncode = os.waitstatus_to_exitcode(status)  # reaped above, not by Popen
    end_leftovers(script.pid, spec.get("uid"))
    with contextlib.suppress(FileNotFoundError):  # removed meanwhile: nobody needs the record
        record_exit(folder, status)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
