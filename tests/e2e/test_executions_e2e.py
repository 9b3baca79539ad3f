"""Publishing and running for real (issue 4's checklist), over HTTP with api, worker and beat."""

import textwrap
import time

import docker
import pytest

from tests.archives import script_archive

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCRIPTS = {
    "ok": """
        import time

        def run(params, logger):
            for level in ("debug", "info", "warning", "error", "critical"):
                getattr(logger, level)(f"{level} line")
            for progress in (10.5, 50, 90):
                logger.send_progress(progress)
                time.sleep(0.6)
            return {"echo": params["year"], "env": params["ENV"], "id": params["EXECUTION_ID"]}
    """,
    "raises": """
        def run(params, logger):
            logger.info("about to fail")
            raise ValueError("the input raster is empty")
    """,
    "oom": """
        def run(params, logger):
            hog = []
            while True:
                hog.append(bytearray(8 * 1024 * 1024))
    """,
    "exits": """
        import os

        def run(params, logger):
            for i in range(5):
                print(f"last words {i}", flush=True)
            os._exit(3)
    """,
    "sleeps": """
        import time

        def run(params, logger):
            logger.info("sleeping")
            time.sleep(float(params.get("seconds", 600)))
            return {"slept": params.get("seconds")}
    """,
    "probe": """
        import json
        import os
        import urllib.error
        import urllib.request

        def status(path, method="GET"):
            request = urllib.request.Request(os.environ["API_URL"] + path, method=method,
                headers={"Authorization": "Bearer " + os.environ["API_TOKEN"]})
            try:
                return urllib.request.urlopen(request).status
            except urllib.error.HTTPError as exc:
                return exc.code

        def run(params, logger):
            return {path: status(path) for path in params["paths"]}
    """,
    "version": """
        def run(params, logger):
            return {"version": VERSION}

        VERSION = "{version}"
    """,
}
SMALL = {
    "cpu_reservation": 1e8,
    "cpu_limit": 5e8,
    "memory_reservation": 32 * 2**20,
    "memory_limit": 64 * 2**20,
}


def archive(kind: str, name: str, version: str = "1", requirements: str = "", **configuration):
    code = textwrap.dedent(SCRIPTS[kind]).replace("{version}", version)
    return script_archive(
        {"name": name, **SMALL, **configuration}, main=code, requirements=requirements
    )


@pytest.fixture(scope="module")
def scripts(admin):
    """Each kind of script published once, built, public."""
    published = {
        kind: admin.publish(archive(kind, f"e2e {kind} {time.time_ns()}")) for kind in SCRIPTS
    }
    for kind, script in published.items():
        built = admin.built(script["id"])
        assert built["status"] == "SUCCESS", (
            kind,
            built,
            admin.get(f"/api/v1/script/{script['id']}/log").text,
        )
        admin.post(f"/api/v1/script/{script['id']}/publish")
    return published


def services(execution_id: str) -> list:
    return docker.from_env(version="auto").services.list(
        filters={"name": f"gefapi-execution-{execution_id}"}
    )


def test_publish_streams_build_lines_then_succeeds(admin):
    # A fresh requirements file (the comment) defeats Docker's layer cache: pip really runs.
    requirements = f"six\n# {time.time_ns()}\n"
    script = admin.publish(
        archive("ok", f"e2e stream {time.time_ns()}", requirements=requirements),
        name="download-data 2_3_2.tar.gz",
    )
    seen_while_building, last_id, lines = False, 0, []
    deadline = time.time() + 300
    while time.time() < deadline:
        status = admin.get(f"/api/v1/script/{script['id']}").json()["data"]["status"]
        new = admin.get(f"/api/v1/script/{script['id']}/log?last-id={last_id}").json()["data"]
        lines += [line["text"] for line in new]
        last_id = new[-1]["id"] if new else last_id
        if status == "BUILDING" and len(lines) > 2:
            seen_while_building = True
        if status in ("SUCCESS", "FAIL"):
            break
        time.sleep(0.1)
    assert status == "SUCCESS", lines
    assert seen_while_building, "build output must be visible while the build runs"
    assert lines[0] == "Build started." and lines[-1] == "Build successful."
    assert any("six" in line for line in lines)


def test_broken_requirements_fail_the_build(admin):
    script = admin.publish(
        archive(
            "ok",
            f"e2e broken {time.time_ns()}",
            requirements="this-package-does-not-exist-gefapi==0.0.1\n",
        )
    )
    built = admin.built(script["id"])
    assert built["status"] == "FAIL"
    assert built["build_error"]
    lines = admin.get(f"/api/v1/script/{script['id']}/log").json()["data"]
    assert lines[-1]["text"].startswith("Build failed:")
    response = admin.post(f"/api/v1/script/{script['id']}/run", json={})
    assert response.status_code == 409


def test_run_finishes_with_results_logs_progress_and_limits(user, scripts):
    execution = user.run(scripts["ok"], year=2020)
    progress_seen = set()
    deadline = time.time() + 120
    spec = None
    while time.time() < deadline:
        body = user.get(f"/api/v1/execution/{execution['id']}").json()["data"]
        progress_seen.add(body["progress"])
        if spec is None and services(execution["id"]):
            spec = services(execution["id"])[0].attrs["Spec"]
        if body["status"] in ("FINISHED", "FAILED"):
            break
        time.sleep(0.2)
    assert body["status"] == "FINISHED", user.logs(execution["id"])
    assert body["results"] == {"echo": 2020, "env": "prod", "id": execution["id"]}
    assert body["progress"] == 100 and body["end_date"]
    assert progress_seen & {10, 50, 90}
    texts = [line["text"] for line in user.logs(execution["id"])]
    levels = [line["level"] for line in user.logs(execution["id"])]
    assert texts[:5] == [
        f"{level} line" for level in ("debug", "info", "warning", "error", "critical")
    ]
    assert levels[:5] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    resources = spec["TaskTemplate"]["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * 2**20}
    assert resources["Reservations"] == {"NanoCPUs": 100_000_000, "MemoryBytes": 32 * 2**20}
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    deadline = time.time() + 30
    while services(execution["id"]) and time.time() < deadline:
        time.sleep(0.5)
    assert services(execution["id"]) == [], "the service is removed once the execution ended"


def test_script_that_raises_fails_with_its_traceback(user, scripts):
    done = user.finished(user.run(scripts["raises"])["id"])
    assert done["status"] == "FAILED"
    text = "\n".join(line["text"] for line in user.logs(done["id"]))
    assert "Traceback" in text and "ValueError: the input raster is empty" in text


def test_out_of_memory_fails_saying_so(user, scripts):
    done = user.finished(user.run(scripts["oom"])["id"])
    assert done["status"] == "FAILED"
    text = "\n".join(line["text"] for line in user.logs(done["id"]))
    assert "out of memory" in text


def test_silent_exit_fails_with_the_last_output_lines(user, scripts):
    done = user.finished(user.run(scripts["exits"])["id"])
    assert done["status"] == "FAILED"
    text = "\n".join(line["text"] for line in user.logs(done["id"]))
    assert "last words 4" in text and "code 3" in text


def test_over_the_maximum_runtime_is_stopped(user, scripts):
    execution = user.run(scripts["sleeps"], seconds=600)
    done = user.finished(execution["id"], timeout=90)
    assert done["status"] == "FAILED"
    assert "longer than the maximum" in "\n".join(line["text"] for line in user.logs(done["id"]))
    assert services(execution["id"]) == []


def test_cancel_stops_the_container(user, scripts):
    execution = user.run(scripts["sleeps"], seconds=600)
    user.wait(f"/api/v1/execution/{execution['id']}", lambda e: e["status"] == "RUNNING")
    response = user.post(f"/api/v1/execution/{execution['id']}/cancel")
    assert response.status_code == 202
    done = user.finished(execution["id"], timeout=60)
    assert done["status"] == "CANCELLED"
    assert services(execution["id"]) == []


def test_per_user_limit_runs_two_at_a_time_in_order(user, scripts):
    runs = [user.run(scripts["sleeps"], seconds=3) for _ in range(5)]
    most_running, deadline = 0, time.time() + 180
    while time.time() < deadline:
        states = [user.get(f"/api/v1/execution/{r['id']}").json()["data"] for r in runs]
        active = [s for s in states if s["status"] in ("READY", "RUNNING")]
        most_running = max(most_running, len(active))
        if all(s["status"] in ("FINISHED", "FAILED") for s in states):
            break
        time.sleep(0.3)
    assert [s["status"] for s in states] == ["FINISHED"] * 5
    assert most_running <= 2
    assert most_running == 2
    ends = [s["end_date"] for s in states]
    dispatched = [s["dispatched_at"] for s in states]
    assert dispatched == sorted(dispatched), "started in submission order"
    assert ends[0] <= ends[2] and ends[1] <= ends[3]


def test_scoped_token_opens_only_its_own_execution(user, scripts, admin):
    other = user.run(scripts["raises"])
    paths = [
        "/api/v1/user/me",
        "/api/v1/execution",
        f"/api/v1/execution/{other['id']}",
        f"/api/v1/script/{scripts['probe']['id']}",
    ]
    execution = user.run(scripts["probe"], paths=paths)
    done = user.finished(execution["id"])
    assert done["status"] == "FINISHED", user.logs(execution["id"])
    codes = done["results"]
    assert codes["/api/v1/user/me"] == 401
    assert codes["/api/v1/execution"] == 401
    assert codes[f"/api/v1/execution/{other['id']}"] == 404
    assert codes[f"/api/v1/script/{scripts['probe']['id']}"] == 401


def test_rebuild_does_not_change_a_queued_execution(user, admin):
    script = admin.publish(archive("version", f"e2e version {time.time_ns()}", version="1"))
    assert admin.built(script["id"])["status"] == "SUCCESS"
    admin.post(f"/api/v1/script/{script['id']}/publish")
    sleeper = admin.publish(archive("sleeps", f"e2e blocker {time.time_ns()}"))
    assert admin.built(sleeper["id"])["status"] == "SUCCESS"
    admin.post(f"/api/v1/script/{sleeper['id']}/publish")
    blockers = [user.run(sleeper, seconds=600) for _ in range(2)]
    for blocker in blockers:
        user.wait(f"/api/v1/execution/{blocker['id']}", lambda e: e["status"] == "RUNNING")
    queued = user.run(script)
    admin.publish(archive("version", "ignored", version="2"), ref=script["id"])
    assert admin.built(script["id"])["status"] == "SUCCESS"
    for blocker in blockers:
        user.post(f"/api/v1/execution/{blocker['id']}/cancel")
    assert user.finished(queued["id"])["results"] == {"version": "1"}
    assert user.finished(user.run(script)["id"])["results"] == {"version": "2"}
