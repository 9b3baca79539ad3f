"""openEO credentials per user: status, set, delete, encrypted at rest, passed to the owner's
executions as OPENEO_CREDENTIALS, never answered or logged."""

import json
import logging
import secrets

import pytest
from cryptography.fernet import Fernet

from gefapi.extensions import db
from gefapi.models import Execution, OpenEOCredential, Role
from gefapi.services import dispatch_service
from tests.helpers import DATE_RE, assert_error, data, database_state, enable_every_logger

PATH = "/api/v1/user/me/openeo-credentials"


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def headers(auth, user):
    return auth(user)


def oidc() -> dict:
    return {
        "type": "oidc_refresh_token",
        "client_id": "openeo-platform-default-client",
        "client_secret": "cs-" + secrets.token_urlsafe(16),
        "refresh_token": "rt-" + secrets.token_urlsafe(24),
        "provider_id": "egi",
    }


def basic() -> dict:
    return {"type": "basic", "username": "someone@example.org", "password": secrets.token_hex(12)}


def env_for(app, execution) -> dict:
    with app.app_context():
        return dispatch_service.runtime_env(db.session.get(Execution, execution.id))


def test_status_set_replace_delete_and_executions(
    app, client, user, headers, make_script, make_execution
):
    status = data(client.get(PATH, headers=headers))
    assert status == {**status, "has_credentials": False, "credentials_type": None}
    execution = make_execution(make_script(user), user)
    assert "OPENEO_CREDENTIALS" not in env_for(app, execution)

    first = oidc()
    answer = data(client.post(PATH, json=first, headers=headers))
    assert (answer["has_credentials"], answer["credentials_type"]) == (True, "oidc_refresh_token")
    assert json.loads(env_for(app, execution)["OPENEO_CREDENTIALS"]) == first

    second = basic()
    answer = data(client.post(PATH, json={**second, "client_id": "ignored"}, headers=headers))
    assert answer["credentials_type"] == "basic"
    assert json.loads(env_for(app, execution)["OPENEO_CREDENTIALS"]) == second

    assert data(client.delete(PATH, headers=headers))["has_credentials"] is False
    assert data(client.get(PATH, headers=headers))["has_credentials"] is False
    assert "OPENEO_CREDENTIALS" not in env_for(app, execution)


def test_blank_optional_fields_and_unknown_fields_are_ignored(app, client, headers, user):
    body = {**oidc(), "client_secret": "", "provider_id": "", "extra": {"x": 1}}
    assert data(client.post(PATH, json=body, headers=headers))["has_credentials"]
    with app.app_context():
        from gefapi.services import openeo_credentials_service

        stored = json.loads(openeo_credentials_service.execution_env(user.id)["OPENEO_CREDENTIALS"])
    assert stored == {k: body[k] for k in ("type", "client_id", "refresh_token")}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"type": "token"},
        {"type": 1},
        {"type": "basic", "username": "a"},
        {"type": "basic", "password": "a"},
        {"type": "basic", "username": "", "password": "b"},
        {"type": "basic", "username": ["a"], "password": "b"},
        {"type": "oidc_refresh_token", "client_id": "a"},
        {"type": "oidc_refresh_token", "refresh_token": "a"},
        {"type": "oidc_refresh_token", "client_id": "a", "refresh_token": {"x": 1}},
        {"type": "basic", "username": "a\nb", "password": "b"},
        {"type": "basic", "username": "a", "password": "b" * 5000},
    ],
)
def test_bad_input_is_refused_and_changes_nothing(app, client, headers, body):
    data(client.post(PATH, json=oidc(), headers=headers))
    before = database_state(app)
    assert_error(client.post(PATH, json=body, headers=headers), 400, "validation_error")
    assert database_state(app) == before


def test_oversized_credentials_are_413(app, client, headers, monkeypatch):
    monkeypatch.setitem(app.config, "OPENEO_CREDENTIALS_MAX_BYTES", 200)
    before = database_state(app)
    body = {**oidc(), "refresh_token": "r" * 300}
    assert_error(client.post(PATH, json=body, headers=headers), 413)
    assert database_state(app) == before


def test_needs_a_login_and_users_cannot_reach_each_other(app, client, user, auth, make_user):
    for method in ("get", "post", "delete"):
        assert_error(getattr(client, method)(PATH, json={}), 401)
    other = auth(make_user())
    before = database_state(app)
    for method in ("get", "post", "delete"):
        answer = getattr(client, method)(
            f"/api/v1/user/{user.id}/openeo-credentials", json=basic(), headers=other
        )
        assert_error(answer, 404, "user_not_found")
    assert database_state(app) == before
    admin = auth(make_user(role=Role.ADMIN))
    answer = client.post(f"/api/v1/user/{user.id}/openeo-credentials", json=basic(), headers=admin)
    assert data(answer)["credentials_type"] == "basic"


def test_secrets_are_encrypted_never_answered_nor_logged(
    app, client, headers, user, caplog, monkeypatch, make_script, make_execution
):
    caplog.set_level(logging.DEBUG)
    enable_every_logger(monkeypatch)
    key = Fernet.generate_key().decode()
    monkeypatch.setitem(app.config, "CREDENTIALS_ENCRYPTION_KEYS", key)
    first, second = oidc(), basic()
    answers = [
        client.post(PATH, json=first, headers=headers),
        client.get(PATH, headers=headers),
        client.post(PATH, json={**second, "password": ""}, headers=headers),  # refused
        client.post(PATH, json=second, headers=headers),
        client.get(PATH, headers=headers),
    ]
    env_for(app, make_execution(make_script(user), user))
    with app.app_context():
        stored = db.session.get(OpenEOCredential, user.id).secret_enc
    assert json.loads(Fernet(key.encode()).decrypt(stored.encode())) == second
    text = "\n".join(answer.get_data(as_text=True) for answer in answers)
    logs = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    everything = str(database_state(app))
    assert "openEO credentials (basic) set" in logs  # the capture sees the service's log
    for value in (first["client_secret"], first["refresh_token"], second["password"]):
        assert value not in text and value not in logs and value not in everything


def test_status_times_are_in_the_contracts_form(client, headers):
    body = {"type": "basic", "username": "someone", "password": "openeo secret"}
    status = data(client.post("/api/v1/user/me/openeo-credentials", json=body, headers=headers))
    assert DATE_RE.match(status["created_at"]) and DATE_RE.match(status["updated_at"])
