import gzip
import itertools
import json
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gefapi.extensions import db
from gefapi.models import (
    Execution,
    ExecutionLog,
    ExecutionStatus,
    Role,
    ScriptStatus,
    StatusLog,
    User,
)
from gefapi.models.base import utcnow
from gefapi.models.execution import ALLOWED_TRANSITIONS
from gefapi.schemas.execution import LogEntrySchema, is_plain_log_line
from tests.helpers import DATE_RE, assert_error, data

PLUGIN = {"X-TE-Client": "type=qgis_plugin; version=2.3.2; qgis_version=3.34.0; os=Linux; lang=en"}


@pytest.fixture
def world(make_user, make_script):
    admin = make_user(Role.ADMIN)
    user = make_user()
    script = make_script(admin, public=True, name="productivity 2_3_2", slug="productivity-2-3-2")
    return admin, user, script


# Running ---------------------------------------------------------------------------------


def test_run_by_uuid_merges_query_under_body(client, world, auth, sent_tasks):
    _, user, script = world
    body = {
        "year": 2020,
        "task_name": "Kenya",
        "task_notes": "",
        "local_context": {"base_dir": "x"},
    }
    execution = data(
        client.post(
            f"/api/v1/script/{script.id}/run?year=1999&crs=4326", json=body, headers=auth(user)
        )
    )
    assert execution["status"] == "PENDING"
    assert execution["params"] == {**body, "crs": "4326"}
    assert execution["script_id"] == str(script.id) and execution["user_id"] == str(user.id)
    assert execution["progress"] == 0 and execution["end_date"] is None
    assert DATE_RE.match(execution["start_date"])
    assert sent_tasks == [("executions.dispatch", execution["id"])]


def test_legacy_run_by_slug_with_query_args(client, world, auth):
    _, user, script = world
    execution = data(
        client.get(f"/api/v1/script/{script.slug}/run?geojson=x&year=2001", headers=auth(user))
    )
    assert execution["params"] == {"geojson": "x", "year": "2001"}


def test_run_without_params_has_an_empty_object(client, world, auth):
    _, user, script = world
    execution = data(client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)))
    assert execution["params"] == {}


def test_plugin_run_marks_execution_and_user(client, world, auth, app):
    _, user, script = world
    execution = data(
        client.post(f"/api/v1/script/{script.id}/run", json={}, headers={**auth(user), **PLUGIN})
    )
    assert execution["is_plugin_execution"] is True
    with app.app_context():
        assert db.session.get(User, user.id).is_plugin_user
    other = data(client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(world[0])))
    assert other["is_plugin_execution"] is False


def test_gzip_run_body(client, world, auth):
    _, user, script = world
    params = {"geojson": {"type": "Polygon", "coordinates": [[[i, i] for i in range(300)]]}}
    response = client.post(
        f"/api/v1/script/{script.id}/run",
        data=gzip.compress(json.dumps(params).encode()),
        headers={**auth(user), "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert data(response)["params"] == params


@pytest.mark.parametrize("status", [ScriptStatus.PENDING, ScriptStatus.BUILDING, ScriptStatus.FAIL])
def test_run_of_an_unbuilt_script_is_409(client, make_user, make_script, auth, sent_tasks, status):
    user = make_user()
    script = make_script(make_user(Role.ADMIN), status=status, public=True)
    assert_error(
        client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)),
        409,
        "script_not_built",
    )
    assert sent_tasks == []


def test_params_schema_validation(client, make_user, make_script, auth, app):
    user = make_user()
    schema = {
        "type": "object",
        "required": ["year"],
        "properties": {"year": {"type": "integer", "minimum": 2000}},
    }
    script = make_script(make_user(Role.ADMIN), public=True, params_schema=schema)
    body = assert_error(
        client.post(f"/api/v1/script/{script.id}/run", json={"year": 1990}, headers=auth(user)), 400
    )
    assert "year" in body["errors"]
    assert (
        "_schema"
        in assert_error(
            client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)), 400
        )["errors"]
    )
    assert data(
        client.post(f"/api/v1/script/{script.id}/run", json={"year": 2010}, headers=auth(user))
    )
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Execution)) == 1


def test_idempotency_key_returns_the_same_execution(client, world, auth, sent_tasks, make_user):
    _, user, script = world
    headers = {**auth(user), "Idempotency-Key": "run-42"}
    first = data(client.post(f"/api/v1/script/{script.id}/run", json={"a": 1}, headers=headers))
    second = data(client.post(f"/api/v1/script/{script.id}/run", json={"a": 1}, headers=headers))
    assert first["id"] == second["id"]
    assert len(sent_tasks) == 1
    stranger = make_user()
    third = data(
        client.post(
            f"/api/v1/script/{script.id}/run",
            json={"a": 1},
            headers={**auth(stranger), "Idempotency-Key": "run-42"},
        )
    )
    assert third["id"] != first["id"]


# Reporting -------------------------------------------------------------------------------


def test_runtime_reports_like_gefcore(client, world, auth, make_execution, runtime_headers, app):
    _, user, script = world
    execution = make_execution(script, user, status=ExecutionStatus.READY, params={"year": 2020})
    runtime = runtime_headers(execution)
    url = f"/api/v1/execution/{execution.id}"
    assert data(client.get(url, headers=runtime))["params"] == {"year": 2020}
    assert (
        data(client.patch(url, json={"status": "RUNNING"}, headers=runtime))["status"] == "RUNNING"
    )
    assert data(client.patch(url, json={"progress": 42.7}, headers=runtime))["progress"] == 42
    assert data(client.patch(url, json={"progress": 0.37}, headers=runtime))["progress"] == 0
    assert data(client.patch(url, json={"progress": 250}, headers=runtime))["progress"] == 100
    for level in ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"):
        line = data(
            client.post(
                f"{url}/log",
                json={"text": f"<b>{level}</b> & done", "level": level},
                headers=runtime,
            )
        )
        assert line["level"] == ("WARNING" if level == "WARN" else level)
    results = {"type": "RasterResults", "name": "productivity", "rasters": {"x": "y" * 2000}}
    body = gzip.compress(json.dumps({"results": results, "status": "FINISHED"}).encode())
    finished = data(
        client.patch(
            url,
            data=body,
            headers={**runtime, "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    )
    assert finished["status"] == "FINISHED" and finished["progress"] == 100
    assert finished["results"] == results and DATE_RE.match(finished["end_date"])
    logs = data(client.get(f"{url}/log", headers=auth(user)))
    assert [line["level"] for line in logs] == [
        "DEBUG", "INFO", "WARNING", "WARNING", "ERROR", "CRITICAL"]  # fmt: skip
    assert logs[0]["text"] == "<b>DEBUG</b> & done"
    assert set(logs[0]) == {"id", "text", "level", "register_date", "execution_id"}
    with app.app_context():
        history = db.session.scalars(
            db.select(StatusLog.status_to)
            .filter_by(execution_id=execution.id)
            .order_by(StatusLog.id)
        ).all()
    assert history == ["RUNNING", "FINISHED"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
LOG_LINES = st.one_of(
    st.fixed_dictionaries(
        {"text": st.text(max_size=30) | JSON_VALUES},
        optional={"level": st.sampled_from(["INFO", "warn"]) | JSON_VALUES, "extra": JSON_VALUES},
    ),
    JSON_VALUES,
)


@given(LOG_LINES)
def test_the_quick_log_line_check_accepts_only_what_the_schema_accepts(line):
    if is_plain_log_line(line):
        assert LogEntrySchema().load(line) == {
            "text": line["text"],
            "level": line.get("level", "INFO"),
        }


def test_the_quick_log_line_check_covers_long_lines():
    assert is_plain_log_line({"text": "x" * 10_000})
    assert not is_plain_log_line({"text": "x" * 10_001})


def test_batched_logs_keep_their_order(client, world, make_execution, runtime_headers, auth):
    _, user, script = world
    execution = make_execution(script, user, status=ExecutionStatus.RUNNING)
    batch = [{"text": f"line {i}", "level": "INFO"} for i in range(50)]
    posted = data(
        client.post(
            f"/api/v1/execution/{execution.id}/log", json=batch, headers=runtime_headers(execution)
        )
    )
    assert [line["text"] for line in posted] == [f"line {i}" for i in range(50)]
    rest = data(
        client.get(
            f"/api/v1/execution/{execution.id}/log?last-id={posted[24]['id']}", headers=auth(user)
        )
    )
    assert [line["text"] for line in rest] == [f"line {i}" for i in range(25, 50)]


def test_finishing_emails_the_owner_from_a_task(
    client, world, make_execution, runtime_headers, mailbox
):
    _, user, script = world
    execution = make_execution(
        script, user, status=ExecutionStatus.RUNNING, params={"task_name": "Peru"}
    )
    client.patch(
        f"/api/v1/execution/{execution.id}",
        json={"status": "FAILED"},
        headers=runtime_headers(execution),
    )
    [message] = mailbox.to(user.email)
    assert "failed" in message["Subject"] and "Peru" in message.get_content()


def test_a_finished_execution_accepts_only_a_repeat(
    client, world, make_execution, runtime_headers, app, make_user, auth
):
    _, user, script = world
    execution = make_execution(script, user, status=ExecutionStatus.RUNNING)
    url, runtime = f"/api/v1/execution/{execution.id}", runtime_headers(execution)
    final = {"status": "FINISHED", "results": {"a": 1}}
    data(client.patch(url, json=final, headers=runtime))
    # The runtime's token ended with the execution; an administrator may still repeat.
    assert_error(client.patch(url, json=final, headers=runtime), 401, "token_revoked")
    admin = auth(make_user(Role.ADMIN))
    assert data(client.patch(url, json=final, headers=admin))["results"] == {"a": 1}
    assert_error(client.patch(url, json={"results": {"a": 2}}, headers=admin), 409)
    assert_error(client.patch(url, json={"status": "FAILED"}, headers=admin), 409)
    with app.app_context():
        stored = db.session.get(Execution, execution.id)
        assert (stored.status, stored.results) == ("FINISHED", {"a": 1})


def test_results_size_cap(client, world, make_execution, runtime_headers, monkeypatch, app):
    _, user, script = world
    monkeypatch.setitem(app.config, "RESULTS_MAX_BYTES", 1000)
    execution = make_execution(script, user, status=ExecutionStatus.RUNNING)
    response = client.patch(
        f"/api/v1/execution/{execution.id}",
        json={"results": "x" * 2000},
        headers=runtime_headers(execution),
    )
    assert_error(response, 413)


def test_results_come_back_as_they_were_sent(client, world, make_execution, runtime_headers):
    """Whatever JSON the runtime reports is served unchanged: integers beyond 64 bits, text
    beyond ASCII, nested arrays."""
    _, user, script = world
    execution = make_execution(script, user, status=ExecutionStatus.RUNNING)
    results = {"big": 2**70, "name": "Ñuñoa, 東京", "nested": [[1.5, None, True]]}
    url = f"/api/v1/execution/{execution.id}"
    patched = client.patch(url, json={"results": results}, headers=runtime_headers(execution))
    assert data(patched)["results"] == results
    assert data(client.get(url, headers=runtime_headers(execution)))["results"] == results


# The state machine ---------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), list(itertools.product(ExecutionStatus, repeat=2)))
def test_every_transition(client, world, make_execution, auth, app, current, target):
    admin, user, script = world
    execution = make_execution(script, user, status=current)
    response = client.patch(
        f"/api/v1/execution/{execution.id}", json={"status": target}, headers=auth(admin)
    )
    with app.app_context():
        stored = db.session.get(Execution, execution.id)
        logs = db.session.scalars(db.select(StatusLog).filter_by(execution_id=execution.id)).all()
    if target == current:
        assert response.status_code == 200
        assert (stored.status, logs) == (current, [])
    elif target in ALLOWED_TRANSITIONS[current]:
        assert data(response)["status"] == target
        assert [(log.status_from, log.status_to) for log in logs] == [(current, target)]
        terminal = target in ("FINISHED", "FAILED", "CANCELLED")
        assert (stored.end_date is not None) == terminal
        assert stored.progress == (100 if target == "FINISHED" else 0)
    else:
        assert_error(
            response,
            409,
            "invalid_status_transition"
            if current not in ("FINISHED", "FAILED", "CANCELLED")
            else "execution_finished",
        )
        assert (stored.status, stored.end_date, logs) == (current, None, [])


def test_the_transition_table_is_the_contract():
    S = ExecutionStatus
    assert {s: set(t) for s, t in ALLOWED_TRANSITIONS.items()} == {
        S.PENDING: {S.READY, S.FAILED, S.CANCELLED, S.CANCELLING},
        S.READY: {S.RUNNING, S.FINISHED, S.FAILED, S.CANCELLING},
        S.RUNNING: {S.FINISHED, S.FAILED, S.CANCELLING},
        S.CANCELLING: {S.CANCELLED, S.FINISHED, S.FAILED},
        S.FINISHED: set(),
        S.FAILED: set(),
        S.CANCELLED: set(),
    }


# Cancel, delete, download ------------------------------------------------------------------


def test_cancel_before_dispatch_ends_cancelled(client, world, make_execution, auth, sent_tasks):
    _, user, script = world
    execution = make_execution(script, user)
    response = client.post(f"/api/v1/execution/{execution.id}/cancel", json={}, headers=auth(user))
    assert response.status_code == 202
    body = data(response, 202)
    assert body["status"] == "CANCELLED" and body["end_date"]
    assert body["cancellation_details"]["queued"] is False
    assert sent_tasks == []


def test_cancel_after_dispatch_goes_through_cancelling(
    client, world, make_execution, auth, sent_tasks
):
    _, user, script = world
    execution = make_execution(script, user, status=ExecutionStatus.RUNNING, backend_handle="svc")
    body = data(client.post(f"/api/v1/execution/{execution.id}/cancel", headers=auth(user)), 202)
    assert body["status"] == "CANCELLING"
    assert body["execution"]["status"] == "CANCELLING"
    assert body["cancellation_details"] == {
        "execution_id": str(execution.id),
        "previous_status": "RUNNING",
        "new_status": "CANCELLING",
        "queued": True,
    }
    assert sent_tasks == [("executions.stop", str(execution.id))]
    again = data(client.post(f"/api/v1/execution/{execution.id}/cancel", headers=auth(user)), 202)
    assert again["status"] == "CANCELLING" and len(sent_tasks) == 1


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "CANCELLED"])
def test_cancel_of_a_finished_execution_is_409(client, world, make_execution, auth, status):
    _, user, script = world
    execution = make_execution(script, user, status=status)
    assert_error(client.post(f"/api/v1/execution/{execution.id}/cancel", headers=auth(user)), 409)


def test_download_results(client, world, make_execution, login):
    _, user, script = world
    execution = make_execution(script, user, status="FINISHED", results={"urls": ["a"]})
    token = login(user)["access_token"]
    response = client.get(f"/api/v1/execution/{execution.id}/download-results?token={token}")
    assert response.status_code == 200
    assert "results.json" in response.headers["Content-Disposition"]
    assert response.get_json() == {"urls": ["a"]}


def test_delete_hides_finished_executions(client, world, make_execution, auth):
    _, user, script = world
    running = make_execution(script, user, status="RUNNING")
    done = make_execution(script, user, status="FINISHED")
    assert_error(client.delete(f"/api/v1/execution/{running.id}", headers=auth(user)), 409)
    data(client.delete(f"/api/v1/execution/{done.id}", json={}, headers=auth(user)))
    listed = {e["id"] for e in data(client.get("/api/v1/execution", headers=auth(user)))}
    assert listed == {str(running.id)}
    assert_error(client.get(f"/api/v1/execution/{done.id}", headers=auth(user)), 404)


def test_runtime_token_opens_nothing_else(client, world, make_execution, runtime_headers):
    _, user, script = world
    mine, other = make_execution(script, user), make_execution(script, user)
    runtime = runtime_headers(mine)
    assert_error(client.get(f"/api/v1/execution/{other.id}", headers=runtime), 404)
    assert_error(
        client.patch(f"/api/v1/execution/{other.id}", json={"progress": 1}, headers=runtime), 404
    )
    assert_error(
        client.post(f"/api/v1/execution/{other.id}/log", json={"text": "x"}, headers=runtime), 404
    )
    for path in ("/api/v1/user/me", "/api/v1/execution", f"/api/v1/script/{script.id}"):
        assert_error(client.get(path, headers=runtime), 401)
    assert_error(client.post(f"/api/v1/execution/{mine.id}/cancel", headers=runtime), 401)


def test_owner_cannot_report(client, world, make_execution, auth):
    _, user, script = world
    execution = make_execution(script, user, status="RUNNING")
    assert_error(
        client.patch(
            f"/api/v1/execution/{execution.id}", json={"status": "FINISHED"}, headers=auth(user)
        ),
        403,
    )


# Listings ------------------------------------------------------------------------------------


@pytest.fixture
def history(world, make_execution, app):
    """Executions of one user across three weeks, plus another user's."""
    admin, user, script = world
    now = utcnow()
    made = {
        "old_finished": make_execution(
            script,
            user,
            status="FINISHED",
            start_date=now - timedelta(days=20),
            end_date=now - timedelta(days=19),
        ),
        "recently_finished": make_execution(
            script,
            user,
            status="FINISHED",
            start_date=now - timedelta(days=20),
            end_date=now - timedelta(days=1),
        ),
        "running": make_execution(
            script, user, status="RUNNING", start_date=now - timedelta(days=3)
        ),
        "new_failed": make_execution(
            script,
            user,
            status="FAILED",
            start_date=now - timedelta(hours=5),
            end_date=now - timedelta(hours=4),
        ),
        "pending": make_execution(script, user, start_date=now - timedelta(minutes=1)),
        "someone_else": make_execution(script, admin, status="RUNNING", start_date=now),
    }
    return {name: str(execution.id) for name, execution in made.items()}


def ids(response) -> list[str]:
    return [execution["id"] for execution in data(response)]


def test_default_order_is_unfinished_first_then_newest(client, world, history, auth):
    _, user, _ = world
    assert ids(client.get("/api/v1/execution/user", headers=auth(user))) == [
        history["pending"],
        history["running"],
        history["new_failed"],
        history["recently_finished"],
        history["old_finished"],
    ]


def test_plugin_list_query(client, world, history, auth):
    """include=script&exclude=params,results&updated_at=<14 days ago>&page=1&per_page=100."""
    _, user, script = world
    since = (utcnow() - timedelta(days=14)).strftime("%Y-%m-%d")
    url = (
        f"/api/v1/execution/user?include=script&exclude=params%2Cresults&updated_at={since}"
        "&page=1&per_page=100"
    )
    body = client.get(url, headers={**auth(user), **PLUGIN}).get_json()
    assert body["total"] == 4 and body["page"] == 1 and body["per_page"] == 100
    assert history["old_finished"] not in {e["id"] for e in body["data"]}
    first = body["data"][0]
    assert "params" not in first and "results" not in first
    assert first["script"]["name"] == "productivity 2_3_2" and first["script"]["id"] == str(
        script.id
    )
    assert {"id", "status", "progress", "start_date", "end_date", "script_id", "user_id"} <= set(
        first
    )


def test_updated_at_matches_start_or_end(client, world, history, auth):
    _, user, _ = world
    since = (utcnow() - timedelta(days=2)).isoformat()
    assert set(
        ids(client.get(f"/api/v1/execution/user?updated_at={since}", headers=auth(user)))
    ) == {history["recently_finished"], history["new_failed"], history["pending"]}


def test_pages_until_a_short_page(client, world, history, auth):
    _, user, _ = world
    seen, page = [], 1
    while True:
        body = client.get(
            f"/api/v1/execution/user?page={page}&per_page=2", headers=auth(user)
        ).get_json()
        seen += [e["id"] for e in body["data"]]
        if len(body["data"]) < 2:
            break
        page += 1
    assert len(seen) == len(set(seen)) == 5 == body["total"]


def test_filters_and_sorting(client, world, history, auth):
    admin, user, script = world
    headers = auth(admin)
    assert set(ids(client.get("/api/v1/execution?status=running", headers=headers))) == {
        history["running"],
        history["someone_else"],
    }
    assert set(ids(client.get("/api/v1/execution?status=RUNNING,PENDING", headers=headers))) == {
        history["running"],
        history["someone_else"],
        history["pending"],
    }
    mine = client.get(f"/api/v1/execution?user_id={user.id}&sort=-start_date", headers=headers)
    assert len(ids(mine)) == 5 and ids(mine)[0] == history["pending"]
    by_script = client.get(f"/api/v1/execution?script_id={script.id}", headers=headers)
    assert len(ids(by_script)) == 6
    oldest = client.get("/api/v1/execution?sort=start_date asc,id", headers=headers)
    assert ids(oldest)[-1] == history["someone_else"]
    assert_error(client.get("/api/v1/execution?sort=params", headers=headers), 400)
    assert_error(client.get("/api/v1/execution?status=DONE", headers=headers), 400)


def test_users_see_only_their_own(client, world, history, auth, make_user):
    admin, user, _ = world
    assert history["someone_else"] not in ids(client.get("/api/v1/execution", headers=auth(user)))
    assert len(ids(client.get("/api/v1/execution", headers=auth(admin)))) == 6
    assert len(ids(client.get("/api/v1/execution/user", headers=auth(admin)))) == 1
    assert_error(client.get(f"/api/v1/execution?user_id={admin.id}", headers=auth(user)), 403)
    assert len(ids(client.get(f"/api/v1/execution?user_id={user.id}", headers=auth(user)))) == 5
    assert_error(
        client.get(f"/api/v1/execution/{history['someone_else']}", headers=auth(user)), 404
    )


def test_admin_ui_includes(client, world, history, auth):
    admin, user, _ = world
    include = "script_name,user_id,duration,user_name,user_email"
    url = f"/api/v1/execution?exclude=params,results&include={include}"
    rows = client.get(url + "&page=1&per_page=100", headers=auth(admin)).get_json()
    row = next(r for r in rows["data"] if r["id"] == history["new_failed"])
    assert row["script_name"] == "productivity 2_3_2" and row["user_email"] == user.email
    assert 3500 < row["duration"] < 3700


def test_unpaginated_lists_are_capped(client, world, history, auth, monkeypatch, app):
    _, user, _ = world
    monkeypatch.setitem(app.config, "MAX_UNPAGINATED_EXECUTIONS", 2)
    assert ids(client.get("/api/v1/execution/user", headers=auth(user))) == [
        history["pending"],
        history["running"],
    ]


def test_include_logs(client, world, make_execution, auth, app):
    _, user, script = world
    execution = make_execution(script, user, status="RUNNING")
    with app.app_context():
        db.session.add(ExecutionLog(execution_id=execution.id, text="hello", level="INFO"))
        db.session.commit()
    one = data(
        client.get(
            f"/api/v1/execution/{execution.id}?include=logs&exclude=params", headers=auth(user)
        )
    )
    assert [line["text"] for line in one["logs"]] == ["hello"] and "params" not in one
