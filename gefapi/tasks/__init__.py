"""Celery wiring. Tasks take ids (or plain values), call a service, and are sent after commit."""

import logging

from celery import Celery, Task
from flask import Flask
from flask_sqlalchemy.session import Session
from sqlalchemy import event

from gefapi.config import Config

log = logging.getLogger(__name__)
PENDING_KEY = "gefapi.pending_tasks"


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
    from gefapi.tasks import artifacts, email, executions, scripts  # noqa: F401
    from gefapi.tasks import metrics, webhooks  # noqa: F401  (issue 17)

    return celery


def enqueue(task, *args, **kwargs) -> None:
    """Send `task` once the current transaction commits; drop it if it rolls back.

    The task is taken from this Flask app's Celery app, not Celery's process-wide default.
    """
    from flask import current_app

    from gefapi.extensions import db

    bound = current_app.extensions["celery"].tasks[task.name]
    db.session().info.setdefault(PENDING_KEY, []).append((bound, args, kwargs))


def deliver(task, args, kwargs) -> None:
    task.delay(*args, **kwargs)


@event.listens_for(Session, "after_commit")
def _send_pending(session):
    for task, args, kwargs in session.info.pop(PENDING_KEY, []):
        try:
            deliver(task, args, kwargs)
        except Exception:
            # The periodic jobs pick up anything whose task was lost; never fail a committed
            # request because the broker hiccuped.
            log.exception("Could not enqueue %s%r", task.name, args)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session):
    session.info.pop(PENDING_KEY, None)
