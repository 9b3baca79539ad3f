"""OWSLib's own OGC API - Processes client against the running service (gunicorn, worker, beat,
the Swarm): list, describe, execute asynchronously, poll to `successful`, read the results,
dismiss a running job."""

import textwrap
import time
import uuid

import pytest
from owslib.ogcapi import REQUEST_HEADERS
from owslib.ogcapi.processes import Processes

from tests.archives import script_archive

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MAIN = textwrap.dedent(
    """
    import time

    def run(params, logger):
        logger.info("started")
        if params.get("sleep"):
            time.sleep(float(params["sleep"]))
        return {"doubled": params["year"] * 2}
    """
)
PARAMS_SCHEMA = {
    "type": "object",
    "properties": {"year": {"type": "integer"}, "sleep": {"type": "number"}},
    "required": ["year"],
}


@pytest.fixture
def ogc(stack, user):
    saved = dict(REQUEST_HEADERS)  # OWSLib keeps its headers in a module-level dict
    client = Processes(
        stack.url + "/ogc", headers={"Authorization": user.session.headers["Authorization"]}
    )
    yield client
    REQUEST_HEADERS.clear()
    REQUEST_HEADERS.update(saved)


def wait_job(ogc: Processes, job_id: str, until, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    job = None
    while time.time() < deadline:
        job = ogc._request(path=f"jobs/{job_id}")  # OWSLib's request helper: no job methods yet
        if until(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never got there: {job}")


def test_owslib_lists_describes_executes_and_dismisses(stack, admin, user, ogc):
    name = f"ogc e2e {uuid.uuid4().hex[:6]}"
    published = admin.publish(
        script_archive({"name": name, "params_schema": PARAMS_SCHEMA}, main=MAIN)
    )
    assert admin.built(published["id"])["status"] == "SUCCESS"
    assert admin.post(f"/api/v1/script/{published['id']}/publish").status_code == 200
    slug = published["slug"]

    assert slug in [process["id"] for process in ogc.processes()]
    described = ogc.process(slug)
    assert described["inputs"]["year"]["minOccurs"] == 1
    assert "async-execute" in described["jobControlOptions"]

    info = ogc.execute(slug, {"year": 1010}, async_=True)
    assert info["status"] == "accepted"
    assert ogc.response_headers["Location"].endswith(f"/ogc/jobs/{info['jobID']}")
    job = wait_job(ogc, info["jobID"], lambda j: j["status"] not in ("accepted", "running"))
    assert job["status"] == "successful", job
    assert job["progress"] == 100 and job["finished"]
    results = ogc._request(path=f"jobs/{info['jobID']}/results")
    assert results["results"]["value"] == {"doubled": 2020}
    # The same execution, seen from the native API.
    native = user.get(f"/api/v1/execution/{info['jobID']}").json()["data"]
    assert native["status"] == "FINISHED" and native["params"]["year"] == 1010

    sleeper = ogc.execute(slug, {"year": 1, "sleep": 120}, async_=True)
    wait_job(ogc, sleeper["jobID"], lambda j: j["status"] == "running")
    dismissed = ogc._request(method="DELETE", path=f"jobs/{sleeper['jobID']}")
    assert dismissed["status"] == "dismissed"
    assert user.finished(sleeper["jobID"])["status"] == "CANCELLED"
    job = wait_job(ogc, sleeper["jobID"], lambda j: j["finished"] is not None)
    assert job["status"] == "dismissed"
