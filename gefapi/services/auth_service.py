"""Logging in and out: access tokens (JWT), refresh tokens, lockout after failed logins."""

import hashlib
import math
import secrets
import uuid
from datetime import timedelta

from flask import current_app
from flask_jwt_extended import create_access_token
from sqlalchemy import func, select, update

from gefapi.errors import AccountLocked, AuthenticationFailed, InvalidCredentials
from gefapi.extensions import db
from gefapi.models import OneTimeToken, OneTimeTokenKind, RefreshToken, RevokedAccessToken, User
from gefapi.models.base import utcnow
from gefapi.services import passwords


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def find_active_user_by_email(email: str) -> User | None:
    return db.session.scalar(
        select(User).where(func.lower(User.email) == email.strip().lower(), ~User.deleted)
    )


def login(email: str, password: str) -> tuple[User, dict]:
    user = find_active_user_by_email(email)
    if user is None:
        passwords.verify_password(None, password)
        raise InvalidCredentials()
    if user.is_locked() and not is_environment_account(user):
        raise _locked_error(user)
    if not (_check_password(user, password) or _use_temporary_password(user, password)):
        _record_failure(user)
        raise InvalidCredentials()
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login_at = utcnow()
    tokens = issue_tokens(user)
    db.session.commit()
    return user, tokens


def is_environment_account(user: User) -> bool:
    account = current_app.config.get("API_ENVIRONMENT_USER")
    return bool(account) and user.email.lower() == account.lower()


def _check_password(user: User, password: str) -> bool:
    if not passwords.verify_password(user.password_hash, password):
        return False
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return True


def _use_temporary_password(user: User, password: str) -> bool:
    """Legacy recovery emails a password; it becomes the account's password on first use."""
    candidates = db.session.scalars(
        select(OneTimeToken).where(
            OneTimeToken.user_id == user.id,
            OneTimeToken.kind == OneTimeTokenKind.TEMPORARY_PASSWORD,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > utcnow(),
        )
    ).all()
    for token in candidates:
        if passwords.verify_password(token.secret_hash, password):
            token.used_at = utcnow()
            user.password_hash = passwords.hash_password(password)
            return True
    return False


def _record_failure(user: User) -> None:
    config = current_app.config
    count = db.session.scalar(
        update(User)
        .where(User.id == user.id)
        .values(failed_login_count=User.failed_login_count + 1)
        .returning(User.failed_login_count)
    )
    threshold = config["LOGIN_FAILURES_BEFORE_LOCK"]
    if count >= threshold and count % threshold == 0 and not is_environment_account(user):
        doublings = count // threshold - 1
        minutes = min(config["LOGIN_LOCK_MAX_MINUTES"], config["LOGIN_LOCK_MINUTES"] * 2**doublings)
        db.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(locked_until=utcnow() + timedelta(minutes=minutes))
        )
    db.session.commit()


def _locked_error(user: User) -> AccountLocked:
    seconds = (user.locked_until - utcnow()).total_seconds()
    return AccountLocked(
        minutes_remaining=max(1, math.ceil(seconds / 60)),
        requires_password_reset=False,
    )


def issue_tokens(user: User, refresh: RefreshToken | None = None, *, fresh: bool = True) -> dict:
    """An access token, and a new refresh token unless one is being reused."""
    raw_refresh = None
    if refresh is None:
        raw_refresh = secrets.token_urlsafe(32)
        refresh = RefreshToken(
            id=uuid.uuid4(),
            user_id=user.id,
            token_hash=sha256(raw_refresh),
            expires_at=utcnow() + timedelta(days=current_app.config["REFRESH_TOKEN_DAYS"]),
        )
        db.session.add(refresh)
    lifetime = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    access = create_access_token(
        identity=user,
        fresh=timedelta(seconds=current_app.config["JWT_FRESH_SECONDS"]) if fresh else False,
        additional_claims={"rid": str(refresh.id)},
    )
    return {
        "access_token": access,
        "refresh_token": raw_refresh,
        "user_id": str(user.id),
        "expires_in": int(lifetime.total_seconds()),
    }


def runtime_token(execution) -> str:
    """A token for the code inside one execution: that execution only, for its maximum runtime."""
    from gefapi.auth import EXECUTION_SCOPE

    return create_access_token(
        identity=str(execution.user_id),
        expires_delta=timedelta(seconds=current_app.config["EXECUTION_MAX_RUNTIME_SECONDS"] + 3600),
        additional_claims={"scope": EXECUTION_SCOPE, "execution_id": str(execution.id)},
    )


def refresh(raw_token: str, *, rotate: bool = False) -> dict:
    token = db.session.scalar(
        select(RefreshToken)
        .where(
            RefreshToken.token_hash == sha256(raw_token),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
        )
        .with_for_update()
    )
    user = db.session.get(User, token.user_id) if token else None
    if user is None or user.deleted:
        raise AuthenticationFailed("Invalid or expired refresh token", error_code="invalid_token")
    token.last_used_at = utcnow()
    if rotate:
        token.revoked_at = utcnow()
        tokens = issue_tokens(user, fresh=False)
    else:
        tokens = issue_tokens(user, token, fresh=False)
        tokens["refresh_token"] = raw_token
    db.session.commit()
    return tokens


def logout(user: User, claims: dict, raw_refresh_token: str | None = None) -> None:
    """Revoke this access token and its refresh token (the one it came from, or the one given)."""
    db.session.merge(
        RevokedAccessToken(
            jti=claims["jti"],
            expires_at=utcnow() + timedelta(seconds=max(0, claims["exp"] - claims["iat"])),
        )
    )
    conditions = []
    if raw_refresh_token:
        conditions.append(RefreshToken.token_hash == sha256(raw_refresh_token))
    if claims.get("rid"):
        conditions.append(RefreshToken.id == uuid.UUID(claims["rid"]))
    for condition in conditions:
        db.session.execute(
            update(RefreshToken)
            .where(condition, RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    db.session.commit()


def logout_all(user: User) -> int:
    count = revoke_sessions(user)
    db.session.commit()
    return count


def revoke_sessions(user: User) -> int:
    """Revoke every refresh token and every access token issued until now. No commit."""
    user.tokens_valid_after = utcnow()
    result = db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount


def purge_expired() -> None:
    """Periodic clean-up of rows that no longer protect anything."""
    now = utcnow()
    db.session.execute(
        RevokedAccessToken.__table__.delete().where(RevokedAccessToken.expires_at < now)
    )
    db.session.execute(RefreshToken.__table__.delete().where(RefreshToken.expires_at < now))
    db.session.execute(OneTimeToken.__table__.delete().where(OneTimeToken.expires_at < now))
    db.session.commit()
