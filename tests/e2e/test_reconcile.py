"""The periodic passes on a real Swarm (issue 11, findings 8 and 10): a deleted owner's runs end
CANCELLED with nothing left on the engine; one bad execution never stops the others; each pass
is bounded, running executions come first, and two passes never overlap."""

import docker
import psycopg2
import pytest

from gefapi.extensions import db
from gefapi.models import Execution, ExecutionLog, Role, ScriptBuild
from gefapi.models.base import utcnow
from gefapi.services import dispatch_service

pytestmark = pytest.mark.docker


@pytest.fixture
def swarm(app, monkeypatch):
    monkeypatch.setitem(app.config, "EXECUTION_BACKEND", "swarm")
    monkeypatch.setitem(app.config, "EXECUTION_NETWORK", "host")
    app.extensions.pop("executor", None)
    yield
    app.extensions.pop("executor", None)
    engine = docker.from_env(version="auto")
    for service in engine.services.list(filters={"label": "gefapi.test-reconcile"}):
        service.remove()


@pytest.fixture
def owner_and_script(app, make_user, make_script, environment_image):
    owner = make_user()
    script = make_script(owner)
    with app.app_context():
        db.session.get(ScriptBuild, script.current_build_id).image = environment_image
        db.session.commit()
    return owner, script


def services_of(execution_id) -> list:
    name = dispatch_service.service_name(execution_id)
    engine = docker.from_env(version="auto")
    return [s for s in engine.services.list(filters={"name": name}) if s.name == name]


def stored(app, execution_id) -> Execution:
    with app.app_context():
        execution = db.session.get(Execution, execution_id)
        db.session.expunge(execution)
        return execution


def label_for_cleanup(app, monkeypatch):
    original = dispatch_service.run_spec

    def run_spec(execution):
        spec = original(execution)
        spec.labels["gefapi.test-reconcile"] = "1"
        return spec

    monkeypatch.setattr(dispatch_service, "run_spec", run_spec)


def test_a_deleted_owners_runs_end_cancelled_with_no_service_left(
    app, client, swarm, owner_and_script, make_execution, make_user, auth, monkeypatch
):
    label_for_cleanup(app, monkeypatch)
    owner, script = owner_and_script
    started = [make_execution(script, owner) for _ in range(2)]
    with app.app_context():
        for execution in started:
            dispatch_service.dispatch(str(execution.id))
    assert all(stored(app, e.id).status == "READY" and services_of(e.id) for e in started)
    queued = make_execution(script, owner, queued_at=utcnow())

    superadmin = make_user(role=Role.SUPERADMIN)
    assert client.delete(f"/api/v1/user/{owner.id}", headers=auth(superadmin)).status_code == 200
    with app.app_context():
        dispatch_service.reconcile()  # the stop messages are lost here: one pass must do

    for execution in [*started, queued]:
        after = stored(app, execution.id)
        assert (after.status, after.backend_handle) == ("CANCELLED", None)
        assert services_of(execution.id) == []
    with app.app_context():
        texts = db.session.scalars(
            db.select(ExecutionLog.text).where(ExecutionLog.execution_id == started[0].id)
        ).all()
    assert "Cancelled (Its owner's account was deleted): the container was stopped." in texts


def test_an_execution_that_cannot_start_fails_and_the_queue_goes_on(
    app, swarm, owner_and_script, make_execution, monkeypatch
):
    label_for_cleanup(app, monkeypatch)
    owner, script = owner_and_script
    first = make_execution(script, owner, queued_at=utcnow())
    second = make_execution(script, owner, queued_at=utcnow())
    with app.app_context():
        db.session.get(Execution, first.id).build_id = None  # its build row is gone
        db.session.commit()
        dispatch_service.dispatch_waiting()
    failed = stored(app, first.id)
    assert failed.status == "FAILED"
    with app.app_context():
        texts = db.session.scalars(
            db.select(ExecutionLog.text).where(ExecutionLog.execution_id == first.id)
        ).all()
    assert "The execution could not be started: the script's build no longer exists" in texts
    assert stored(app, second.id).status == "READY"
    assert services_of(second.id)


def test_an_unexpected_error_on_one_execution_leaves_the_others_reconciled(
    app, swarm, make_user, make_script, make_execution, monkeypatch
):
    owner = make_user()
    script = make_script(owner)
    broken = make_execution(script, owner, status="RUNNING", backend_handle="broken-handle")
    vanished = make_execution(script, owner, status="RUNNING", backend_handle="no-such-service")
    with app.app_context():
        backend = dispatch_service.get_backend()
        real_status = backend.status

        def status(handle):
            if handle == "broken-handle":
                raise RuntimeError("an engine answer nobody expected")
            return real_status(handle)

        monkeypatch.setattr(backend, "status", status)
        dispatch_service.reconcile()
    assert stored(app, broken.id).status == "RUNNING"  # tried again on the next pass
    assert stored(app, vanished.id).status == "FAILED"


def test_a_pass_is_bounded_and_checks_running_executions_first(
    app, swarm, make_user, make_script, make_execution, monkeypatch
):
    monkeypatch.setitem(app.config, "RECONCILE_BATCH", 2)
    owner = make_user()
    script = make_script(owner)
    leftovers = [
        make_execution(script, owner, status="FINISHED", backend_handle=f"gone-{i}")
        for i in range(3)
    ]
    running = make_execution(script, owner, status="RUNNING", backend_handle="also-gone")
    with app.app_context():
        dispatch_service.reconcile()
    assert stored(app, running.id).status == "FAILED"
    cleaned = [stored(app, e.id).backend_handle is None for e in leftovers]
    assert sorted(cleaned) == [False, True, True]
    with app.app_context():
        dispatch_service.reconcile()
    assert all(stored(app, e.id).backend_handle is None for e in leftovers)


def test_a_pass_never_overlaps_a_running_one(
    app, database_url, swarm, make_user, make_script, make_execution
):
    owner = make_user()
    script = make_script(owner)
    vanished = make_execution(script, owner, status="RUNNING", backend_handle="no-such-service")
    other_worker = psycopg2.connect(database_url.replace("+psycopg2", "", 1))
    other_worker.autocommit = True
    with app.app_context():
        key = dispatch_service.lock_key("reconcile")
    try:
        other_worker.cursor().execute("SELECT pg_advisory_lock(%s)", (key,))
        with app.app_context():
            dispatch_service.reconcile()
        assert stored(app, vanished.id).status == "RUNNING"
    finally:
        other_worker.close()
    with app.app_context():
        dispatch_service.reconcile()
    assert stored(app, vanished.id).status == "FAILED"
