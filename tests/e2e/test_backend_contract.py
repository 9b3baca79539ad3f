"""One contract for every execution backend: build, start (idempotent), status, logs, stop,
remove; limits applied; out-of-memory kills reported."""

import os
import time
import uuid

import docker
import pytest

from gefapi import archives
from gefapi.executors.base import BuildFailed, BuildSpec, RunSpec, RunState
from gefapi.executors.docker import DockerBackend
from gefapi.executors.images import ImageBuilder, build_environment_image
from gefapi.executors.swarm import SwarmBackend
from tests.archives import script_archive
from tests.e2e.conftest import base_image

pytestmark = pytest.mark.docker
ENVIRONMENT = "gefapi/environment:contract"
LIMITS = archives.Limits(max_unpacked_bytes=10**8, max_members=1000, max_member_bytes=10**8)
MIB = 2**20


@pytest.fixture(scope="module")
def client():
    client = docker.from_env(version="auto")
    build_environment_image(
        client,
        tag=ENVIRONMENT,
        base_image=base_image(),
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        network="host",
        on_line=lambda line: None,
    )
    yield client
    for service in client.services.list(filters={"label": "gefapi.contract"}):
        service.remove()
    for container in client.containers.list(all=True, filters={"label": "gefapi.contract"}):
        container.remove(force=True)
    for image in client.images.list(name="gefapi/contract"):
        client.images.remove(image.id, force=True)


@pytest.fixture(params=["swarm", "docker"])
def backend(request, client):
    builder = ImageBuilder(
        client,
        archive_limits=LIMITS,
        network="host",
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
    )
    backend_class = {"swarm": SwarmBackend, "docker": DockerBackend}[request.param]
    return backend_class(client, builder, network="host")


def spec(command: str, **resources) -> RunSpec:
    return RunSpec(
        name=f"gefapi-contract-{uuid.uuid4().hex[:12]}",
        image=ENVIRONMENT,
        env={"GREETING": "hello"},
        command=["python", "-c", command],
        labels={"gefapi.contract": "yes"},
        **resources,
    )


def wait_for(backend, handle, states, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = backend.status(handle)
        if status.state in states:
            return status
        time.sleep(0.3)
    raise AssertionError(f"{handle} never reached {states}: {status}")


def test_build_streams_lines_and_tags_the_image(backend, client, tmp_path):
    path = tmp_path / "script.tar.gz"
    path.write_bytes(script_archive(requirements="six\n"))
    lines = []
    image = f"gefapi/contract:{uuid.uuid4().hex}"
    result = backend.build(BuildSpec(str(path), image, ENVIRONMENT), lines.append)
    assert result.image == image and result.digest
    assert any(line.startswith("Step ") for line in lines)
    output = client.containers.run(
        image,
        ["python", "-c", "import script.main, six; print('ok')"],
        remove=True,
        network_mode="host",
    )
    assert output.strip() == b"ok"


def test_build_failure_is_reported(backend, tmp_path):
    path = tmp_path / "script.tar.gz"
    path.write_bytes(script_archive(requirements="this-does-not-exist-gefapi==9.9.9\n"))
    with pytest.raises(BuildFailed):
        backend.build(
            BuildSpec(str(path), f"gefapi/contract:{uuid.uuid4().hex}", ENVIRONMENT),
            lambda line: None,
        )


def test_run_to_exit_with_code_and_logs(backend):
    run = spec("import os, sys; print(os.environ['GREETING'], flush=True); sys.exit(7)")
    handle = backend.start(run)
    assert backend.start(run) == handle, "starting the same name twice is one run"
    status = wait_for(backend, handle, {RunState.EXITED})
    assert status.exit_code == 7 and not status.out_of_memory
    assert status.finished_at is not None
    assert "hello" in backend.logs(handle)
    backend.remove(handle)
    assert backend.status(handle).state == RunState.MISSING
    backend.remove(handle)  # removing twice is harmless


def test_stop_ends_a_running_execution(backend):
    handle = backend.start(spec("import time; time.sleep(600)"))
    wait_for(backend, handle, {RunState.RUNNING})
    backend.stop(handle)
    assert wait_for(backend, handle, {RunState.EXITED, RunState.MISSING}).state
    backend.remove(handle)
    assert backend.status(handle).state == RunState.MISSING


def test_memory_limit_kills_with_out_of_memory(backend):
    hog = "x = []\nwhile True: x.append(bytearray(8 * 1024 * 1024))"
    handle = backend.start(spec(hog, memory_limit=64 * MIB, memory_reservation=32 * MIB))
    status = wait_for(backend, handle, {RunState.EXITED})
    assert status.out_of_memory or status.exit_code == 137
    backend.remove(handle)


def test_limits_reach_the_engine(backend, client):
    handle = backend.start(
        spec(
            "import time; time.sleep(600)",
            cpu_limit=5e8,
            cpu_reservation=1e8,
            memory_limit=64 * MIB,
            memory_reservation=32 * MIB,
        )
    )
    try:
        wait_for(backend, handle, {RunState.RUNNING})
        if isinstance(backend, SwarmBackend):
            resources = client.services.get(handle).attrs["Spec"]["TaskTemplate"]["Resources"]
            assert resources["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * MIB}
            assert resources["Reservations"] == {"NanoCPUs": 100_000_000, "MemoryBytes": 32 * MIB}
        else:
            host = client.containers.get(handle).attrs["HostConfig"]
            assert (host["NanoCpus"], host["Memory"], host["MemoryReservation"]) == (
                500_000_000,
                64 * MIB,
                32 * MIB,
            )
    finally:
        backend.remove(handle)


def test_unreachable_engine_is_backend_unavailable(tmp_path):
    from gefapi.executors.base import BackendUnavailable

    broken = docker.DockerClient(base_url=f"unix://{tmp_path}/no.sock", version="1.41")
    backend = DockerBackend(broken, None, network=None)
    with pytest.raises(BackendUnavailable):
        backend.start(spec("print(1)"))
    assert os.path.exists(tmp_path)
