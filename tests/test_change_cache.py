"""The per-process cache (gefapi/cache.py) against real commits on a database of its own: two
apps stand for two API processes, and raw SQL for every other writer (a Celery task, an
admin's psql). Repeated reads skip the database; any committed change reaches the cache."""

import time
import uuid

import pytest

from gefapi.cache import ChangeCache
from gefapi.extensions import db
from gefapi.models import Execution, Role, User
from gefapi.services import passwords
from tests.conftest import PASSWORD, add_script, admin_sql, own_database
from tests.helpers import sql_statements

ROLES = {"owner": Role.USER, "other": Role.USER, "admin": Role.ADMIN}


class World:
    def __init__(self, url: str, apps: list):
        self.url = url
        self.app, self.other_app = apps
        with self.app.app_context():
            users = {
                name: User(
                    email=f"{name}@example.org",
                    name=name,
                    role=role,
                    password_hash=passwords.hash_password(PASSWORD),
                    email_notifications_enabled=False,
                )
                for name, role in ROLES.items()
            }
            db.session.add_all(users.values())
            db.session.flush()
            script = add_script(users["owner"].id, name="s")
            executions = [
                Execution(
                    script_id=script.id,
                    build_id=script.current_build_id,
                    user_id=users["owner"].id,
                )
                for _ in range(2)
            ]
            db.session.add_all(executions)
            db.session.commit()
            self.user_ids = {name: user.id for name, user in users.items()}
            self.script_id, self.build_id = script.id, script.current_build_id
            self.execution_ids = [str(execution.id) for execution in executions]
        self.tokens = {name: self.login(name) for name in users}

    def login(self, name: str) -> str:
        response = self.app.test_client().post(
            "/auth", json={"email": f"{name}@example.org", "password": PASSWORD}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    def get(self, path: str, who: str = "owner", app=None):
        client = (app or self.app).test_client()
        return client.get(path, headers={"Authorization": f"Bearer {self.tokens[who]}"})

    def sql(self, statement: str, params=None) -> None:
        admin_sql(statement, params, url=self.url)


@pytest.fixture(scope="module")
def world():
    with own_database(apps=2) as (url, apps):
        yield World(url, apps)


def eventually(check, timeout: float = 3.0):
    """`check()`'s last value once it is truthy; the change arrives by notification."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def statements_for(world, path: str, who: str = "owner") -> tuple[object, int]:
    response, statements = sql_statements(world.app, lambda: world.get(path, who))
    return response, len(statements)


def cached(world, path: str, who: str = "owner"):
    """The answer to `path`, once the cache holds it (a read that sends no SQL). A notification
    from an earlier test can refuse the first store; the next read stores it."""
    answer = world.get(path, who)
    assert eventually(lambda: statements_for(world, path, who)[1] == 0), "never cached"
    return answer


def test_a_repeated_read_is_answered_without_the_database(world):
    path = f"/api/v1/execution/{world.execution_ids[0]}?include=script"
    first, first_statements = statements_for(world, path)
    second, second_statements = statements_for(world, path)
    assert first.status_code == second.status_code == 200
    assert second.get_json() == first.get_json()
    assert first_statements >= 2 and second_statements == 0


def test_the_plugin_list_is_answered_from_the_cache_until_a_run_is_added(world):
    path = (
        "/api/v1/execution/user?include=script&exclude=params,results&updated_at=2020-01-01"
        "&page=1&per_page=100"
    )
    before, _ = statements_for(world, path)
    again, statements = statements_for(world, path)
    assert (again.get_json(), statements) == (before.get_json(), 0)
    world.sql(
        "INSERT INTO executions (id, script_id, build_id, user_id, status, progress, params,"
        " start_date, updated_at, deleted, is_plugin_execution)"
        " VALUES (%s, %s, %s, %s, 'PENDING', 0, '{}', now(), now(), false, false)",
        (
            str(uuid.uuid4()),
            str(world.script_id),
            str(world.build_id),
            str(world.user_ids["owner"]),
        ),
    )
    total = before.get_json()["total"]
    assert eventually(lambda: world.get(path).get_json()["total"] == total + 1)


def test_another_writers_commit_reaches_the_cache(world):
    path = f"/api/v1/execution/{world.execution_ids[0]}"
    assert cached(world, path).get_json()["data"]["progress"] == 0
    world.sql("UPDATE executions SET progress = 42 WHERE id = %s", (world.execution_ids[0],))
    assert eventually(lambda: world.get(path).get_json()["data"]["progress"] == 42)


def test_a_script_rename_reaches_answers_that_include_it(world):
    path = f"/api/v1/execution/{world.execution_ids[1]}?include=script"
    assert cached(world, path).get_json()["data"]["script"]["name"] == "s"
    world.sql("UPDATE scripts SET name = 'renamed' WHERE id = %s", (str(world.script_id),))
    assert eventually(lambda: world.get(path).get_json()["data"]["script"]["name"] == "renamed")


def test_a_write_through_this_process_is_read_back_at_once(world, monkeypatch):
    path = f"/api/v1/execution/{world.execution_ids[1]}"
    cached(world, path)
    # No notification is read from here on: only the commit itself can drop the entry.
    monkeypatch.setattr(ChangeCache, "_drain", lambda self: None)
    patch = world.app.test_client().patch(
        path, json={"progress": 77}, headers={"Authorization": f"Bearer {world.tokens['admin']}"}
    )
    assert patch.status_code == 200, patch.get_json()
    assert world.get(path).get_json()["data"]["progress"] == 77  # no waiting


def test_a_cached_answer_is_shown_only_to_who_may_read_it(world):
    path = f"/api/v1/execution/{world.execution_ids[0]}"
    assert cached(world, path, "owner").status_code == 200
    assert world.get(path, "other").status_code == 404
    assert world.get(path, "admin").status_code == 200


def test_a_reader_who_loses_a_role_loses_the_cached_answer(world):
    path = f"/api/v1/execution/{world.execution_ids[1]}"
    assert cached(world, path, "admin").status_code == 200
    admin = str(world.user_ids["admin"])
    world.sql("UPDATE users SET role = 'USER' WHERE id = %s", (admin,))
    try:
        assert eventually(lambda: world.get(path, "admin").status_code == 404)
    finally:
        world.sql("UPDATE users SET role = 'ADMIN' WHERE id = %s", (admin,))


def test_logout_in_another_process_revokes_the_cached_token_check(world):
    token = world.login("other")
    headers = {"Authorization": f"Bearer {token}"}
    path = "/api/v1/execution/user"
    assert world.app.test_client().get(path, headers=headers).status_code == 200
    _, statements = sql_statements(
        world.app, lambda: world.app.test_client().get(path, headers=headers)
    )
    assert statements == []  # the token check and the answer both came from the cache
    logout = world.other_app.test_client().post("/auth/logout", headers=headers)
    assert logout.status_code == 200, logout.get_json()
    assert eventually(lambda: world.app.test_client().get(path, headers=headers).status_code == 401)


def test_a_user_deleted_by_sql_loses_access(world):
    world.tokens["other"] = token = world.login("other")
    headers = {"Authorization": f"Bearer {token}"}
    assert cached(world, "/api/v1/user/me", "other").status_code == 200  # the token check
    world.sql("UPDATE users SET deleted = true WHERE id = %s", (str(world.user_ids["other"]),))
    try:
        assert eventually(
            lambda: (
                world.app.test_client().get("/api/v1/user/me", headers=headers).status_code == 401
            )
        )
    finally:
        world.sql("UPDATE users SET deleted = false WHERE id = %s", (str(world.user_ids["other"]),))


@pytest.mark.parametrize("include", ["logs", "duration", "script,logs"])
def test_answers_with_fields_that_change_without_the_row_are_never_cached(world, include):
    path = f"/api/v1/execution/{world.execution_ids[0]}?include={include}"
    world.get(path)
    assert statements_for(world, path)[1] > 0


def test_a_new_log_line_shows_at_once_in_include_logs(world):
    path = f"/api/v1/execution/{world.execution_ids[0]}?include=logs"
    world.get(path)
    world.sql(
        "INSERT INTO execution_logs (execution_id, text, level, register_date)"
        " VALUES (%s, 'a new line', 'INFO', now())",
        (world.execution_ids[0],),
    )
    logs = world.get(path).get_json()["data"]["logs"]
    assert [line["text"] for line in logs][-1:] == ["a new line"]


def test_a_lost_listener_turns_the_cache_off_until_it_listens_again(world, monkeypatch):
    path = f"/api/v1/execution/{world.execution_ids[0]}"
    cached(world, path)
    world.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'gefapi-changes' AND datname = current_database()"
    )
    # Everything goes to the database while nobody listens: nothing missed can be served.
    assert eventually(lambda: statements_for(world, path)[1] > 0)
    assert statements_for(world, path)[1] > 0
    monkeypatch.setattr(world.app.extensions["change_cache"], "_retry_at", 0)
    world.sql("UPDATE executions SET progress = 5 WHERE id = %s", (world.execution_ids[0],))
    # The next request listens again, starting empty; then the cache serves once more.
    relistened, _ = statements_for(world, path)
    assert relistened.get_json()["data"]["progress"] == 5
    assert eventually(lambda: statements_for(world, path)[1] == 0)
