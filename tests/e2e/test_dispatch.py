"""A redelivered dispatch never starts a second service, even after a crash mid-dispatch."""

import docker
import pytest

from gefapi.executors import get_backend
from gefapi.extensions import db
from gefapi.models import Execution, ScriptBuild
from gefapi.services import dispatch_service

pytestmark = pytest.mark.docker


@pytest.fixture
def execution(app, make_user, make_script, make_execution, environment_image, monkeypatch):
    monkeypatch.setitem(app.config, "EXECUTION_BACKEND", "swarm")
    monkeypatch.setitem(app.config, "EXECUTION_NETWORK", "host")
    app.extensions.pop("executor", None)
    user = make_user()
    script = make_script(user)
    with app.app_context():
        db.session.get(ScriptBuild, script.current_build_id).image = environment_image
        db.session.commit()
    execution = make_execution(script, user)
    yield execution
    services = docker.from_env(version="auto").services.list(
        filters={"name": dispatch_service.service_name(execution.id)}
    )
    for service in services:
        service.remove()
    app.extensions.pop("executor", None)


def services_named(name: str) -> list:
    return [
        s
        for s in docker.from_env(version="auto").services.list(filters={"name": name})
        if s.name == name
    ]


def test_redelivered_dispatch_starts_one_service(app, execution):
    name = dispatch_service.service_name(execution.id)
    with app.app_context():
        # A worker started the service, then died before recording it.
        crashed_handle = get_backend().start(
            dispatch_service.run_spec(db.session.get(Execution, execution.id))
        )
        db.session.rollback()
        dispatch_service.dispatch(str(execution.id))
        dispatch_service.dispatch(str(execution.id))
        stored = db.session.get(Execution, execution.id)
        assert stored.status == "READY"
        assert stored.backend_handle == crashed_handle
    assert [s.id for s in services_named(name)] == [crashed_handle]
