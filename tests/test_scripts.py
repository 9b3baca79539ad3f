import io
import tarfile
from datetime import timedelta

import pytest

from gefapi.extensions import db
from gefapi.models import Role, Script, ScriptBuild, ScriptLog, ScriptStatus
from gefapi.models.base import utcnow
from tests.archives import script_archive, upload
from tests.helpers import DATE_RE, assert_error, data


def publish(client, headers, archive=None, filename="download-data 2_3_2.tar.gz", ref=None):
    archive = archive if archive is not None else script_archive()
    method = client.patch if ref else client.post
    path = f"/api/v1/script/{ref}" if ref else "/api/v1/script"
    return method(
        path, data=upload(archive, filename), headers=headers, content_type="multipart/form-data"
    )


@pytest.fixture
def admin(make_user):
    return make_user(Role.ADMIN)


def test_publish_stores_the_archive_and_enqueues_a_build(
    client, admin, auth, sent_tasks, app, monkeypatch
):
    monkeypatch.setitem(app.config, "PARAMS_S3_BUCKET", "te-params")  # legacy images read it
    configuration = {
        "name": "productivity 2_3_2",
        "description": "NDVI trends",
        "environment": "trends.earth-environment",
        "environment_version": "2.3.0",
        "cpu_reservation": 5e8,
        "cpu_limit": 1000000000.0,
        "memory_reservation": 2000000000.0,
        "memory_limit": 4e9,
    }
    archive = script_archive(configuration)
    script = data(publish(client, auth(admin), archive))
    assert script["slug"] == "productivity-2-3-2"
    assert script["status"] == "BUILDING"
    assert (script["cpu_reservation"], script["cpu_limit"]) == (5e8, 1e9)
    assert (script["memory_reservation"], script["memory_limit"]) == (2_000_000_000, 4_000_000_000)
    assert script["environment_version"] == "2.3.0"
    assert DATE_RE.match(script["created_at"])
    with app.app_context():
        build = db.session.scalar(db.select(ScriptBuild).filter_by(script_id=script["id"]))
    assert sent_tasks == [("scripts.build", str(build.id))]
    download = client.get(f"/api/v1/script/{script['id']}/download", headers=auth(admin))
    assert download.status_code == 200
    assert "Content-Encoding" not in download.headers
    assert download.data == archive
    with tarfile.open(fileobj=io.BytesIO(download.data), mode="r:gz") as tar:
        assert "configuration.json" in tar.getnames()


def test_download_accepts_a_token_in_the_query(client, admin, login):
    token = login(admin)["access_token"]
    script = data(publish(client, {"Authorization": f"Bearer {token}"}))
    assert client.get(f"/api/v1/script/{script['slug']}/download?token={token}").status_code == 200
    assert_error(client.get(f"/api/v1/script/{script['slug']}?token={token}"), 401)


def test_duplicate_slug_is_409_and_stores_nothing(client, admin, auth, storage_dir, sent_tasks):
    data(publish(client, auth(admin), script_archive({"name": "Land Cover 1_0"})))
    files = sorted(p for p in storage_dir.rglob("*") if p.is_file())
    assert_error(publish(client, auth(admin), script_archive({"name": "land-cover 1 0"})), 409)
    assert sorted(p for p in storage_dir.rglob("*") if p.is_file()) == files
    assert len(sent_tasks) == 1


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 42}, "name"),
        ({"name": "!!!"}, "name"),
        ({"name": "x", "cpu_limit": "lots"}, "cpu_limit"),
        ({"name": "x", "cpu_limit": True}, "cpu_limit"),
        ({"name": "x", "memory_limit": -1}, "memory_limit"),
        ({"name": "x", "memory_reservation": 2e9, "memory_limit": 1e9}, "memory_reservation"),
        ({"name": "x", "params_schema": {"type": "nonsense"}}, "params_schema"),
        ({"name": "x", "params_schema": [1]}, "params_schema"),
        ({"name": "x", "environment": ["a"]}, "environment"),
    ],
)
def test_invalid_configuration_is_400(client, admin, auth, app, configuration, field):
    body = assert_error(publish(client, auth(admin), script_archive(configuration)), 400)
    assert field in body["errors"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Script)) == 0


def test_publish_needs_the_file_field_and_multipart(client, admin, auth):
    response = client.post(
        "/api/v1/script",
        data={"other": (io.BytesIO(b"x"), "a.tar.gz")},
        headers=auth(admin),
        content_type="multipart/form-data",
    )
    assert "file" in assert_error(response, 400)["errors"]
    assert_error(client.post("/api/v1/script", json={"file": "x"}, headers=auth(admin)), 415)


def test_republish_builds_again_under_the_same_slug(client, admin, auth, sent_tasks):
    script = data(publish(client, auth(admin)))
    renamed = script_archive({"name": "a new name", "cpu_limit": 2e9})
    updated = data(publish(client, auth(admin), renamed, ref=script["id"]))
    assert (updated["id"], updated["slug"]) == (script["id"], script["slug"])
    assert (updated["name"], updated["cpu_limit"], updated["status"]) == (
        "a new name",
        2e9,
        "BUILDING",
    )
    assert [name for name, *_ in sent_tasks] == ["scripts.build", "scripts.build"]
    assert sent_tasks[0][1] != sent_tasks[1][1]


def test_visibility(client, make_user, make_script, auth):
    owner, other, admin = make_user(Role.ADMIN), make_user(), make_user(Role.ADMIN)
    private = make_script(owner, name="private one")
    public = make_script(owner, name="public one", public=True)
    by_role = make_script(owner, name="by role", restricted=True, allowed_roles=["USER"])
    by_user = make_script(owner, name="by user", restricted=True, allowed_users=[other.id])
    not_listed = make_script(
        owner, name="restricted elsewhere", restricted=True, allowed_roles=["SUPERADMIN"]
    )
    seen = {s["id"] for s in data(client.get("/api/v1/script", headers=auth(other)))}
    assert seen == {str(public.id), str(by_role.id), str(by_user.id)}
    for hidden in (private, not_listed):
        assert_error(client.get(f"/api/v1/script/{hidden.id}", headers=auth(other)), 404)
        assert_error(client.get(f"/api/v1/script/{hidden.slug}/log", headers=auth(other)), 404)
        assert_error(
            client.post(f"/api/v1/script/{hidden.slug}/run", json={}, headers=auth(other)), 404
        )
    everything = {s["id"] for s in data(client.get("/api/v1/script", headers=auth(admin)))}
    assert everything >= {str(s.id) for s in (private, public, by_role, by_user, not_listed)}


def test_access_control_endpoint(client, make_user, make_script, auth):
    admin, user = make_user(Role.ADMIN), make_user()
    script = make_script(admin)
    assert_error(client.get(f"/api/v1/script/{script.id}", headers=auth(user)), 404)
    body = {"allowed_users": [str(user.id)], "allowed_roles": []}
    access = data(client.put(f"/api/v1/script/{script.id}/access", json=body, headers=auth(admin)))
    assert access["restricted"] is True and access["allowed_users"] == [str(user.id)]
    assert data(client.get(f"/api/v1/script/{script.id}", headers=auth(user)))["id"] == str(
        script.id
    )
    cleared = {"allowed_users": [], "allowed_roles": []}
    client.put(f"/api/v1/script/{script.id}/access", json=cleared, headers=auth(admin))
    assert_error(client.get(f"/api/v1/script/{script.id}", headers=auth(user)), 404)


def test_publish_and_unpublish(client, make_user, make_script, auth):
    admin, user = make_user(Role.ADMIN), make_user()
    script = make_script(admin)
    assert data(client.post(f"/api/v1/script/{script.slug}/publish", headers=auth(admin)))["public"]
    assert data(client.get(f"/api/v1/script/{script.slug}", headers=auth(user)))["public"] is True
    assert_error(client.post(f"/api/v1/script/{script.slug}/unpublish", headers=auth(user)), 403)
    client.post(f"/api/v1/script/{script.slug}/unpublish", json={}, headers=auth(admin))
    assert_error(client.get(f"/api/v1/script/{script.slug}", headers=auth(user)), 404)


def test_delete_is_soft_and_frees_the_slug(client, admin, auth, make_user, make_execution, app):
    script = data(publish(client, auth(admin), script_archive({"name": "temp"})))
    data(client.delete(f"/api/v1/script/{script['id']}", headers=auth(admin)))
    assert_error(client.get(f"/api/v1/script/{script['id']}", headers=auth(admin)), 404)
    assert script["id"] not in {
        s["id"] for s in data(client.get("/api/v1/script", headers=auth(admin)))
    }
    again = data(publish(client, auth(admin), script_archive({"name": "temp"})))
    assert again["slug"] == "temp" and again["id"] != script["id"]
    with app.app_context():
        assert db.session.get(Script, script["id"]).deleted


def test_build_log_polling(client, admin, auth, make_script, app):
    script = make_script(admin, status=ScriptStatus.BUILDING)
    base = utcnow() - timedelta(minutes=5)
    with app.app_context():
        rows = [
            ScriptLog(
                script_id=script.id, text=f"Step {i}", register_date=base + timedelta(seconds=i)
            )
            for i in range(5)
        ]
        db.session.add_all(rows)
        db.session.commit()
        ids = [row.id for row in rows]
    everything = data(client.get(f"/api/v1/script/{script.id}/log", headers=auth(admin)))
    assert [line["text"] for line in everything] == [f"Step {i}" for i in range(5)]
    assert set(everything[0]) == {"id", "text", "register_date", "script_id"}
    after_id = data(
        client.get(f"/api/v1/script/{script.id}/log?last-id={ids[2]}", headers=auth(admin))
    )
    assert [line["id"] for line in after_id] == ids[3:]
    # tecli sends a tz-aware, unencoded start: "+00:00" arrives as " 00:00".
    start = (base + timedelta(seconds=1)).isoformat() + "+00:00"
    after_start = client.get(f"/api/v1/script/{script.id}/log?start={start}", headers=auth(admin))
    assert [line["text"] for line in data(after_start)] == ["Step 2", "Step 3", "Step 4"]
    included = data(client.get(f"/api/v1/script/{script.id}?include=logs", headers=auth(admin)))
    assert [line["text"] for line in included["logs"]] == [f"Step {i}" for i in range(5)]
    assert_error(
        client.get(f"/api/v1/script/{script.id}/log?start=yesterday", headers=auth(admin)), 400
    )


def test_includes(client, make_user, make_script, make_execution, auth):
    admin, user = make_user(Role.ADMIN), make_user()
    script = make_script(admin, public=True, params_schema={"type": "object"})
    mine = make_execution(script, user)
    make_execution(script, admin)
    url = f"/api/v1/script/{script.id}?include=user,executions,environment"
    seen_by_user = data(client.get(url, headers=auth(user)))
    assert [e["id"] for e in seen_by_user["executions"]] == [str(mine.id)]
    assert seen_by_user["user"]["id"] == str(admin.id)
    assert seen_by_user["params_schema"] == {"type": "object"}
    assert "image" not in seen_by_user  # internal (CONTRACT section 5)
    assert len(data(client.get(url, headers=auth(admin)))["executions"]) == 2
    plain = data(client.get(f"/api/v1/script/{script.id}?exclude=description", headers=auth(user)))
    assert "description" not in plain and "logs" not in plain and "user" not in plain


def test_cli_info_fields_are_strings(client, admin, auth):
    """tecli info concatenates id, name, slug, status and created_at with +."""
    script = data(publish(client, auth(admin)))
    info = data(client.get(f"/api/v1/script/{script['id']}", headers=auth(admin)))
    for key in ("id", "name", "slug", "status", "created_at"):
        assert isinstance(info[key], str)
