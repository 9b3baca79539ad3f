"""Tolerant input (CONTRACT section 1), as the real clients send it (reference/clients-2026.md
sections 4 and 5): unknown body fields ignored, `""` for an optional field is the field not
given, unknown include/exclude names ignored, a trailing slash answers as the path without it.
Known fields with a wrong type or value stay a 400 (tests/test_bad_input.py)."""

import re

import pytest

from gefapi.extensions import db
from gefapi.models import ExecutionStatus, Role, User
from tests.archives import script_archive, upload
from tests.conftest import PASSWORD
from tests.helpers import data

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def people(make_user):
    return {
        "super": make_user(Role.SUPERADMIN),
        "admin": make_user(Role.ADMIN),
        "user": make_user(
            institution="CI", role_title="Analyst", sector="academic", gender_identity="woman"
        ),
    }


def stored_user(app, email: str) -> User:
    with app.app_context():
        user = db.session.query(User).filter_by(email=email).one()
        db.session.expunge(user)
        return user


# The admin UIs' user bodies ----------------------------------------------------------------


def test_original_admin_ui_creates_a_user_without_a_name(app, client, auth, people, login):
    """The Angular UI posts its whole form: certainPassword, and no name."""
    body = {
        "email": "New.Person+ui@example.org",
        "password": NEW_PASSWORD,
        "certainPassword": NEW_PASSWORD,
        "role": "ADMIN",
    }
    user = data(client.post("/api/v1/user", json=body, headers=auth(people["super"])))
    assert (user["email"], user["name"], user["role"]) == (
        "new.person+ui@example.org",
        "New.Person+ui",
        "ADMIN",
    )
    assert "certainPassword" not in user
    login("new.person+ui@example.org", NEW_PASSWORD)


def test_registration_without_a_name_or_with_a_blank_one(client, mailbox):
    for email, extra in (("first@example.org", {}), ("second@example.org", {"name": ""})):
        user = data(client.post("/api/v1/user?legacy=false", json={"email": email, **extra}))
        assert user["name"] == email.split("@")[0]
        assert mailbox.to(email), "the set-password link"


def test_current_admin_ui_creates_a_user_with_is_active(app, client, auth, people, login):
    body = {
        "name": "Made By AU",
        "email": "au-made@example.org",
        "password": NEW_PASSWORD,
        "institution": "CI",
        "country": None,
        "role": "ADMIN",
        "is_active": True,
    }
    user = data(client.post("/api/v1/user", json=body, headers=auth(people["super"])))
    assert (user["name"], user["role"], user["country"]) == ("Made By AU", "ADMIN", None)
    assert "is_active" not in user
    login("au-made@example.org", NEW_PASSWORD)


def test_unknown_fields_never_raise_a_registrants_role(app, client):
    body = {"email": "climber@example.org", "name": "C", "is_admin": True, "password_hash": "x"}
    user = data(client.post("/api/v1/user?legacy=false", json=body))
    assert user["role"] == "USER"
    assert stored_user(app, "climber@example.org").password_hash is None


def test_current_admin_ui_profile_update_with_blank_selects(app, client, auth, people):
    """The profile page sends "" for every blank select and text box: left as they were."""
    user = people["user"]
    body = {
        "name": "Renamed",
        "institution": "CI",
        "country": "Kenya",
        "sector": None,
        "purpose_of_use": None,
        "gee_license_acknowledged": True,
        "role_title": "",
        "sector_other": "",
        "purpose_of_use_other": "",
        "gender_identity": "",
        "gender_identity_description": "",
    }
    me = data(client.patch("/api/v1/user/me", json=body, headers=auth(user)))
    assert (me["name"], me["country"], me["gee_license_acknowledged"]) == ("Renamed", "Kenya", True)
    assert (me["role_title"], me["gender_identity"]) == ("Analyst", "woman")
    assert me["sector"] is None  # null is a value: the select was cleared


def test_current_admin_ui_edits_a_user_with_blank_fields(app, client, auth, people):
    target = people["user"]
    body = {
        "name": "Edited",
        "email": target.email,
        "institution": "",
        "country": "",
        "role": "USER",
        "max_concurrent_executions": None,
    }
    edited = data(
        client.patch(f"/api/v1/user/{target.id}", json=body, headers=auth(people["super"]))
    )
    assert (edited["name"], edited["institution"], edited["role"]) == ("Edited", "CI", "USER")


def test_own_role_and_limits_stay_refused(client, auth, people):
    """Fields of the account that its owner may not set are refused, not silently dropped."""
    user = people["user"]
    for body in ({"name": "x", "role": "ADMIN"}, {"max_concurrent_executions": 50}):
        response = client.patch("/api/v1/user/me", json=body, headers=auth(user))
        assert response.status_code == 400
        assert set(response.get_json()["errors"]) <= {"role", "max_concurrent_executions"}
    assert data(client.get("/api/v1/user/me", headers=auth(user)))["role"] == "USER"


# Unknown fields on every JSON body ---------------------------------------------------------


@pytest.fixture
def world(app, people, make_script, make_execution, runtime_headers):
    script = make_script(people["user"], name="tolerant script")
    running = make_execution(script, people["user"], status=ExecutionStatus.RUNNING, params={})
    return script, running, runtime_headers(running)


def test_unknown_fields_are_ignored_everywhere(app, client, auth, login, people, world, mailbox):
    script, running, runtime = world
    user, admin = people["user"], people["super"]

    tokens = client.post("/auth", json={"email": user.email, "password": PASSWORD, "x": 1})
    assert tokens.status_code == 200
    refreshed = client.post(
        "/auth/refresh", json={"refresh_token": tokens.get_json()["refresh_token"], "user": "me"}
    )
    assert refreshed.status_code == 200
    headers = {"Authorization": f"Bearer {refreshed.get_json()['access_token']}"}
    assert (
        client.post("/auth/logout", json={"everything": True}, headers=headers).status_code == 200
    )

    body = {"favourite_colour": "green", "name": "Still Me"}
    assert (
        data(client.patch("/api/v1/user/me", json=body, headers=auth(user)))["name"] == "Still Me"
    )
    body = {"old_password": PASSWORD, "new_password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    data(client.patch("/api/v1/user/me/change-password", json=body, headers=auth(user)))
    client.post(f"/api/v1/user/{user.email}/recover-password?legacy=false", json={"why": "x"})
    message = mailbox.to(user.email)[-1].get_body(preferencelist=("plain",)).get_content()
    token = re.search(r"token=([\w-]+)", message).group(1)
    body = {"token": token, "password": PASSWORD, "email": "someone@else.org"}
    data(client.post("/api/v1/user/reset-password", json=body))
    login(user, PASSWORD)

    body = {"name": "Edited", "password_hash": "x"}
    data(client.patch(f"/api/v1/user/{user.id}", json=body, headers=auth(admin)))
    assert stored_user(app, user.email).password_hash != "x"
    body = {"subject": "Hello", "text": "t", "recipients": [user.email], "bcc": "spy@example.org"}
    assert data(client.post("/api/v1/email", json=body, headers=auth(admin)))["queued"] == 1
    assert not mailbox.to("spy@example.org")

    path = f"/api/v1/execution/{running.id}"
    patched = data(client.patch(path, json={"progress": 5, "colour": "red"}, headers=runtime))
    assert patched["progress"] == 5
    line = {"text": "hello", "level": "INFO", "colour": "red"}
    assert data(client.post(f"{path}/log", json=line, headers=runtime))["text"] == "hello"
    batch = [{"text": "a", "extra": 1}, {"text": "b", "level": ""}]
    assert [x["level"] for x in data(client.post(f"{path}/log", json=batch, headers=runtime))] == [
        "INFO",
        "INFO",
    ]
    access = {"allowed_roles": ["USER"], "public": True}
    answer = data(
        client.put(f"/api/v1/script/{script.id}/access", json=access, headers=auth(admin))
    )
    assert answer["allowed_roles"] == ["USER"] and answer["public"] is False


def test_a_blank_optional_field_is_not_given(client, auth, people, world):
    _, running, runtime = world
    path = f"/api/v1/execution/{running.id}"
    assert (
        data(client.patch(path, json={"progress": 7, "status": ""}, headers=runtime))["status"]
        == "RUNNING"
    )
    # A required field stays required, blank or not.
    assert (
        client.post(f"{path}/log", json={"text": "", "level": ""}, headers=runtime).status_code
        == 200
    )
    assert client.post("/auth", json={"email": "", "password": ""}).status_code == 400


# include / exclude -------------------------------------------------------------------------


def test_the_admin_uis_include_lists(client, auth, people, world):
    headers = auth(people["super"])
    users = client.get(
        "/api/v1/user?page=1&per_page=50&include=openeo_credentials,gee_credentials",
        headers=headers,
    )
    assert users.status_code == 200 and users.get_json()["total"] == 3
    scripts = client.get(
        "/api/v1/script?include=user_name,user_email,access_control,environment&page=1&per_page=50",
        headers=headers,
    )
    assert scripts.status_code == 200 and scripts.get_json()["data"][0]["name"] == "tolerant script"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/user", {"include": "password_hash,password", "exclude": "nonsense"}),
        ("/api/v1/user/me", {"include": "password", "exclude": "bogus,name"}),
        ("/api/v1/user/{user}", {"include": "password_hash", "exclude": "tokens"}),
        ("/api/v1/script", {"include": "password,image,archive_key"}),
        ("/api/v1/script/{script}", {"include": "password,current_build", "exclude": "nonsense"}),
        ("/api/v1/execution", {"include": "password", "exclude": "nonsense"}),
        ("/api/v1/execution/user", {"include": "build_id,handle", "exclude": "secret"}),
        ("/api/v1/execution/{execution}", {"include": "password,build_id", "exclude": "secret"}),
    ],
)
def test_unknown_include_and_exclude_names_are_ignored(client, auth, people, world, path, query):
    script, running, _ = world
    path = path.format(user=people["user"].id, script=script.id, execution=running.id)
    headers = auth(people["super"])
    plain = client.get(path, headers=headers)
    asked = client.get(path, query_string=query, headers=headers)
    assert plain.status_code == asked.status_code == 200, asked.get_json()
    for name in ("password", "password_hash", "image", "archive_key", "build_id", "handle"):
        assert f'"{name}"' not in asked.get_data(as_text=True)
    if "name" not in query.get("exclude", ""):
        assert plain.get_json() == asked.get_json()
    else:
        assert "name" not in asked.get_json()["data"]


# Trailing slashes --------------------------------------------------------------------------


def collection_paths(app) -> list[str]:
    """Every GET path without arguments under /api/v1 and /ogc."""
    return sorted(
        rule.rule.rstrip("/")
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods
        and not rule.arguments
        and rule.rule.startswith(("/api/v1/", "/ogc/"))
        and rule.rule.rstrip("/")
    )


def test_every_collection_path_answers_the_same_with_a_trailing_slash(
    app, client, auth, people, world
):
    script, running, _ = world
    headers = auth(people["super"])
    paths = collection_paths(app)
    assert {"/api/v1/script", "/api/v1/user", "/api/v1/execution", "/api/v1/news"} <= set(paths)
    paths += [
        f"/api/v1/script/{script.id}",
        f"/api/v1/script/{script.id}/log",
        f"/api/v1/execution/{running.id}",
        f"/api/v1/execution/{running.id}/log",
        "/api/v1/user/me",
    ]
    for path in paths:
        bare = client.get(path, headers=headers)
        slashed = client.get(path + "/", headers=headers)
        assert slashed.status_code == bare.status_code, (path, slashed.status_code)
        assert slashed.status_code not in (301, 308, 405), path
        if bare.is_json:
            assert slashed.get_json() == bare.get_json(), path


def test_writes_with_a_trailing_slash_are_not_redirected(client, auth, people, world, storage_root):
    script, running, runtime = world
    admin = auth(people["super"])
    assert (
        client.post(
            "/auth/", json={"email": people["user"].email, "password": PASSWORD}
        ).status_code
        == 200
    )
    created = client.post(
        "/api/v1/user/",
        json={
            "email": "slash@example.org",
            "password": NEW_PASSWORD,
            "certainPassword": NEW_PASSWORD,
            "role": "USER",
        },
        headers=admin,
    )
    assert created.status_code == 200, created.get_json()
    published = client.post(
        "/api/v1/script/",
        data=upload(script_archive({"name": "slashed 1_0_0"})),
        headers=admin,
        content_type="multipart/form-data",
    )
    assert published.status_code == 200 and published.get_json()["data"]["status"] == "BUILDING"
    me = client.patch("/api/v1/user/me/", json={"name": "Slashed"}, headers=auth(people["user"]))
    assert me.status_code == 200 and me.get_json()["data"]["name"] == "Slashed"
    run = client.post(
        f"/api/v1/script/{script.id}/run/", json={"year": 1}, headers=auth(people["user"])
    )
    assert run.status_code == 200 and run.get_json()["data"]["params"] == {"year": 1}
    patched = client.patch(
        f"/api/v1/execution/{running.id}/", json={"progress": 9}, headers=runtime
    )
    assert patched.status_code == 200 and patched.get_json()["data"]["progress"] == 9
