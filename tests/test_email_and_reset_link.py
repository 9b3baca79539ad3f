"""Bulk email subjects and the emailed password link (issue 11, finding 6).

A subject with a line break used to be queued (`queued: 1`) and then fail in the worker, so the
mail was never sent: it is refused at the request. The default emailed link is a GET on
`/api/v1/user/reset-password`, which used to reach the user lookup and answer 401: it opens a
page that posts the new password to the reset endpoint on the same path.
"""

import re
from urllib.parse import urlsplit

import pytest

from gefapi.models import Role
from tests.conftest import PASSWORD
from tests.helpers import assert_error, data

NEW_PASSWORD = "a brand new passphrase 42"


# Subjects --------------------------------------------------------------------------------------

BAD_SUBJECTS = {
    "CRLF": "News\r\nBcc: everyone@example.org",
    "LF": "News\nmore",
    "CR": "News\rmore",
    "tab": "News\tmore",
    "vertical tab": "News\x0bmore",
    "escape": "News\x1b[31m",
    "next line (U+0085)": "News\x85more",
    "line separator (U+2028)": "News\u2028more",
    "paragraph separator (U+2029)": "News\u2029more",
}


@pytest.mark.parametrize("subject", BAD_SUBJECTS.values(), ids=BAD_SUBJECTS.keys())
def test_subject_with_a_line_break_or_control_character_is_400(
    client, auth, make_user, mailbox, sent_tasks, subject
):
    admin = make_user(Role.ADMIN)
    headers = auth(admin)
    body = {"subject": subject, "text": "Hello", "recipients": "all"}
    response = client.post("/api/v1/email", json=body, headers=headers)
    assert "subject" in assert_error(response, 400)["errors"]
    assert mailbox.messages == [] and sent_tasks == []


def test_subject_in_any_script_is_sent(client, auth, make_user, mailbox):
    """The control: letters of every script, punctuation and emoji are one line."""
    admin = make_user(Role.ADMIN, email="admin@example.org")
    subject = "Café — ¿Qué tal? 世界 🌍"
    body = {"subject": subject, "text": "Hello", "recipients": [admin.email]}
    assert data(client.post("/api/v1/email", json=body, headers=auth(admin))) == {"queued": 1}
    [message] = mailbox.to(admin.email)
    assert message["Subject"] == subject


# The emailed link ------------------------------------------------------------------------------


def emailed_link(message) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    url = urlsplit(re.search(r"https?://\S+", text).group(0))
    return f"{url.path}?{url.query}"


def assert_reset_page(response) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<form" in page and 'type="password"' in page
    # The page's own script may run and talk to this server; nothing else.
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in policy and "connect-src 'self'" in policy
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"  # the token stays here


def submit(client, link: str, password: str):
    """What the page's script does: the link's token and the new password, as JSON, to POST on
    the page's own path."""
    path, query = link.split("?", 1)
    token = dict(part.split("=", 1) for part in query.split("&"))["token"]
    return client.post(path, json={"token": token, "password": password})


def can_login(client, email, password) -> bool:
    return client.post("/auth", json={"email": email, "password": password}).status_code == 200


def test_reset_link_opens_a_page_that_resets_the_password(client, make_user, mailbox):
    user = make_user(email="forgetful@example.org")
    data(client.post(f"/api/v1/user/{user.email}/recover-password?legacy=false", json={}))
    link = emailed_link(mailbox.to(user.email)[0])
    assert link.startswith("/api/v1/user/reset-password?token=")

    page = client.get(link)  # as a browser opens it: no token of ours, no JSON content type
    assert_reset_page(page)
    assert "fetch(window.location.pathname" in page.get_data(as_text=True)

    data(submit(client, link, NEW_PASSWORD))
    assert can_login(client, user.email, NEW_PASSWORD)
    assert not can_login(client, user.email, PASSWORD)


def test_account_setup_link_opens_the_same_page(client, mailbox):
    body = {"email": "newcomer@example.org", "name": "Newcomer"}
    data(client.post("/api/v1/user?legacy=false", json=body))
    link = emailed_link(mailbox.to("newcomer@example.org")[0])
    assert_reset_page(client.get(link))
    data(submit(client, link, NEW_PASSWORD))
    assert can_login(client, "newcomer@example.org", NEW_PASSWORD)


def test_reset_page_without_a_token_or_with_a_stale_one_is_the_page(client):
    """The page itself explains a missing token; a stale or wrong one fails when posted."""
    assert_reset_page(client.get("/api/v1/user/reset-password"))
    assert_reset_page(client.get("/api/v1/user/reset-password?token=stale"))
    response = client.post(
        "/api/v1/user/reset-password", json={"token": "stale", "password": NEW_PASSWORD}
    )
    assert_error(response, 404, "token_not_found")


def test_opening_the_page_does_not_use_up_the_recovery_limit(app, client, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PASSWORD_RECOVERY", "2 per minute")
    for _ in range(5):
        assert client.get("/api/v1/user/reset-password?token=x").status_code == 200
    response = client.post(
        "/api/v1/user/reset-password", json={"token": "x", "password": NEW_PASSWORD}
    )
    assert_error(response, 404)
