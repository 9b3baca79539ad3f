from tests.conftest import PASSWORD
from tests.helpers import assert_error


def attempt(client, email, password):
    return client.post("/auth", json={"email": email, "password": password})


def test_login_failures_are_throttled_with_retry_after(client, make_user, monkeypatch, app):
    monkeypatch.setitem(app.config, "RATE_LIMIT_AUTH_FAILURES", "3 per minute")
    user = make_user()
    for _ in range(3):
        assert_error(attempt(client, user.email, "wrong password"), 401)
    response = attempt(client, user.email, PASSWORD)
    assert_error(response, 429, "too_many_requests")
    assert int(response.headers["Retry-After"]) > 0


def test_successful_logins_are_not_counted(client, make_user, monkeypatch, app):
    """Real clients log in often: 25 in a row must all pass under a strict failure limit."""
    monkeypatch.setitem(app.config, "RATE_LIMIT_AUTH_FAILURES", "3 per minute")
    user = make_user()
    for _ in range(25):
        assert attempt(client, user.email, PASSWORD).status_code == 200


def test_ordinary_account_logs_in_20_times_a_minute_on_default_limits(
    client, make_user, monkeypatch, app
):
    from gefapi.config import Config

    for key in ("RATE_LIMIT_DEFAULT", "RATE_LIMIT_AUTH_FAILURES"):
        monkeypatch.setitem(app.config, key, getattr(Config, key))
    user = make_user()
    for _ in range(20):
        assert attempt(client, user.email, PASSWORD).status_code == 200


def test_environment_account_is_never_throttled(client, make_user, monkeypatch, app):
    monkeypatch.setitem(app.config, "RATE_LIMIT_AUTH_FAILURES", "2 per minute")
    env_user = make_user(email=app.config["API_ENVIRONMENT_USER"])
    for _ in range(3):
        attempt(client, "someone@x.org", "guess")
    assert_error(attempt(client, "someone@x.org", "guess"), 429)
    for _ in range(5):
        assert attempt(client, env_user.email, PASSWORD).status_code == 200


def test_default_limit_applies_per_user(client, make_user, auth, monkeypatch, app):
    monkeypatch.setitem(app.config, "RATE_LIMIT_DEFAULT", "5 per minute")
    first, second = make_user(), make_user()
    first_headers, second_headers = auth(first), auth(second)
    for _ in range(5):
        assert client.get("/api/v1/user/me", headers=first_headers).status_code == 200
    assert_error(client.get("/api/v1/user/me", headers=first_headers), 429)
    assert client.get("/api/v1/user/me", headers=second_headers).status_code == 200


def test_health_is_never_rate_limited(client, monkeypatch, app):
    monkeypatch.setitem(app.config, "RATE_LIMIT_DEFAULT", "1 per minute")
    for _ in range(3):
        assert client.get("/api-health").status_code == 200
