"""A running execution keeps its credentials when its owner logs out everywhere or changes the
password, and loses them when the owner's account is deleted (issue 11, findings 1 and 8)."""

import textwrap
import time
import uuid

import docker
import pytest

from tests.archives import script_archive
from tests.e2e.conftest import Client

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SLEEPER = """
    import time

    def run(params, logger):
        logger.info("started")
        time.sleep(float(params["seconds"]))
        logger.info("woke up")
        return {"slept": params["seconds"]}
"""


@pytest.fixture(scope="module")
def sleeper(admin):
    script = admin.publish(
        script_archive({"name": f"sleeper {time.time_ns()}"}, main=textwrap.dedent(SLEEPER))
    )
    assert admin.built(script["id"])["status"] == "SUCCESS"
    admin.post(f"/api/v1/script/{script['id']}/publish")
    return script


@pytest.mark.parametrize("session_ends", ["logout-all", "change-password"])
def test_ending_the_users_sessions_mid_run_loses_nothing(stack, admin, sleeper, session_ends):
    email = f"{uuid.uuid4().hex[:8]}@e2e.local"
    body = {"email": email, "name": "E2E", "password": "a user password"}
    assert admin.post("/api/v1/user", json=body).status_code == 200
    user = Client(stack.url, email, "a user password")
    execution = user.run(sleeper, seconds=6)
    user.wait(f"/api/v1/execution/{execution['id']}", lambda e: e["status"] == "RUNNING")
    if session_ends == "logout-all":
        assert user.post("/auth/logout-all").status_code == 200
    else:
        body = {"old_password": "a user password", "new_password": "another user password"}
        assert user.patch("/api/v1/user/me/change-password", json=body).status_code == 200
    password = "a user password" if session_ends == "logout-all" else "another user password"
    again = Client(stack.url, email, password)
    done = again.finished(execution["id"])
    assert (done["status"], done["results"]) == ("FINISHED", {"slept": 6})
    texts = [line["text"] for line in again.logs(execution["id"])]
    assert "woke up" in texts


def test_deleting_the_owner_mid_run_cancels_and_removes_the_service(stack, admin, user, sleeper):
    running = user.run(sleeper, seconds=60)
    user.wait(f"/api/v1/execution/{running['id']}", lambda e: e["status"] == "RUNNING")
    queued = [user.run(sleeper, seconds=60) for _ in range(3)]  # two slots per user here
    assert user.delete("/api/v1/user/me").status_code == 200
    for execution in [running, *queued]:
        done = admin.finished(execution["id"], timeout=60)
        assert done["status"] == "CANCELLED", done
    name = f"gefapi-execution-{running['id']}"
    engine = docker.from_env(version="auto")
    assert [s for s in engine.services.list(filters={"name": name}) if s.name == name] == []
