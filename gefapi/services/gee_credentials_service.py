"""Earth Engine credentials per user: the OAuth authorization-code flow with PKCE against a
configurable provider (Google in production), service-account keys, the cloud project, a
check against the provider, and what an execution's container receives.

Secrets are stored encrypted (gefapi/crypto.py) and leave this module only towards the
provider and towards the owner's execution containers: never in an answer or a log line.
"""

import base64
import contextlib
import hashlib
import json
import logging
import secrets
import time
import uuid
from datetime import timedelta
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import jwt as pyjwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from gefapi import crypto
from gefapi.errors import (
    CredentialsUnreadable,
    GeeCredentialsInvalid,
    GeeCredentialsNotFound,
    NotAvailable,
    OAuthExchangeFailed,
    OAuthProviderUnavailable,
    OAuthStateInvalid,
    PayloadTooLarge,
)
from gefapi.extensions import db
from gefapi.models import GeeCredential, GeeCredentialsType, GeeOAuthState, User
from gefapi.models.base import utcnow
from gefapi.schemas.common import validation_error

log = logging.getLogger(__name__)

PENDING_STATES_PER_USER = 5
SERVICE_ACCOUNT_FIELDS = ("type", "client_email", "private_key")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# What a server-level Earth Engine setup may have put in an execution's environment; the
# owner's own credentials replace all of it.
SERVER_GEE_ENV = (
    "EE_SERVICE_ACCOUNT_JSON",
    "SKIP_GEE_INIT",
    "GEE_OAUTH_ACCESS_TOKEN",
    "GEE_OAUTH_REFRESH_TOKEN",
    "GEE_CLOUD_PROJECT",
)


def _config():
    return current_app.config


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


# Status ------------------------------------------------------------------------------------


def get(user: User) -> GeeCredential | None:
    return db.session.get(GeeCredential, user.id)


def status(user: User) -> dict:
    row = get(user)
    has = row is not None and row.kind is not None and row.secret_enc is not None
    return {
        "has_credentials": has,
        "credentials_type": row.kind if has else None,
        "cloud_project": row.cloud_project if row else None,
        "google_email": row.google_email if has else None,
        "created_at": row.connected_at if has else None,
        "updated_at": row.updated_at if row else None,
    }


def _row_for_update(user: User) -> GeeCredential:
    """The user's row, created if missing, locked for this transaction."""
    db.session.execute(
        insert(GeeCredential)
        .values(user_id=user.id, created_at=utcnow(), updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    return db.session.scalar(
        select(GeeCredential)
        .where(GeeCredential.user_id == user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _store(user: User, kind: GeeCredentialsType, secret: dict, *, email: str | None) -> dict:
    row = _row_for_update(user)
    row.kind = kind
    row.secret_enc = crypto.encrypt(_config(), json.dumps(secret))
    row.google_email = email
    row.connected_at = utcnow()
    row.updated_at = utcnow()
    db.session.commit()
    log.info("Earth Engine credentials (%s) set for user %s", kind, user.id)
    return status(user)


def _secret(row: GeeCredential) -> dict:
    try:
        return json.loads(crypto.decrypt(_config(), row.secret_enc))
    except crypto.SecretUnreadable:
        raise CredentialsUnreadable() from None


# OAuth -------------------------------------------------------------------------------------


def _oauth_config() -> dict:
    config = _config()
    if not (config.get("GOOGLE_OAUTH_CLIENT_ID") and config.get("GOOGLE_OAUTH_CLIENT_SECRET")):
        raise NotAvailable(
            "Earth Engine sign-in is not configured on this server "
            "(GOOGLE_OAUTH_CLIENT_ID and GOOGLE_OAUTH_CLIENT_SECRET)",
            error_code="gee_oauth_not_configured",
        )
    return config


def _with_query(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params, quote_via=quote)]))
    return urlunsplit(parts._replace(query=query))


def initiate(user: User) -> dict:
    """A fresh single-use state and PKCE verifier; the URL to send the user's browser to."""
    config = _oauth_config()
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    now = utcnow()
    db.session.execute(delete(GeeOAuthState).where(GeeOAuthState.expires_at < now))
    stale = (
        select(GeeOAuthState.state_hash)
        .where(GeeOAuthState.user_id == user.id)
        .order_by(GeeOAuthState.created_at.desc())
        .offset(PENDING_STATES_PER_USER - 1)
    )
    db.session.execute(delete(GeeOAuthState).where(GeeOAuthState.state_hash.in_(stale)))
    redirect_uri = config["GOOGLE_OAUTH_REDIRECT_URI"]
    db.session.add(
        GeeOAuthState(
            state_hash=_hash(state),
            user_id=user.id,
            code_verifier_enc=crypto.encrypt(config, verifier),
            redirect_uri=redirect_uri,
            created_at=now,
            expires_at=now + timedelta(seconds=config["GEE_OAUTH_STATE_SECONDS"]),
        )
    )
    db.session.commit()
    auth_url = _with_query(
        config["GOOGLE_OAUTH_AUTHORIZATION_URI"],
        {
            "response_type": "code",
            "client_id": config["GOOGLE_OAUTH_CLIENT_ID"],
            "redirect_uri": redirect_uri,
            "scope": config["GEE_OAUTH_SCOPES"],
            "state": state,
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
            # A refresh token, every time: the executions refresh their access token themselves.
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
        },
    )
    return {"auth_url": auth_url, "state": state}


def _consume_state(state: str, *, user: User | None):
    """The pending authorization (user_id, code_verifier_enc, redirect_uri), removed and
    committed at once: a state works once, even when what follows fails."""
    query = delete(GeeOAuthState).where(
        GeeOAuthState.state_hash == _hash(state), GeeOAuthState.expires_at >= utcnow()
    )
    if user is not None:
        query = query.where(GeeOAuthState.user_id == user.id)
    pending = db.session.execute(
        query.returning(
            GeeOAuthState.user_id, GeeOAuthState.code_verifier_enc, GeeOAuthState.redirect_uri
        )
    ).first()
    db.session.commit()
    if pending is None:
        log.info("Refused an unknown, expired or used OAuth state")
        raise OAuthStateInvalid()
    return pending


def abandon(state: str) -> None:
    """The provider sent the browser back without a code (access denied): the state is spent."""
    with contextlib.suppress(OAuthStateInvalid):
        _consume_state(state, user=None)


def _post_token(data: dict, *, purpose: str) -> dict:
    """A form POST to the token endpoint (RFC 6749 section 4.1.3). Only the provider's error
    code is ever logged or answered, never a body that could hold a token."""
    config = _config()
    try:
        response = requests.post(
            config["GOOGLE_OAUTH_TOKEN_URI"],
            data=data,
            headers={"Accept": "application/json"},
            timeout=config["GEE_HTTP_TIMEOUT_SECONDS"],
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        log.warning("Token endpoint unreachable (%s): %s", purpose, type(exc).__name__)
        raise OAuthProviderUnavailable() from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500 or not isinstance(body, dict):
        log.warning("Token endpoint answered HTTP %s (%s)", response.status_code, purpose)
        raise OAuthProviderUnavailable()
    if response.status_code != 200:
        reason = str(body.get("error") or f"HTTP {response.status_code}")[:100]
        log.info("Token endpoint refused the %s: %s", purpose, reason)
        raise OAuthExchangeFailed(f"The sign-in provider refused the {purpose}: {reason}")
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise OAuthProviderUnavailable("The sign-in provider answered without an access token")
    return body


def complete(code: str, state: str, *, user: User | None = None) -> dict:
    """Exchange the code for tokens. `user` is the caller on the logged-in callback (the state
    must be theirs); None on the anonymous one (the state says whose it is)."""
    config = _oauth_config()
    pending = _consume_state(state, user=user)
    owner = db.session.get(User, pending.user_id)
    if owner is None or owner.deleted:
        raise OAuthStateInvalid()
    try:
        verifier = crypto.decrypt(config, pending.code_verifier_enc)
    except crypto.SecretUnreadable:
        raise OAuthStateInvalid() from None
    body = _post_token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "client_id": config["GOOGLE_OAUTH_CLIENT_ID"],
            "client_secret": config["GOOGLE_OAUTH_CLIENT_SECRET"],
            "code_verifier": verifier,
        },
        purpose="authorization code",
    )
    if not isinstance(body.get("refresh_token"), str) or not body["refresh_token"]:
        raise OAuthExchangeFailed(
            "The sign-in provider gave no refresh token: remove this app's access in your "
            "Google account, then start again"
        )
    return _store(owner, GeeCredentialsType.OAUTH, _oauth_secret(body), email=None)


def _oauth_secret(body: dict, previous: dict | None = None) -> dict:
    expires_in = body.get("expires_in")
    return {
        "access_token": body["access_token"],
        "refresh_token": body.get("refresh_token") or (previous or {}).get("refresh_token"),
        "expires_at": time.time() + expires_in if isinstance(expires_in, int | float) else None,
    }


# Service accounts and the project ----------------------------------------------------------


def _check_service_account(key: dict) -> RSAPrivateKey:
    if key.get("type") != "service_account":
        raise validation_error(
            "service_account_key", 'Not a service-account key: "type" must be "service_account".'
        )
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not isinstance(key.get(name), str)]
    if missing:
        raise validation_error("service_account_key", f"Missing: {', '.join(missing)}.")
    if "@" not in key["client_email"] or len(key["client_email"]) > 254:
        raise validation_error("service_account_key", "client_email is not an email address.")
    try:
        private_key = load_pem_private_key(key["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise validation_error(
            "service_account_key", "private_key is not a PEM private key."
        ) from None
    if not isinstance(private_key, RSAPrivateKey):
        raise validation_error("service_account_key", "private_key is not an RSA key.")
    return private_key


def set_service_account(user: User, key: dict) -> dict:
    limit = _config()["GEE_SERVICE_ACCOUNT_MAX_BYTES"]
    if len(json.dumps(key).encode()) > limit:
        raise PayloadTooLarge(f"A service-account key is at most {limit} bytes")
    _check_service_account(key)
    return _store(user, GeeCredentialsType.SERVICE_ACCOUNT, key, email=key["client_email"])


def set_project(user: User, cloud_project: str | None) -> dict:
    row = _row_for_update(user)
    row.cloud_project = cloud_project
    row.updated_at = utcnow()
    db.session.commit()
    return status(user)


def remove(user: User) -> dict:
    """Forget the credentials and the project (and any authorization still pending)."""
    forget(user)
    db.session.commit()
    return status(user)


def forget(user: User) -> None:
    """Delete the user's credentials and pending authorizations. No commit."""
    gone = db.session.execute(
        delete(GeeCredential).where(GeeCredential.user_id == user.id)
    ).rowcount
    db.session.execute(delete(GeeOAuthState).where(GeeOAuthState.user_id == user.id))
    if gone:
        log.info("Earth Engine credentials removed for user %s", user.id)


# Test --------------------------------------------------------------------------------------


def _service_account_token(key: dict, private_key: RSAPrivateKey, scopes: str) -> dict:
    """The JWT-bearer grant (RFC 7523) a service account uses, sent to the configured token
    endpoint (never to the key's own `token_uri`: that comes from the user)."""
    token_uri = _config()["GOOGLE_OAUTH_TOKEN_URI"]
    now = int(time.time())
    assertion = pyjwt.encode(
        {
            "iss": key["client_email"],
            "scope": scopes,
            "aud": token_uri,
            "iat": now,
            "exp": now + 3600,
        },
        private_key,
        algorithm="RS256",
        headers={"kid": key.get("private_key_id")} if key.get("private_key_id") else None,
    )
    return _post_token(
        {"grant_type": JWT_BEARER, "assertion": assertion}, purpose="service-account key"
    )


def test(user: User) -> dict:
    """Fetch a fresh access token with the stored credentials, then read the configured test
    URL with it. 200 when both work; 400 gee_credentials_invalid when the provider refuses."""
    config = _config()
    row = get(user)
    if row is None or row.kind is None:
        raise GeeCredentialsNotFound()
    secret = _secret(row)
    try:
        if row.kind == GeeCredentialsType.OAUTH:
            oauth = _oauth_config()
            body = _post_token(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": secret["refresh_token"],
                    "client_id": oauth["GOOGLE_OAUTH_CLIENT_ID"],
                    "client_secret": oauth["GOOGLE_OAUTH_CLIENT_SECRET"],
                },
                purpose="refresh token",
            )
            row = _row_for_update(user)
            row.secret_enc = crypto.encrypt(config, json.dumps(_oauth_secret(body, secret)))
            db.session.commit()
            project = row.cloud_project
        else:
            private_key = _check_service_account(secret)
            body = _service_account_token(secret, private_key, config["GEE_OAUTH_SCOPES"])
            project = row.cloud_project or secret.get("project_id")
    except OAuthExchangeFailed as exc:
        raise GeeCredentialsInvalid(exc.detail) from None
    result = {"valid": True, "credentials_type": row.kind, "cloud_project": project}
    if not project:
        result["message"] = "The credentials work; set a cloud project to use Earth Engine"
        return result
    _check_access(body["access_token"], project)
    result["message"] = f"Earth Engine accepted the credentials for project {project}"
    return result


def _check_access(access_token: str, project: str) -> None:
    config = _config()
    url = config["GEE_CREDENTIALS_TEST_URL"].replace("{project}", quote(project, safe=":"))
    try:
        response = requests.get(
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=config["GEE_HTTP_TIMEOUT_SECONDS"],
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        log.warning("Earth Engine test URL unreachable: %s", type(exc).__name__)
        raise OAuthProviderUnavailable("Earth Engine did not answer; try again shortly") from None
    if response.status_code in (401, 403, 404):
        raise GeeCredentialsInvalid(
            f"Earth Engine refused these credentials for project {project} "
            f"(HTTP {response.status_code}): check the project and its Earth Engine registration"
        )
    if response.status_code != 200:
        log.warning("Earth Engine test URL answered HTTP %s", response.status_code)
        raise OAuthProviderUnavailable("Earth Engine did not answer; try again shortly")


# Executions --------------------------------------------------------------------------------


def execution_env(user_id: uuid.UUID) -> dict[str, str]:
    """The owner's Earth Engine credentials as the legacy container variables (gefcore's
    entrypoint.sh), or {} when they have none (or none this server can read)."""
    row = db.session.get(GeeCredential, user_id)
    if row is None or row.kind is None or row.secret_enc is None:
        return {}
    config = _config()
    try:
        secret = json.loads(crypto.decrypt(config, row.secret_enc))
    except crypto.SecretUnreadable:
        log.error("Earth Engine credentials of user %s cannot be decrypted; not passed", user_id)
        return {}
    if row.kind == GeeCredentialsType.SERVICE_ACCOUNT:
        env = {
            "EE_SERVICE_ACCOUNT_JSON": base64.b64encode(json.dumps(secret).encode()).decode(),
            "GEE_CLOUD_PROJECT": row.cloud_project or secret.get("project_id"),
        }
    else:
        env = {
            "GEE_OAUTH_ACCESS_TOKEN": secret["access_token"],
            "GEE_OAUTH_REFRESH_TOKEN": secret["refresh_token"],
            "GOOGLE_OAUTH_CLIENT_ID": config.get("GOOGLE_OAUTH_CLIENT_ID"),
            "GOOGLE_OAUTH_CLIENT_SECRET": config.get("GOOGLE_OAUTH_CLIENT_SECRET"),
            "GOOGLE_OAUTH_TOKEN_URI": config.get("GOOGLE_OAUTH_TOKEN_URI"),
            "GEE_CLOUD_PROJECT": row.cloud_project,
        }
    return {key: value for key, value in env.items() if value}


# Key rotation ------------------------------------------------------------------------------


def reencrypt_all() -> tuple[int, int]:
    """Every stored secret under the first configured key: (re-encrypted, unreadable)."""
    config = _config()
    done = unreadable = 0
    for row in db.session.scalars(
        select(GeeCredential).where(GeeCredential.secret_enc.is_not(None)).with_for_update()
    ):
        try:
            row.secret_enc = crypto.reencrypt(config, row.secret_enc)
            done += 1
        except crypto.SecretUnreadable:
            unreadable += 1
    for state in db.session.scalars(select(GeeOAuthState).with_for_update()):
        try:
            state.code_verifier_enc = crypto.reencrypt(config, state.code_verifier_enc)
        except crypto.SecretUnreadable:
            db.session.delete(state)
    return done, unreadable
