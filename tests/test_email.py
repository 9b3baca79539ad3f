import pytest

from gefapi.models import Role
from tests.helpers import assert_error, data


@pytest.fixture
def people(make_user):
    return {
        "listed": make_user(email="listed@x.org", is_in_mailing_list=True),
        "unlisted": make_user(email="unlisted@x.org"),
        "deleted": make_user(email="deleted@x.org", is_in_mailing_list=True, deleted=True),
        "admin": make_user(Role.ADMIN, email="admin@x.org"),
    }


def recipients(mailbox) -> set[str]:
    return {message["To"] for message in mailbox.messages}


def test_mailing_list_mail_reaches_only_subscribed_active_users(client, auth, people, mailbox):
    body = {
        "subject": "News",
        "text": "Hello",
        "html": "<p>Hello</p>",
        "recipients": "mailing_list",
    }
    assert data(client.post("/api/v1/email", json=body, headers=auth(people["admin"]))) == {
        "queued": 1
    }
    assert recipients(mailbox) == {"listed@x.org"}
    [message] = mailbox.messages
    assert message["Subject"] == "News"
    assert message.get_body(preferencelist=("html",)).get_content().strip() == "<p>Hello</p>"


def test_all_reaches_every_active_user(client, auth, people, mailbox):
    body = {"subject": "Maintenance", "text": "Down tonight", "recipients": "all"}
    assert (
        data(client.post("/api/v1/email", json=body, headers=auth(people["admin"])))["queued"] == 3
    )
    assert recipients(mailbox) == {"listed@x.org", "unlisted@x.org", "admin@x.org"}


def test_listed_recipients_by_id_or_email(client, auth, people, mailbox, app):
    app.config["EMAIL_BATCH_SIZE"], batch = 1, app.config["EMAIL_BATCH_SIZE"]
    try:
        body = {
            "subject": "Hi",
            "text": "x",
            "recipients": [str(people["unlisted"].id), "LISTED@x.org", str(people["deleted"].id)],
        }
        queued = data(client.post("/api/v1/email", json=body, headers=auth(people["admin"])))[
            "queued"
        ]
    finally:
        app.config["EMAIL_BATCH_SIZE"] = batch
    assert queued == 2
    assert recipients(mailbox) == {"listed@x.org", "unlisted@x.org"}


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "x", "recipients": "all"},
        {"subject": "", "text": "x", "recipients": "all"},
        {"subject": "x", "text": "x", "recipients": "everyone"},
        {"subject": "x", "text": "x", "recipients": []},
        {"subject": "x", "text": "x", "recipients": ["not an id"]},
        {"subject": "x", "text": "x", "recipients": [1, 2]},
    ],
)
def test_invalid_requests_send_nothing(client, auth, people, mailbox, body):
    assert_error(client.post("/api/v1/email", json=body, headers=auth(people["admin"])), 400)
    assert mailbox.messages == []


def test_an_unknown_field_is_ignored_never_obeyed(client, auth, people, mailbox):
    """Tolerant input (CONTRACT section 1): a `bcc` is not a field, so nobody gets a copy."""
    body = {"subject": "x", "text": "x", "recipients": "all", "bcc": "me@x.org"}
    assert client.post("/api/v1/email", json=body, headers=auth(people["admin"])).status_code == 200
    assert "me@x.org" not in recipients(mailbox)
    assert all("Bcc" not in message for message in mailbox.messages)


def test_users_cannot_send(client, auth, people, mailbox):
    body = {"subject": "x", "text": "x", "recipients": "all"}
    assert_error(client.post("/api/v1/email", json=body, headers=auth(people["listed"])), 403)
    assert mailbox.messages == []
