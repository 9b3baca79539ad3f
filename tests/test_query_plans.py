"""List queries stay index-driven on a large table: the real requests' SQL, EXPLAINed."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import event, text

from gefapi.extensions import db
from gefapi.models import Role
from gefapi.models.base import utcnow

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
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM executions" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return statements


def plan(app, statement: str, parameters) -> dict:
    with app.app_context():
        cursor = db.session.connection().connection.cursor()
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        return cursor.fetchone()[0][0]["Plan"]


def nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def assert_index_driven(app, statements, *, unfiltered_count=False):
    """Unfiltered totals count every matching row (a user's, or the whole table): those counts
    may scan; every row-fetching query and every filtered count must use an index."""
    assert statements
    for statement, parameters in statements:
        if unfiltered_count and statement.lstrip().startswith("SELECT count(*)"):
            continue
        tree = plan(app, statement, parameters)
        scans = [n for n in nodes(tree) if n.get("Relation Name") == "executions"]
        assert scans, statement
        for scan in scans:
            assert scan["Node Type"] != "Seq Scan", json.dumps(tree, indent=1)


LISTS = [
    # url, caller, whether its total counts every row of the caller (allowed to scan)
    ("/api/v1/execution/user?include=script&exclude=params,results&updated_at={since}"
     "&page=1&per_page=100", "heavy", False),
    ("/api/v1/execution?page=1&per_page=100", "admin", True),
    ("/api/v1/execution?page=50&per_page=100&status=RUNNING", "admin", False),
    ("/api/v1/execution/user?page=1&per_page=100", "heavy", True),
    ("/api/v1/execution/user", "heavy", False),
]  # fmt: skip


def test_list_queries_are_index_driven(client, app, big_table, auth):
    """One seeding for every list (seeding 100,000 rows is the slow part)."""
    admin, heavy = big_table
    headers = {"admin": auth(admin), "heavy": auth(heavy)}
    since = (utcnow() - timedelta(days=14)).strftime("%Y-%m-%d")
    for url, who, unfiltered_count in LISTS:
        url = url.format(since=since)
        statements = captured_sql(app, lambda: client.get(url, headers=headers[who]))  # noqa: B023
        assert_index_driven(app, statements, unfiltered_count=unfiltered_count)
