"""Faults: a worker killed mid-build and mid-run, Redis and PostgreSQL restarted, the Docker
daemon stopped. Afterwards every execution ends in the right state, acknowledged writes are kept,
and while a dependency is down the API answers 503, never 500."""

import os
import subprocess
import textwrap
import time

import pytest
import requests

from tests.archives import script_archive

pytestmark = [pytest.mark.docker, pytest.mark.slow]
QUICK = """
    import time

    def run(params, logger):
        for i in range(int(params.get("lines", 3))):
            logger.info(f"line {i}")
        time.sleep(float(params.get("seconds", 0)))
        return {"done": params.get("tag")}
"""
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]
PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]


@pytest.fixture(scope="module")
def quick(admin):
    script = admin.publish(
        script_archive({"name": f"faults quick {time.time_ns()}"}, main=textwrap.dedent(QUICK))
    )
    assert admin.built(script["id"])["status"] == "SUCCESS"
    admin.post(f"/api/v1/script/{script['id']}/publish")
    return script


def wait_healthy(stack, timeout=60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(stack.url + "/api-health", timeout=3).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError("the API did not recover")


def test_worker_killed_mid_build_still_builds(stack, admin):
    requirements = f"six\n# {time.time_ns()}\n"  # defeats the layer cache: pip really runs
    script = admin.publish(
        script_archive({"name": f"faults build {time.time_ns()}"}, requirements=requirements)
    )
    admin.wait(f"/api/v1/script/{script['id']}", lambda s: s["status"] == "BUILDING", every=0.05)
    stack.kill("worker")
    stack.respawn("worker")
    built = admin.built(script["id"])
    assert built["status"] == "SUCCESS", admin.get(f"/api/v1/script/{script['id']}/log").text


def test_worker_killed_with_runs_in_flight(stack, user, quick):
    running = user.run(quick, seconds=4, tag="running")
    user.wait(f"/api/v1/execution/{running['id']}", lambda e: e["status"] == "RUNNING")
    stack.kill("worker")
    waiting = user.run(quick, tag="submitted while no worker ran")
    stack.respawn("worker")
    for execution, tag in ((running, "running"), (waiting, "submitted while no worker ran")):
        done = user.finished(execution["id"])
        assert (done["status"], done["results"]) == ("FINISHED", {"done": tag})


def test_redis_restart(stack, user, quick):
    if not stack.env.get("REDIS_URL"):
        pytest.skip("this stack's broker is the database, not Redis")
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False)
    try:
        health = requests.get(stack.url + "/api-health", timeout=10)
        assert health.status_code == 503 and health.json()["broker"] == "unavailable"
        # The run is committed even though its dispatch message cannot be sent now.
        execution = user.run(quick, tag="through a Redis outage")
    finally:
        subprocess.run(REDIS_START, check=True)
    wait_healthy(stack)
    done = user.finished(execution["id"], timeout=120)
    assert (done["status"], done["results"]) == ("FINISHED", {"done": "through a Redis outage"})


def test_postgres_restart_under_load(stack, user, quick):
    if "127.0.0.1:5432" not in stack.env["DATABASE_URL"]:
        pytest.skip("the stack's database is not the machine's PostgreSQL cluster")
    executions = [user.run(quick, seconds=3, lines=20, tag=str(i)) for i in range(2)]
    subprocess.run([*PG_CLUSTER, "stop", "-m", "fast"], check=True)
    try:
        response = user.get(f"/api/v1/execution/{executions[0]['id']}")
        assert response.status_code == 503, response.text
        assert response.json()["error_code"] == "service_unavailable"
        assert requests.get(stack.url + "/api-health", timeout=10).status_code == 503
        time.sleep(2)
    finally:
        subprocess.run([*PG_CLUSTER, "start"], check=True)
    wait_healthy(stack)
    for execution in executions:
        done = user.finished(execution["id"], timeout=120)
        assert (done["status"], done["results"]) == (
            "FINISHED",
            {"done": execution["params"]["tag"]},
        )
        lines = [line["text"] for line in user.logs(execution["id"])]
        assert [f"line {i}" for i in range(20)] == [t for t in lines if t.startswith("line ")]


def test_docker_daemon_restart(stack, user, quick):
    execution = user.run(quick, seconds=30, tag="through a daemon restart")
    user.wait(f"/api/v1/execution/{execution['id']}", lambda e: e["status"] == "RUNNING")
    subprocess.run(["pkill", "-x", "dockerd"], check=True)
    try:
        deadline = time.time() + 60
        while subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
            assert time.time() < deadline, "dockerd did not stop"
            time.sleep(0.5)
        assert requests.get(stack.url + "/api-health", timeout=10).status_code == 200
        assert user.get(f"/api/v1/execution/{execution['id']}").status_code == 200
    finally:
        subprocess.run(
            ["bash", os.path.join(stack.env["PYTHONPATH"], ".ci", "docker-up.sh")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    done = user.finished(execution["id"], timeout=180)
    # The daemon's restart killed the container: the execution fails and says so, or it had
    # already finished; it never stays unfinished.
    assert done["status"] in ("FAILED", "FINISHED")
    if done["status"] == "FAILED":
        text = "\n".join(line["text"] for line in user.logs(execution["id"]))
        assert "without reporting" in text or "disappeared" in text
