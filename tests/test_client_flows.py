"""The account flows of the real clients (reference/clients.md section 1), field for field."""

import base64
import gzip
import json
import re
import time
from urllib.parse import quote_plus

from tests.conftest import PASSWORD

PLUGIN_HEADERS = {
    "Content-Type": "application/json",
    "X-TE-Client": "type=qgis_plugin; version=2.3.2; qgis_version=3.34.0; os=Windows; lang=en",
}


def jwt_exp(token: str) -> int:
    """How the plugin reads a token: base64url-decode the payload, take `exp`."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


def plugin_call(client, method, path, token=None, body=None):
    """The plugin's transport: JSON content type always, {} for empty POST/DELETE, gzip > 1 KB."""
    headers = dict(PLUGIN_HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    raw = json.dumps(body if body is not None else {}).encode() if method != "GET" else None
    if raw and len(raw) > 1024:
        raw, headers["Content-Encoding"] = gzip.compress(raw), "gzip"
    response = client.open(path, method=method, data=raw, headers=headers)
    return response.status_code, response.get_json()


def test_plugin_account_flow(client, mailbox):
    # Register without password (?legacy=false): the response must be truthy JSON.
    profile = {
        "email": "p+lugin@x.org",
        "name": "Ana",
        "institution": "CI",
        "country": "Peru",
        "role_title": "Analyst",
        "sector": "ngo_conservation",
        "gee_license_acknowledged": True,
        "purpose_of_use": "reporting",
        "purpose_of_use_other": None,
        "email_notifications_enabled": True,
    }
    status, body = plugin_call(client, "POST", "/api/v1/user?legacy=false", body=profile)
    assert status == 200 and body
    # The set-password link arrives by email.
    link = mailbox.to("p+lugin@x.org")[0].get_body(preferencelist=("plain",)).get_content()
    token = re.search(r"token=([\w-]+)", link).group(1)
    status, _ = plugin_call(
        client, "POST", "/api/v1/user/reset-password", body={"token": token, "password": PASSWORD}
    )
    assert status == 200

    # Background login: access_token required, refresh_token optional; exp well in the future.
    status, tokens = plugin_call(
        client, "POST", "/auth", body={"email": "p+lugin@x.org", "password": PASSWORD}
    )
    assert status == 200 and tokens["access_token"] and tokens["refresh_token"]
    assert jwt_exp(tokens["access_token"]) > time.time() + 300

    # Refresh the way the plugin does.
    status, refreshed = plugin_call(
        client,
        "POST",
        "/auth/refresh?legacy=false",
        body={"refresh_token": tokens["refresh_token"]},
    )
    assert status == 200 and refreshed["access_token"]
    access = refreshed["access_token"]

    # /user/{quote_plus("me")}: data.id, data.email, data.name indexed with [].
    status, me = plugin_call(client, "GET", f"/api/v1/user/{quote_plus('me')}", token=access)
    user = me["data"]
    assert (user["email"], user["name"], user["institution"], user["country"]) == (
        "p+lugin@x.org",
        "Ana",
        "CI",
        "Peru",
    )
    for key in (
        "id",
        "role_title",
        "sector",
        "sector_other",
        "purpose_of_use",
        "purpose_of_use_other",
        "gender_identity",
        "gender_identity_description",
        "gee_license_acknowledged",
        "email_notifications_enabled",
        "email_subscription_news",
        "email_subscription_engagement",
        "email_subscription_system_updates",
    ):
        assert key in user
    assert user["is_plugin_user"] is True

    # Update profile: always email, name, institution, country, email_notifications_enabled.
    update = {
        "email": "p+lugin@x.org",
        "name": "Ana María",
        "institution": "CI",
        "country": "Chile",
        "email_notifications_enabled": False,
        "gender_identity": "woman",
        "purpose_of_use_other": "x" * 1100,
    }
    status, body = plugin_call(client, "PATCH", "/api/v1/user/me", token=access, body=update)
    assert status == 200 and body["data"]["country"] == "Chile"

    # Recover password with a "+" in the email, URL-encoded.
    status, body = plugin_call(
        client, "POST", f"/api/v1/user/{quote_plus('p+lugin@x.org')}/recover-password?legacy=false"
    )
    assert status == 200 and body

    # Delete the account: a truthy JSON body, not a 204.
    status, body = plugin_call(client, "DELETE", "/api/v1/user/me", token=access)
    assert status == 200 and body["data"]["deleted"] is True
    status, body = plugin_call(
        client, "POST", "/auth", body={"email": "p+lugin@x.org", "password": PASSWORD}
    )
    assert status == 401 and body["msg"] and body["detail"]


def test_legacy_plugin_registers_and_recovers_by_email(client, mailbox):
    """Plugin 1.x registers with no legacy flag and no password: a password is emailed."""
    body = {"email": "old@x.org", "name": "Old", "institution": "Uni", "country": "Kenya"}
    assert client.post("/api/v1/user", json=body).status_code == 200
    password = re.search(r"Password: (\w+)", mailbox.to("old@x.org")[0].get_content()).group(1)
    response = client.post("/auth", json={"email": "old@x.org", "password": password})
    assert response.status_code == 200
    # Errors are read as status/detail.
    bad = client.post("/auth", json={"email": "old@x.org", "password": "nope"}).get_json()
    assert bad["status"] == 401 and bad["detail"]


def test_cli_login_refresh_logout(client, make_user):
    """tecli: login reads access_token, refresh_token, expires_in; refresh; logout; logout-all."""
    user = make_user()
    login = client.post("/auth", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200
    tokens = login.get_json()
    assert tokens["expires_in"] > 300 and tokens["refresh_token"]
    refresh = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 200
    assert {"access_token", "refresh_token", "expires_in"} <= set(refresh.get_json())
    headers = {"Authorization": f"Bearer {refresh.get_json()['access_token']}"}
    # requests.post(url, headers=...) with no body.
    assert client.post("/auth/logout", headers=headers).status_code == 200
    second = client.post("/auth", json={"email": user.email, "password": PASSWORD}).get_json()
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.post("/auth/logout-all", headers=headers).status_code == 200
    assert (
        client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code
        == 401
    )


def test_original_web_ui_changes_password_with_repeat(client, make_user):
    user = make_user()
    token = client.post("/auth", json={"email": user.email, "password": PASSWORD}).get_json()[
        "access_token"
    ]
    me = client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {token}"}).get_json()[
        "data"
    ]
    assert me["id"] and me["role"] == "USER"
    body = {"password": "another long secret", "repeatPassword": "another long secret"}
    response = client.patch(
        "/api/v1/user/me", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    relogin = client.post("/auth", json={"email": user.email, "password": "another long secret"})
    assert relogin.status_code == 200


def test_cli_publish_tail_and_republish(client, make_user, login, app):
    """tecli publish: multipart `file` named like "<name>.tar.gz" (spaces kept), `data.id` written
    back, logs tailed with ?last-id=, then PATCH with the id from configuration.json."""
    from gefapi.extensions import db
    from gefapi.models import Role, ScriptLog
    from tests.archives import script_archive, upload

    admin = make_user(Role.ADMIN)
    headers = {"Authorization": f"Bearer {login(admin)['access_token']}"}
    archive = script_archive({"name": "download-data 2_3_2"})
    response = client.post(
        "/api/v1/script",
        data=upload(archive, "download-data 2_3_2.tar.gz"),
        headers=headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    script_id = response.get_json()["data"]["id"]
    info = client.get(f"/api/v1/script/{script_id}?include=logs", headers=headers).get_json()
    assert info["data"]["logs"] == [] and info["data"]["status"] == "BUILDING"
    with app.app_context():
        db.session.add(ScriptLog(script_id=script_id, text="Step 1/5 : FROM environment"))
        db.session.commit()
    lines = client.get(f"/api/v1/script/{script_id}/log?last-id=0", headers=headers).get_json()
    assert [line["text"] for line in lines["data"]] == ["Step 1/5 : FROM environment"]
    last = lines["data"][-1]["id"]
    assert (
        client.get(f"/api/v1/script/{script_id}/log?last-id={last}", headers=headers).get_json()[
            "data"
        ]
        == []
    )
    again = client.patch(
        f"/api/v1/script/{script_id}",
        data=upload(script_archive({"name": "download-data 2_3_2", "id": script_id}), "x.tar.gz"),
        headers=headers,
        content_type="multipart/form-data",
    )
    assert again.status_code == 200 and again.get_json()["data"]["id"] == script_id
