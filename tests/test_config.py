import pytest

from gefapi import create_app
from gefapi.config import TestingConfig, psycopg2_url


def app_with(**settings):
    return create_app(type("Config", (TestingConfig,), settings))


@pytest.mark.parametrize("secret", ["", "secret", "changeme", "short-but-random-x9"])
def test_weak_secrets_stop_a_production_start(database_url, secret):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        app_with(
            ENVIRONMENT="production",
            SECRET_KEY=secret,
            JWT_SECRET_KEY=secret,
            SQLALCHEMY_DATABASE_URI=database_url,
        )


def test_strong_secrets_start(database_url):
    strong = "k3Jd9x-Qw8Zp2LmN7vB4cR6tY1uI0oPaS5dF"
    app = app_with(
        ENVIRONMENT="production",
        SECRET_KEY=strong,
        JWT_SECRET_KEY=strong + "x",
        SQLALCHEMY_DATABASE_URI=database_url,
    )
    assert app.config["ENVIRONMENT"] == "production"


def test_missing_database_url_says_so():
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        app_with(SQLALCHEMY_DATABASE_URI=None)


def test_bare_postgresql_urls_use_psycopg2():
    assert psycopg2_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert psycopg2_url("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert psycopg2_url("sqlite://") == "sqlite://"
