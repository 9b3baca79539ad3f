"""The schema exists only through migrations: upgrade, downgrade to nothing, upgrade, no drift."""

import pytest
from sqlalchemy import Column, Integer, Table, create_engine, inspect

from gefapi import create_app
from gefapi.config import TestingConfig
from tests.conftest import admin_sql, fresh_database_url


@pytest.fixture
def empty_database():
    name, url = fresh_database_url()
    yield url
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def flask_db(app, *args) -> int:
    result = app.test_cli_runner().invoke(args=["db", *args])
    return result.exit_code


def test_upgrade_downgrade_upgrade_and_no_drift(empty_database):
    from gefapi.extensions import db

    app = create_app(
        type("MigrationConfig", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": empty_database})
    )
    expected = set(db.metadata.tables)
    assert flask_db(app, "upgrade") == 0
    assert tables(empty_database) == expected
    assert flask_db(app, "downgrade", "base") == 0
    assert tables(empty_database) == set()
    assert flask_db(app, "upgrade") == 0
    assert tables(empty_database) == expected
    assert flask_db(app, "check") == 0
    # The check does catch drift: a model change without a migration fails it.
    drift = Table("not_migrated", db.metadata, Column("id", Integer, primary_key=True))
    try:
        assert flask_db(app, "check") != 0
    finally:
        db.metadata.remove(drift)
    with app.app_context():
        db.engine.dispose()
