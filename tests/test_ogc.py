"""OGC API - Processes at /ogc: the mappings, the rules shared with /api/v1, problem details."""

import pytest

from gefapi.extensions import db
from gefapi.models import Execution, ExecutionStatus, Role, ScriptStatus
from tests.helpers import data

PARAMS_SCHEMA = {
    "type": "object",
    "properties": {
        "year": {"type": "integer", "title": "Year", "minimum": 2000},
        "area": {"type": "string"},
    },
    "required": ["year"],
}
OGC_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"


@pytest.fixture
def world(make_user, make_script):
    admin = make_user(Role.ADMIN)
    user = make_user()
    schema_script = make_script(
        admin, public=True, name="land cover", slug="land-cover", params_schema=PARAMS_SCHEMA
    )
    free_script = make_script(admin, public=True, name="free form", slug="free-form")
    return admin, user, schema_script, free_script


def problem(response, status: int, type_suffix: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["instance"] == response.request.path
    assert "msg" not in body and "message" not in body
    if type_suffix:
        assert body["type"] == OGC_EXCEPTIONS + type_suffix
    return body


def test_landing_page_and_conformance_need_no_token(client):
    landing = client.get("/ogc/")
    assert landing.status_code == 200
    rels = {link["rel"]: link["href"] for link in landing.get_json()["links"]}
    assert rels["service-desc"].endswith("/swagger.json")
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/processes"].endswith("/ogc/processes")
    assert client.get("/ogc").status_code == 200
    conformance = client.get("/ogc/conformance").get_json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conformance
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss" in conformance


def test_processes_are_the_built_scripts_the_caller_may_run(
    client, world, auth, make_user, make_script
):
    admin, user, schema_script, _ = world
    make_script(admin, name="private one", slug="private-one")
    make_script(admin, public=True, name="building", slug="building", status=ScriptStatus.BUILDING)
    processes = client.get("/ogc/processes", headers=auth(user)).get_json()["processes"]
    assert {p["id"] for p in processes} == {"land-cover", "free-form"}
    summary = next(p for p in processes if p["id"] == "land-cover")
    assert summary["title"] == "land cover"
    assert summary["jobControlOptions"] == ["async-execute", "dismiss"]
    assert summary["version"] == str(schema_script.current_build_id)
    assert "inputs" not in summary
    admin_ids = {
        p["id"] for p in client.get("/ogc/processes", headers=auth(admin)).get_json()["processes"]
    }
    assert admin_ids == {"land-cover", "free-form", "private-one"}
    paged = client.get("/ogc/processes?limit=1", headers=auth(user)).get_json()
    assert len(paged["processes"]) == 1 and any(link["rel"] == "next" for link in paged["links"])


def test_process_description_inputs_come_from_params_schema(client, world, auth):
    _, user, _, _ = world
    described = client.get("/ogc/processes/land-cover", headers=auth(user)).get_json()
    assert described["inputs"]["year"] == {
        "title": "Year",
        "description": "",
        "schema": {"type": "integer", "title": "Year", "minimum": 2000},
        "minOccurs": 1,
        "maxOccurs": 1,
    }
    assert described["inputs"]["area"]["minOccurs"] == 0
    assert "results" in described["outputs"]
    free = client.get("/ogc/processes/free-form/", headers=auth(user)).get_json()
    assert free["inputs"] == {}


def test_unknown_invisible_and_unbuilt_processes_are_no_such_process(
    client, world, auth, make_script
):
    admin, user, _, _ = world
    make_script(admin, name="private one", slug="private-one")
    make_script(admin, public=True, name="failed", slug="failed", status=ScriptStatus.FAIL)
    for name in ("nope", "private-one", "failed"):
        problem(client.get(f"/ogc/processes/{name}", headers=auth(user)), 404, "no-such-process")
        problem(
            client.post(f"/ogc/processes/{name}/execution", json={}, headers=auth(user)),
            404,
            "no-such-process",
        )


def test_token_problems_are_problem_details(client, world):
    body = problem(client.get("/ogc/processes"), 401)
    assert body["type"] == "about:blank" and body["error_code"] == "authorization_required"
    problem(client.get("/ogc/jobs", headers={"Authorization": "Bearer nonsense"}), 401)
    problem(client.get("/ogc/no-such-path"), 404)


def test_native_paths_keep_their_error_shape(client):
    body = client.get("/api/v1/execution").get_json()
    assert body["msg"] == body["detail"] and "type" not in body


def test_execute_async_is_an_execution_visible_from_both_sides(client, world, auth, sent_tasks):
    _, user, _, _ = world
    headers = {**auth(user), "Prefer": "respond-async"}
    body = {"inputs": {"year": 2020, "area": {"value": "Kenya", "mediaType": "text/plain"}}}
    response = client.post("/ogc/processes/land-cover/execution", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    info = response.get_json()
    assert info["status"] == "accepted" and info["processID"] == "land-cover"
    assert info["type"] == "process" and info["progress"] == 0
    assert info["created"].endswith("Z") and info["finished"] is None
    assert response.headers["Location"].endswith(f"/ogc/jobs/{info['jobID']}")
    assert sent_tasks == [("executions.dispatch", info["jobID"])]
    native = data(client.get(f"/api/v1/execution/{info['jobID']}", headers=auth(user)))
    assert native["params"] == {"year": 2020, "area": "Kenya"}
    assert native["status"] == "PENDING"
    job = client.get(f"/ogc/jobs/{info['jobID']}", headers=auth(user)).get_json()
    assert job["jobID"] == info["jobID"] and job["status"] == "accepted"


def test_execute_without_prefer_is_async_when_sync_is_off(client, world, auth):
    _, user, _, _ = world
    response = client.post(
        "/ogc/processes/free-form/execution",
        json={"inputs": {"anything": [1, 2]}, "unknown": "ignored"},
        headers={**auth(user), "Prefer": "respond-sync"},
    )
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "respond-async"


def test_inputs_are_validated_against_params_schema(client, world, auth, sent_tasks):
    _, user, _, _ = world
    response = client.post(
        "/ogc/processes/land-cover/execution", json={"inputs": {"year": 1990}}, headers=auth(user)
    )
    body = problem(response, 400)
    assert "year" in body["errors"]
    body = problem(
        client.post(
            "/ogc/processes/land-cover/execution", json={"inputs": [1]}, headers=auth(user)
        ),
        400,
    )
    assert "inputs" in body["errors"]
    assert sent_tasks == []


def test_the_native_concurrency_queue_and_idempotency_apply(client, world, auth, sent_tasks):
    _, user, _, _ = world
    headers = {**auth(user), "Prefer": "respond-async", "Idempotency-Key": "k1"}
    first = client.post("/ogc/processes/free-form/execution", json={}, headers=headers)
    again = client.post("/ogc/processes/free-form/execution", json={}, headers=headers)
    assert first.get_json()["jobID"] == again.get_json()["jobID"]
    assert len(sent_tasks) == 1


@pytest.mark.parametrize(
    ("native", "ogc"),
    [
        ("PENDING", "accepted"),
        ("READY", "accepted"),
        ("RUNNING", "running"),
        ("FINISHED", "successful"),
        ("FAILED", "failed"),
        ("CANCELLING", "dismissed"),
        ("CANCELLED", "dismissed"),
    ],
)
def test_status_mapping(client, world, auth, make_execution, native, ogc):
    _, user, script, _ = world
    execution = make_execution(script, user, status=native)
    job = client.get(f"/ogc/jobs/{execution.id}", headers=auth(user)).get_json()
    assert job["status"] == ogc
    assert job["processID"] == "land-cover"
    results_link = any(link["rel"].endswith("/results") for link in job["links"])
    assert results_link == (native == "FINISHED")


def test_jobs_of_others_are_no_such_job(client, world, auth, make_user, make_execution):
    admin, user, script, _ = world
    other = make_user()
    execution = make_execution(script, other)
    problem(client.get(f"/ogc/jobs/{execution.id}", headers=auth(user)), 404, "no-such-job")
    problem(client.get("/ogc/jobs/not-a-uuid", headers=auth(user)), 404, "no-such-job")
    problem(client.delete(f"/ogc/jobs/{execution.id}", headers=auth(user)), 404, "no-such-job")
    problem(client.get(f"/ogc/jobs/{execution.id}/results", headers=auth(user)), 404, "no-such-job")
    # Administrators read anybody's job, as in the native API.
    assert client.get(f"/ogc/jobs/{execution.id}", headers=auth(admin)).status_code == 200


def test_job_list_is_own_filtered_and_paged(client, world, auth, make_user, make_execution):
    admin, user, script, free = world
    make_execution(script, make_user())
    finished = make_execution(script, user, status="FINISHED")
    make_execution(script, user, status="RUNNING")
    make_execution(free, user, status="FAILED")
    listed = client.get("/ogc/jobs", headers=auth(user)).get_json()
    assert listed["numberMatched"] == 3 and listed["numberReturned"] == 3
    by_status = client.get("/ogc/jobs?status=successful,failed", headers=auth(user)).get_json()
    assert {job["status"] for job in by_status["jobs"]} == {"successful", "failed"}
    by_process = client.get("/ogc/jobs?processID=land-cover", headers=auth(user)).get_json()
    assert {job["processID"] for job in by_process["jobs"]} == {"land-cover"}
    assert by_process["numberMatched"] == 2
    paged = client.get("/ogc/jobs?limit=2", headers=auth(user)).get_json()
    assert paged["numberReturned"] == 2 and any(x["rel"] == "next" for x in paged["links"])
    second = client.get("/ogc/jobs?limit=2&page=2", headers=auth(user)).get_json()
    assert second["numberReturned"] == 1
    assert str(finished.id) in {j["jobID"] for j in paged["jobs"] + second["jobs"]}
    body = problem(client.get("/ogc/jobs?status=nonsense", headers=auth(user)), 400)
    assert "status" in body["errors"]
    # Admins list their own jobs here too (OGC: nobody lists others' jobs).
    assert client.get("/ogc/jobs", headers=auth(admin)).get_json()["numberMatched"] == 0


def test_results(client, world, auth, make_execution):
    _, user, script, _ = world
    done = make_execution(script, user, status="FINISHED", results={"area": 12.5})
    body = client.get(f"/ogc/jobs/{done.id}/results", headers=auth(user)).get_json()
    assert body == {"results": {"value": {"area": 12.5}, "mediaType": "application/json"}}
    running = make_execution(script, user, status="RUNNING")
    problem(
        client.get(f"/ogc/jobs/{running.id}/results", headers=auth(user)), 404, "result-not-ready"
    )
    failed = make_execution(script, user, status="FAILED")
    problem(
        client.get(f"/ogc/jobs/{failed.id}/results", headers=auth(user)),
        404,
        "job-results-failed",
    )


def test_dismiss_cancels_a_running_job(client, world, auth, make_execution, sent_tasks, app):
    _, user, script, _ = world
    execution = make_execution(script, user, status="RUNNING", backend_handle="svc-1")
    response = client.delete(f"/ogc/jobs/{execution.id}", headers=auth(user))
    assert response.status_code == 200
    assert response.get_json()["status"] == "dismissed"
    assert sent_tasks == [("executions.stop", str(execution.id))]
    with app.app_context():
        assert db.session.get(Execution, execution.id).status == ExecutionStatus.CANCELLING


def test_dismiss_deletes_a_finished_job(client, world, auth, make_execution):
    _, user, script, _ = world
    execution = make_execution(script, user, status="FINISHED", results={})
    response = client.delete(f"/ogc/jobs/{execution.id}", headers=auth(user))
    assert response.status_code == 200 and response.get_json()["status"] == "dismissed"
    problem(client.get(f"/ogc/jobs/{execution.id}", headers=auth(user)), 404, "no-such-job")


def test_sync_execution_answers_results_when_the_job_ends_in_time(
    client, world, auth, app, monkeypatch
):
    """The job ends while the request waits (here: the runtime reports during the first
    pause of the wait)."""
    from gefapi.services import ogc_service

    _, user, _, _ = world
    monkeypatch.setitem(app.config, "OGC_SYNC_EXECUTE_SECONDS", 5)

    def runtime_reports(_seconds):
        for execution in db.session.query(Execution).filter_by(status="PENDING"):
            execution.status, execution.results = "FINISHED", {"answer": 42}
        db.session.commit()

    monkeypatch.setattr(ogc_service.time, "sleep", runtime_reports)
    described = client.get("/ogc/processes/free-form", headers=auth(user)).get_json()
    assert "sync-execute" in described["jobControlOptions"]
    response = client.post("/ogc/processes/free-form/execution", json={}, headers=auth(user))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "results": {"value": {"answer": 42}, "mediaType": "application/json"}
    }
    raw = client.post(
        "/ogc/processes/free-form/execution", json={"response": "raw"}, headers=auth(user)
    )
    assert raw.status_code == 200 and raw.get_json() == {"answer": 42}
    # Still running at the end of the wait: the job, as if asynchronous.
    monkeypatch.setattr(ogc_service.time, "sleep", lambda _seconds: None)
    monkeypatch.setitem(app.config, "OGC_SYNC_EXECUTE_SECONDS", 0.01)
    late = client.post("/ogc/processes/free-form/execution", json={}, headers=auth(user))
    assert late.status_code == 201 and late.get_json()["status"] == "accepted"


def test_openapi_document_covers_ogc(client):
    paths = client.get("/swagger.json").get_json()["paths"]
    for path in (
        "/ogc/",
        "/ogc/conformance",
        "/ogc/processes",
        "/ogc/processes/{process_id}",
        "/ogc/processes/{process_id}/execution",
        "/ogc/jobs",
        "/ogc/jobs/{job_id}",
        "/ogc/jobs/{job_id}/results",
    ):
        assert path in paths, path
    assert "delete" in paths["/ogc/jobs/{job_id}"]
