"""Pages of the `updated_at` list (fetched as two parts) and the stored unfiltered totals."""

from datetime import timedelta

import pytest
from sqlalchemy import text

from gefapi.extensions import db
from gefapi.models import Role
from gefapi.models.base import utcnow
from tests.helpers import counted_totals, data, stored_totals

SCRIPT_TOTALS = "script_execution_totals"

SINCE_DAYS = 14


@pytest.fixture
def owner_history(make_user, make_script, make_execution):
    """3 unfinished and 4 finished executions inside the window, 2 outside it, and another
    user's execution inside it. Some start dates tie, so the id decides their order."""
    admin = make_user(Role.ADMIN)
    owner = make_user()
    script = make_script(admin, public=True)
    now = utcnow()
    tie = now - timedelta(days=1)
    for start in (now - timedelta(hours=1), tie, tie):
        make_execution(script, owner, status="RUNNING", start_date=start)
    for days in (2, 5, 5, 13):
        end = now - timedelta(days=days)
        make_execution(
            script, owner, status="FINISHED", start_date=end - timedelta(days=30), end_date=end
        )
    make_execution(script, owner, status="RUNNING", start_date=now - timedelta(days=40))
    make_execution(
        script,
        owner,
        status="FAILED",
        start_date=now - timedelta(days=41),
        end_date=now - timedelta(days=40),
    )
    make_execution(script, admin, status="RUNNING", start_date=now)
    return admin, owner


def in_window(execution: dict, since: str) -> bool:
    return (execution["end_date"] or execution["start_date"]) >= since


def listed(client, headers, query: str) -> dict:
    return client.get(f"/api/v1/execution/user?{query}", headers=headers).get_json()


def test_pages_of_the_updated_at_list_match_the_whole_list(client, owner_history, auth):
    _, owner = owner_history
    headers = auth(owner)
    since = (utcnow() - timedelta(days=SINCE_DAYS)).strftime("%Y-%m-%dT%H:%M:%S")
    everything = data(client.get("/api/v1/execution/user", headers=headers))
    expected = [e["id"] for e in everything if in_window(e, since)]
    assert len(expected) == 7
    for per_page in range(1, 9):
        seen = []
        for page in range(1, 9 // per_page + 3):
            body = listed(client, headers, f"updated_at={since}&page={page}&per_page={per_page}")
            assert body["total"] == 7
            seen += [e["id"] for e in body["data"]]
        assert seen == expected, per_page


def test_updated_at_with_a_sort_and_with_the_cap(client, app, owner_history, auth, monkeypatch):
    _, owner = owner_history
    headers = auth(owner)
    since = (utcnow() - timedelta(days=SINCE_DAYS)).strftime("%Y-%m-%dT%H:%M:%S")
    everything = data(client.get("/api/v1/execution/user?sort=-start_date", headers=headers))
    expected = [e["id"] for e in everything if in_window(e, since)]
    body = listed(client, headers, f"updated_at={since}&sort=-start_date&page=2&per_page=3")
    assert body["total"] == 7 and [e["id"] for e in body["data"]] == expected[3:6]

    unsorted = data(client.get("/api/v1/execution/user", headers=headers))
    in_order = [e["id"] for e in unsorted if in_window(e, since)]
    monkeypatch.setitem(app.config, "MAX_UNPAGINATED_EXECUTIONS", 4)  # the cap crosses parts
    assert [e["id"] for e in listed(client, headers, f"updated_at={since}")["data"]] == in_order[:4]


def sql(app, statement: str, **params) -> None:
    with app.app_context():
        db.session.execute(text(statement), params)
        db.session.commit()


def test_stored_totals_follow_every_kind_of_write(client, app, owner_history, auth):
    admin, owner = owner_history
    mine, theirs = str(owner.id), str(admin.id)
    assert (
        stored_totals(app)
        == counted_totals(app)
        == {
            (mine, "RUNNING"): 4,
            (mine, "FINISHED"): 4,
            (mine, "FAILED"): 1,
            (theirs, "RUNNING"): 1,
        }
    )
    listing = data(client.get("/api/v1/execution/user", headers=auth(owner)))
    finished = [e["id"] for e in listing if e["status"] == "FINISHED"]
    running = [e["id"] for e in listing if e["status"] == "RUNNING"]

    assert client.delete(f"/api/v1/execution/{finished[0]}", headers=auth(owner)).status_code == 200
    assert listed(client, auth(owner), "page=1&per_page=2")["total"] == 8
    sql(app, "UPDATE executions SET deleted = true WHERE id = :id", id=finished[1])
    sql(app, "UPDATE executions SET deleted = true WHERE id = :id", id=finished[1])  # no change
    sql(app, "UPDATE executions SET deleted = false WHERE id = :id", id=finished[0])
    sql(app, "UPDATE executions SET user_id = :to WHERE id = :id", to=admin.id, id=finished[2])
    sql(app, "DELETE FROM executions WHERE id = :id", id=finished[3])
    patch = client.patch(
        f"/api/v1/execution/{running[0]}", json={"status": "FINISHED"}, headers=auth(admin)
    )
    assert patch.status_code == 200
    sql(app, "UPDATE executions SET status = 'CANCELLING' WHERE id = :id", id=running[1])
    assert (
        stored_totals(app)
        == counted_totals(app)
        == {
            (mine, "RUNNING"): 2,
            (mine, "FINISHED"): 2,
            (mine, "FAILED"): 1,
            (mine, "CANCELLING"): 1,
            (theirs, "RUNNING"): 1,
            (theirs, "FINISHED"): 1,
        }
    )

    def total(url, user) -> int:
        return client.get(url, headers=auth(user)).get_json()["total"]

    assert total("/api/v1/execution?page=1&per_page=1", admin) == 8
    assert total(f"/api/v1/execution?user_id={owner.id}&page=1&per_page=1", admin) == 6
    assert total("/api/v1/execution?status=RUNNING,FINISHED&page=1&per_page=1", admin) == 6
    assert total("/api/v1/execution/user?status=finished&page=1&per_page=1", owner) == 2
    assert total("/api/v1/execution/user?status=PENDING&page=1&per_page=1", owner) == 0

    by_script = counted_totals(app, SCRIPT_TOTALS)
    assert stored_totals(app, SCRIPT_TOTALS) == by_script
    for script_id in {script for script, _, _ in by_script}:
        everyone = sum(n for (s, _, _), n in by_script.items() if s == script_id)
        owners = sum(n for (s, u, _), n in by_script.items() if (s, u) == (script_id, mine))
        url = f"/api/v1/execution?script_id={script_id}&page=1&per_page=1"
        assert total(url, admin) == everyone
        url = f"/api/v1/execution/user?script_id={script_id}&status=FINISHED&page=1&per_page=1"
        assert total(url, owner) == by_script.get((script_id, mine, "FINISHED"), 0)
        assert total(f"/api/v1/execution/user?script_id={script_id}&page=1&per_page=1", owner) == (
            owners
        )


def test_a_user_without_executions_has_a_total_of_zero(client, make_user, auth):
    body = listed(client, auth(make_user()), "page=1&per_page=10")
    assert body["total"] == 0 and body["data"] == []
