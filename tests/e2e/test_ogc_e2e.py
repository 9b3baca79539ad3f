"""Issue 17 against the running service (gunicorn, worker, beat, the Swarm): OWSLib's own OGC
API - Processes client lists, describes, executes asynchronously, polls to `successful`, reads
the results and dismisses a running job; a webhook receiver on 127.0.0.1 gets signed deliveries
from the worker, also across a worker restart; /metrics moves."""

import json
import os
import textwrap
import time
import uuid

import pytest
import requests
from owslib.ogcapi import REQUEST_HEADERS
from owslib.ogcapi.processes import Processes
from prometheus_client.parser import text_string_to_metric_families

from gefapi.services.webhook_service import verify
from tests.archives import script_archive
from tests.test_webhooks import Receiver

# Read by the e2e stack's processes (tests/e2e/conftest.py copies os.environ), set at collection
# before any stack starts: the receiver below listens on loopback.
os.environ.setdefault("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")

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


@pytest.fixture(scope="module")
def slug(stack, admin):
    """One public script for the module (a build takes a while)."""
    name = f"ogc e2e {uuid.uuid4().hex[:6]}"
    published = admin.publish(
        script_archive({"name": name, "params_schema": PARAMS_SCHEMA}, main=MAIN)
    )
    assert admin.built(published["id"])["status"] == "SUCCESS"
    assert admin.post(f"/api/v1/script/{published['id']}/publish").status_code == 200
    return published["slug"]


def test_owslib_lists_describes_executes_and_dismisses(stack, user, ogc, slug):
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


def metric(url: str, name: str, **labels) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_webhooks_from_the_worker_across_a_restart_and_metrics_move(stack, user, slug):
    receiver = Receiver()
    try:
        finished_before = metric(stack.url, "gefapi_executions", status="FINISHED")
        setting = user.put("/api/v1/webhook", json={"url": receiver.url + "/mine"}).json()["data"]
        subscriber = {"successUri": receiver.url + "/ok", "inProgressUri": receiver.url + "/busy"}
        response = user.post(
            f"/ogc/processes/{slug}/execution",
            json={"inputs": {"year": 7, "sleep": 3}, "subscriber": subscriber},
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["jobID"]
        user.wait(f"/api/v1/execution/{job_id}", lambda e: e["status"] == "RUNNING")
        # The READY and RUNNING deliveries are out (a worker killed in the middle of a send
        # would send it again: at least once, de-duplicated by X-Gefapi-Delivery).
        user.wait(
            f"/api/v1/webhook/deliveries?execution_id={job_id}",
            lambda rows: len(rows) == 4 and all(r["state"] == "DELIVERED" for r in rows),
        )
        stack.kill("worker")  # the worker dies; the runtime reports FINISHED meanwhile
        try:
            assert user.finished(job_id)["status"] == "FINISHED"
            time.sleep(1)
            assert receiver.to("/ok") == []
        finally:
            stack.respawn("worker")
        deadline = time.time() + 90
        while time.time() < deadline and not (
            receiver.to("/ok") and len(receiver.to("/mine")) >= 3
        ):
            time.sleep(0.5)
        # One delivery per event and target, each signed with the user's secret.
        [(_, done)] = receiver.to("/ok")
        assert done["status"] == "successful" and done["execution"]["results"] == {"doubled": 14}
        busy = [body["execution"]["status"] for _, body in receiver.to("/busy")]
        mine = [body["execution"]["status"] for _, body in receiver.to("/mine")]
        assert busy == ["READY", "RUNNING"] and mine == ["READY", "RUNNING", "FINISHED"]
        ids = [headers["X-Gefapi-Delivery"] for _, headers, _ in receiver.requests]
        assert len(ids) == len(set(ids)) == 6  # 1 success, 2 in progress, 3 to the user
        for _, headers, raw in receiver.requests:
            assert verify(setting["secret"], raw, headers["X-Gefapi-Signature"])
            assert json.loads(raw)["jobID"] == job_id
        deliveries = user.get(f"/api/v1/webhook/deliveries?execution_id={job_id}").json()["data"]
        assert {(d["state"], d["attempts"]) for d in deliveries} == {("DELIVERED", 1)}
        assert metric(stack.url, "gefapi_executions", status="FINISHED") > finished_before
        deadline = time.time() + 60  # the worker probes the engine every ENGINE_PROBE_SECONDS
        backend = stack.env["EXECUTION_BACKEND"]
        while metric(stack.url, "gefapi_engine_up", backend=backend) != 1:
            assert time.time() < deadline, "no engine probe"
            time.sleep(1)
    finally:
        receiver.server.shutdown()
