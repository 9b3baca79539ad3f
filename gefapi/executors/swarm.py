"""One Docker Swarm service per execution, restart condition none, with the script's CPU and
memory reservations and limits."""

import contextlib

import docker
import docker.errors
from docker.types import Resources, RestartPolicy

from gefapi.executors.base import RunSpec, RunState, RunStatus
from gefapi.executors.docker import EngineBackend, engine_errors, parse_docker_time

STARTING_STATES = {
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "ready",
    "preparing",
    "starting",
}


class SwarmBackend(EngineBackend):
    name = "swarm"

    @engine_errors
    def start(self, spec: RunSpec) -> str:
        existing = self.client.api.services(filters={"name": spec.name})
        for service in existing:
            if service["Spec"]["Name"] == spec.name:
                return service["ID"]
        resources = Resources(
            cpu_limit=int(spec.cpu_limit) if spec.cpu_limit else None,
            mem_limit=int(spec.memory_limit) if spec.memory_limit else None,
            cpu_reservation=int(spec.cpu_reservation) if spec.cpu_reservation else None,
            mem_reservation=int(spec.memory_reservation) if spec.memory_reservation else None,
        )
        service = self.client.services.create(
            spec.image,
            command=spec.command,
            name=spec.name,
            labels=spec.labels,
            container_labels=spec.labels,
            env=[f"{k}={v}" for k, v in spec.env.items()],
            resources=resources,
            restart_policy=RestartPolicy(condition="none"),
            networks=[self.network] if self.network else None,
        )
        return service.id

    def _task(self, handle: str) -> dict | None:
        tasks = self.client.api.tasks(filters={"service": handle})
        return max(tasks, key=lambda task: task["CreatedAt"]) if tasks else None

    @engine_errors
    def status(self, handle: str) -> RunStatus:
        try:
            self.client.api.inspect_service(handle)
        except docker.errors.NotFound:
            return RunStatus(RunState.MISSING)
        task = self._task(handle)
        if task is None:
            return RunStatus(RunState.STARTING)
        state = task["Status"]["State"]
        if state in STARTING_STATES:
            return RunStatus(RunState.STARTING)
        if state == "running":
            return RunStatus(RunState.RUNNING)
        container = task["Status"].get("ContainerStatus", {})
        return RunStatus(
            RunState.EXITED,
            exit_code=container.get("ExitCode"),
            out_of_memory=self._oom_killed(container.get("ContainerID")),
            finished_at=parse_docker_time(task["Status"].get("Timestamp")),
            detail=task["Status"].get("Err") or task["Status"].get("Message", ""),
        )

    def _oom_killed(self, container_id: str | None) -> bool:
        """Only the node that ran the task can tell; on other nodes assume no."""
        if not container_id:
            return False
        try:
            return bool(self.client.api.inspect_container(container_id)["State"]["OOMKilled"])
        except docker.errors.APIError:
            return False

    @engine_errors
    def logs(self, handle: str, tail: int = 50) -> list[str]:
        try:
            output = self.client.api.service_logs(handle, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return []
        data = b"".join(output) if not isinstance(output, bytes) else output
        return data.decode("utf-8", "replace").splitlines()

    @engine_errors
    def stop(self, handle: str) -> None:
        self.remove(handle)

    @engine_errors
    def remove(self, handle: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_service(handle)
