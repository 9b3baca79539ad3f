"""Entry point for `celery -A gefapi.celery worker|beat`."""

from gefapi import create_app

app = create_app()
celery = app.extensions["celery"]
