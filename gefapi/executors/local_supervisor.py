"""Runs one local execution and records how it ended. Standard library only.

Usage: python local_supervisor.py RUN_FOLDER (spec.json inside: command, env, memory_limit).
Started in its own session, so killing its process group stops the execution and its children.
"""

import json
import os
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def limit_resources(memory_limit: int | None):
    def apply():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        os.nice(10)

    return apply


def main(folder: Path) -> None:
    spec = json.loads((folder / "spec.json").read_text())
    (folder / "pid").write_text(str(os.getpid()))
    with open(folder / "output.log", "ab") as output:
        process = subprocess.Popen(
            spec["command"],
            env=spec["env"],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit_resources(spec.get("memory_limit")),
        )
        code = process.wait()
    tail = (folder / "output.log").read_text(errors="replace")[-20_000:]
    ended = {
        "exit_code": code if code >= 0 else 128 - code,
        "out_of_memory": "MemoryError" in tail or "Cannot allocate memory" in tail,
        "finished_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
    }
    partial = folder / "exit.json.partial"
    partial.write_text(json.dumps(ended))
    partial.rename(folder / "exit.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
