"""Issue 11, finding 9: Ctrl-C on `./gefapi.sh start` does not kill the local backend's runs;
after the next start a run goes on reporting and ends FINISHED, its log lines once each."""

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.archives import script_archive
from tests.conftest import free_port, reachable_folder
from tests.test_start import ROOT, Service, finished, log_text, running

pytestmark = pytest.mark.slow
SURVIVOR = """
    import os
    import time

    def run(params, logger):
        logger.info(f"pid {os.getpid()}")
        logger.info("before the restart")
        while not os.path.exists(params["go_on"]):
            time.sleep(0.2)
        logger.info("after the restart")
        return {"survived": True}
"""


@pytest.fixture
def clone_folder():
    folder = Path(reachable_folder())
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def publish_survivor(service: Service) -> dict:
    archive = script_archive({"name": "survivor"}, main=textwrap.dedent(SURVIVOR))
    script = service.call(
        "POST", "/api/v1/script", files={"file": ("survivor.tar.gz", archive)}
    ).json()["data"]
    built = service.wait(
        f"/api/v1/script/{script['id']}", lambda s: s["status"] in ("SUCCESS", "FAIL")
    )
    assert built["status"] == "SUCCESS"
    return script


def test_a_local_run_lives_through_a_restart_of_the_server(clone_folder):
    clone = clone_folder / "gefapi"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    go_on = clone_folder / "go-on"
    port = free_port()
    service = Service(clone, port)
    try:
        script = publish_survivor(service)
        execution = service.call(
            "POST", f"/api/v1/script/{script['id']}/run", json={"go_on": str(go_on)}
        ).json()["data"]
        path = f"/api/v1/execution/{execution['id']}"
        service.wait(path, lambda e: "before the restart" in log_text(service, e))
        pid = int(log_text(service, execution).split("pid ")[1].split()[0])
    finally:
        service.stop()
    assert running(pid), "Ctrl-C on the launcher left the run alone"

    again = Service(clone, port)
    try:
        assert again.call("GET", path).json()["data"]["status"] == "RUNNING"
        go_on.touch()
        done = finished(again, execution)
        assert done["status"] == "FINISHED", log_text(again, execution)
        assert done["results"] == {"survived": True}
        lines = again.call("GET", f"{path}/log").json()["data"]
        texts = [line["text"] for line in lines]
        assert texts.count("before the restart") == 1
        assert texts.count("after the restart") == 1
        assert [line for line in lines if line["level"] == "ERROR"] == []
    finally:
        again.stop()
