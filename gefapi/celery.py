"""Entry point for `celery -A gefapi.celery worker|beat`."""

from gefapi import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
