"""Entry point for `celery -A gefapi.celery worker|beat`."""

from gefapi import create_app

# Workers ping each pooled connection first: a task must not fail on a connection that a
# database restart broke while the worker sat idle.
flask_app = create_app({"SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_recycle": 1800}})
celery = flask_app.extensions["celery"]
