import re
from urllib.parse import quote

import pytest

from gefapi.extensions import db
from gefapi.models import Role, User
from tests.conftest import PASSWORD
from tests.helpers import DATE_RE, assert_error, data

NEW_PASSWORD = "a brand new secret"


def token_from(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"token=([\w-]+)", body).group(1)


def password_from(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"[Pp]assword[^:]*: (\w+)", body).group(1)


def can_login(client, email, password) -> bool:
    return client.post("/auth", json={"email": email, "password": password}).status_code == 200


# Registration ----------------------------------------------------------------------------


def test_register_with_password(client, mailbox):
    user = data(
        client.post("/api/v1/user", json={"email": "A@x.org", "name": "A", "password": PASSWORD})
    )
    assert user["email"] == "a@x.org" and user["role"] == "USER"
    assert "password" not in user and "password_hash" not in user
    assert DATE_RE.match(user["created_at"])
    assert can_login(client, "a@x.org", PASSWORD)
    assert mailbox.messages == []


def test_register_without_password_emails_a_set_password_link(client, mailbox):
    body = {"email": "new@x.org", "name": "New", "country": "Kenya", "institution": "CI"}
    user = data(client.post("/api/v1/user?legacy=false", json=body))
    assert user["email_notifications_enabled"] is True
    [message] = mailbox.to("new@x.org")
    token = token_from(message)
    assert not can_login(client, "new@x.org", "")
    data(
        client.post("/api/v1/user/reset-password", json={"token": token, "password": NEW_PASSWORD})
    )
    assert can_login(client, "new@x.org", NEW_PASSWORD)
    # Single use.
    again = client.post(
        "/api/v1/user/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert_error(again, 404, "token_not_found")


def test_legacy_register_emails_a_generated_password(client, mailbox):
    data(client.post("/api/v1/user", json={"email": "old@x.org", "name": "Old"}))
    [message] = mailbox.to("old@x.org")
    assert can_login(client, "old@x.org", password_from(message))


def test_duplicate_email_is_409_case_insensitively(client, make_user):
    make_user(email="taken@x.org")
    response = client.post(
        "/api/v1/user", json={"email": "TAKEN@x.org", "name": "B", "password": PASSWORD}
    )
    assert_error(response, 409, "email_taken")


def test_weak_password_is_rejected_and_creates_nothing(client, app):
    response = client.post(
        "/api/v1/user", json={"email": "w@x.org", "name": "W", "password": "short"}
    )
    body = assert_error(response, 400)
    assert "password" in body["errors"]
    with app.app_context():
        assert db.session.scalar(db.select(User).filter_by(email="w@x.org")) is None


def test_anonymous_cannot_register_an_admin(client, app):
    body = {"email": "boss@x.org", "name": "B", "password": PASSWORD, "role": "ADMIN"}
    assert_error(client.post("/api/v1/user", json=body), 403)
    with app.app_context():
        assert db.session.scalar(db.select(User).filter_by(email="boss@x.org")) is None


def test_admin_may_register_admins_but_not_superadmins(client, make_user, auth):
    admin = make_user(Role.ADMIN)
    body = {"email": "a2@x.org", "name": "A2", "password": PASSWORD, "role": "ADMIN"}
    assert data(client.post("/api/v1/user", json=body, headers=auth(admin)))["role"] == "ADMIN"
    body = {"email": "s2@x.org", "name": "S2", "password": PASSWORD, "role": "SUPERADMIN"}
    assert_error(client.post("/api/v1/user", json=body, headers=auth(admin)), 403)


def test_deleted_account_frees_its_email(client, make_user, auth):
    user = make_user(email="gone@x.org")
    data(client.delete("/api/v1/user/me", json={}, headers=auth(user)))
    again = client.post(
        "/api/v1/user", json={"email": "gone@x.org", "name": "G", "password": PASSWORD}
    )
    assert data(again)["id"] != str(user.id)


# Me ----------------------------------------------------------------------------------------


def test_me_has_the_fields_clients_index(client, make_user, auth):
    user = make_user(country="Peru", institution="Uni")
    me = data(client.get("/api/v1/user/me", headers=auth(user)))
    for key in (
        "id",
        "email",
        "name",
        "country",
        "institution",
        "role",
        "role_title",
        "sector",
        "purpose_of_use",
        "gee_license_acknowledged",
        "email_notifications_enabled",
        "email_subscription_news",
        "is_plugin_user",
        "is_in_mailing_list",
        "deleted",
    ):
        assert key in me
    assert me["id"] == str(user.id)


def test_update_me(client, make_user, auth):
    user = make_user()
    body = {
        "email": user.email,
        "name": "Renamed",
        "institution": "Uni",
        "country": "Chile",
        "email_notifications_enabled": False,
        "sector": "academic",
    }
    me = data(client.patch("/api/v1/user/me", json=body, headers=auth(user)))
    assert (me["name"], me["sector"], me["email_notifications_enabled"]) == (
        "Renamed",
        "academic",
        False,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"role": "ADMIN"},
        {"max_concurrent_executions": 100},
        {"deleted": False},
        {"is_plugin_user": True},
        {"email": "other@x.org"},
        {"sector": "pirates"},
    ],
)
def test_update_me_refuses_privileged_or_invalid_fields(client, make_user, auth, app, body):
    user = make_user()
    assert_error(client.patch("/api/v1/user/me", json=body, headers=auth(user)), 400)
    with app.app_context():
        stored = db.session.get(User, user.id)
        assert (stored.role, stored.max_concurrent_executions, stored.email) == (
            "USER",
            None,
            user.email,
        )


def test_password_change_through_profile_needs_a_fresh_login(client, make_user, login):
    user = make_user()
    tokens = login(user)
    body = {"password": NEW_PASSWORD, "repeatPassword": NEW_PASSWORD}
    refreshed = client.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).get_json()
    stale = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert_error(
        client.patch("/api/v1/user/me", json=body, headers=stale), 401, "fresh_login_required"
    )
    fresh = {"Authorization": f"Bearer {tokens['access_token']}"}
    mismatch = {"password": NEW_PASSWORD, "repeatPassword": "something else"}
    assert_error(client.patch("/api/v1/user/me", json=mismatch, headers=fresh), 400)
    data(client.patch("/api/v1/user/me", json=body, headers=fresh))
    assert can_login(client, user.email, NEW_PASSWORD)
    assert not can_login(client, user.email, PASSWORD)
    # Old sessions are gone.
    assert_error(client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)


def test_change_password(client, make_user, login):
    user = make_user()
    tokens = login(user)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    wrong = {"old_password": "not it at all", "new_password": NEW_PASSWORD}
    assert_error(client.patch("/api/v1/user/me/change-password", json=wrong, headers=headers), 400)
    weak = {"old_password": PASSWORD, "new_password": "aaaaaaaaaaaa"}
    assert_error(client.patch("/api/v1/user/me/change-password", json=weak, headers=headers), 400)
    good = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    data(client.patch("/api/v1/user/me/change-password", json=good, headers=headers))
    assert can_login(client, user.email, NEW_PASSWORD)
    assert_error(client.get("/api/v1/user/me", headers=headers), 401)
    assert_error(client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)


def test_delete_me_is_soft(client, make_user, login, app):
    user = make_user()
    tokens = login(user)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    deleted = data(client.delete("/api/v1/user/me", json={}, headers=headers))
    assert deleted["deleted"] is True and deleted["id"] == str(user.id)
    assert not can_login(client, user.email, PASSWORD)
    assert_error(client.get("/api/v1/user/me", headers=headers), 401)
    assert_error(client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    with app.app_context():
        assert db.session.get(User, user.id).deleted


# Recovery ----------------------------------------------------------------------------------


def test_recover_password_with_plus_in_email(client, make_user, mailbox):
    user = make_user(email="a+b@x.org")
    response = client.post(
        f"/api/v1/user/{quote(user.email, safe='')}/recover-password?legacy=false", json={}
    )
    message = data(response)["message"]
    [mail] = mailbox.to("a+b@x.org")
    data(
        client.post(
            "/api/v1/user/reset-password",
            json={"token": token_from(mail), "password": NEW_PASSWORD},
        )
    )
    assert can_login(client, user.email, NEW_PASSWORD)
    unknown = client.post("/api/v1/user/nobody%40x.org/recover-password?legacy=false", json={})
    assert data(unknown)["message"] == message
    assert mailbox.to("nobody@x.org") == []


def test_legacy_recovery_emails_a_temporary_password_without_locking_out(
    client, make_user, mailbox
):
    user = make_user()
    data(client.post(f"/api/v1/user/{user.email}/recover-password", json={}))
    temporary = password_from(mailbox.to(user.email)[0])
    assert can_login(client, user.email, PASSWORD), (
        "a stranger's request must not lock the owner out"
    )
    assert can_login(client, user.email, temporary)
    assert can_login(client, user.email, temporary), "it became the account password"


def test_reset_password_rejects_bad_tokens_and_weak_passwords(client, make_user, mailbox):
    user = make_user()
    client.post(f"/api/v1/user/{user.email}/recover-password?legacy=false", json={})
    token = token_from(mailbox.to(user.email)[0])
    weak = client.post("/api/v1/user/reset-password", json={"token": token, "password": "weak"})
    assert_error(weak, 400)
    bogus = client.post(
        "/api/v1/user/reset-password", json={"token": "nope", "password": NEW_PASSWORD}
    )
    assert_error(bogus, 404)
    assert can_login(client, user.email, PASSWORD)


def test_a_newer_reset_link_invalidates_the_older(client, make_user, mailbox):
    user = make_user()
    for _ in range(2):
        client.post(f"/api/v1/user/{user.email}/recover-password?legacy=false", json={})
    first, second = (token_from(m) for m in mailbox.to(user.email))
    assert_error(
        client.post("/api/v1/user/reset-password", json={"token": first, "password": NEW_PASSWORD}),
        404,
    )
    data(
        client.post("/api/v1/user/reset-password", json={"token": second, "password": NEW_PASSWORD})
    )


# Administration ----------------------------------------------------------------------------


def test_admin_reads_users_by_id_email_and_encoded_email(client, make_user, auth):
    admin, user = make_user(Role.ADMIN), make_user(email="c+d@x.org")
    for ref in (str(user.id), "c+d@x.org", quote("c+d@x.org", safe="")):
        assert data(client.get(f"/api/v1/user/{ref}", headers=auth(admin)))["id"] == str(user.id)


def test_admin_updates_a_user_profile_but_not_roles(client, make_user, auth, app):
    admin, user = make_user(Role.ADMIN), make_user()
    updated = client.patch(
        f"/api/v1/user/{user.id}",
        json={"name": "Fixed", "max_concurrent_executions": 3},
        headers=auth(admin),
    )
    assert data(updated)["name"] == "Fixed" and data(updated)["max_concurrent_executions"] == 3
    assert_error(
        client.patch(f"/api/v1/user/{user.id}", json={"role": "ADMIN"}, headers=auth(admin)), 403
    )
    with app.app_context():
        assert db.session.get(User, user.id).role == "USER"


def test_superadmin_changes_roles(client, make_user, auth):
    root, user = make_user(Role.SUPERADMIN), make_user()
    promoted = client.patch(f"/api/v1/user/{user.id}", json={"role": "ADMIN"}, headers=auth(root))
    assert data(promoted)["role"] == "ADMIN"
    assert_error(
        client.patch(f"/api/v1/user/{user.id}", json={"role": "KING"}, headers=auth(root)), 400
    )


def test_superadmin_deletes_accounts(client, make_user, auth):
    root, user = make_user(Role.SUPERADMIN), make_user()
    assert data(client.delete(f"/api/v1/user/{user.id}", headers=auth(root)))["deleted"] is True
    assert_error(client.get(f"/api/v1/user/{user.id}", headers=auth(root)), 404)


def test_list_users_paginates_sorts_and_selects_fields(client, make_user, auth):
    admin = make_user(Role.ADMIN, email="zz-admin@x.org")
    for letter in "abc":
        make_user(email=f"{letter}@x.org")
    response = client.get(
        "/api/v1/user?page=1&per_page=2&sort=email&exclude=email,institution", headers=auth(admin)
    )
    body = response.get_json()
    assert (body["page"], body["per_page"], body["total"]) == (1, 2, 4)
    assert len(body["data"]) == 2 and "email" not in body["data"][0]
    everything = client.get("/api/v1/user?sort=-email", headers=auth(admin)).get_json()
    assert "page" not in everything
    assert [u["email"] for u in everything["data"]] == [
        "zz-admin@x.org",
        "c@x.org",
        "b@x.org",
        "a@x.org",
    ]
    same = client.get("/api/v1/user?sort=email desc", headers=auth(admin)).get_json()["data"]
    assert [u["email"] for u in same] == [u["email"] for u in everything["data"]]
    assert_error(client.get("/api/v1/user?sort=password_hash", headers=auth(admin)), 400)
    # Unknown include/exclude names are ignored (CONTRACT section 1), unlike unknown sort fields.
    assert data(client.get("/api/v1/user?exclude=nope", headers=auth(admin)))[0]["email"]


def test_dates_always_have_six_fractional_digits(client, make_user, auth, app):
    from datetime import datetime

    user = make_user()
    with app.app_context():
        db.session.get(User, user.id).created_at = datetime(2022, 12, 5, 12, 42, 27)
        db.session.commit()
    me = data(client.get("/api/v1/user/me", headers=auth(user)))
    assert me["created_at"] == "2022-12-05T12:42:27.000000"
