"""One contract for every execution backend: build, start (idempotent), status, logs, stop,
remove; limits applied; out-of-memory kills reported."""

import os
import shutil
import subprocess
import time
import uuid

import docker
import pytest
import requests

from gefapi import archives
from gefapi.executors.base import BuildFailed, BuildSpec, RunSpec, RunState
from gefapi.executors.docker import DockerBackend
from gefapi.executors.images import ImageBuilder
from gefapi.executors.local import LocalBackend
from gefapi.executors.swarm import SwarmBackend
from tests.archives import script_archive
from tests.conftest import ENVIRONMENT_IMAGE, free_port, reachable_folder

LIMITS = archives.Limits(max_unpacked_bytes=10**8, max_members=1000, max_member_bytes=10**8)
MIB = 2**20


@pytest.fixture(scope="module")
def docker_client(environment_image):
    client = docker.from_env(version="auto")
    yield client
    for service in client.services.list(filters={"label": "gefapi.contract"}):
        service.remove()
    for container in client.containers.list(all=True, filters={"label": "gefapi.contract"}):
        container.remove(force=True)
    for image in client.images.list(name="gefapi/contract"):
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def local_backend():
    root = reachable_folder()
    yield LocalBackend(root, LIMITS, ca_bundle="/etc/ssl/certs/ca-certificates.crt")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def local_image(local_backend, tmp_path_factory):
    """The local backend's "image": a build folder (virtualenv and script)."""
    path = tmp_path_factory.mktemp("archive") / "script.tar.gz"
    path.write_bytes(script_archive())
    spec = BuildSpec(str(path), "contract-base", ENVIRONMENT_IMAGE)
    return local_backend.build(spec, lambda line: None).image


@pytest.fixture(
    params=[
        pytest.param("swarm", marks=pytest.mark.docker),
        pytest.param("docker", marks=pytest.mark.docker),
        "local",
    ]
)
def backend(request):
    """A backend, with `run_image` set to what its RunSpecs name as image."""
    if request.param == "local":
        backend = request.getfixturevalue("local_backend")
        backend.run_image = request.getfixturevalue("local_image")
        return backend
    client = request.getfixturevalue("docker_client")
    builder = ImageBuilder(
        client,
        archive_limits=LIMITS,
        network="host",
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
    )
    backend = {"swarm": SwarmBackend, "docker": DockerBackend}[request.param](
        client, builder, network="host"
    )
    backend.run_image = ENVIRONMENT_IMAGE
    return backend


def spec(backend, command: str, **resources) -> RunSpec:
    return RunSpec(
        name=f"gefapi-contract-{uuid.uuid4().hex[:12]}",
        image=backend.run_image,
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


@pytest.mark.docker
def test_image_build_streams_lines_and_tags_the_image(docker_client, tmp_path):
    client = docker_client
    backend = DockerBackend(
        client,
        ImageBuilder(
            client,
            archive_limits=LIMITS,
            network="host",
            ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        ),
        network="host",
    )
    path = tmp_path / "script.tar.gz"
    path.write_bytes(script_archive(requirements="six\n"))
    lines = []
    image = f"gefapi/contract:{uuid.uuid4().hex}"
    result = backend.build(BuildSpec(str(path), image, ENVIRONMENT_IMAGE), lines.append)
    assert result.image == image and result.digest
    assert any(line.startswith("Step ") for line in lines)
    output = client.containers.run(
        image,
        ["python", "-c", "import script.main, six; print('ok')"],
        remove=True,
        network_mode="host",
    )
    assert output.strip() == b"ok"


@pytest.fixture
def registry(tmp_path):
    """Distribution's registry (Debian's docker-registry) on a loopback port; the engine treats
    127.0.0.0/8 registries as insecure by default, so plain HTTP is enough."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{url}/v2/", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            assert time.time() < deadline, "the registry did not start"
            time.sleep(0.2)
    yield f"127.0.0.1:{port}", url
    server.terminate()
    server.wait(timeout=10)


@pytest.mark.docker
def test_a_build_is_pushed_to_the_registry_and_runs_from_it(docker_client, registry, tmp_path):
    address, url = registry
    client = docker_client
    builder = ImageBuilder(
        client,
        archive_limits=LIMITS,
        network="host",
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        registry=address,
    )
    path = tmp_path / "script.tar.gz"
    path.write_bytes(script_archive())
    tag = uuid.uuid4().hex
    image = f"{address}/contract-push:{tag}"
    lines = []
    result = builder.build(BuildSpec(str(path), image, ENVIRONMENT_IMAGE), lines.append)
    assert result.image == image and result.digest.startswith("sha256:")
    assert lines[-1] == f"Pushed {image} ({result.digest})"
    assert requests.get(f"{url}/v2/contract-push/tags/list", timeout=5).json()["tags"] == [tag]
    # What another node does: pull by name from the registry, then run it.
    client.images.remove(image, force=True)
    client.images.pull(f"{address}/contract-push", tag=tag)
    output = client.containers.run(
        image, ["python", "-c", "import script.main; print('ok')"], remove=True, network_mode="host"
    )
    assert output.strip() == b"ok"
    client.images.remove(image, force=True)


def test_local_build_makes_a_virtualenv_with_the_requirements(local_backend, tmp_path):
    path = tmp_path / "script.tar.gz"
    path.write_bytes(script_archive(requirements="six\n"))
    lines = []
    result = local_backend.build(
        BuildSpec(str(path), "contract-six", ENVIRONMENT_IMAGE), lines.append
    )
    python = f"{result.image}/venv/bin/python"
    check = subprocess.run([python, "-c", "import six; print('ok')"], capture_output=True)
    assert check.stdout.strip() == b"ok"
    assert any("six" in line for line in lines)
    assert os.path.exists(f"{result.image}/script/main.py")


def test_build_failure_is_reported(backend, tmp_path):
    path = tmp_path / "script.tar.gz"
    path.write_bytes(script_archive(requirements="this-does-not-exist-gefapi==9.9.9\n"))
    with pytest.raises(BuildFailed):
        backend.build(
            BuildSpec(str(path), f"gefapi/contract:{uuid.uuid4().hex}", ENVIRONMENT_IMAGE),
            lambda line: None,
        )


def test_run_to_exit_with_code_and_logs(backend):
    run = spec(backend, "import os, sys; print(os.environ['GREETING'], flush=True); sys.exit(7)")
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
    handle = backend.start(spec(backend, "import time; time.sleep(600)"))
    wait_for(backend, handle, {RunState.RUNNING})
    backend.stop(handle)
    assert wait_for(backend, handle, {RunState.EXITED, RunState.MISSING}).state
    backend.remove(handle)
    assert backend.status(handle).state == RunState.MISSING


def test_memory_limit_kills_with_out_of_memory(backend):
    hog = "x = []\nwhile True: x.append(bytearray(8 * 1024 * 1024))"
    handle = backend.start(spec(backend, hog, memory_limit=64 * MIB, memory_reservation=32 * MIB))
    status = wait_for(backend, handle, {RunState.EXITED})
    assert status.out_of_memory or status.exit_code == 137
    backend.remove(handle)


def test_limits_reach_the_engine(backend, request):
    if backend.name == "local":
        pytest.skip("the local backend limits memory with RLIMIT_AS (above), not through an engine")
    client = request.getfixturevalue("docker_client")
    handle = backend.start(
        spec(
            backend,
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
    backend.run_image = ENVIRONMENT_IMAGE
    with pytest.raises(BackendUnavailable):
        backend.start(spec(backend, "print(1)"))
