"""Issue 11, finding 2: script code on the local backend cannot reach the server's secrets,
other runs' files, other scripts' builds or any other process's environment."""

import json
import shutil
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from gefapi import archives
from gefapi.executors import local
from gefapi.executors.base import BackendError, BuildSpec, RunSpec, RunState
from gefapi.executors.local import LocalBackend
from gefapi.launcher import persistent_secret, private_instance
from tests.archives import script_archive
from tests.conftest import reachable_folder

LIMITS = archives.Limits(max_unpacked_bytes=10**8, max_members=1000, max_member_bytes=10**8)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SERVER_MARKER = f"server-only-{uuid.uuid4().hex}"

# Everything it could read that is not its own, printed as one JSON line.
ATTACK = textwrap.dedent(
    """
    import glob, json, os, sys
    instance, own_build = sys.argv[1], sys.argv[2]
    found = {}

    def attempt(path):
        try:
            with open(path, "rb") as file:
                found[path] = file.read(20000).decode("latin-1")
        except OSError:
            pass

    attempt(os.path.join(instance, "secret_key"))
    for path in glob.glob(os.path.join(instance, "storage", "**"), recursive=True):
        attempt(path)
    for path in glob.glob(os.path.join(instance, "local", "runs", "*", "*")):
        attempt(path)
    for victim in os.environ["VICTIM_FOLDERS"].split(","):
        for name in ("spec.json", "output.log", "pid", "group", "home/notes"):
            attempt(os.path.join(victim, name))
    for victim_build in os.environ["OTHER_BUILD"].split(","):
        attempt(os.path.join(victim_build, "script", "main.py"))
    for path in glob.glob("/proc/[0-9]*/environ"):
        if int(path.split("/")[2]) != os.getpid():
            attempt(path)
    print("ENV " + json.dumps(sorted(os.environ)))
    print("FOUND " + json.dumps(found))
    """
)


@pytest.fixture(scope="module")
def instance():
    """An instance folder laid out as `gefapi.sh start` lays it out, with its secret key."""
    folder = Path(reachable_folder()) / "instance"
    private_instance(folder)
    persistent_secret(folder)
    (folder / "storage" / "scripts").mkdir()
    (folder / "storage" / "scripts" / "someone-elses.tar.gz").write_text("private archive")
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def backend(instance):
    return LocalBackend(str(instance / "local"), LIMITS, ca_bundle=CA_BUNDLE)


def build(backend, tmp_path_factory, name: str) -> str:
    path = tmp_path_factory.mktemp("archive") / "script.tar.gz"
    path.write_bytes(script_archive(main=f"SECRET_SOURCE = '{name}-source'\n"))
    return backend.build(BuildSpec(str(path), name, "unused"), lambda line: None).image


@pytest.fixture(scope="module")
def builds(backend, tmp_path_factory):
    return build(backend, tmp_path_factory, "attacker"), build(backend, tmp_path_factory, "victim")


def wait_for(condition, what: str, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def start(backend, image: str, command: list[str], env: dict) -> str:
    return backend.start(
        RunSpec(name=f"gefapi-isolation-{uuid.uuid4().hex[:12]}", image=image, env=env,
                command=command, memory_limit=2**30)
    )  # fmt: skip


def test_a_script_reads_no_secret_no_other_run_and_no_other_environment(
    backend, builds, instance, monkeypatch
):
    # What the server holds in its own environment, which its children would inherit.
    monkeypatch.setenv("GEFAPI_ISOLATION_MARKER", SERVER_MARKER)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://server:{SERVER_MARKER}@127.0.0.1/db")
    attacker_build, victim_build = builds
    victim_token = f"victim-token-{uuid.uuid4().hex}"
    victim = start(
        backend,
        victim_build,
        [
            "python",
            "-c",
            "open('notes','w').write('victim notes'); print('victim ready', flush=True); "
            "import time; time.sleep(600)",
        ],
        {"API_TOKEN": victim_token, "EXECUTION_ID": "victim"},
    )
    try:
        wait_for(lambda: "victim ready" in backend.logs(victim), "the victim run started")
        attacker = start(
            backend,
            attacker_build,
            ["python", "-c", ATTACK, str(instance), attacker_build],
            {
                "API_TOKEN": "attacker-token",
                "EXECUTION_ID": "attacker",
                "VICTIM_FOLDERS": str(backend.runs / victim),
                "OTHER_BUILD": victim_build,
            },
        )
        wait_for(lambda: backend.status(attacker).state == RunState.EXITED, "the attack ended")
        output = backend.logs(attacker, tail=1000)
        report = [line for line in output if line.startswith("FOUND ")]
        assert report, output
        found = json.loads(report[0][len("FOUND ") :])
        assert found == {}, f"the script could read: {sorted(found)}"
        seen = "\n".join(output)
        for secret in (victim_token, SERVER_MARKER, (instance / "secret_key").read_text()):
            assert secret not in seen

        # Its environment was built from scratch: its own variables, nothing of the server's.
        environment = json.loads(next(x for x in output if x.startswith("ENV "))[len("ENV ") :])
        assert set(environment) <= {
            "PATH", "HOME", "TMPDIR", "LANG", "API_TOKEN", "EXECUTION_ID", "VICTIM_FOLDERS",
            "OTHER_BUILD", "GEFAPI_SCRIPT_DIR", "PYTHONUNBUFFERED", "LC_CTYPE",
        }  # fmt: skip
        assert backend.status(victim).state == RunState.RUNNING
    finally:
        backend.remove(victim)


def test_the_secrets_and_specs_are_the_servers_alone(backend, builds, instance):
    assert (instance / "secret_key").stat().st_mode & 0o077 == 0
    assert (instance / "storage").stat().st_mode & 0o077 == 0
    assert backend.runs.stat().st_mode & 0o044 == 0, "nobody else lists the runs"
    assert backend.builds.stat().st_mode & 0o044 == 0, "nobody else lists the builds"
    for image in builds:
        assert Path(image).stat().st_uid == 0
        assert Path(image).stat().st_mode & 0o007 == 0, "a build is readable by its group only"
    assert Path(builds[0]).stat().st_gid != Path(builds[1]).stat().st_gid


def test_without_isolation_production_refuses_the_local_backend(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "can_switch_users", lambda: False)
    config = {"LOCAL_BACKEND_DIR": str(tmp_path / "local"), "ENVIRONMENT": "production"}
    with pytest.raises(BackendError, match="trusted scripts only"):
        LocalBackend.from_config(config, LIMITS)

    trusted = LocalBackend.from_config({**config, "LOCAL_BACKEND_TRUSTED_SCRIPTS": True}, LIMITS)
    assert not trusted.isolated
    assert "trusted scripts only" in trusted.describe_isolation()

    warnings = []
    monkeypatch.setattr(local.log, "warning", warnings.append)
    LocalBackend.from_config({**config, "ENVIRONMENT": "development"}, LIMITS)
    assert any("for trusted scripts only" in warning for warning in warnings)


def test_a_folder_that_runs_cannot_reach_is_refused_at_once(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(BackendError, match="o\\+x"):
        LocalBackend(str(closed / "local"), LIMITS)
