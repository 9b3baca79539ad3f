"""Earth Engine credentials per user (clients.md A.2 #17-#21): the OAuth flow against a local
stand-in for Google, service-account keys, the cloud project, the test call, the admin
mirrors, what executions receive, encryption at rest and key rotation."""

import base64
import json
import logging
import secrets
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, text

from gefapi.extensions import db
from gefapi.models import Execution, GeeCredential, GeeOAuthState, Role
from gefapi.services import credentials_service, dispatch_service
from tests.conftest import free_port
from tests.helpers import assert_error, data, database_state, enable_every_logger
from tests.oauth_standin import Provider

CLIENT_ID = "gefapi-test.apps.example.org"
CLIENT_SECRET = "GOCSPX-" + secrets.token_urlsafe(18)
REDIRECT_URI = "http://localhost/api/v1/gee-oauth/callback"
ME = "/api/v1/user/me"
GEE_KEYS = {
    "GEE_OAUTH_ACCESS_TOKEN",
    "GEE_OAUTH_REFRESH_TOKEN",
    "GOOGLE_OAUTH_CLIENT_ID",
    "GOOGLE_OAUTH_CLIENT_SECRET",
    "GOOGLE_OAUTH_TOKEN_URI",
    "GEE_CLOUD_PROJECT",
    "EE_SERVICE_ACCOUNT_JSON",
}


@pytest.fixture(scope="module")
def provider():
    standin = Provider(CLIENT_ID, CLIENT_SECRET).start()
    standin.projects.add("my-ee-project")
    yield standin
    standin.stop()


@pytest.fixture
def gee(app, monkeypatch, provider):
    for key, value in {
        "GOOGLE_OAUTH_CLIENT_ID": CLIENT_ID,
        "GOOGLE_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "GOOGLE_OAUTH_AUTHORIZATION_URI": provider.authorize_url,
        "GOOGLE_OAUTH_TOKEN_URI": provider.token_url,
        "GOOGLE_OAUTH_REDIRECT_URI": REDIRECT_URI,
        "GEE_CREDENTIALS_TEST_URL": provider.test_url,
        "GEE_HTTP_TIMEOUT_SECONDS": 5,
    }.items():
        monkeypatch.setitem(app.config, key, value)
    provider.give_refresh_token = True
    return provider


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def headers(auth, user):
    return auth(user)


def start(client, headers) -> dict:
    started = data(client.post(f"{ME}/gee-oauth/initiate", json={}, headers=headers))
    assert set(started) == {"auth_url", "state"}
    return started


def grant(auth_url: str) -> dict:
    """The browser's visit to the provider: consent, then the redirect back to us."""
    answer = requests.get(auth_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def connect(client, headers) -> dict:
    started = start(client, headers)
    back = grant(started["auth_url"])
    assert back["state"] == started["state"]
    return data(client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers))


def env_for(app, execution) -> dict:
    with app.app_context():
        return dispatch_service.runtime_env(db.session.get(Execution, execution.id))


def service_account_key(email="runner@my-ee-project.iam.gserviceaccount.com"):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key = {
        "type": "service_account",
        "project_id": "my-ee-project",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return key, private.public_key()


# The plugin's flow ---------------------------------------------------------------------------


def test_oauth_flow_end_to_end(app, client, gee, user, headers, make_script, make_execution, auth):
    status = data(client.get(f"{ME}/gee-credentials", headers=headers))
    assert status["has_credentials"] is False and status["credentials_type"] is None
    assert status["cloud_project"] is None

    started = start(client, headers)
    query = parse_qs(urlsplit(started["auth_url"]).query)
    assert started["auth_url"].startswith(gee.authorize_url + "?")
    assert query["client_id"] == [CLIENT_ID] and query["redirect_uri"] == [REDIRECT_URI]
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [started["state"]]
    assert query["access_type"] == ["offline"] and "earthengine" in query["scope"][0]

    back = grant(started["auth_url"])
    connected = data(client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers))
    tokens = gee.issued[-1]
    assert connected["has_credentials"] is True and connected["credentials_type"] == "oauth"

    # What the plugin reads (#17), and #20 the project.
    status = data(client.get(f"{ME}/gee-credentials", headers=headers))
    assert (status["has_credentials"], status["credentials_type"]) == (True, "oauth")
    project = client.patch(
        f"{ME}/gee-credentials/project", json={"cloud_project": "my-ee-project"}, headers=headers
    )
    assert data(project)["cloud_project"] == "my-ee-project"
    assert data(client.get(f"{ME}/gee-credentials", headers=headers))["cloud_project"] == (
        "my-ee-project"
    )

    # An execution's environment carries the tokens, as gefcore's entrypoint reads them.
    execution = make_execution(make_script(user), user)
    env = env_for(app, execution)
    assert env["GEE_OAUTH_ACCESS_TOKEN"] == tokens["access_token"]
    assert env["GEE_OAUTH_REFRESH_TOKEN"] == tokens["refresh_token"]
    assert env["GOOGLE_OAUTH_CLIENT_ID"] == CLIENT_ID
    assert env["GOOGLE_OAUTH_CLIENT_SECRET"] == CLIENT_SECRET
    assert env["GOOGLE_OAUTH_TOKEN_URI"] == gee.token_url
    assert env["GEE_CLOUD_PROJECT"] == "my-ee-project"
    assert "EE_SERVICE_ACCOUNT_JSON" not in env and "SKIP_GEE_INIT" not in env

    # #21 the test call: a refreshed token, then the Earth Engine URL with it.
    tested = data(client.post(f"{ME}/gee-credentials/test", json={}, headers=headers))
    assert tested["valid"] is True and tested["cloud_project"] == "my-ee-project"
    assert gee.token_requests[-1]["grant_type"] == "refresh_token"

    # Credentials belong to the account, not to the session that connected them.
    other = auth(user)
    assert data(client.get(f"{ME}/gee-credentials", headers=other))["has_credentials"]

    # #19 delete.
    deleted = client.delete(f"{ME}/gee-credentials", headers=headers)
    assert data(deleted)["has_credentials"] is False
    status = data(client.get(f"{ME}/gee-credentials", headers=headers))
    assert status == {**status, "has_credentials": False, "credentials_type": None}
    assert not GEE_KEYS & set(env_for(app, execution))


def test_other_users_executions_do_not_get_the_credentials(
    app, client, gee, headers, make_user, make_script, make_execution
):
    connect(client, headers)
    other = make_user()
    execution = make_execution(make_script(other), other)
    assert not GEE_KEYS & set(env_for(app, execution))


def test_the_browser_redirect_completes_the_flow(client, gee, headers):
    back = grant(start(client, headers)["auth_url"])
    page = client.get(f"/api/v1/gee-oauth/callback?code={back['code']}&state={back['state']}")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "connected" in page.get_data(as_text=True)
    status = data(client.get(f"{ME}/gee-credentials", headers=headers))
    assert status["credentials_type"] == "oauth"


def test_anonymous_callback_resolves_the_user_by_state(client, gee, headers):
    back = grant(start(client, headers)["auth_url"])
    answer = data(client.post("/api/v1/gee-oauth/callback", json=back))
    assert answer["credentials_type"] == "oauth"
    assert data(client.get(f"{ME}/gee-credentials", headers=headers))["has_credentials"]


def test_access_denied_spends_the_state(app, client, gee, headers):
    started = start(client, headers)
    page = client.get(f"/api/v1/gee-oauth/callback?error=access_denied&state={started['state']}")
    assert page.status_code == 400 and "access_denied" in page.get_data(as_text=True)
    back = grant(started["auth_url"])
    refused = client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers)
    assert_error(refused, 400, "invalid_oauth_state")


# States -------------------------------------------------------------------------------------


def test_a_replayed_state_is_refused(app, client, gee, headers):
    started = start(client, headers)
    back = grant(started["auth_url"])
    data(client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers))
    again = grant(start(client, headers)["auth_url"])  # a valid new code, the old state
    before = database_state(app)
    replay = {"code": again["code"], "state": started["state"]}
    assert_error(
        client.post(f"{ME}/gee-oauth/callback", json=replay, headers=headers),
        400,
        "invalid_oauth_state",
    )
    assert_error(client.post("/api/v1/gee-oauth/callback", json=replay), 400, "invalid_oauth_state")
    assert database_state(app) == before


def test_a_forged_state_is_refused_and_changes_nothing(app, client, gee, headers):
    started = start(client, headers)
    back = grant(started["auth_url"])
    before = database_state(app)
    for state in (secrets.token_urlsafe(32), started["state"] + "x", "x"):
        forged = {"code": back["code"], "state": state}
        assert_error(
            client.post(f"{ME}/gee-oauth/callback", json=forged, headers=headers),
            400,
            "invalid_oauth_state",
        )
        assert_error(
            client.post("/api/v1/gee-oauth/callback", json=forged), 400, "invalid_oauth_state"
        )
        page = client.get(f"/api/v1/gee-oauth/callback?code={back['code']}&state={state}")
        assert_error(page, 400, "invalid_oauth_state")
    assert database_state(app) == before
    # The real state still works afterwards.
    assert data(client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers))[
        "has_credentials"
    ]


def test_another_users_state_is_refused_on_their_callback(
    app, client, gee, headers, auth, make_user
):
    back = grant(start(client, headers)["auth_url"])
    intruder = auth(make_user())
    before = database_state(app)
    refused = client.post(f"{ME}/gee-oauth/callback", json=back, headers=intruder)
    assert_error(refused, 400, "invalid_oauth_state")
    assert database_state(app) == before
    assert not data(client.get(f"{ME}/gee-credentials", headers=intruder))["has_credentials"]
    assert data(client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers))[
        "has_credentials"
    ]


def test_an_expired_state_is_refused(app, client, gee, headers, monkeypatch):
    monkeypatch.setitem(app.config, "GEE_OAUTH_STATE_SECONDS", -1)
    back = grant(start(client, headers)["auth_url"])
    refused = client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers)
    assert_error(refused, 400, "invalid_oauth_state")


def test_the_provider_checks_pkce_and_a_refused_code_spends_the_state(app, client, gee, headers):
    first = start(client, headers)
    second = start(client, headers)
    code = grant(first["auth_url"])["code"]  # issued for the first challenge
    mixed = {"code": code, "state": second["state"]}  # the second verifier
    refused = client.post(f"{ME}/gee-oauth/callback", json=mixed, headers=headers)
    body = assert_error(refused, 400, "oauth_exchange_failed")
    assert "invalid_grant" in body["detail"]
    assert not data(client.get(f"{ME}/gee-credentials", headers=headers))["has_credentials"]
    again = client.post(f"{ME}/gee-oauth/callback", json=mixed, headers=headers)
    assert_error(again, 400, "invalid_oauth_state")


def test_no_refresh_token_is_refused(client, gee, headers):
    gee.give_refresh_token = False
    back = grant(start(client, headers)["auth_url"])
    refused = client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers)
    assert_error(refused, 400, "oauth_exchange_failed")
    assert not data(client.get(f"{ME}/gee-credentials", headers=headers))["has_credentials"]


def test_an_unreachable_provider_is_503(app, client, gee, headers, monkeypatch):
    back = grant(start(client, headers)["auth_url"])
    monkeypatch.setitem(app.config, "GOOGLE_OAUTH_TOKEN_URI", f"http://127.0.0.1:{free_port()}/")
    answer = client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers)
    assert_error(answer, 503, "oauth_provider_unavailable")
    assert not data(client.get(f"{ME}/gee-credentials", headers=headers))["has_credentials"]


def test_oauth_not_configured_is_not_available(app, client, headers, monkeypatch):
    monkeypatch.setitem(app.config, "GOOGLE_OAUTH_CLIENT_ID", None)
    before = database_state(app)
    answer = client.post(f"{ME}/gee-oauth/initiate", json={}, headers=headers)
    assert_error(answer, 409, "gee_oauth_not_configured")
    assert database_state(app) == before


def test_pending_authorizations_are_bounded_per_user(app, client, gee, headers, user):
    for _ in range(8):
        start(client, headers)
    with app.app_context():
        pending = db.session.scalars(
            select(GeeOAuthState).where(GeeOAuthState.user_id == user.id)
        ).all()
    assert len(pending) == 5


# Service accounts ----------------------------------------------------------------------------


def test_service_account_upload_execution_env_and_test(
    app, client, gee, user, headers, make_script, make_execution
):
    key, public = service_account_key()
    gee.service_accounts[key["client_email"]] = public
    answer = client.post(
        f"{ME}/gee-service-account", json={"service_account_key": key}, headers=headers
    )
    status = data(answer)
    assert status["credentials_type"] == "service_account" and status["has_credentials"]
    assert status["google_email"] == key["client_email"]

    execution = make_execution(make_script(user), user)
    env = {"SKIP_GEE_INIT": "true", "EE_SERVICE_ACCOUNT_JSON": "c2VydmVyJ3M="}
    with app.app_context():
        credentials_service.apply_execution_env(env, db.session.get(Execution, execution.id))
    assert "SKIP_GEE_INIT" not in env  # the owner's own replace the server's
    assert json.loads(base64.b64decode(env["EE_SERVICE_ACCOUNT_JSON"])) == key
    assert env["GEE_CLOUD_PROJECT"] == "my-ee-project"
    assert json.loads(base64.b64decode(env_for(app, execution)["EE_SERVICE_ACCOUNT_JSON"])) == key

    tested = data(client.post(f"{ME}/gee-credentials/test", headers=headers))
    assert tested["valid"] is True and tested["credentials_type"] == "service_account"
    assert gee.token_requests[-1]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_service_account_as_a_json_string_replaces_oauth(client, gee, headers):
    connect(client, headers)
    key, _ = service_account_key()
    answer = client.post(
        f"{ME}/gee-service-account", json={"service_account_key": json.dumps(key)}, headers=headers
    )
    assert data(answer)["credentials_type"] == "service_account"


def test_test_call_reports_refused_credentials(app, client, gee, headers):
    key, _ = service_account_key("unknown@elsewhere.iam.gserviceaccount.com")  # provider lacks it
    client.post(f"{ME}/gee-service-account", json={"service_account_key": key}, headers=headers)
    answer = client.post(f"{ME}/gee-credentials/test", headers=headers)
    assert_error(answer, 400, "gee_credentials_invalid")


def test_test_call_reports_a_project_earth_engine_refuses(client, gee, headers):
    connect(client, headers)
    client.patch(
        f"{ME}/gee-credentials/project", json={"cloud_project": "not-registered"}, headers=headers
    )
    body = assert_error(
        client.post(f"{ME}/gee-credentials/test", headers=headers), 400, "gee_credentials_invalid"
    )
    assert "not-registered" in body["detail"]


def test_test_call_without_credentials_is_404(client, headers):
    assert_error(
        client.post(f"{ME}/gee-credentials/test", headers=headers), 404, "gee_credentials_not_found"
    )


# Bad input ------------------------------------------------------------------------------------


def _pem_of_ec_key() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def bad_service_accounts():
    key, _ = service_account_key()
    return [
        ({}, 400),
        ({"service_account_key": None}, 400),
        ({"service_account_key": 42}, 400),
        ({"service_account_key": ["a"]}, 400),
        ({"service_account_key": "{not json"}, 400),
        ({"service_account_key": {**key, "type": "authorized_user"}}, 400),
        ({"service_account_key": {k: v for k, v in key.items() if k != "private_key"}}, 400),
        ({"service_account_key": {**key, "private_key": "-----BEGIN PRIVATE KEY-----\nx"}}, 400),
        ({"service_account_key": {**key, "private_key": _pem_of_ec_key()}}, 400),
        ({"service_account_key": {**key, "client_email": "nobody"}}, 400),
        ({"service_account_key": {**key, "padding": "x" * 20_000}}, 413),
    ]


def test_bad_service_accounts_are_refused_and_change_nothing(app, client, headers):
    before = database_state(app)
    for body, status in bad_service_accounts():
        answer = client.post(f"{ME}/gee-service-account", json=body, headers=headers)
        error = assert_error(answer, status)
        if status == 400:
            assert "service_account_key" in error["errors"], error
    assert database_state(app) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"cloud_project": ""},
        {"cloud_project": 12},
        {"cloud_project": ["my-ee-project"]},
        {"cloud_project": "Bad Project!"},
        {"cloud_project": "abc"},
        {"cloud_project": "a" * 40},
        {"cloud_project": "ends-with-hyphen-"},
    ],
)
def test_bad_projects_are_refused_and_change_nothing(app, client, headers, body):
    before = database_state(app)
    answer = client.patch(f"{ME}/gee-credentials/project", json=body, headers=headers)
    assert "cloud_project" in assert_error(answer, 400, "validation_error")["errors"]
    assert database_state(app) == before


def test_a_project_can_be_set_first_and_cleared(client, headers):
    set_first = client.patch(
        f"{ME}/gee-credentials/project", json={"cloud_project": "my-ee-project"}, headers=headers
    )
    assert data(set_first) == {
        **data(set_first),
        "has_credentials": False,
        "cloud_project": "my-ee-project",
    }
    cleared = client.patch(
        f"{ME}/gee-credentials/project", json={"cloud_project": None}, headers=headers
    )
    assert data(cleared)["cloud_project"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"state": "abc"},
        {"code": "abc"},
        {"code": 1, "state": "abc"},
        {"code": "abc", "state": None},
        {"code": "abc", "state": "x" * 600},
        {"code": "a\nb", "state": "abc"},
        {"code": "", "state": "abc"},
    ],
)
def test_bad_callbacks_are_refused_and_change_nothing(app, client, gee, headers, body):
    start(client, headers)
    before = database_state(app)
    for answer in (
        client.post(f"{ME}/gee-oauth/callback", json=body, headers=headers),
        client.post("/api/v1/gee-oauth/callback", json=body),
    ):
        assert_error(answer, 400, "validation_error")
    assert database_state(app) == before


def test_initiate_ignores_unknown_fields_and_needs_a_login(client, gee, headers):
    assert data(client.post(f"{ME}/gee-oauth/initiate", json={"x": 1}, headers=headers))["state"]
    for method, path in [
        ("get", f"{ME}/gee-credentials"),
        ("delete", f"{ME}/gee-credentials"),
        ("post", f"{ME}/gee-oauth/initiate"),
        ("post", f"{ME}/gee-oauth/callback"),
        ("post", f"{ME}/gee-service-account"),
        ("patch", f"{ME}/gee-credentials/project"),
        ("post", f"{ME}/gee-credentials/test"),
    ]:
        assert_error(getattr(client, method)(path, json={}), 401)


def test_wrong_content_type_is_415(client, headers):
    answer = client.post(
        f"{ME}/gee-service-account",
        data="service_account_key=x",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(answer, 415)


# Admin mirrors ---------------------------------------------------------------------------------


def test_admins_manage_a_users_credentials(client, gee, user, headers, auth, make_user):
    admin = auth(make_user(role=Role.ADMIN))
    base = f"/api/v1/user/{user.id}"
    assert data(client.get(f"{base}/gee-credentials", headers=admin))["has_credentials"] is False
    key, public = service_account_key()
    gee.service_accounts[key["client_email"]] = public
    set_by_admin = client.post(
        f"{base}/gee-service-account", json={"service_account_key": key}, headers=admin
    )
    assert data(set_by_admin)["credentials_type"] == "service_account"
    assert data(client.get(f"{ME}/gee-credentials", headers=headers))["has_credentials"]
    assert data(client.post(f"{base}/gee-credentials/test", headers=admin))["valid"]
    by_email = client.get(f"/api/v1/user/{user.email}/gee-credentials", headers=admin)
    assert data(by_email)["credentials_type"] == "service_account"
    assert data(client.delete(f"{base}/gee-credentials", headers=admin))["has_credentials"] is False
    assert not data(client.get(f"{ME}/gee-credentials", headers=headers))["has_credentials"]


def test_users_cannot_reach_each_others_credentials(app, client, user, auth, make_user):
    other = auth(make_user())
    key, _ = service_account_key()
    before = database_state(app)
    base = f"/api/v1/user/{user.id}"
    for answer in (
        client.get(f"{base}/gee-credentials", headers=other),
        client.delete(f"{base}/gee-credentials", headers=other),
        client.post(
            f"{base}/gee-service-account", json={"service_account_key": key}, headers=other
        ),
        client.post(f"{base}/gee-credentials/test", headers=other),
        client.patch(
            f"{base}/gee-credentials/project",
            json={"cloud_project": "my-ee-project"},
            headers=other,
        ),
        client.get(f"/api/v1/user/{uuid.uuid4()}/gee-credentials", headers=other),
    ):
        assert_error(answer, 404, "user_not_found")
    assert database_state(app) == before


# Secrets ---------------------------------------------------------------------------------------


def test_secrets_never_appear_in_answers_or_logs(
    app, client, gee, headers, user, caplog, monkeypatch, make_script, make_execution
):
    caplog.set_level(logging.DEBUG)
    enable_every_logger(monkeypatch)
    answers = []

    def keep(response):
        answers.append(response.get_data(as_text=True))
        return response

    started = start(client, headers)
    answers.append(json.dumps(started))
    back = grant(started["auth_url"])
    keep(client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers))
    keep(
        client.patch(
            f"{ME}/gee-credentials/project",
            json={"cloud_project": "my-ee-project"},
            headers=headers,
        )
    )
    keep(client.get(f"{ME}/gee-credentials", headers=headers))
    keep(client.get(f"{ME}?include=&exclude=", headers=headers))
    keep(client.post(f"{ME}/gee-credentials/test", headers=headers))
    keep(client.post(f"{ME}/gee-oauth/callback", json=back, headers=headers))  # replayed
    execution = make_execution(make_script(user), user)
    env_for(app, execution)
    key, public = service_account_key()
    gee.service_accounts[key["client_email"]] = public
    keep(
        client.post(f"{ME}/gee-service-account", json={"service_account_key": key}, headers=headers)
    )
    keep(
        client.post(
            f"{ME}/gee-service-account",
            json={"service_account_key": {**key, "type": "x"}},
            headers=headers,
        )
    )
    keep(client.post(f"{ME}/gee-credentials/test", headers=headers))
    keep(client.get("/swagger.json"))

    secret_values = [CLIENT_SECRET, *gee.verifiers, back["code"]]
    for issued in gee.issued:
        secret_values += [issued["access_token"], issued.get("refresh_token")]
    pem_body = "".join(key["private_key"].splitlines()[1:-1])
    secret_values += [key["private_key"], pem_body[:64], pem_body[-64:]]
    logs = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    stored = str(database_state(app))
    for value in filter(None, secret_values):
        for where, haystack in (
            ("answers", "\n".join(answers)),
            ("logs", logs),
            ("database", stored),
        ):
            assert value not in haystack, f"a secret appeared in the {where}"
    assert len(gee.verifiers) >= 1 and len(gee.issued) >= 2
    assert "Earth Engine credentials (oauth) set" in logs  # the capture sees the service's log


def test_secrets_are_encrypted_with_the_configured_keys_and_rotate(
    app, client, gee, headers, user, monkeypatch
):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setitem(app.config, "CREDENTIALS_ENCRYPTION_KEYS", old)
    connect(client, headers)
    tokens = gee.issued[-1]
    with app.app_context():
        stored = db.session.get(GeeCredential, user.id).secret_enc
    assert (
        json.loads(Fernet(old.encode()).decrypt(stored.encode()))["refresh_token"]
        == (tokens["refresh_token"])
    )

    monkeypatch.setitem(app.config, "CREDENTIALS_ENCRYPTION_KEYS", f"{new},{old}")
    with app.app_context():  # still readable before the re-encryption
        assert gee_env(user)["GEE_OAUTH_REFRESH_TOKEN"] == tokens["refresh_token"]
    result = app.test_cli_runner().invoke(args=["credentials", "reencrypt"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 1" in result.output

    monkeypatch.setitem(app.config, "CREDENTIALS_ENCRYPTION_KEYS", new)
    with app.app_context():
        assert gee_env(user)["GEE_OAUTH_REFRESH_TOKEN"] == tokens["refresh_token"]

    monkeypatch.setitem(app.config, "CREDENTIALS_ENCRYPTION_KEYS", old)  # the new key lost
    with app.app_context():
        assert gee_env(user) == {}
    assert_error(
        client.post(f"{ME}/gee-credentials/test", headers=headers), 409, "credentials_unreadable"
    )
    assert data(client.get(f"{ME}/gee-credentials", headers=headers))["has_credentials"]
    result = app.test_cli_runner().invoke(args=["credentials", "reencrypt"])
    assert result.exit_code != 0 and "1 stored credentials cannot be decrypted" in result.output


def gee_env(user) -> dict:
    from gefapi.services import gee_credentials_service

    return gee_credentials_service.execution_env(user.id)


def test_a_weak_encryption_key_is_refused(app, client, headers, monkeypatch):
    monkeypatch.setitem(app.config, "CREDENTIALS_ENCRYPTION_KEYS", "short")
    from gefapi import crypto

    with pytest.raises(RuntimeError, match="CREDENTIALS_ENCRYPTION_KEYS"):
        crypto.box(app.config)


def test_deleting_the_account_removes_the_credentials_rows(app, client, gee, headers, user):
    connect(client, headers)
    with app.app_context():
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
        assert db.session.get(GeeCredential, user.id) is None


def test_deleting_the_account_through_the_api_forgets_every_credential(
    app, client, gee, headers, user
):
    connect(client, headers)
    openeo = {"type": "basic", "username": "someone", "password": "openeo secret"}
    assert client.post(f"{ME}/openeo-credentials", json=openeo, headers=headers).status_code == 200
    start(client, headers)  # an authorization still pending
    assert client.delete(ME, headers=headers).status_code == 200
    with app.app_context():
        from gefapi.models import OpenEOCredential

        assert db.session.get(GeeCredential, user.id) is None
        assert db.session.get(OpenEOCredential, user.id) is None
        pending = select(GeeOAuthState).where(GeeOAuthState.user_id == user.id)
        assert db.session.scalars(pending).all() == []


# Documentation ---------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_endpoints(client):
    paths = client.get("/swagger.json").get_json()["paths"]
    expected = {
        "/api/v1/user/{user_ref}/gee-credentials": {"get", "delete"},
        "/api/v1/user/{user_ref}/gee-credentials/project": {"patch"},
        "/api/v1/user/{user_ref}/gee-service-account": {"post"},
        "/api/v1/user/{user_ref}/gee-credentials/test": {"post"},
        "/api/v1/user/me/gee-oauth/initiate": {"post"},
        "/api/v1/user/me/gee-oauth/callback": {"post"},
        "/api/v1/gee-oauth/callback": {"get", "post"},
        "/api/v1/user/{user_ref}/openeo-credentials": {"get", "post", "delete"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            assert "400" in paths[path][method]["responses"], (path, method)
            assert "200" in paths[path][method]["responses"], (path, method)
