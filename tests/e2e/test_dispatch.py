"""A redelivered dispatch never starts a second service, even after a crash mid-dispatch."""

import docker
import pytest

from gefapi.executors import get_backend
from gefapi.executors.images import build_environment_image
from gefapi.extensions import db
from gefapi.models import Execution, ScriptBuild
from gefapi.services import dispatch_service
from tests.e2e.conftest import base_image

pytestmark = pytest.mark.docker
IMAGE = "gefapi/environment:dispatch-test"


@pytest.fixture(scope="module")
def image():
    client = docker.from_env(version="auto")
    build_environment_image(
        client,
        tag=IMAGE,
        base_image=base_image(),
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        network="host",
        on_line=lambda line: None,
    )
    return IMAGE


@pytest.fixture
def execution(app, make_user, make_script, make_execution, image, monkeypatch):
    monkeypatch.setitem(app.config, "EXECUTION_BACKEND", "swarm")
    monkeypatch.setitem(app.config, "EXECUTION_NETWORK", "host")
    app.extensions.pop("executor", None)
    user = make_user()
    script = make_script(user)
    with app.app_context():
        db.session.get(ScriptBuild, script.current_build_id).image = image
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
