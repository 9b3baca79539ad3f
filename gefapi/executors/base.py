"""The execution backend protocol. Backends take and return plain dataclasses; they know nothing
of Flask, the database or the API."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class BackendError(Exception):
    """A backend operation failed for a reason that retrying will not fix."""


class BackendUnavailable(BackendError):
    """The container engine cannot be reached; try again later."""


class BuildFailed(BackendError):
    pass


@dataclass(frozen=True)
class BuildSpec:
    archive_path: str  # the uploaded .tar.gz
    image: str  # repository:tag to produce, unique per build
    environment_image: str  # what the script image builds FROM
    labels: dict[str, str] = field(default_factory=dict)
    # A legacy environment image (CONTRACT section 10): the script goes where gefcore imports
    # it, and the image's own entrypoint runs it.
    legacy: bool = False


@dataclass(frozen=True)
class BuildResult:
    image: str
    digest: str | None = None


@dataclass(frozen=True)
class RunSpec:
    name: str  # unique per execution; starting twice returns the first handle
    image: str
    env: dict[str, str]
    cpu_reservation: float | None = None  # NanoCPUs
    cpu_limit: float | None = None
    memory_reservation: int | None = None  # bytes
    memory_limit: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    MISSING = "missing"


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    exit_code: int | None = None
    out_of_memory: bool = False
    finished_at: datetime | None = None  # naive UTC
    detail: str = ""


class ExecutionBackend(Protocol):
    name: str

    def build(self, spec: BuildSpec, on_line: Callable[[str], None]) -> BuildResult: ...
    def start(self, spec: RunSpec) -> str: ...
    def status(self, handle: str) -> RunStatus: ...
    def logs(self, handle: str, tail: int = 50) -> list[str]: ...
    def stop(self, handle: str) -> None: ...
    def remove(self, handle: str) -> None: ...
