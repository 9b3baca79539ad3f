import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

from gefapi.extensions import db
from gefapi.models import FailedLogins, RefreshToken, User
from gefapi.models.base import utcnow
from gefapi.services.auth_service import email_hash
from tests.conftest import PASSWORD
from tests.helpers import assert_error


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_a_real_jwt_and_refresh_token(client, make_user, app):
    user = make_user()
    body = client.post("/auth", json={"email": user.email, "password": PASSWORD}).get_json()
    assert set(body) >= {"access_token", "refresh_token", "user_id", "expires_in"}
    assert body["expires_in"] == 3600
    assert body["user_id"] == str(user.id)
    claims = pyjwt.decode(body["access_token"], app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert claims["sub"] == str(user.id)
    assert isinstance(claims["exp"], int)
    assert claims["exp"] - claims["iat"] >= 3600


def test_login_is_case_insensitive_on_email(client, make_user):
    make_user(email="Mixed.Case@Example.org")
    response = client.post("/auth", json={"email": "mixed.case@example.ORG", "password": PASSWORD})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [{"email": "nobody@example.org", "password": PASSWORD}, {"password": "wrong password!"}],
)
def test_wrong_credentials_are_401(client, make_user, credentials):
    user = make_user()
    credentials.setdefault("email", user.email)
    body = assert_error(client.post("/auth", json=credentials), 401, "invalid_credentials")
    assert "access_token" not in body


def test_login_validation(client):
    assert_error(client.post("/auth", json={"email": "a@b.org"}), 400, "validation_error")
    assert_error(
        client.post(
            "/auth", data="email=a&password=b", content_type="application/x-www-form-urlencoded"
        ),
        415,
    )


def test_repeated_failures_lock_the_account_for_a_while(client, make_user, app):
    user = make_user()
    threshold = app.config["LOGIN_FAILURES_BEFORE_LOCK"]
    for _ in range(threshold):
        client.post("/auth", json={"email": user.email, "password": "wrong password"})
    body = assert_error(
        client.post("/auth", json={"email": user.email, "password": PASSWORD}),
        401,
        "account_locked",
    )
    assert isinstance(body["minutes_remaining"], int) and body["minutes_remaining"] >= 1
    assert body["requires_password_reset"] is False
    # The lock expires by itself.
    with app.app_context():
        db.session.get(FailedLogins, email_hash(user.email)).locked_until = utcnow()
        db.session.commit()
    assert client.post("/auth", json={"email": user.email, "password": PASSWORD}).status_code == 200


def test_lock_grows_but_stays_bounded(client, make_user, app):
    user = make_user()
    threshold = app.config["LOGIN_FAILURES_BEFORE_LOCK"]
    with app.app_context():
        db.session.add(
            FailedLogins(email_hash=email_hash(user.email), failures=threshold - 1, locks=20)
        )
        db.session.commit()
    client.post("/auth", json={"email": user.email, "password": "wrong password"})
    with app.app_context():
        locked_for = db.session.get(FailedLogins, email_hash(user.email)).locked_until - utcnow()
    assert locked_for <= timedelta(minutes=app.config["LOGIN_LOCK_MAX_MINUTES"])
    assert locked_for > timedelta(minutes=app.config["LOGIN_LOCK_MAX_MINUTES"] - 1)


def test_environment_account_is_never_locked(client, make_user, app):
    user = make_user(email=app.config["API_ENVIRONMENT_USER"])
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCK"] * 2):
        client.post("/auth", json={"email": user.email, "password": "wrong password"})
    assert client.post("/auth", json={"email": user.email, "password": PASSWORD}).status_code == 200


def test_refresh_keeps_the_refresh_token_valid(client, make_user, login):
    tokens = login(make_user())
    for _ in range(2):
        response = client.post(
            "/auth/refresh?legacy=false", json={"refresh_token": tokens["refresh_token"]}
        )
        body = response.get_json()
        assert response.status_code == 200
        assert body["refresh_token"] == tokens["refresh_token"]
        assert body["expires_in"] == 3600
        assert (
            client.get("/api/v1/user/me", headers=bearer(body["access_token"])).status_code == 200
        )


def test_refresh_with_rotation_revokes_the_old_token(client, make_user, login):
    tokens = login(make_user())
    rotated = client.post(
        "/auth/refresh?rotate=true", json={"refresh_token": tokens["refresh_token"]}
    )
    new_refresh = rotated.get_json()["refresh_token"]
    assert new_refresh != tokens["refresh_token"]
    old = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(old, 401, "invalid_token")
    assert client.post("/auth/refresh", json={"refresh_token": new_refresh}).status_code == 200


def test_refresh_tokens_are_stored_hashed(client, make_user, login, app):
    user = make_user()
    tokens = login(user)
    with app.app_context():
        stored = db.session.scalars(
            db.select(RefreshToken.token_hash).filter_by(user_id=user.id)
        ).all()
    assert stored and tokens["refresh_token"] not in stored


def test_expired_refresh_token_is_401(client, make_user, login, app):
    user = make_user()
    tokens = login(user)
    with app.app_context():
        db.session.execute(
            db.update(RefreshToken).filter_by(user_id=user.id).values(expires_at=utcnow())
        )
        db.session.commit()
    assert_error(client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)


def test_logout_revokes_the_access_token_and_its_refresh_token(client, make_user, login):
    """The plugin logs out without sending its refresh token: that one dies too."""
    tokens = login(make_user())
    assert (
        client.post("/auth/logout", json={}, headers=bearer(tokens["access_token"])).status_code
        == 200
    )
    assert_error(
        client.get("/api/v1/user/me", headers=bearer(tokens["access_token"])), 401, "token_revoked"
    )
    assert_error(client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)


def test_logout_revokes_a_given_refresh_token(client, make_user, login):
    user = make_user()
    first, second = login(user), login(user)
    client.post(
        "/auth/logout",
        json={"refresh_token": second["refresh_token"]},
        headers=bearer(first["access_token"]),
    )
    assert_error(client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401)


def test_logout_all_revokes_every_session(client, make_user, login):
    user = make_user()
    sessions = [login(user) for _ in range(3)]
    response = client.post("/auth/logout-all", headers=bearer(sessions[0]["access_token"]))
    assert response.status_code == 200
    for tokens in sessions:
        assert_error(
            client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
        )
        assert_error(client.get("/api/v1/user/me", headers=bearer(tokens["access_token"])), 401)
    time.sleep(0.01)
    fresh = login(user)
    assert client.get("/api/v1/user/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_revocation_survives_a_restart(client, make_user, login, app, second_app):
    """Revocations live in PostgreSQL, so a new API process refuses the token too."""
    tokens = login(make_user())
    client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    other = second_app.test_client()
    assert_error(
        other.get("/api/v1/user/me", headers=bearer(tokens["access_token"])), 401, "token_revoked"
    )


@pytest.mark.parametrize(
    ("header", "error_code"),
    [
        (None, "authorization_required"),
        ("Bearer", "invalid_token"),
        ("Bearer not-a-jwt", "invalid_token"),
        ("Basic dXNlcjpwYXNz", "authorization_required"),
    ],
)
def test_token_problems_are_401(client, header, error_code):
    headers = {"Authorization": header} if header else {}
    assert_error(client.get("/api/v1/user/me", headers=headers), 401, error_code)


def test_expired_wrong_signature_and_deleted_user_tokens_are_401(client, make_user, app):
    user = make_user()
    with app.app_context():
        expired = create_access_token(str(user.id), expires_delta=timedelta(seconds=-10))
        valid = create_access_token(str(user.id))
    forged = pyjwt.encode(pyjwt.decode(valid, options={"verify_signature": False}), "x" * 40)
    assert_error(client.get("/api/v1/user/me", headers=bearer(expired)), 401, "token_expired")
    assert_error(client.get("/api/v1/user/me", headers=bearer(forged)), 401, "invalid_token")
    with app.app_context():
        db.session.get(User, user.id).deleted = True
        db.session.commit()
    assert_error(client.get("/api/v1/user/me", headers=bearer(valid)), 401)


def test_a_token_is_verified_once_and_its_expiry_on_every_use(client, make_user, app, monkeypatch):
    user = make_user()
    with app.app_context():
        token = create_access_token(str(user.id), expires_delta=timedelta(seconds=3))
    expires = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    decodes = []
    real_decode = pyjwt.decode
    monkeypatch.setattr(pyjwt, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    assert client.get("/api/v1/user/me", headers=bearer(token)).status_code == 200
    verified = len(decodes)
    assert verified > 0
    assert client.get("/api/v1/user/me", headers=bearer(token)).status_code == 200
    assert len(decodes) == verified  # the second use was not decoded again
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    assert_error(client.get("/api/v1/user/me", headers=bearer(token)), 401, "token_expired")


def test_a_token_verified_by_one_app_is_not_trusted_by_an_app_with_another_key(make_user, app):
    from gefapi import create_app

    user = make_user()
    with app.app_context():
        token = create_access_token(str(user.id))
    assert app.test_client().get("/api/v1/user/me", headers=bearer(token)).status_code == 200
    other_key = dict(app.config, JWT_SECRET_KEY="another-key-" + "x" * 40)
    other = create_app(type("OtherKey", (), other_key))
    response = other.test_client().get("/api/v1/user/me", headers=bearer(token))
    assert_error(response, 401, "invalid_token")
    with other.app_context():
        db.engine.dispose()


def test_token_in_query_string_is_refused(client, make_user, login):
    tokens = login(make_user())
    assert_error(client.get(f"/api/v1/user/me?token={tokens['access_token']}"), 401)


def test_client_header_is_recorded_and_marks_plugin_users(client, make_user, app):
    from gefapi.models import UserClient

    user = make_user()
    header = "type=qgis_plugin; version=2.2.4; qgis_version=3.34.0; os=Windows; lang=en"
    client.post(
        "/auth", json={"email": user.email, "password": PASSWORD}, headers={"X-TE-Client": header}
    )
    with app.app_context():
        row = db.session.get(UserClient, (user.id, "qgis_plugin"))
        assert (row.version, row.qgis_version, row.os, row.lang) == (
            "2.2.4",
            "3.34.0",
            "Windows",
            "en",
        )
        assert db.session.get(User, user.id).is_plugin_user


def test_unknown_client_types_are_ignored(client, make_user, app):
    from gefapi.models import UserClient

    user = make_user()
    client.post(
        "/auth",
        json={"email": user.email, "password": PASSWORD},
        headers={"X-TE-Client": "type=evil"},
    )
    with app.app_context():
        assert db.session.scalars(db.select(UserClient).filter_by(user_id=user.id)).all() == []
        assert not db.session.get(User, user.id).is_plugin_user
