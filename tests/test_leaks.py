"""What a script's readers must not learn (issue 11, finding 7): this server's folders in build
logs and build errors, the owner's email address (unless they are the owner or an admin), and
the built image, which on the local backend is a server folder (CONTRACT section 5: image
names and paths are not part of the answer)."""

import json
import os
import sys
import tempfile

import pytest

from gefapi.executors.base import BuildFailed, BuildResult
from gefapi.extensions import db
from gefapi.models import Role, ScriptBuild
from gefapi.services import build_service
from tests.archives import script_archive, upload
from tests.helpers import data

pytestmark = pytest.mark.usefixtures("storage_root")


@pytest.fixture
def people(make_user):
    return {
        "owner": make_user(Role.ADMIN, email="owner@example.org"),
        "user": make_user(Role.USER, email="reader@example.org"),
        "admin": make_user(Role.ADMIN, email="other-admin@example.org"),
    }


def server_folders(app) -> list[str]:
    """Every folder of this server that a build could print."""
    folders = {
        app.config["INSTANCE_PATH"],
        app.extensions["storage"].root,
        tempfile.gettempdir(),
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # the code
        sys.prefix,
    }
    return sorted(os.path.realpath(folder) for folder in folders)


def assert_no_server_folder(text: str, folders: list[str]) -> None:
    for folder in folders:
        assert folder not in text, (folder, text)


# Build logs ------------------------------------------------------------------------------------


class LocalLikeBackend:
    """Prints what the local backend prints (its commands name the build folder, the archive
    and pip's site-packages), and fails or succeeds with a server folder as its image."""

    name = "fake"

    def __init__(self, app, fail: bool):
        self.root = os.path.join(app.config["INSTANCE_PATH"], "local")
        self.fail = fail

    def build(self, spec, on_line):
        work = f"{self.root}/builds/build-1a2b3c"
        on_line(f"$ python3 -m venv {work}/venv")
        on_line(f"$ {work}/venv/bin/pip install -r {work}/source/requirements.txt")
        on_line(f"Processing {spec.archive_path}")
        on_line(f"Requirement already satisfied: pip in {sys.prefix}/lib/python3/site-packages")
        if self.fail:
            raise BuildFailed(f"pip exited with code 1 (see {work}/pip.log)")
        return BuildResult(image=f"{self.root}/builds/{os.path.basename(spec.image)}")


def publish_and_build(app, client, auth, people, sent_tasks, monkeypatch, *, fail: bool):
    monkeypatch.setitem(app.extensions, "executor", LocalLikeBackend(app, fail))
    archive = upload(script_archive({"name": f"leaky {fail}"}))
    script = data(client.post("/api/v1/script", headers=auth(people["owner"]), data=archive))
    data(client.post(f"/api/v1/script/{script['id']}/publish", headers=auth(people["owner"])))
    [(_, build_id)] = [task for task in sent_tasks if task[0] == "scripts.build"]
    with app.app_context():
        build_service.build(build_id)
        db.session.remove()
    return script["id"]


@pytest.mark.parametrize("fail", [False, True], ids=["built", "failed"])
def test_build_log_and_error_show_no_server_folder(
    app, client, auth, people, sent_tasks, monkeypatch, fail
):
    script_id = publish_and_build(app, client, auth, people, sent_tasks, monkeypatch, fail=fail)
    reader = auth(people["user"])
    lines = data(client.get(f"/api/v1/script/{script_id}/log", headers=reader))
    script = data(client.get(f"/api/v1/script/{script_id}?include=logs", headers=reader))
    assert script["status"] == ("FAIL" if fail else "SUCCESS")
    texts = [line["text"] for line in lines]
    assert any(text.startswith("$ python3 -m venv <server>/") for text in texts), texts
    if fail:
        assert (
            script["build_error"]
            == "pip exited with code 1 (see <server>/local/builds/build-1a2b3c/pip.log)"
        )
    assert_no_server_folder(json.dumps([lines, script]), server_folders(app))


# The owner's email -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/script?include=user", "/api/v1/script/{id}?include=user"]
)
def test_owner_email_only_for_the_owner_and_admins(client, auth, make_script, people, path):
    script = make_script(people["owner"], public=True)

    def owner_seen_by(who: str) -> dict:
        answer = data(client.get(path.format(id=script.id), headers=auth(people[who])))
        return answer[0]["user"] if isinstance(answer, list) else answer["user"]

    by_user = owner_seen_by("user")
    assert by_user["id"] == str(people["owner"].id) and by_user["name"]
    assert by_user["email"] is None
    assert owner_seen_by("owner")["email"] == "owner@example.org"
    assert owner_seen_by("admin")["email"] == "owner@example.org"


def test_a_user_owning_a_script_sees_their_own_email(client, auth, make_script, people):
    script = make_script(people["user"])
    answer = data(
        client.get(f"/api/v1/script/{script.id}?include=user", headers=auth(people["user"]))
    )
    assert answer["user"]["email"] == "reader@example.org"


# The built image -------------------------------------------------------------------------------


@pytest.mark.parametrize("include", ["environment", "image", "user,environment"])
@pytest.mark.parametrize("who", ["user", "admin"])
def test_script_answers_hold_no_image(app, client, auth, make_script, people, include, who):
    script = make_script(people["owner"], public=True, params_schema={"type": "object"})
    folder = os.path.join(app.config["INSTANCE_PATH"], "local", "builds", f"script-{script.id}")
    with app.app_context():
        db.session.get(ScriptBuild, script.current_build_id).image = folder
        db.session.commit()
    headers = auth(people[who])
    listed = client.get(f"/api/v1/script?include={include}", headers=headers)
    one = client.get(f"/api/v1/script/{script.id}?include={include}", headers=headers)
    for answer in (data(listed)[0], data(one)):
        assert "image" not in answer
        if "environment" in include:  # the rest of what the admin UI asks for is there
            assert answer["params_schema"] == {"type": "object"}
    assert folder not in listed.get_data(as_text=True) + one.get_data(as_text=True)
