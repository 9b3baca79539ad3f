"""Webhooks: OGC subscribers and the user's URL, signed deliveries sent by the worker after
commit, retries with backoff, SSRF refusals, a lost task picked up again."""

import json
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gefapi.extensions import db
from gefapi.models import Execution, Role
from gefapi.models.webhook import DeliveryState, ExecutionSubscriber, UserWebhook, WebhookDelivery
from gefapi.services import webhook_service
from tests.helpers import assert_error, data


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records what it gets and answers `status`."""

    def __init__(self):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[tuple[dict, dict]]:
        return [(headers, json.loads(body)) for p, headers, body in self.requests if p == path]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def loopback_allowed(app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", ["127.0.0.1/32"])


@pytest.fixture
def world(make_user, make_script):
    admin = make_user(Role.ADMIN)
    user = make_user()
    script = make_script(admin, public=True, name="hooked", slug="hooked")
    return admin, user, script


def deliver_sent(app, sent_tasks) -> list:
    """Run the delivery tasks sent so far, as the worker would."""
    states = []
    for name, *args in list(sent_tasks):
        if name == "webhooks.deliver":
            sent_tasks.remove((name, *args))
            with app.app_context():
                states.append(webhook_service.deliver(args[0]))
    return states


def test_private_targets_are_refused_at_submission(client, world, auth, sent_tasks):
    _, user, _ = world
    for url in ("http://10.1.2.3/hook", "http://127.0.0.1:9/hook", "http://169.254.169.254/"):
        assert_error(
            client.put("/api/v1/webhook", json={"url": url}, headers=auth(user)),
            400,
            "webhook_target_refused",
        )
        response = client.post(
            "/ogc/processes/hooked/execution",
            json={"subscriber": {"successUri": url}},
            headers={**auth(user), "Prefer": "respond-async"},
        )
        assert response.status_code == 400
        assert response.get_json()["error_code"] == "webhook_target_refused"
    assert sent_tasks == []  # no execution was created


def test_ogc_subscriber_gets_one_signed_delivery_per_event(
    client, world, auth, app, sent_tasks, receiver, loopback_allowed, runtime_headers
):
    admin, user, _ = world
    subscriber = {
        "successUri": receiver.url + "/success",
        "inProgressUri": receiver.url + "/progress",
        "failedUri": receiver.url + "/failed",
    }
    response = client.post(
        "/ogc/processes/hooked/execution",
        json={"inputs": {}, "subscriber": subscriber},
        headers={**auth(user), "Prefer": "respond-async"},
    )
    assert response.status_code == 201, response.get_json()
    job_id = response.get_json()["jobID"]
    with app.app_context():
        stored = db.session.get(ExecutionSubscriber, uuid.UUID(job_id))
        assert stored.success_uri == subscriber["successUri"]
    admin_headers = auth(admin)
    for status in ("READY", "RUNNING"):
        data(
            client.patch(
                f"/api/v1/execution/{job_id}", json={"status": status}, headers=admin_headers
            )
        )
    data(
        client.patch(
            f"/api/v1/execution/{job_id}",
            json={"status": "FINISHED", "results": {"area": 3}},
            headers=admin_headers,
        )
    )
    # Nothing is sent in the request: the worker sends after commit.
    assert receiver.requests == []
    assert deliver_sent(app, sent_tasks) == ["DELIVERED"] * 3
    progress = receiver.to("/progress")
    assert [body["execution"]["status"] for _, body in progress] == ["READY", "RUNNING"]
    [(headers, body)] = receiver.to("/success")
    assert body["status"] == "successful" and body["jobID"] == job_id
    assert body["execution"]["results"] == {"area": 3}
    assert receiver.to("/failed") == []
    secret = data(client.get("/api/v1/webhook", headers=auth(user)))["secret"]
    for path, headers, raw in receiver.requests:
        assert webhook_service.verify(secret, raw, headers["X-Gefapi-Signature"]), path
        assert not webhook_service.verify("another secret", raw, headers["X-Gefapi-Signature"])
    # A redelivered task sends nothing again.
    with app.app_context():
        ids = [d.id for d in db.session.query(WebhookDelivery).filter_by(execution_id=job_id)]
        assert {webhook_service.deliver(str(i)) for i in ids} == {None}
    assert len(receiver.requests) == 3
    listed = data(
        client.get(f"/api/v1/webhook/deliveries?execution_id={job_id}", headers=auth(user))
    )
    assert {(d["state"], d["attempts"], d["last_status_code"]) for d in listed} == {
        ("DELIVERED", 1, 200)
    }


def test_signature_is_timestamped_against_replay():
    body = b'{"a":1}'
    header = webhook_service.sign("s3cret", body, at=1_000_000)
    assert header.startswith("t=1000000,v1=")
    assert not webhook_service.verify("s3cret", body, header)  # far too old
    fresh = webhook_service.sign("s3cret", body)
    assert webhook_service.verify("s3cret", body, fresh)
    assert not webhook_service.verify("s3cret", body + b" ", fresh)


def test_user_webhook_hears_every_status_change_of_native_runs(
    client, world, auth, app, sent_tasks, receiver, loopback_allowed
):
    _admin, user, script = world
    setting = data(
        client.put("/api/v1/webhook", json={"url": receiver.url + "/mine"}, headers=auth(user))
    )
    assert setting["url"] == receiver.url + "/mine" and len(setting["secret"]) == 64
    execution = data(client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)))
    data(client.post(f"/api/v1/execution/{execution['id']}/cancel", headers=auth(user)), 202)
    deliver_sent(app, sent_tasks)
    [(_, body)] = receiver.to("/mine")
    assert body["execution"]["status"] == "CANCELLED" and body["status"] == "dismissed"
    rotated = data(client.post("/api/v1/webhook/secret", headers=auth(user)))
    assert rotated["secret"] != setting["secret"]
    assert data(client.delete("/api/v1/webhook", headers=auth(user)))["url"] is None


def test_failing_receiver_gets_retries_with_backoff(
    client, world, auth, app, sent_tasks, receiver, loopback_allowed, monkeypatch
):
    _admin, user, script = world
    monkeypatch.setitem(app.config, "WEBHOOK_MAX_ATTEMPTS", 3)
    receiver.status = 500
    data(client.put("/api/v1/webhook", json={"url": receiver.url + "/down"}, headers=auth(user)))
    execution = data(client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)))
    data(client.post(f"/api/v1/execution/{execution['id']}/cancel", headers=auth(user)), 202)
    assert deliver_sent(app, sent_tasks) == ["PENDING"]
    with app.app_context():
        delivery = db.session.query(WebhookDelivery).one()
        delivery_id, first_due = str(delivery.id), delivery.next_attempt_at
        assert (delivery.attempts, delivery.last_status_code) == (1, 500)
        assert first_due - delivery.created_at >= timedelta(seconds=29)  # backoff: 30 s, 60 s
        assert webhook_service.deliver(delivery_id) is None  # not due yet
        assert webhook_service.retry_due() == 0
    waits = []
    for expected in ("PENDING", "FAILED"):
        with app.app_context():
            delivery = db.session.get(WebhookDelivery, uuid.UUID(delivery_id))
            waits.append(delivery.next_attempt_at - delivery.created_at)
            delivery.next_attempt_at -= timedelta(hours=2)  # time passes
            db.session.commit()
            assert webhook_service.retry_due() == 1
        assert deliver_sent(app, sent_tasks) == [expected]
    assert len(receiver.requests) == 3
    with app.app_context():
        delivery = db.session.get(WebhookDelivery, uuid.UUID(delivery_id))
        assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 3)
    assert waits[0] < timedelta(seconds=40)


def test_a_lost_task_is_sent_by_the_sweep(
    client, world, auth, app, sent_tasks, receiver, loopback_allowed
):
    """The worker died (or the broker lost the message): the row outlives it."""
    _, user, script = world
    data(client.put("/api/v1/webhook", json={"url": receiver.url + "/lost"}, headers=auth(user)))
    execution = data(client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)))
    data(client.post(f"/api/v1/execution/{execution['id']}/cancel", headers=auth(user)), 202)
    sent_tasks.clear()  # lost
    with app.app_context():
        delivery = db.session.query(WebhookDelivery).one()
        delivery.next_attempt_at -= timedelta(minutes=1)
        db.session.commit()
        assert webhook_service.retry_due() == 1
    assert deliver_sent(app, sent_tasks) == ["DELIVERED"]
    assert len(receiver.to("/lost")) == 1


def test_target_that_turns_private_is_refused_when_sent(
    client, world, auth, app, sent_tasks, receiver, loopback_allowed, monkeypatch
):
    _, user, script = world
    data(client.put("/api/v1/webhook", json={"url": receiver.url + "/x"}, headers=auth(user)))
    execution = data(client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)))
    data(client.post(f"/api/v1/execution/{execution['id']}/cancel", headers=auth(user)), 202)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", [])
    assert deliver_sent(app, sent_tasks) == ["REFUSED"]
    assert receiver.requests == []


def test_no_listener_no_delivery(client, world, auth, app, sent_tasks):
    _, user, script = world
    execution = data(client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)))
    data(client.post(f"/api/v1/execution/{execution['id']}/cancel", headers=auth(user)), 202)
    assert [t for t in sent_tasks if t[0] == "webhooks.deliver"] == []
    with app.app_context():
        assert db.session.query(WebhookDelivery).count() == 0
        assert db.session.get(UserWebhook, user.id) is None
        assert db.session.get(Execution, uuid.UUID(execution["id"])).status == "CANCELLED"
