"""List queries stay index-driven on a large table: the real requests' SQL, EXPLAINed."""

import json
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import text

from gefapi.extensions import db
from gefapi.models import Role
from gefapi.models.base import utcnow
from tests.helpers import sql_statements

ROWS = 100_000


@pytest.fixture
def big_table(app, make_user, make_script):
    """100,000 executions over 1,000 users; the heavy user owns 20,000."""
    admin = make_user(Role.ADMIN)
    heavy = make_user(email="heavy@x.org")
    script = make_script(admin, public=True)
    with app.app_context():
        db.session.execute(
            text("""
            INSERT INTO users (id, email, name, role, gee_license_acknowledged,
                email_notifications_enabled, email_subscription_news,
                email_subscription_engagement, email_subscription_system_updates,
                is_in_mailing_list, is_plugin_user, deleted, failed_login_count,
                created_at, updated_at)
            SELECT gen_random_uuid(), 'u' || i || '@x.org', 'U', 'USER', false, true, false,
                   false, true, false, false, false, 0, now(), now()
            FROM generate_series(1, 999) AS i""")
        )
        db.session.execute(text("""
            INSERT INTO executions (id, script_id, user_id, status, progress, params,
                start_date, end_date, is_plugin_execution, deleted, updated_at)
            SELECT gen_random_uuid(), :script,
                   CASE WHEN i % 5 = 0 THEN :heavy ELSE u.ids[1 + i % 999] END,
                   CASE WHEN i % 50 = 0 THEN 'RUNNING' ELSE 'FINISHED' END, 100,
                   '{"task_name": "x"}', now() - (i || ' minutes')::interval,
                   CASE WHEN i % 50 = 0 THEN NULL
                        ELSE now() - (i || ' minutes')::interval + interval '5 minutes' END,
                   false, false, now()
            FROM generate_series(1, :rows) AS i,
                 (SELECT array_agg(id) AS ids FROM users WHERE email LIKE 'u%%@x.org') AS u"""),
            {"script": script.id, "heavy": heavy.id, "rows": ROWS})  # fmt: skip
        db.session.execute(text("ANALYZE users; ANALYZE executions"))
        db.session.commit()
    return admin, heavy


def captured_sql(app, call) -> list[tuple[str, dict]]:
    """The SELECTs that read executions."""
    return [
        (statement, parameters)
        for statement, parameters in sql_statements(app, call)[1]
        if "FROM executions" in statement and statement.lstrip().upper().startswith("SELECT")
    ]


def plan(app, statement: str, parameters) -> dict:
    with app.app_context():
        cursor = db.session.connection().connection.cursor()
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        return cursor.fetchone()[0][0]["Plan"]


def nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def assert_index_driven(app, statements):
    """Every query that reads executions, counts included, uses an index: no list costs a
    pass over the table or over all of one user's rows."""
    assert statements
    for statement, parameters in statements:
        tree = plan(app, statement, parameters)
        scans = [n for n in nodes(tree) if n.get("Relation Name") == "executions"]
        assert scans, statement
        for scan in scans:
            assert scan["Node Type"] != "Seq Scan", json.dumps(tree, indent=1)
            # An index scan that filters most of what it reads is a scan in disguise.
            assert scan.get("Filter") is None or "user_id" not in scan.get("Index Cond", ""), (
                json.dumps(tree, indent=1)
            )


LISTS = [
    "/api/v1/execution/user?include=script&exclude=params,results&updated_at={since}"
    "&page=1&per_page=100",
    "/api/v1/execution/user?updated_at={since}&sort=-start_date&page=2&per_page=50",
    "/api/v1/execution?page=1&per_page=100",
    "/api/v1/execution?page=50&per_page=100&status=RUNNING",
    "/api/v1/execution/user?page=1&per_page=100",
    "/api/v1/execution/user",
]


def test_list_queries_are_index_driven(client, app, big_table, auth):
    """One seeding for every list (seeding 100,000 rows is the slow part)."""
    admin, heavy = big_table
    headers = {"/api/v1/execution?": auth(admin), "/api/v1/execution/user": auth(heavy)}
    since = (utcnow() - timedelta(days=14)).strftime("%Y-%m-%d")
    for url in LISTS:
        url = url.format(since=since)
        caller = next(value for key, value in headers.items() if url.startswith(key))
        statements = captured_sql(app, partial(client.get, url, headers=caller))
        assert_index_driven(app, statements)


def test_totals_without_a_window_come_from_the_stored_totals(client, app, big_table, auth):
    """Exact, and no statement of these requests counts executions."""
    admin, heavy = big_table
    with app.app_context():
        everyone, heavy_total, running, heavy_finished, script = db.session.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE user_id = :heavy),"
                " count(*) FILTER (WHERE status = 'RUNNING'),"
                " count(*) FILTER (WHERE user_id = :heavy AND status = 'FINISHED'),"
                " min(script_id::text) FROM executions"
            ),
            {"heavy": heavy.id},
        ).one()
    for url, caller, expected in (
        ("/api/v1/execution?page=1&per_page=100", admin, everyone),
        ("/api/v1/execution/user?page=3&per_page=100", heavy, heavy_total),
        ("/api/v1/execution?status=RUNNING&page=2&per_page=100", admin, running),
        ("/api/v1/execution/user?status=FINISHED&page=1&per_page=100", heavy, heavy_finished),
        (f"/api/v1/execution?script_id={script}&page=2&per_page=100", admin, everyone),
        (f"/api/v1/execution/user?script_id={script}&page=1&per_page=100", heavy, heavy_total),
        (
            f"/api/v1/execution?script_id={script}&status=RUNNING&page=1&per_page=100",
            admin,
            running,
        ),
    ):
        response, statements = sql_statements(app, partial(client.get, url, headers=auth(caller)))
        assert response.get_json()["total"] == expected
        sql = [statement for statement, _ in statements]
        assert any("execution_totals" in statement for statement in sql), sql
        assert not any("count(" in s.lower() and "FROM executions" in s for s in sql), sql
