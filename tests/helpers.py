"""Small assertions shared by the tests."""

import logging
import os
import re

from sqlalchemy import event, text

from gefapi.extensions import db

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")


def assert_error(response, status: int, error_code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert body["status"] == status
    assert body["detail"] and body["msg"] == body["detail"] == body["message"]
    if error_code:
        assert body["error_code"] == error_code, body
    return body


def data(response, status: int = 200):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    return response.get_json()["data"]


def database_state(app) -> dict:
    """Every row of every table, as text: equal snapshots mean nothing was written."""
    with app.app_context():
        tables = db.session.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all()
        return {
            table: sorted(db.session.scalars(text(f'SELECT t::text FROM "{table}" t')).all())
            for table in tables
        }


def sql_statements(app, call) -> tuple[object, list[tuple[str, dict]]]:
    """What `call()` returns, and every statement (with its parameters) sent meanwhile; not
    the savepoints that keep each test in its own transaction."""
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "SAVEPOINT" not in statement:
            statements.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        result = call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return result, statements


def stored_files(root: str) -> list[str]:
    """Every file under `root` (the archive storage), as sorted relative paths."""
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    )


TOTALS_KEYS = {
    "execution_totals": "user_id::text, status",
    "script_execution_totals": "script_id::text, user_id::text, status",
}


def stored_totals(app, table: str = "execution_totals") -> dict[tuple, int]:
    """A stored totals table as {(key columns...): total}, zero rows left out."""
    with app.app_context():
        rows = db.session.execute(text(f"SELECT {TOTALS_KEYS[table]}, total FROM {table}"))
        return {tuple(row[:-1]): row[-1] for row in rows if row[-1]}


def counted_totals(app, table: str = "execution_totals") -> dict[tuple, int]:
    """The same, counted from the undeleted executions."""
    keys = TOTALS_KEYS[table]
    with app.app_context():
        rows = db.session.execute(
            text(f"SELECT {keys}, count(*) FROM executions WHERE NOT deleted GROUP BY {keys}")
        )
        return {tuple(row[:-1]): row[-1] for row in rows}


def enable_every_logger(monkeypatch):
    """Alembic's fileConfig (the test database's migrations) disables the loggers that existed
    before it ran: turn them all back on, so the capture sees everything that is logged."""
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            monkeypatch.setattr(logger, "disabled", False)
