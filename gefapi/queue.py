"""Sending tasks after commit. Services name the task they want run; they never import the
task modules (which call services), so the dependency runs one way: tasks -> services -> queue.
"""

import logging

from flask import current_app
from flask_sqlalchemy.session import Session
from sqlalchemy import event

from gefapi.extensions import db

log = logging.getLogger(__name__)
PENDING_KEY = "gefapi.pending_tasks"


def enqueue(name: str, *args, **kwargs) -> None:
    """Send the task `name` once the current transaction commits; drop it if it rolls back.

    The task is taken from this Flask app's Celery app (an unknown name fails here, at once),
    not Celery's process-wide default.
    """
    db.session().info.setdefault(PENDING_KEY, []).append((_task(name), args, kwargs))


def send_now(name: str, *args, **kwargs) -> None:
    """Send the task `name` without waiting for a commit (for periodic re-sends)."""
    deliver(_task(name), args, kwargs)


def _task(name: str):
    return current_app.extensions["celery"].tasks[name]


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
