"""Real Trends.Earth scripts (CONTRACT section 10): environments checked at publish, the legacy
build layout, what a legacy container receives, and its per-execution login."""

import base64
import json

import pytest

from gefapi.executors.images import dockerfile
from gefapi.extensions import db
from gefapi.models import Execution, Role, ScriptBuild
from gefapi.services import dispatch_service, execution_login
from tests.archives import script_archive, upload
from tests.helpers import assert_error, data, database_state, stored_files

LEGACY = {"environment": "trends.earth-environment", "environment_version": "2.1.16"}


@pytest.fixture
def with_s3(app, monkeypatch):
    monkeypatch.setitem(app.config, "PARAMS_S3_BUCKET", "te-params")
    monkeypatch.setitem(app.config, "EXECUTION_BACKEND", "swarm")


def publish(client, headers, configuration):
    archive = script_archive({"name": "productivity 2_1_16", **configuration})
    return client.post(
        "/api/v1/script",
        data=upload(archive),
        headers=headers,
        content_type="multipart/form-data",
    )


def test_a_legacy_script_records_its_base_image_at_publish(
    client, app, make_user, auth, with_s3, storage_root
):
    script = data(publish(client, auth(make_user(Role.ADMIN)), LEGACY))
    with app.app_context():
        build = db.session.scalar(db.select(ScriptBuild).filter_by(script_id=script["id"]))
        assert build.legacy
        assert build.base_image == "conservationinternational/trends.earth-environment:2.1.16"


def test_a_script_without_environment_keeps_gefapis_own_image(
    client, app, make_user, auth, storage_root
):
    script = data(publish(client, auth(make_user(Role.ADMIN)), {}))
    with app.app_context():
        build = db.session.scalar(db.select(ScriptBuild).filter_by(script_id=script["id"]))
        assert (build.legacy, build.base_image) == (False, app.config["ENVIRONMENT_IMAGE"])


def test_the_image_template_is_a_setting(client, app, make_user, auth, with_s3, monkeypatch):
    monkeypatch.setitem(
        app.config, "LEGACY_ENVIRONMENT_IMAGE", "mirror.local/{environment}:v{environment_version}"
    )
    script = data(publish(client, auth(make_user(Role.ADMIN)), LEGACY))
    with app.app_context():
        build = db.session.scalar(db.select(ScriptBuild).filter_by(script_id=script["id"]))
    assert build.base_image == "mirror.local/trends.earth-environment:v2.1.16"


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"environment": "../x", "environment_version": "1"}, "environment"),
        ({"environment": "host:5000/x", "environment_version": "1"}, "environment"),
        (
            {"environment": "trends.earth-environment@sha256:abc", "environment_version": "1"},
            "environment",
        ),
        ({"environment": "Trends.Earth-Environment", "environment_version": "1"}, "environment"),
        ({"environment": "trends.earth environment", "environment_version": "1"}, "environment"),
        ({"environment": "some-other-environment", "environment_version": "1"}, "environment"),
        (
            {"environment": "trends.earth-environment", "environment_version": "1 2"},
            "environment_version",
        ),
        (
            {"environment": "trends.earth-environment", "environment_version": "1@sha256:ab"},
            "environment_version",
        ),
        (
            {"environment": "trends.earth-environment", "environment_version": "-1"},
            "environment_version",
        ),
        (
            {"environment": "trends.earth-environment", "environment_version": "x" * 129},
            "environment_version",
        ),
        ({"environment": "trends.earth-environment"}, "environment_version"),
        ({"environment_version": "2.1.16"}, "environment"),
    ],
)
def test_hostile_or_unknown_environments_are_refused_naming_the_field(
    client, app, make_user, auth, with_s3, storage_root, configuration, field
):
    headers = auth(make_user(Role.ADMIN))
    before = database_state(app)
    body = assert_error(publish(client, headers, configuration), 400, "invalid_configuration")
    assert field in body["errors"]
    assert database_state(app) == before
    assert stored_files(storage_root) == []


@pytest.mark.parametrize("missing", ["s3", "local backend"])
def test_a_legacy_script_that_could_not_run_here_is_refused_at_publish(
    client, app, make_user, auth, monkeypatch, storage_root, missing
):
    if missing == "local backend":
        monkeypatch.setitem(app.config, "PARAMS_S3_BUCKET", "te-params")
        monkeypatch.setitem(app.config, "EXECUTION_BACKEND", "local")
    headers = auth(make_user(Role.ADMIN))
    before = database_state(app)
    body = assert_error(publish(client, headers, LEGACY), 409, "legacy_environment_unavailable")
    assert ("S3" if missing == "s3" else "local") in body["detail"]
    assert database_state(app) == before
    assert stored_files(storage_root) == []


def test_the_legacy_build_puts_the_script_where_gefcore_imports_it():
    legacy = dockerfile(with_ca=False, legacy=True)
    assert "COPY src /project/gefcore/script" in legacy
    assert "COPY src /project/script" not in legacy
    assert "COPY src /project/script" in dockerfile(with_ca=False)
    assert "CMD" not in legacy and "ENTRYPOINT" not in legacy  # the image's own entrypoint


# The container's environment ----------------------------------------------------------


@pytest.fixture
def legacy_execution(app, make_user, make_script, make_execution):
    owner = make_user()
    script = make_script(owner, **LEGACY)
    with app.app_context():
        db.session.get(ScriptBuild, script.current_build_id).legacy = True
        db.session.commit()
    return make_execution(script, owner, params={"year": 2020}, status="READY")


def env_for(app, execution) -> dict:
    from unittest import mock

    with app.app_context(), mock.patch("gefapi.storage.params.write_params"):
        return dispatch_service.runtime_env(db.session.get(Execution, execution.id))


def test_a_legacy_container_gets_what_gefcore_needs_and_no_server_secret(
    app, legacy_execution, monkeypatch
):
    settings = {
        "PARAMS_S3_BUCKET": "te-params",
        "PARAMS_S3_PREFIX": "prod/params",
        "EXECUTION_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "EXECUTION_AWS_REGION": "us-east-1",
        "EXECUTION_AWS_ACCESS_KEY_ID": "read-only-key",
        "EXECUTION_AWS_SECRET_ACCESS_KEY": "read-only-secret",
        "GOOGLE_PROJECT_ID": "te-project",
    }
    for key, value in settings.items():
        monkeypatch.setitem(app.config, key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the server's own secret")
    env = env_for(app, legacy_execution)
    assert env["API_USER"] == f"execution:{legacy_execution.id}"
    assert len(env["API_PASSWORD"]) >= 32
    assert (env["EXECUTION_ID"], env["ENV"]) == (str(legacy_execution.id), "prod")
    assert (env["PARAMS_S3_BUCKET"], env["PARAMS_S3_PREFIX"]) == ("te-params", "prod/params")
    assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9000"
    assert env["AWS_SECRET_ACCESS_KEY"] == "read-only-secret"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["GOOGLE_PROJECT_ID"] == "te-project"
    assert env["SKIP_GEE_INIT"] == "true" and "EE_SERVICE_ACCOUNT_JSON" not in env
    assert app.config["SECRET_KEY"] not in json.dumps(env)


@pytest.mark.parametrize("given_as", ["json", "base64"])
def test_the_servers_service_account_goes_as_base64(app, legacy_execution, monkeypatch, given_as):
    key = json.dumps({"type": "service_account", "client_email": "sa@te.iam"})
    value = key if given_as == "json" else base64.b64encode(key.encode()).decode()
    monkeypatch.setitem(app.config, "EE_SERVICE_ACCOUNT_JSON", value)
    env = env_for(app, legacy_execution)
    assert json.loads(base64.b64decode(env["EE_SERVICE_ACCOUNT_JSON"])) == json.loads(key)
    assert "SKIP_GEE_INIT" not in env


def test_gefapis_own_image_gets_no_login(app, make_user, make_script, make_execution):
    owner = make_user()
    execution = make_execution(make_script(owner), owner)
    env = env_for(app, execution)
    assert set(env) == {"EXECUTION_ID", "API_URL", "API_TOKEN", "ENV"}


# Per-execution logins -------------------------------------------------------------------


def log_in(client, user, password):
    return client.post("/auth", json={"email": user, "password": password})


def test_a_per_execution_login_opens_that_execution_only(
    client, app, legacy_execution, make_user, make_script, make_execution
):
    env = env_for(app, legacy_execution)
    tokens = log_in(client, env["API_USER"], env["API_PASSWORD"]).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    path = f"/api/v1/execution/{legacy_execution.id}"
    assert data(client.get(path, headers=headers))["params"] == {"year": 2020}
    assert client.patch(path, json={"status": "RUNNING"}, headers=headers).status_code == 200
    line = client.post(path + "/log", json={"text": "one line", "level": "INFO"}, headers=headers)
    assert line.status_code == 200
    other_user = make_user()
    other = make_execution(make_script(other_user), other_user)
    assert_error(client.get(f"/api/v1/execution/{other.id}", headers=headers), 404)
    for forbidden in ("/api/v1/user/me", "/api/v1/script", "/api/v1/user", "/api/v1/execution"):
        assert client.get(forbidden, headers=headers).status_code in (401, 403), forbidden
    refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.get_json()
    again = {"Authorization": f"Bearer {refreshed.get_json()['access_token']}"}
    assert client.get(path, headers=again).status_code == 200


@pytest.mark.parametrize(
    "forge",
    [
        lambda env: (env["API_USER"], env["API_PASSWORD"][:-1] + "0"),
        lambda env: (env["API_USER"], ""),
        lambda env: ("execution:not-a-uuid", env["API_PASSWORD"]),
        lambda env: ("execution:00000000-0000-0000-0000-000000000000", env["API_PASSWORD"]),
    ],
)
def test_a_guessed_per_execution_login_gets_401(client, app, legacy_execution, forge):
    user, password = forge(env_for(app, legacy_execution))
    response = log_in(client, user, password)
    assert response.status_code in (400, 401)
    if password:
        assert_error(response, 401)


def test_another_executions_secret_opens_nothing(
    client, app, legacy_execution, make_user, make_script, make_execution
):
    owner = make_user()
    other = make_execution(make_script(owner), owner, status="READY")
    mine = env_for(app, legacy_execution)
    assert_error(log_in(client, f"execution:{other.id}", mine["API_PASSWORD"]), 401)


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "CANCELLED"])
def test_a_per_execution_login_ends_with_the_execution(client, app, legacy_execution, status):
    env = env_for(app, legacy_execution)
    tokens = log_in(client, env["API_USER"], env["API_PASSWORD"]).get_json()
    with app.app_context():
        db.session.get(Execution, legacy_execution.id).status = status
        db.session.commit()
    assert_error(log_in(client, env["API_USER"], env["API_PASSWORD"]), 401)
    refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(refreshed, 401)


def test_a_forged_refresh_token_gets_401(client, app, legacy_execution):
    forged = f"execution:{legacy_execution.id}:{'0' * 64}"
    assert_error(client.post("/auth/refresh", json={"refresh_token": forged}), 401)


def test_the_secret_is_the_servers_to_derive(app, legacy_execution):
    with app.app_context():
        first = execution_login.secret(legacy_execution.id)
        app.config["SECRET_KEY"], original = "another key" * 4, app.config["SECRET_KEY"]
        try:
            assert execution_login.secret(legacy_execution.id) != first
        finally:
            app.config["SECRET_KEY"] = original


def test_many_containers_logging_in_from_one_address_are_not_throttled(
    client, app, make_user, make_script, make_execution, monkeypatch
):
    monkeypatch.setitem(app.config, "RATE_LIMIT_DEFAULT", "3 per minute")
    monkeypatch.setitem(app.config, "RATE_LIMIT_AUTH_FAILURES", "3 per minute")
    owner = make_user()
    script = make_script(owner)
    with app.app_context():
        db.session.get(ScriptBuild, script.current_build_id).legacy = True
        db.session.commit()
    runs = [make_execution(script, owner, status="READY") for _ in range(6)]
    for run in runs:
        env = env_for(app, run)
        assert log_in(client, env["API_USER"], env["API_PASSWORD"]).status_code == 200
    # A wrong per-execution secret is a failed login like any other.
    env = env_for(app, runs[0])
    wrong = [log_in(client, env["API_USER"], "0" * 64).status_code for _ in range(4)]
    assert wrong == [401, 401, 401, 429]
