"""Celery wiring. Tasks take ids (or plain values) and call a service; services send them by
name after commit (gefapi.queue)."""

import logging

from celery import Celery, Task
from flask import Flask

from gefapi.config import Config

log = logging.getLogger(__name__)


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(Config.celery(app.config))
    celery.conf.update(app.config.get("CELERY", {}))
    app.extensions["celery"] = celery
    # Register the task modules with this app.
    from gefapi.tasks import artifacts, email, executions, metrics, scripts, webhooks  # noqa: F401

    return celery
