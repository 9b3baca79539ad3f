"""Issue 11, findings 4 and 5: no account takeover through an email change, no account
enumeration through login or recovery, no lockout that keeps the owner out for good, no
throttling of correct logins for other people's failures."""

import json
import statistics
import time
from urllib.parse import quote

import pytest

import gefapi.queue
from gefapi.extensions import db
from gefapi.models import FailedLogins, OneTimeToken, Role, User
from gefapi.models.base import utcnow
from gefapi.services.auth_service import email_hash
from tests.conftest import PASSWORD
from tests.helpers import assert_error, data, sql_statements
from tests.test_users import NEW_PASSWORD, can_login, password_from, token_from

UNKNOWN = "nobody-here@example.org"


def attempt(client, email, password="wrong password"):
    return client.post("/auth", json={"email": email, "password": password})


def answer(response) -> tuple:
    """What a caller can tell apart, without the email itself."""
    return response.status_code, response.get_json()


def spread(label: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    print(
        f"{label}: median {statistics.median(ms):.1f} ms, "
        f"min {ms[0]:.1f}, max {ms[-1]:.1f}, n={len(ms)}"
    )


@pytest.fixture
def queued(monkeypatch):
    """Every task the request sends, recorded and not run: the request path on its own, as
    with a real broker."""
    sent = []
    monkeypatch.setattr(gefapi.queue, "deliver", lambda task, args, kw: sent.append((task, args)))
    return sent


def statement_texts(statements) -> list[str]:
    return [statement for statement, _ in statements]


# Finding 4: the email of another account -------------------------------------------------------


def test_an_admin_cannot_move_a_users_email(client, make_user, auth, app, mailbox):
    user, admin = make_user(), make_user(role=Role.ADMIN)
    stolen = "attacker@example.org"
    response = client.patch(f"/api/v1/user/{user.id}", json={"email": stolen}, headers=auth(admin))
    assert_error(response, 403, "permission_denied")
    with app.app_context():
        assert db.session.get(User, user.id).email == user.email
    # So recovery at the attacker's address reaches nobody.
    client.post(f"/api/v1/user/{quote(stolen)}/recover-password?legacy=false", json={})
    assert mailbox.to(stolen) == []


def test_an_admin_may_still_send_the_unchanged_email_with_a_profile_edit(client, make_user, auth):
    """The admin UI posts its whole form, email included."""
    user, admin = make_user(email="keep@example.org"), make_user(role=Role.ADMIN)
    body = {"email": "Keep@Example.org", "name": "Renamed"}
    updated = data(client.patch(f"/api/v1/user/{user.id}", json=body, headers=auth(admin)))
    assert (updated["email"], updated["name"]) == ("keep@example.org", "Renamed")


def test_a_superadmin_may_change_an_email(client, make_user, auth):
    user, superadmin = make_user(), make_user(role=Role.SUPERADMIN)
    new = "moved@example.org"
    body = {"email": new}
    updated = data(client.patch(f"/api/v1/user/{user.id}", json=body, headers=auth(superadmin)))
    assert updated["email"] == new
    assert can_login(client, new, PASSWORD)


# Finding 5: the same answers for known and unknown emails --------------------------------------


def test_login_answers_the_same_for_known_and_unknown_emails_through_a_lock(client, make_user, app):
    user = make_user()
    rounds = app.config["LOGIN_FAILURES_BEFORE_LOCK"] + 3
    known = [answer(attempt(client, user.email)) for _ in range(rounds)]
    unknown = [answer(attempt(client, UNKNOWN)) for _ in range(rounds)]
    assert known == unknown
    assert known[0][1]["error_code"] == "invalid_credentials"
    assert known[-1][1]["error_code"] == "account_locked"  # the contract's lock answer, for both
    assert {"minutes_remaining", "requires_password_reset"} <= known[-1][1].keys()


def compare(app, emails: dict, call, rounds: int) -> dict:
    """`call(email)` for each email in turn, `rounds` times (interleaved, so that warming up
    favours neither): the spread of the times is printed, and each email's answers and SQL
    statements (without their parameters) are returned."""
    times, seen = {label: [] for label in emails}, {label: set() for label in emails}
    for _ in range(rounds):
        for label, email in emails.items():
            started = time.perf_counter()
            response, statements = sql_statements(app, lambda e=email: call(e))
            times[label].append(time.perf_counter() - started)
            body = json.dumps(response.get_json(), sort_keys=True)
            seen[label].add((response.status_code, body, tuple(statement_texts(statements))))
    for label, seconds in times.items():
        spread(f"{call.__name__}, {label} email", seconds)
    return seen


def test_a_failed_login_does_the_same_work_for_known_and_unknown_emails(client, make_user, app):
    user = make_user()

    def failed_login(email):
        return attempt(client, email)

    rounds = app.config["LOGIN_FAILURES_BEFORE_LOCK"] - 1  # short of a lock
    seen = compare(app, {"known": user.email, "unknown": UNKNOWN}, failed_login, rounds)
    assert seen["known"] == seen["unknown"]
    [(status, body, _)] = seen["known"]
    assert (status, json.loads(body)["error_code"]) == (401, "invalid_credentials")


def test_recovery_answers_the_same_and_does_the_same_work_for_every_email(
    client, make_user, app, queued
):
    user = make_user()

    def recover_password(email):
        queued.clear()
        response = client.post(f"/api/v1/user/{quote(email)}/recover-password?legacy=false")
        # The lookup, the token and the email are one background task, for every address.
        assert [(task.name, args) for task, args in queued] == [("email.recovery", (email, False))]
        return response

    seen = compare(app, {"known": user.email, "unknown": UNKNOWN}, recover_password, 20)
    assert seen["known"] == seen["unknown"]
    [(status, _, _)] = seen["known"]
    assert status == 200
    with app.app_context():
        assert db.session.scalar(db.select(OneTimeToken).filter_by(user_id=user.id)) is None


def test_the_recovery_task_mails_only_existing_accounts(client, make_user, mailbox):
    user = make_user()
    for email in (user.email, UNKNOWN):
        data(client.post(f"/api/v1/user/{quote(email)}/recover-password?legacy=false", json={}))
    assert len(mailbox.to(user.email)) == 1
    assert mailbox.to(UNKNOWN) == []


# Finding 5: a lock never keeps the owner out for good -------------------------------------------


def lock(client, app, email):
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCK"]):
        attempt(client, email)
    assert_error(attempt(client, email, PASSWORD), 401, "account_locked")


def expire_lock(app, email):
    with app.app_context():
        db.session.get(FailedLogins, email_hash(email)).locked_until = utcnow()
        db.session.commit()


def test_a_password_reset_lifts_the_lock_at_once(client, make_user, app, mailbox):
    user = make_user()
    lock(client, app, user.email)
    client.post(f"/api/v1/user/{quote(user.email)}/recover-password?legacy=false", json={})
    reset = {"token": token_from(mailbox.to(user.email)[-1]), "password": NEW_PASSWORD}
    data(client.post("/api/v1/user/reset-password", json=reset))
    assert can_login(client, user.email, NEW_PASSWORD)


def test_an_emailed_temporary_password_opens_a_locked_account(client, make_user, app, mailbox):
    """Legacy recovery (old plugins) emails a password: it works during the lock, and the
    lock's guesses never could have hit it."""
    user = make_user()
    lock(client, app, user.email)
    client.post(f"/api/v1/user/{quote(user.email)}/recover-password", json={})
    temporary = password_from(mailbox.to(user.email)[-1])
    assert can_login(client, user.email, temporary)
    assert can_login(client, user.email, temporary), "the lock is gone and it is the password"


def test_attempts_during_a_lock_do_not_extend_it(client, make_user, app):
    user = make_user()
    lock(client, app, user.email)
    with app.app_context():
        until = db.session.get(FailedLogins, email_hash(user.email)).locked_until
    for _ in range(app.config["LOGIN_FAILURES_BEFORE_LOCK"] * 3):
        assert_error(attempt(client, user.email), 401, "account_locked")
    with app.app_context():
        assert db.session.get(FailedLogins, email_hash(user.email)).locked_until == until


def test_a_renewed_lock_sends_the_owner_to_the_password_reset(client, make_user, app):
    """Someone who keeps an account locked leaves its owner the reset, which lifts the lock;
    the plugin opens its forgot-password flow on requires_password_reset. Unknown emails
    answer alike."""
    user = make_user()
    answers = {}
    for email in (user.email, UNKNOWN):
        lock(client, app, email)
        first = assert_error(attempt(client, email, PASSWORD), 401, "account_locked")
        expire_lock(app, email)
        lock(client, app, email)
        second = assert_error(attempt(client, email, PASSWORD), 401, "account_locked")
        answers[email] = (first, second)
        assert first["requires_password_reset"] is False
        assert second["requires_password_reset"] is True
        assert second["minutes_remaining"] > first["minutes_remaining"]
    assert answers[user.email] == answers[UNKNOWN]


def test_old_failures_are_purged(client, make_user, app):
    from datetime import timedelta

    from gefapi.services import auth_service

    attempt(client, UNKNOWN)
    with app.app_context():
        row = db.session.get(FailedLogins, email_hash(UNKNOWN))
        row.last_failure_at = utcnow() - timedelta(
            hours=app.config["LOGIN_FAILURES_FORGOTTEN_HOURS"] + 1
        )
        db.session.commit()
        auth_service.purge_expired()
        assert db.session.get(FailedLogins, email_hash(UNKNOWN)) is None


# Finding 5: other people's failures from the same address ---------------------------------------


def test_failures_at_other_accounts_do_not_block_a_correct_login_from_the_same_address(
    client, make_user, monkeypatch, app
):
    """Behind a proxy or NAT everyone shares an address: the failure limit counts per address
    and per account tried."""
    monkeypatch.setitem(app.config, "RATE_LIMIT_AUTH_FAILURES", "3 per minute")
    guessed, owner = make_user(), make_user()
    for email in (guessed.email, UNKNOWN):
        for _ in range(3):
            assert_error(attempt(client, email), 401)
        assert_error(attempt(client, email), 429, "too_many_requests")
    assert attempt(client, owner.email, PASSWORD).status_code == 200
