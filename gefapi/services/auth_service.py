"""Logging in and out: access tokens (JWT), refresh tokens, lockout after failed logins."""

import hashlib
import math
import secrets
import uuid
from datetime import timedelta

from flask import current_app
from flask_jwt_extended import create_access_token
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from gefapi.errors import AccountLocked, AuthenticationFailed, InvalidCredentials
from gefapi.extensions import db
from gefapi.models import (
    FailedLogins,
    OneTimeToken,
    OneTimeTokenKind,
    RefreshToken,
    RevokedAccessToken,
    User,
)
from gefapi.models.base import utcnow
from gefapi.services import passwords


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def find_active_user_by_email(email: str) -> User | None:
    return db.session.scalar(
        select(User).where(func.lower(User.email) == email.strip().lower(), ~User.deleted)
    )


def email_hash(email: str) -> str:
    return sha256(email.strip().lower())


def login(email: str, password: str) -> tuple[User, dict]:
    """Known and unknown emails take the same path (the same queries, two password hashes per
    failure) and get the same answers, locks included."""
    from gefapi.services import execution_login

    if execution_login.is_execution_login(email):
        execution, tokens = execution_login.login(email, password)
        return db.session.get(User, execution.user_id), tokens
    user = find_active_user_by_email(email)
    lock = _current_lock(email)
    if lock is not None:
        # While locked only a password emailed by recovery opens the account: the owner's way
        # in, which nobody else can use.
        if not _use_temporary_password(user, password):
            raise _locked_error(lock)
    elif not (_check_password(user, password) or _use_temporary_password(user, password)):
        _record_failure(email)
        raise InvalidCredentials()
    clear_failures(user.email)
    user.last_login_at = utcnow()
    tokens = issue_tokens(user)
    db.session.commit()
    return user, tokens


def is_environment_email(email: str) -> bool:
    account = current_app.config.get("API_ENVIRONMENT_USER")
    return bool(account) and email.strip().lower() == account.lower()


def _check_password(user: User | None, password: str) -> bool:
    password_hash = user.password_hash if user is not None else None
    if not passwords.verify_password(password_hash, password):
        return False
    if passwords.needs_rehash(password_hash):
        user.password_hash = passwords.hash_password(password)
    return True


def _use_temporary_password(user: User | None, password: str) -> bool:
    """Legacy recovery emails a password; it becomes the account's password on first use.
    One query and one hash whether or not there is such a password."""
    token = db.session.scalar(
        select(OneTimeToken)
        .where(
            OneTimeToken.user_id == (user.id if user is not None else uuid.UUID(int=0)),
            OneTimeToken.kind == OneTimeTokenKind.TEMPORARY_PASSWORD,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > utcnow(),
        )
        .order_by(OneTimeToken.created_at.desc())
        .limit(1)
    )
    if not passwords.verify_password(token.secret_hash if token else None, password):
        return False
    token.used_at = utcnow()
    user.password_hash = passwords.hash_password(password)
    return True


def _current_lock(email: str) -> FailedLogins | None:
    if is_environment_email(email):
        return None
    return db.session.scalar(
        select(FailedLogins).where(
            FailedLogins.email_hash == email_hash(email), FailedLogins.locked_until > utcnow()
        )
    )


def _record_failure(email: str) -> None:
    """Every LOGIN_FAILURES_BEFORE_LOCK failures lock the email for twice as long as the lock
    before, up to LOGIN_LOCK_MAX_MINUTES. Attempts while locked are not counted, so they never
    extend a lock; a quiet day forgets everything."""
    if is_environment_email(email):
        return
    config = current_app.config
    now = utcnow()
    forgotten = FailedLogins.last_failure_at < now - timedelta(
        hours=config["LOGIN_FAILURES_FORGOTTEN_HOURS"]
    )
    upsert = (
        insert(FailedLogins)
        .values(email_hash=email_hash(email), failures=1, locks=0, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[FailedLogins.email_hash],
            set_={
                "failures": case((forgotten, 1), else_=FailedLogins.failures + 1),
                "locks": case((forgotten, 0), else_=FailedLogins.locks),
                "last_failure_at": now,
            },
        )
        .returning(FailedLogins.failures, FailedLogins.locks)
    )
    failures, locks = db.session.execute(upsert).one()
    if failures >= config["LOGIN_FAILURES_BEFORE_LOCK"]:
        minutes = min(
            config["LOGIN_LOCK_MAX_MINUTES"], config["LOGIN_LOCK_MINUTES"] * 2 ** min(locks, 16)
        )
        db.session.execute(
            update(FailedLogins)
            .where(FailedLogins.email_hash == email_hash(email))
            .values(failures=0, locks=locks + 1, locked_until=now + timedelta(minutes=minutes))
        )
    db.session.commit()


def clear_failures(email: str) -> None:
    """The owner got in (or chose a new password): the lock and the count end. No commit."""
    db.session.execute(delete(FailedLogins).where(FailedLogins.email_hash == email_hash(email)))


def _locked_error(lock: FailedLogins) -> AccountLocked:
    minutes = max(1, math.ceil((lock.locked_until - utcnow()).total_seconds() / 60))
    # A lock that came back is likelier an attack than a forgotten password: point the owner
    # (the plugin opens its forgot-password flow) to the reset, which lifts the lock.
    renewed = lock.locks > 1
    detail = f"Too many failed logins: try again in {minutes} minute(s)"
    return AccountLocked(
        detail + (", or reset your password" if renewed else ""),
        minutes_remaining=minutes,
        requires_password_reset=renewed,
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


def refresh(raw_token: str, *, rotate: bool = False) -> dict:
    from gefapi.services import execution_login

    if (tokens := execution_login.refresh(raw_token)) is not None:
        return tokens
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
    forgotten = now - timedelta(hours=current_app.config["LOGIN_FAILURES_FORGOTTEN_HOURS"])
    db.session.execute(
        delete(FailedLogins).where(
            FailedLogins.last_failure_at < forgotten,
            (FailedLogins.locked_until.is_(None)) | (FailedLogins.locked_until < now),
        )
    )
    db.session.commit()
