"""The stored totals under real concurrency: many transactions at once, on their own connections
to a database of their own, move executions of the same users. None deadlocks and the totals
stay equal to a count of the rows."""

import threading
import uuid

import pytest
from sqlalchemy import select

from gefapi.extensions import db
from gefapi.models import Execution, ExecutionStatus, Role, User
from gefapi.services import execution_state
from tests.conftest import add_script, own_database
from tests.helpers import counted_totals, stored_totals

THREADS, RUNS = 8, 12
PATH = (ExecutionStatus.READY, ExecutionStatus.RUNNING, ExecutionStatus.FINISHED)


@pytest.fixture
def world():
    with own_database() as (_, (app,)):
        with app.app_context():
            users = [
                User(
                    email=f"{n}@example.org",
                    name="T",
                    role=Role.USER,
                    email_notifications_enabled=False,
                )
                for n in range(2)
            ]
            db.session.add_all(users)
            db.session.flush()
            script = add_script(users[0].id)
            db.session.commit()
            ids = [u.id for u in users], script.id, script.current_build_id
        yield app, *ids


def churn(app, user_id, script_id, build_id, errors: list) -> None:
    """Runs of one user, each through its whole life in separate transactions."""
    try:
        with app.app_context():
            for n in range(RUNS):
                execution_id = uuid.uuid4()
                db.session.add(
                    Execution(
                        id=execution_id, script_id=script_id, build_id=build_id, user_id=user_id
                    )
                )
                db.session.commit()
                for status in PATH:
                    execution = db.session.scalar(
                        select(Execution).where(Execution.id == execution_id).with_for_update()
                    )
                    execution_state.transition(execution, status)
                    db.session.commit()
                if n % 3 == 0:
                    db.session.get(Execution, execution_id).deleted = True
                    db.session.commit()
    except Exception as exc:  # a deadlock or anything else: reported by the test
        errors.append(exc)


def test_totals_stay_exact_under_concurrent_writes(world):
    app, users, script_id, build_id = world
    errors: list = []
    threads = [
        threading.Thread(target=churn, args=(app, users[n % 2], script_id, build_id, errors))
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    stored, counted = stored_totals(app), counted_totals(app)
    kept = THREADS * (RUNS - len(range(0, RUNS, 3)))
    assert stored == counted and sum(stored.values()) == kept
    assert {status for _, status in stored} == {"FINISHED"}
    by_script = "script_execution_totals"
    assert stored_totals(app, by_script) == counted_totals(app, by_script)


def test_deleting_a_user_while_their_run_is_dispatched_does_not_deadlock():
    """Dispatch locks an execution, then its owner's row; deleting the owner takes the same
    rows. Held here by a dispatch in progress on its own connection, the deletion must wait and
    then finish, never deadlock (found in the end-to-end run: a 503 on DELETE /user/me)."""
    import time

    import psycopg2

    from gefapi.services import user_service

    with own_database() as (url, (app,)):
        with app.app_context():
            owner = User(email="owner@example.org", name="O", role=Role.USER)
            db.session.add(owner)
            db.session.flush()
            script = add_script(owner.id)
            execution = Execution(
                script_id=script.id, build_id=script.current_build_id, user_id=owner.id
            )
            db.session.add(execution)
            db.session.commit()
            owner_id, execution_id = owner.id, execution.id
        dispatcher = psycopg2.connect(url.replace("+psycopg2", "", 1))
        cursor = dispatcher.cursor()
        cursor.execute("SELECT 1 FROM executions WHERE id = %s FOR UPDATE", (str(execution_id),))
        outcome = {}

        def delete():
            with app.app_context():
                try:
                    user = db.session.get(User, owner_id)
                    user_service.delete(user, by=user)
                    outcome["ok"] = True
                except Exception as exc:  # what the request would have answered 503 for
                    outcome["error"] = exc

        deleting = threading.Thread(target=delete)
        deleting.start()
        watcher = psycopg2.connect(url.replace("+psycopg2", "", 1))
        watcher.autocommit = True
        for _ in range(200):  # until the deletion waits on a lock the dispatcher holds
            cur = watcher.cursor()
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            if cur.fetchone()[0]:
                break
            time.sleep(0.05)
        cursor.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (str(owner_id),))
        dispatcher.commit()
        deleting.join(timeout=60)
        dispatcher.close()
        watcher.close()
        assert outcome == {"ok": True}, outcome
        with app.app_context():
            assert db.session.get(Execution, execution_id).status == "CANCELLED"
            assert db.session.get(User, owner_id).deleted
