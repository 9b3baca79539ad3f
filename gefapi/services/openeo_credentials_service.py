"""openEO credentials per user: `basic` (username, password) or `oidc_refresh_token`
(client_id, refresh_token, optional client_secret and provider_id), stored as one encrypted
JSON object and handed to the owner's executions as OPENEO_CREDENTIALS."""

import json
import logging
import uuid

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from gefapi import crypto
from gefapi.errors import PayloadTooLarge
from gefapi.extensions import db
from gefapi.models import OpenEOCredential, User
from gefapi.models.base import utcnow
from gefapi.schemas.credentials import OPENEO_REQUIRED

log = logging.getLogger(__name__)

OPTIONAL = {"basic": (), "oidc_refresh_token": ("client_secret", "provider_id")}


def status(user: User) -> dict:
    row = db.session.get(OpenEOCredential, user.id)
    return {
        "has_credentials": row is not None,
        "credentials_type": row.kind if row else None,
        "created_at": row.created_at if row else None,
        "updated_at": row.updated_at if row else None,
    }


def set_credentials(user: User, body: dict) -> dict:
    kind = body["type"]
    names = ("type", *OPENEO_REQUIRED[kind], *OPTIONAL[kind])
    secret = {name: body[name] for name in names if body.get(name) is not None}
    plaintext = json.dumps(secret)
    limit = current_app.config["OPENEO_CREDENTIALS_MAX_BYTES"]
    if len(plaintext.encode()) > limit:
        raise PayloadTooLarge(f"openEO credentials are at most {limit} bytes")
    now = utcnow()
    encrypted = crypto.encrypt(current_app.config, plaintext)
    db.session.execute(
        insert(OpenEOCredential)
        .values(user_id=user.id, kind=kind, secret_enc=encrypted, created_at=now, updated_at=now)
        .on_conflict_do_update(
            index_elements=["user_id"],
            set_={"kind": kind, "secret_enc": encrypted, "created_at": now, "updated_at": now},
        )
    )
    db.session.commit()
    db.session.expire_all()
    log.info("openEO credentials (%s) set for user %s", kind, user.id)
    return status(user)


def remove(user: User) -> dict:
    forget(user)
    db.session.commit()
    return status(user)


def forget(user: User) -> None:
    """Delete the user's credentials. No commit."""
    gone = db.session.execute(
        delete(OpenEOCredential).where(OpenEOCredential.user_id == user.id)
    ).rowcount
    if gone:
        log.info("openEO credentials removed for user %s", user.id)


def execution_env(user_id: uuid.UUID) -> dict[str, str]:
    row = db.session.get(OpenEOCredential, user_id)
    if row is None:
        return {}
    try:
        return {"OPENEO_CREDENTIALS": crypto.decrypt(current_app.config, row.secret_enc)}
    except crypto.SecretUnreadable:
        log.error("openEO credentials of user %s cannot be decrypted; not passed", user_id)
        return {}


def reencrypt_all() -> tuple[int, int]:
    done = unreadable = 0
    for row in db.session.scalars(select(OpenEOCredential).with_for_update()):
        try:
            row.secret_enc = crypto.reencrypt(current_app.config, row.secret_enc)
            done += 1
        except crypto.SecretUnreadable:
            unreadable += 1
    return done, unreadable
