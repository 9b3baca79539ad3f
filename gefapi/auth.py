"""Who is calling: JWT callbacks, the login-required decorator and role checks."""

import functools
import time
import uuid
from datetime import UTC

from flask import Flask, g, request
from flask_jwt_extended import current_user, get_jwt, verify_jwt_in_request
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from gefapi.cache import request_cache
from gefapi.errors import AuthenticationFailed, PermissionDenied, error_response
from gefapi.extensions import db, jwt
from gefapi.models import RevokedAccessToken, Role, User
from gefapi.services import client_service

EXECUTION_SCOPE = "execution"


def _unauthorized(detail: str, error_code: str):
    return error_response(401, detail, error_code)


def register_jwt_callbacks(app: Flask) -> None:
    @jwt.user_identity_loader
    def _identity(user):
        return str(user.id) if isinstance(user, User) else str(user)

    @jwt.token_in_blocklist_loader
    def _is_revoked(_header, claims):
        # One round trip for both checks: the jti and the user row (kept for _load_user). A
        # token without a valid user fails in _load_user with the same 401.
        g.token_user = None
        try:
            user_id = uuid.UUID(claims["sub"])
        except (KeyError, ValueError):
            return False
        cache, generation = request_cache()
        key = ("token", claims["jti"])
        cached = cache.get(key) if generation is not None else None
        if cached is not None:
            # The session's own copy: a route may change its user, never the cached one.
            g.token_user = db.session.merge(cached, load=False)
            return False
        revoked = select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == claims["jti"])
        row = db.session.execute(select(User, revoked.exists()).where(User.id == user_id)).first()
        if row is None:
            return False
        g.token_user = row[0]
        if not row[1] and generation is not None:
            tags = (f"user:{user_id}", f"token:{claims['jti']}")
            cache.put(key, detached_copy(row[0]), tags=tags, generation=generation)
        return bool(row[1])

    @jwt.user_lookup_loader
    def _load_user(_header, claims):
        user = g.pop("token_user", None)
        if user is None or user.deleted:
            return None
        # An execution's token belongs to the execution, not to the user's sessions: logging
        # out everywhere or changing the password leaves running jobs alone. It ends with the
        # execution instead (execution_service.get).
        if (
            claims.get("scope") != EXECUTION_SCOPE
            and user.tokens_valid_after
            and claims.get("auth_at", 0) <= user.tokens_valid_after.replace(tzinfo=UTC).timestamp()
        ):
            return None
        return user

    @jwt.additional_claims_loader
    def _claims(_identity):
        # Sub-second issue time, so revoking "everything issued before now" is exact.
        return {"auth_at": time.time()}

    jwt.expired_token_loader(lambda h, c: _unauthorized("Token has expired", "token_expired"))
    jwt.invalid_token_loader(
        lambda reason: _unauthorized(f"Invalid token: {reason}", "invalid_token")
    )
    jwt.unauthorized_loader(
        lambda reason: _unauthorized("Authorization token required", "authorization_required")
    )
    jwt.revoked_token_loader(lambda h, c: _unauthorized("Token has been revoked", "token_revoked"))
    jwt.user_lookup_error_loader(
        lambda h, c: _unauthorized("Token has been revoked", "token_revoked")
    )
    jwt.token_verification_failed_loader(
        lambda h, c: _unauthorized("Token claims rejected", "invalid_token")
    )
    jwt.needs_fresh_token_loader(
        lambda h, c: _unauthorized(
            "This change needs a recent login: log in again", "fresh_login_required"
        )
    )


def detached_copy(user: User) -> User:
    """A clean instance with the row's column values, in no session."""
    copy = User.__mapper__.class_manager.new_instance()
    for attr in sa_inspect(User).column_attrs:
        set_committed_value(copy, attr.key, getattr(user, attr.key))
    make_transient_to_detached(copy)
    return copy


def login_required(fn=None, *, allow_execution_token=False, query_token=False):
    """Require a valid access token. Execution-scoped tokens only where explicitly allowed."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            locations = ["headers", "query_string"] if query_token else ["headers"]
            verify_jwt_in_request(locations=locations)
            if get_jwt().get("scope") == EXECUTION_SCOPE:
                if not allow_execution_token:
                    raise AuthenticationFailed(
                        "This token only gives access to its own execution",
                        error_code="wrong_scope",
                    )
            else:
                client_service.record(current_user, request.headers.get("X-TE-Client"))
            return view(*args, **kwargs)

        return wrapper

    return decorator(fn) if fn else decorator


def optional_login(view):
    """Identify the caller if a valid token is sent; anonymous otherwise."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request(optional=True)
        return view(*args, **kwargs)

    return wrapper


def caller() -> User | None:
    """The logged-in user, or None; an execution's runtime token counts as nobody here."""
    try:
        user = current_user._get_current_object()
    except RuntimeError:
        return None
    return None if get_jwt().get("scope") == EXECUTION_SCOPE else user


def require_role(user: User, role: Role) -> None:
    if not user.has_role(role):
        raise PermissionDenied()


def token_is_fresh() -> bool:
    fresh = get_jwt().get("fresh")
    if isinstance(fresh, bool):
        return fresh
    return isinstance(fresh, int | float) and fresh > time.time()
