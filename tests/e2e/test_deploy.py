"""The deployment artefacts: the Dockerfile builds an image that serves the API as a non-root
user and runs the worker, the admin compose service migrates an empty database, and the Swarm
stacks resolve with the settings they require."""

import os
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import docker
import psycopg2
import pytest
import requests
import yaml
from docker.utils.build import create_archive, exclude_paths
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tests.conftest import admin_sql, free_port, fresh_database_url
from tests.e2e.conftest import base_image

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
MACHINE_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TEST_REDIS_URL = "redis://127.0.0.1:6379/12"
MACHINE_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
STACK_SERVICES = {"api", "worker", "beat", "migrate", "redis", "registry"}


def fail_or_skip(reason: str):
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def client():
    return docker.from_env(version="auto")


def build_context():
    """The repository as `docker build .` sends it (.dockerignore applied), plus this machine's
    CA bundle in the Dockerfile's optional ca/ folder: pip in the build goes through a proxy
    that intercepts TLS."""
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    files = sorted(exclude_paths(str(ROOT), ignore))
    extra = [("ca/machine.crt", MACHINE_CA.read_text())] if MACHINE_CA.exists() else []
    return create_archive(str(ROOT), files=files, extra_files=extra)


@pytest.fixture(scope="module")
def api_image(client):
    tag = f"gefapi/api:test-{uuid.uuid4().hex[:10]}"
    output: list[str] = []
    with build_context() as context:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            buildargs={"BASE_IMAGE": base_image()},
            network_mode="host",
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                tail = "".join(output[-30:])
                pytest.fail(f"docker build failed: {chunk['error']}\n{tail}")
            output.append(chunk.get("stream", ""))
    yield tag
    remove_keeping_dependency_layers(client, tag)


def remove_keeping_dependency_layers(client, tag: str) -> None:
    """Remove the test image and the layers above its `pip install`, keeping that layer and
    those below it as the build cache of the next run (a full build takes about 40 s here)."""
    history = client.api.history(tag)  # newest first; intermediate image ids from the build
    installs = [i for i, layer in enumerate(history) if "pip install" in layer["CreatedBy"]]
    above = [layer["Id"] for layer in history[: installs[0] if installs else len(history)]]
    client.images.remove(tag, noprune=True)
    for image_id in above[1:]:
        if image_id == "<missing>":
            break
        try:
            client.images.remove(image_id, noprune=True)
        except docker.errors.APIError:  # a layer another image still builds on
            break


def machine_sql(statement: str) -> None:
    connection = psycopg2.connect(MACHINE_POSTGRES.replace("+psycopg2", "", 1))
    connection.autocommit = True
    try:
        connection.cursor().execute(statement)
    finally:
        connection.close()


def over_tcp(url: str | None) -> bool:
    parsed = make_url(url) if url else None
    return bool(parsed and parsed.host and "host" not in parsed.query)


@pytest.fixture
def database():
    """A fresh, empty database that a container on the host network reaches over TCP: on the
    tests' server when TEST_DATABASE_URL names one (CI), else on the machine PostgreSQL (the
    embedded server of tests/conftest.py listens on a private Unix socket only)."""
    if over_tcp(os.environ.get("TEST_DATABASE_URL")):
        name, url = fresh_database_url()
        yield url
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    name = f"gefapi_test_{uuid.uuid4().hex[:10]}"
    try:
        machine_sql(f'CREATE DATABASE "{name}"')
    except psycopg2.OperationalError as exc:
        fail_or_skip(f"no PostgreSQL on {MACHINE_POSTGRES} for the containers to use: {exc}")
    yield make_url(MACHINE_POSTGRES).set(database=name).render_as_string(hide_password=False)
    machine_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def wait_for_health(container, url: str, timeout: float = 60) -> requests.Response:
    deadline = time.time() + timeout
    while time.time() < deadline:
        container.reload()
        if container.status not in ("created", "running"):
            logs = container.logs().decode(errors="replace")
            pytest.fail(f"the API container stopped ({container.status}):\n{logs}")
        try:
            response = requests.get(url, timeout=3)
            if response.status_code == 200:
                return response
        except requests.RequestException:
            pass
        time.sleep(0.3)
    logs = container.logs().decode(errors="replace")
    pytest.fail(f"{url} did not answer 200 within {timeout}s:\n{logs}")


def test_api_image_serves_health_as_a_non_root_user(client, api_image, database):
    env = {"DATABASE_URL": database, "REDIS_URL": TEST_REDIS_URL, "ENVIRONMENT": "development"}
    client.containers.run(
        api_image, ["flask", "db", "upgrade"], environment=env, network_mode="host", remove=True
    )
    assert {"users", "executions", "alembic_version"} <= table_names(database)

    port = free_port()
    container = client.containers.run(
        api_image,  # the image's own command: gunicorn main:app on 0.0.0.0:$PORT
        detach=True,
        network_mode="host",
        environment={**env, "PORT": str(port), "WEB_CONCURRENCY": "2"},
        name=f"gefapi-api-test-{uuid.uuid4().hex[:10]}",
    )
    try:
        response = wait_for_health(container, f"http://127.0.0.1:{port}/api-health")
        body = response.json()
        assert body["database"] == "ok", body
        assert body["broker"] == "ok", body
        assert body["status"] == "ok", body

        config = client.api.inspect_image(api_image)["Config"]
        assert config["User"] not in ("", "root", "0", "0:0")
        uid = container.exec_run(["id", "-u"])
        assert uid.exit_code == 0
        assert uid.output.decode().strip() not in ("", "0")
        # Every process of the container (gunicorn master and workers), seen from the host.
        top = container.top(ps_args="-o pid,uid,args")
        uid_column = top["Titles"].index("UID")
        commands = [process[-1] for process in top["Processes"]]
        assert any("gunicorn" in command for command in commands), commands
        assert all(process[uid_column] not in ("0", "root") for process in top["Processes"])
        # The image's HEALTHCHECK command itself passes against the running server.
        healthcheck = config["Healthcheck"]["Test"]
        assert healthcheck[0] == "CMD"
        assert "/api-health" in " ".join(healthcheck)
        check = container.exec_run(healthcheck[1:])
        assert check.exit_code == 0, check.output.decode(errors="replace")
    finally:
        container.remove(force=True)


def test_worker_runs_from_the_image_and_passes_the_stack_healthcheck(client, api_image, database):
    """The stacks' worker command (without the environment-image build, which needs the
    engine's socket) and the healthcheck they give it, on this image."""
    stack = yaml.safe_load((ROOT / "docker-compose.prod.yml").read_text())
    check = stack["services"]["worker"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    container = client.containers.run(
        api_image,
        ["celery", "-A", "gefapi.celery", "worker", "--loglevel=INFO", "--concurrency=1"],
        detach=True,
        network_mode="host",
        environment={"DATABASE_URL": database, "REDIS_URL": TEST_REDIS_URL},
        name=f"gefapi-worker-test-{uuid.uuid4().hex[:10]}",
    )
    try:
        deadline = time.time() + 60
        while b"ready." not in container.logs():
            container.reload()
            assert container.status == "running", container.logs().decode(errors="replace")
            assert time.time() < deadline, container.logs().decode(errors="replace")
            time.sleep(0.3)
        ping = container.exec_run(["sh", "-c", check[1].replace("$$", "$")])
        assert ping.exit_code == 0, ping.output.decode(errors="replace")
        assert b"pong" in ping.output
    finally:
        container.remove(force=True)


def compose_env(**values: str) -> dict[str, str]:
    """Only what docker-compose needs from this process, plus the variables under test."""
    keep = ("PATH", "HOME", "LANG", "DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
    return {**{k: v for k, v in os.environ.items() if k in keep}, **values}


def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        fail_or_skip("docker-compose is not installed (.ci/docker-up.sh installs it)")
    return binary


def compose(*args: str, env: dict[str, str], timeout: float = 120):
    return subprocess.run(
        [compose_binary(), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_admin_compose_service_migrates_an_empty_database(client, api_image, database):
    assert table_names(database) == set()
    project = f"gefapitest{uuid.uuid4().hex[:8]}"
    env = compose_env(
        IMAGE=api_image,
        DATABASE_URL=database,
        SECRET_KEY=secrets.token_urlsafe(36),  # ENVIRONMENT defaults to production
        ADMIN_NETWORK_MODE="host",
        ADMIN_EMAIL="root@deploy.test",
        ADMIN_PASSWORD="a deploy test password",
    )
    admin = ("-f", "docker-compose.admin.yml", "-p", project)
    try:
        upgrade = compose(*admin, "run", "--rm", "admin", "flask", "db", "upgrade", env=env)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert {"users", "executions", "alembic_version"} <= table_names(database)
        engine = create_engine(database)
        try:
            with engine.connect() as connection:
                assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

            created = compose(*admin, "run", "--rm", "admin", "flask", "create-admin", env=env)
            assert created.returncode == 0, created.stdout + created.stderr
            with engine.connect() as connection:
                users = connection.execute(text("SELECT email, role FROM users")).all()
        finally:
            engine.dispose()
        assert [(email, str(role)) for email, role in users] == [("root@deploy.test", "SUPERADMIN")]

        # The Trends.Earth habit: `up -d`, then commands through `exec` in the running container.
        up = compose(*admin, "up", "-d", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        current = compose(*admin, "exec", "-T", "admin", "flask", "db", "current", env=env)
        assert current.returncode == 0, current.stdout + current.stderr
        assert "(head)" in current.stdout
        running = client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
        assert len(running) == 1
        running[0].stop(timeout=30)  # TERM ends the idle command at once: exit 0, not a kill
        running[0].reload()
        assert running[0].attrs["State"]["ExitCode"] == 0
    finally:
        compose(*admin, "down", "--remove-orphans", env=env)
    left = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    assert left == []


def stack_env(name: str) -> dict[str, str]:
    values = {
        "SECRET_KEY": secrets.token_urlsafe(36),
        "JWT_SECRET_KEY": secrets.token_urlsafe(36),
        "IMAGE": "registry.example.org/gefapi/api:1.2.3",
    }
    if name == "prod":
        values["DATABASE_URL"] = "postgresql://gefapi:pw@db.example.org:5432/gefapi"
    else:
        values["POSTGRES_PASSWORD"] = "staging-password"
    return compose_env(**values)


REQUIRED = {
    "prod": ("SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL"),
    "staging": ("SECRET_KEY", "JWT_SECRET_KEY", "POSTGRES_PASSWORD"),
}
APP_SERVICES = ("api", "worker", "beat", "migrate")


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


@pytest.mark.parametrize("name", ["staging", "prod"])
def test_swarm_stack_resolves_with_docker_compose(name):
    path = f"docker-compose.{name}.yml"
    env = stack_env(name)
    resolved = compose("-f", path, "config", env=env)
    assert resolved.returncode == 0, resolved.stderr
    config = yaml.safe_load(resolved.stdout)
    services = config["services"]
    expected = STACK_SERVICES | ({"postgres"} if name == "staging" else set())
    assert set(services) == expected

    for service_name in APP_SERVICES:
        service = services[service_name]
        environment = service["environment"]
        assert service["image"] == env["IMAGE"], service_name
        assert environment["SECRET_KEY"] == env["SECRET_KEY"], service_name
        assert environment["JWT_SECRET_KEY"] == env["JWT_SECRET_KEY"], service_name
        assert environment["ENVIRONMENT"] == ("production" if name == "prod" else "staging")
        assert environment["REGISTRY_URL"] == "127.0.0.1:5000", service_name
        assert environment["EXECUTION_BACKEND"] == "swarm", service_name
        assert environment["REDIS_URL"] == "redis://redis:6379/0", service_name
    for service_name, service in services.items():
        assert service["deploy"]["resources"]["limits"]["memory"], service_name

    api = services["api"]
    assert int(api["deploy"]["replicas"]) >= 1
    assert api["deploy"]["update_config"]["order"] == "start-first"
    assert "/api-health" in " ".join(api["healthcheck"]["test"])
    assert "executions" in api["networks"]  # execution services reach the API there

    worker = services["worker"]
    assert "celery -A gefapi.celery worker" in command_text(worker)
    assert "/var/run/docker.sock:/var/run/docker.sock" in str(worker["volumes"])
    assert "node.role == manager" in worker["deploy"]["placement"]["constraints"]
    # Not the image's HTTP check: worker and beat serve no HTTP, and swarm would restart them.
    assert "/api-health" not in str(worker["healthcheck"]["test"])
    for quiet in ("beat", "migrate"):  # `disable: true` resolves to test [NONE]
        healthcheck = services[quiet]["healthcheck"]
        assert healthcheck.get("disable") is True or healthcheck.get("test") == ["NONE"], quiet

    beat = services["beat"]
    assert "celery -A gefapi.celery beat" in command_text(beat)
    assert int(beat["deploy"]["replicas"]) == 1

    migrate = services["migrate"]
    assert command_text(migrate) == "flask db upgrade"
    assert migrate["deploy"]["restart_policy"]["condition"] == "none"

    redis = services["redis"]
    assert "--appendonly yes" in command_text(redis)
    assert any(str(volume).startswith("redis-data:/data") for volume in redis["volumes"])
    assert "redis-data" in config["volumes"]
    assert services["registry"]["image"] == "registry:2"

    network = config["networks"]["executions"]
    assert network["driver"] == "overlay"
    assert network["attachable"] is True
    environment = api["environment"]
    assert network["name"] == environment["EXECUTION_NETWORK"]
    if name == "prod":
        assert environment["DATABASE_URL"] == env["DATABASE_URL"]
        assert environment["EXECUTION_NETWORK"] == "gefapi-executions"
    else:
        assert environment["DATABASE_URL"] == (
            "postgresql://gefapi:staging-password@postgres:5432/gefapi"
        )
        assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "staging-password"

    for variable in REQUIRED[name]:
        missing = {k: v for k, v in env.items() if k != variable}
        refused = compose("-f", path, "config", "-q", env=missing)
        assert refused.returncode != 0, f"{path} resolved without {variable}"
        assert variable in refused.stderr


def stack_cli() -> str | None:
    """A docker CLI with `stack config` (20.10's has none; newer ones do)."""
    candidates = [shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"]
    for candidate in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
        usage = subprocess.run(
            [candidate, "stack", "config", "--help"], capture_output=True, text=True, timeout=30
        )
        if usage.returncode == 0 and "docker stack config" in usage.stdout:
            return candidate
    return None


def stack_config(cli: str, path: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [cli, "stack", "config", "-c", path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", ["staging", "prod"])
def test_swarm_stack_resolves_with_docker_stack_config(name):
    cli = stack_cli()
    if cli is None:
        pytest.skip("no docker CLI here has `docker stack config`")
    path = f"docker-compose.{name}.yml"
    env = stack_env(name)
    resolved = stack_config(cli, path, env)
    assert resolved.returncode == 0, resolved.stderr
    services = yaml.safe_load(resolved.stdout)["services"]
    assert set(services) >= STACK_SERVICES
    assert services["api"]["deploy"]["update_config"]["order"] == "start-first"
    assert services["worker"]["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert services["api"]["environment"]["SECRET_KEY"] == env["SECRET_KEY"]
    missing = {k: v for k, v in env.items() if k != "SECRET_KEY"}
    refused = stack_config(cli, path, missing)
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stderr


def test_admin_compose_file_resolves():
    env = compose_env(
        IMAGE="gefapi/api:1.2.3",
        DATABASE_URL="postgresql://gefapi:pw@127.0.0.1:5432/gefapi",
        SECRET_KEY=secrets.token_urlsafe(36),
    )
    resolved = compose("-f", "docker-compose.admin.yml", "config", env=env)
    assert resolved.returncode == 0, resolved.stderr
    admin = yaml.safe_load(resolved.stdout)["services"]["admin"]
    assert admin["image"] == "gefapi/api:1.2.3"
    assert admin["network_mode"] == "bridge"
    assert admin["environment"]["DATABASE_URL"] == env["DATABASE_URL"]
    on_host = compose(
        "-f", "docker-compose.admin.yml", "config", env={**env, "ADMIN_NETWORK_MODE": "host"}
    )
    assert yaml.safe_load(on_host.stdout)["services"]["admin"]["network_mode"] == "host"
    for variable in ("DATABASE_URL", "SECRET_KEY"):
        missing = {k: v for k, v in env.items() if k != variable}
        refused = compose("-f", "docker-compose.admin.yml", "config", "-q", env=missing)
        assert refused.returncode != 0
        assert variable in refused.stderr
