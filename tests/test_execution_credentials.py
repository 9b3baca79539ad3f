"""An execution's credentials belong to the execution (issue 11, finding 1): the user's sessions
ending leaves them alone; they end when the execution ends, is cancelled, or loses its owner."""

import pytest

from gefapi.extensions import db
from gefapi.models import Execution, Role
from gefapi.models.execution import StatusLog
from gefapi.services import user_service
from tests.conftest import PASSWORD
from tests.helpers import assert_error, data

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def world(make_user, make_script, make_execution, runtime_headers, auth):
    owner = make_user()
    script = make_script(owner)
    execution = make_execution(script, owner, status="RUNNING", backend_handle="a-service")
    return {
        "owner": owner,
        "headers": auth(owner),
        "execution": execution,
        "runtime": runtime_headers(execution),
        "script": script,
    }


def reports(client, world) -> int:
    """What the runtime's next progress report answers."""
    path = f"/api/v1/execution/{world['execution'].id}"
    return client.patch(path, json={"progress": 40}, headers=world["runtime"]).status_code


def logout(client, world):
    client.post("/auth/logout", headers=world["headers"])


def logout_all(client, world):
    client.post("/auth/logout-all", headers=world["headers"])


def change_password(client, world):
    response = client.patch(
        "/api/v1/user/me/change-password",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=world["headers"],
    )
    assert response.status_code == 200, response.get_json()


def reset_password(client, world, app):
    with app.app_context():
        raw = user_service._new_one_time_token(
            db.session.get(type(world["owner"]), world["owner"].id), "PASSWORD_RESET"
        )
        db.session.commit()
    response = client.post(
        "/api/v1/user/reset-password", json={"token": raw, "password": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    "session_ends", [logout, logout_all, change_password, reset_password], ids=lambda f: f.__name__
)
def test_the_users_sessions_ending_leaves_the_running_execution_alone(
    client, app, world, session_ends
):
    assert reports(client, world) == 200
    if session_ends is reset_password:
        session_ends(client, world, app)
    else:
        session_ends(client, world)
    # The user's own token is gone where it should be ...
    if session_ends is not logout:
        assert client.get("/api/v1/user/me", headers=world["headers"]).status_code == 401
    # ... and the execution still reports, and can finish with its results.
    assert reports(client, world) == 200
    path = f"/api/v1/execution/{world['execution'].id}"
    body = {"results": {"area": 12}, "status": "FINISHED"}
    finished = data(client.patch(path, json=body, headers=world["runtime"]))
    assert (finished["status"], finished["results"]) == ("FINISHED", {"area": 12})


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "CANCELLED"])
def test_the_token_ends_with_the_execution(client, app, world, status):
    with app.app_context():
        db.session.get(Execution, world["execution"].id).status = status
        db.session.commit()
    execution_path = f"/api/v1/execution/{world['execution'].id}"
    calls = [
        client.patch(execution_path, json={"progress": 50}, headers=world["runtime"]),
        client.post(execution_path + "/log", json={"text": "late"}, headers=world["runtime"]),
        client.get(execution_path, headers=world["runtime"]),
    ]
    for response in calls:
        assert_error(response, 401, "token_revoked")
    with app.app_context():
        stored = db.session.get(Execution, world["execution"].id)
        assert stored.status == status and stored.progress == 0


def test_the_final_report_ends_the_token(client, world):
    path = f"/api/v1/execution/{world['execution'].id}"
    data(client.patch(path, json={"status": "FINISHED"}, headers=world["runtime"]))
    late = client.post(path + "/log", json={"text": "after the end"}, headers=world["runtime"])
    assert_error(late, 401, "token_revoked")


def test_a_deleted_owners_executions_are_cancelled_and_their_tokens_end(
    client, app, world, make_execution, make_user, auth, sent_tasks
):
    owner, script = world["owner"], world["script"]
    queued = make_execution(script, owner)  # PENDING, never dispatched
    other_user = make_user()
    others = make_execution(script, other_user, status="RUNNING", backend_handle="other")
    superadmin = make_user(role=Role.SUPERADMIN)
    response = client.delete(f"/api/v1/user/{owner.id}", headers=auth(superadmin))
    assert response.status_code == 200, response.get_json()

    assert reports(client, world) == 401
    with app.app_context():
        running = db.session.get(Execution, world["execution"].id)
        assert running.status == "CANCELLING"
        assert db.session.get(Execution, queued.id).status == "CANCELLED"
        assert db.session.get(Execution, others.id).status == "RUNNING"
        details = {
            row.execution_id: row.detail
            for row in db.session.query(StatusLog).filter(
                StatusLog.execution_id.in_([running.id, queued.id]),
                StatusLog.status_to.in_(["CANCELLING", "CANCELLED"]),
            )
        }
    assert details[running.id] == "Its owner's account was deleted"
    assert details[queued.id] == "Its owner's account was deleted, before dispatch"
    assert ("executions.stop", str(running.id)) in sent_tasks


def test_a_deleted_scripts_executions_are_cancelled(
    client, app, world, make_user, make_execution, auth, sent_tasks
):
    script = world["script"]
    another_users = make_execution(script, make_user(), status="READY", backend_handle="svc")
    admin = make_user(role=Role.ADMIN)
    response = client.delete(f"/api/v1/script/{script.id}", headers=auth(admin))
    assert response.status_code == 200, response.get_json()
    with app.app_context():
        for execution in (world["execution"], another_users):
            assert db.session.get(Execution, execution.id).status == "CANCELLING"
    assert {("executions.stop", str(e.id)) for e in (world["execution"], another_users)} <= set(
        sent_tasks
    )


def test_while_cancelling_the_runtime_may_still_report_its_completion(client, app, world):
    with app.app_context():
        db.session.get(Execution, world["execution"].id).status = "CANCELLING"
        db.session.commit()
    path = f"/api/v1/execution/{world['execution'].id}"
    body = {"results": {"area": 3}, "status": "FINISHED"}
    assert data(client.patch(path, json=body, headers=world["runtime"]))["status"] == "FINISHED"
