"""Webhooks: who is told of an execution's status changes, and the worker's signed deliveries.

Targets: the OGC `subscriber` of an execution (successUri on FINISHED, failedUri on FAILED or
CANCELLED, inProgressUri on every other change) and the owner's own webhook URL (every change).
`on_status_change` runs inside execution_state.transition, in the caller's transaction: it
records one delivery per target and event, sent by the worker once that transaction commits
(gefapi.queue.enqueue). A delivery is claimed before it is sent, so a redelivered task or the
retry sweep never sends it twice at once; it is retried with exponential backoff and recorded
(state, attempts, last status code or error). Targets in private, loopback, link-local or other
non-global ranges are refused, at submission and again when sent, unless an operator
allow-lists them (WEBHOOK_ALLOWED_NETWORKS).

Signature: `X-Gefapi-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`
with the owner's secret; receivers recompute it and refuse old timestamps (see `verify`).
"""

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session

from gefapi.errors import ValidationError
from gefapi.extensions import db
from gefapi.models import Execution, ExecutionStatus, User
from gefapi.models.base import utcnow
from gefapi.models.execution import OGC_STATUS
from gefapi.models.webhook import (
    DeliveryState,
    ExecutionSubscriber,
    UserWebhook,
    WebhookDelivery,
)
from gefapi.queue import enqueue
from gefapi.schemas.common import timestamp

EVENT = "execution.status_changed"
SUBSCRIBER_KEY = "gefapi.webhooks.subscriber"
S = ExecutionStatus


class TargetRefused(ValidationError):
    error_code = "webhook_target_refused"


# Targets -----------------------------------------------------------------------------------


def _allowed_networks() -> list:
    return [
        ipaddress.ip_network(name, strict=False)
        for name in current_app.config["WEBHOOK_ALLOWED_NETWORKS"]
    ]


def check_target(url: str, field: str = "url") -> None:
    """Refuse anything but http(s) to hosts whose every address is public or allow-listed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(
            "Webhook targets are http or https URLs", errors={field: ["Not an http(s) URL."]}
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError):
        raise TargetRefused(
            "The webhook host does not resolve", errors={field: ["Host does not resolve."]}
        ) from None
    allowed = _allowed_networks()
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global and not any(address in network for network in allowed):
            raise TargetRefused(
                "Webhook targets in private, loopback or link-local ranges are refused",
                errors={field: [f"{parts.hostname} resolves to {address}, which is not public."]},
            )


# The user's setting ------------------------------------------------------------------------


def get_setting(user: User) -> UserWebhook:
    """The user's webhook row, created (with a new secret) on first use. No commit."""
    setting = db.session.get(UserWebhook, user.id)
    if setting is None:
        setting = UserWebhook(user_id=user.id, secret=secrets.token_hex(32))
        db.session.add(setting)
        db.session.flush()
    return setting


def read_setting(user: User) -> UserWebhook:
    setting = get_setting(user)
    db.session.commit()
    return setting


def set_url(user: User, url: str | None) -> UserWebhook:
    if url:
        check_target(url)
    setting = get_setting(user)
    setting.url = url or None
    db.session.commit()
    return setting


def rotate_secret(user: User) -> UserWebhook:
    setting = get_setting(user)
    setting.secret = secrets.token_hex(32)
    db.session.commit()
    return setting


def list_deliveries(user: User, *, execution_id=None, limit: int = 100) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.user_id == user.id)
    if execution_id is not None:
        query = query.where(WebhookDelivery.execution_id == execution_id)
    return db.session.scalars(query.order_by(WebhookDelivery.created_at.desc()).limit(limit)).all()


# OGC subscribers ---------------------------------------------------------------------------


def check_subscriber(subscriber: dict) -> dict:
    """The subscriber's URIs, each checked; keys as stored."""
    names = {
        "successUri": "success_uri",
        "inProgressUri": "in_progress_uri",
        "failedUri": "failed_uri",
    }
    checked = {}
    for key, column in names.items():
        if subscriber.get(key):
            check_target(subscriber[key], field=f"subscriber.{key}")
            checked[column] = subscriber[key]
    return checked


def subscribe_next_execution(uris: dict) -> None:
    """The execution the current transaction creates next gets these subscriber URIs, in the
    same transaction (so no status change can precede them)."""
    if uris:
        db.session.info[SUBSCRIBER_KEY] = uris


def forget_pending_subscriber() -> None:
    db.session.info.pop(SUBSCRIBER_KEY, None)


@event.listens_for(Session, "before_flush")
def _attach_subscriber(session, _context, _instances):
    uris = session.info.get(SUBSCRIBER_KEY)
    if not uris:
        return
    for obj in session.new:
        if isinstance(obj, Execution):
            session.info.pop(SUBSCRIBER_KEY)
            session.add(ExecutionSubscriber(execution_id=obj.id, **uris))
            return


@event.listens_for(Session, "after_rollback")
def _drop_subscriber(session):
    session.info.pop(SUBSCRIBER_KEY, None)


# Recording (inside execution_state.transition) ------------------------------------------

TARGETS = text(
    "SELECT (SELECT url FROM user_webhooks WHERE user_id = :user_id), "
    "s.success_uri, s.in_progress_uri, s.failed_uri "
    "FROM (SELECT 1) AS one "
    "LEFT JOIN execution_subscribers s ON s.execution_id = :execution_id"
)


def on_status_change(execution: Execution) -> None:
    """Record a delivery per target of this status change; sent after commit. One query when
    nobody listens."""
    user_url, success_uri, in_progress_uri, failed_uri = db.session.execute(
        TARGETS, {"user_id": execution.user_id, "execution_id": execution.id}
    ).one()
    status = ExecutionStatus(execution.status)
    if status == S.FINISHED:
        subscriber_url = success_uri
    elif status in (S.FAILED, S.CANCELLED):
        subscriber_url = failed_uri
    else:
        subscriber_url = in_progress_uri
    targets = [url for url in (subscriber_url, user_url) if url]
    for url in dict.fromkeys(targets):  # one delivery per URL and event
        delivery = WebhookDelivery(
            id=uuid.uuid4(),
            execution_id=execution.id,
            user_id=execution.user_id,
            url=url,
            event=EVENT,
            payload=payload(execution),
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=utcnow(),
        )
        db.session.add(delivery)
        enqueue("webhooks.deliver", str(delivery.id))


def payload(execution: Execution) -> dict:
    status = ExecutionStatus(execution.status)
    body = {
        "event": EVENT,
        "jobID": str(execution.id),
        "status": OGC_STATUS[status],
        "execution": {
            "id": str(execution.id),
            "script_id": str(execution.script_id),
            "user_id": str(execution.user_id),
            "status": status.value,
            "progress": execution.progress,
            "start_date": timestamp(execution.start_date) if execution.start_date else None,
            "end_date": timestamp(execution.end_date) if execution.end_date else None,
        },
        "timestamp": timestamp(utcnow()),
    }
    if status == S.FINISHED:
        body["execution"]["results"] = execution.results
    return body


# Sending (the worker) ----------------------------------------------------------------------


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300) -> bool:
    """What a receiver does: the signature matches and its time is recent (no replay)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        at = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, at), f"t={at},v1={fields.get('v1', '')}")


def backoff(attempts: int) -> float:
    config = current_app.config
    return min(config["WEBHOOK_RETRY_SECONDS"] * 2 ** (attempts - 1), 3600.0)


def deliver(delivery_id: str) -> str | None:
    """Claim the delivery if it is due, send it, record the outcome. Returns the new state, or
    None when there was nothing to do (already sent, not due, claimed elsewhere)."""
    import requests

    config = current_app.config
    timeout = config["WEBHOOK_TIMEOUT_SECONDS"]
    now = utcnow()
    # The claim: due and pending, moved out of reach for longer than one attempt can take.
    claimed = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == uuid.UUID(delivery_id),
            WebhookDelivery.state == DeliveryState.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(
            next_attempt_at=now + timedelta(seconds=timeout + 30),
            attempts=WebhookDelivery.attempts + 1,
        )
        .returning(WebhookDelivery.id)
    ).first()
    if claimed is None:
        db.session.rollback()
        return None
    db.session.commit()
    delivery = db.session.get(WebhookDelivery, uuid.UUID(delivery_id))
    secret = db.session.scalar(
        select(UserWebhook.secret).where(UserWebhook.user_id == delivery.user_id)
    )
    if secret is None:  # a subscriber without a setting yet: the first delivery makes one
        secret = get_setting(db.session.get(User, delivery.user_id)).secret
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    url, attempts = delivery.url, delivery.attempts
    db.session.commit()  # no transaction held while the request is out
    try:
        check_target(url)
    except TargetRefused as exc:
        return _record(delivery_id, DeliveryState.REFUSED, error=exc.detail)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "gefapi-webhooks",
        "X-Gefapi-Event": EVENT,
        "X-Gefapi-Delivery": delivery_id,
        "X-Gefapi-Signature": sign(secret, body),
    }
    try:
        response = requests.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        return _failed(delivery_id, attempts, error=f"{type(exc).__name__}: {exc}"[:1000])
    if 200 <= response.status_code < 300:
        return _record(delivery_id, DeliveryState.DELIVERED, status_code=response.status_code)
    return _failed(delivery_id, attempts, status_code=response.status_code)


def _failed(delivery_id: str, attempts: int, *, status_code=None, error=None) -> str:
    if attempts >= current_app.config["WEBHOOK_MAX_ATTEMPTS"]:
        return _record(delivery_id, DeliveryState.FAILED, status_code=status_code, error=error)
    due = utcnow() + timedelta(seconds=backoff(attempts))
    return _record(
        delivery_id, DeliveryState.PENDING, status_code=status_code, error=error, due=due
    )


def _record(delivery_id: str, state: str, *, status_code=None, error=None, due=None) -> str:
    values = {"state": state, "last_status_code": status_code, "last_error": error}
    if state == DeliveryState.DELIVERED:
        values["delivered_at"] = utcnow()
    if due is not None:
        values["next_attempt_at"] = due
    db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == uuid.UUID(delivery_id)).values(**values)
    )
    db.session.commit()
    return state


def retry_due() -> int:
    """Send again what is due: retries after backoff, and deliveries whose task was lost (a
    worker restart, a broker hiccup). The claim in `deliver` keeps each send single."""
    grace = timedelta(seconds=current_app.config["WEBHOOK_SWEEP_GRACE_SECONDS"])
    ids = db.session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.state == DeliveryState.PENDING,
            WebhookDelivery.next_attempt_at <= utcnow() - grace,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(current_app.config["WEBHOOK_SWEEP_BATCH"])
    ).all()
    for delivery_id in ids:
        enqueue("webhooks.deliver", str(delivery_id))
    db.session.commit()  # sends the tasks
    return len(ids)
