"""One container per execution on a single Docker engine."""

import contextlib
from datetime import UTC, datetime

import docker
import docker.errors

from gefapi.executors.base import BackendError, BackendUnavailable, RunSpec, RunState, RunStatus
from gefapi.executors.images import ImageBuilder


def parse_docker_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 with nanoseconds, as naive UTC; None for the zero time."""
    if not value or value.startswith("0001-"):
        return None
    head, _, rest = value.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    parsed = datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")
    return parsed.astimezone(UTC).replace(tzinfo=None)


def engine_errors(method):
    """Engine unreachable → BackendUnavailable; other API errors → BackendError."""

    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            raise BackendError(str(exc.explanation or exc)) from None
        except (docker.errors.DockerException, ConnectionError, OSError) as exc:
            raise BackendUnavailable(str(exc)) from None

    return wrapper


class EngineBackend:
    """What the Docker engine backends share: a client, the image builder, a network."""

    name = "engine"

    def __init__(self, client: docker.DockerClient, builder: ImageBuilder, network: str | None):
        self.client = client
        self.builder = builder
        self.network = network

    def build(self, spec, on_line):
        return self.builder.build(spec, on_line)


class DockerBackend(EngineBackend):
    name = "docker"

    @engine_errors
    def start(self, spec: RunSpec) -> str:
        with contextlib.suppress(docker.errors.NotFound):
            return self.client.containers.get(spec.name).id
        options = {"network_mode": self.network} if self.network else {}
        if spec.cpu_limit:
            options["nano_cpus"] = int(spec.cpu_limit)
        if spec.memory_limit:
            options["mem_limit"] = int(spec.memory_limit)
            options["memswap_limit"] = int(spec.memory_limit)
        if spec.memory_reservation:
            options["mem_reservation"] = int(spec.memory_reservation)
        container = self.client.containers.run(
            spec.image,
            spec.command,
            name=spec.name,
            environment=spec.env,
            labels=spec.labels,
            detach=True,
            **options,
        )
        return container.id

    @engine_errors
    def status(self, handle: str) -> RunStatus:
        try:
            state = self.client.api.inspect_container(handle)["State"]
        except docker.errors.NotFound:
            return RunStatus(RunState.MISSING)
        if state["Status"] in ("created", "restarting"):
            return RunStatus(RunState.STARTING)
        if state["Status"] in ("running", "paused"):
            return RunStatus(RunState.RUNNING)
        return RunStatus(
            RunState.EXITED,
            exit_code=state.get("ExitCode"),
            out_of_memory=bool(state.get("OOMKilled")),
            finished_at=parse_docker_time(state.get("FinishedAt")),
            detail=state.get("Error") or "",
        )

    @engine_errors
    def logs(self, handle: str, tail: int = 50) -> list[str]:
        try:
            output = self.client.api.logs(handle, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return []
        return output.decode("utf-8", "replace").splitlines()

    @engine_errors
    def stop(self, handle: str) -> None:
        try:
            self.client.api.kill(handle)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "is not running" not in str(exc):
                raise

    @engine_errors
    def remove(self, handle: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(handle, force=True)
