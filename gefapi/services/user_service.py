"""Accounts: registration, profiles, roles, soft deletion and passwords."""

import secrets
import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gefapi.errors import (
    EmailTaken,
    FreshLoginRequired,
    PermissionDenied,
    TokenNotFound,
    UserNotFound,
    ValidationError,
)
from gefapi.extensions import db
from gefapi.models import PROFILE_FIELDS, OneTimeToken, OneTimeTokenKind, Role, User
from gefapi.models.base import utcnow
from gefapi.queue import enqueue
from gefapi.services import (
    auth_service,
    credentials_service,
    email_service,
    execution_state,
    passwords,
)
from gefapi.services.listing import Page, paginate, parse_sort

RECOVERY_MESSAGE = "If an account with that email exists, a password recovery email has been sent."
SORTABLE = {
    "created_at": User.created_at,
    "updated_at": User.updated_at,
    "email": User.email,
    "name": User.name,
    "role": User.role,
    "country": User.country,
    "last_login_at": User.last_login_at,
}


# Lookups ---------------------------------------------------------------------------------


def resolve(ref: str, *, by: User | None) -> User:
    """`me`, a UUID or an email; 404 for what the caller may not see."""
    if ref == "me" and by is not None:
        return by
    user = _find(ref)
    if user is None or (by is not None and not by.is_admin and user.id != by.id):
        raise UserNotFound(f"User {ref} not found")
    return user


def _find(ref: str) -> User | None:
    try:
        user = db.session.get(User, uuid.UUID(ref))
        return None if user is None or user.deleted else user
    except ValueError:
        return auth_service.find_active_user_by_email(ref)


def list_users(
    *, page=None, per_page=None, sort=None, role=None, email=None, include_deleted=False
) -> Page:
    query = select(User)
    if not include_deleted:
        query = query.where(~User.deleted)
    if role:
        query = query.where(User.role == role)
    if email:
        query = query.where(func.lower(User.email).contains(email.lower(), autoescape=True))
    order = parse_sort(sort, SORTABLE) or [User.created_at.desc()]
    return paginate(query.order_by(*order, User.id), page=page, per_page=per_page)


# Registration ----------------------------------------------------------------------------


def register(data: dict, *, by: User | None, legacy: bool) -> User:
    """With a password the account uses it; without, legacy callers get a generated password
    by email and others a link to choose one."""
    role = Role(data.pop("role", Role.USER))
    if role != Role.USER and (by is None or not by.is_admin or role.rank > Role(by.role).rank):
        raise PermissionDenied(f"You may not create {role} accounts")
    password = data.pop("password", None)
    user = User(email=data.pop("email").strip().lower(), role=role, **data)
    if password is not None:
        passwords.check_policy(password, email=user.email)
        user.password_hash = passwords.hash_password(password)
    db.session.add(user)
    _flush_unique_email()
    if password is None and legacy:
        generated = passwords.generate_password()
        user.password_hash = passwords.hash_password(generated)
        email_service.send_welcome_with_password(user, generated)
    elif password is None:
        raw = _new_one_time_token(user, OneTimeTokenKind.ACCOUNT_SETUP)
        email_service.send_account_setup_link(user, raw)
    db.session.commit()
    return user


def _flush_unique_email() -> None:
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        if "uq_users_email_active" in str(exc.orig):
            raise EmailTaken() from None
        raise


# Updates ---------------------------------------------------------------------------------


def update_me(user: User, data: dict, *, fresh_login: bool) -> User:
    email = data.pop("email", None)
    if email is not None and email.strip().lower() != user.email.lower():
        raise ValidationError(
            "The email address cannot be changed here",
            errors={"email": ["Cannot be changed."]},
        )
    password, repeat = data.pop("password", None), data.pop("repeatPassword", None)
    if password is not None or repeat is not None:
        _change_password_from_profile(user, password, repeat, fresh_login=fresh_login)
    if not data and password is None and email is None:
        raise ValidationError("Nothing to update")
    _apply_profile(user, data)
    db.session.commit()
    return user


def _change_password_from_profile(user, password, repeat, *, fresh_login: bool) -> None:
    if not fresh_login:
        raise FreshLoginRequired()
    if password != repeat:
        raise ValidationError(
            "Passwords do not match", errors={"repeatPassword": ["Does not match password."]}
        )
    _set_password(user, password)


def update_user(target: User, data: dict, *, by: User) -> User:
    """ADMIN may change the non-role fields of USER accounts; SUPERADMIN anything."""
    if not by.is_admin:
        raise PermissionDenied()
    if not by.has_role(Role.SUPERADMIN) and (target.is_admin or "role" in data):
        raise PermissionDenied("Only a SUPERADMIN may change roles or administrator accounts")
    if not data:
        raise ValidationError("Nothing to update")
    email = data.pop("email", None)
    if email is not None and email.strip().lower() != target.email.lower():
        _change_email(target, email.strip().lower(), by=by)
    for key in ("role", "max_concurrent_executions"):
        if key in data:
            setattr(target, key, data.pop(key))
    _apply_profile(target, data)
    db.session.commit()
    return target


def _change_email(target: User, email: str, *, by: User) -> None:
    """Whoever controls an account's email controls the account (recovery mails go there), so
    only a SUPERADMIN may move it, never an ADMIN."""
    if not by.has_role(Role.SUPERADMIN):
        raise PermissionDenied("Only a SUPERADMIN may change an account's email address")
    target.email = email
    _flush_unique_email()


def _apply_profile(user: User, data: dict) -> None:
    for key, value in data.items():
        if key not in PROFILE_FIELDS:
            raise ValidationError(f"{key} cannot be changed", errors={key: ["Cannot be changed."]})
        setattr(user, key, value)


def delete(target: User, *, by: User) -> User:
    """Soft delete: the row stays, login and tokens stop working, the email is free again."""
    if target.id != by.id and not by.has_role(Role.SUPERADMIN):
        raise PermissionDenied("Only a SUPERADMIN may delete other accounts")
    # The executions first, then the user row: dispatch locks an execution, then its owner's
    # row, and the opposite order here would deadlock with it.
    execution_state.cancel_active(user_id=target.id, reason="Its owner's account was deleted")
    target.deleted = True
    target.deleted_at = utcnow()
    auth_service.revoke_sessions(target)
    credentials_service.forget(target)
    db.session.commit()
    return target


# Passwords -------------------------------------------------------------------------------


def _set_password(user: User, password: str, field: str = "password") -> None:
    passwords.check_policy(password, email=user.email, field=field)
    user.password_hash = passwords.hash_password(password)
    auth_service.clear_failures(user.email)
    auth_service.revoke_sessions(user)


def recover_password(ref: str, *, legacy: bool) -> str:
    """The same answer and the same work for every `ref`, so that neither tells which emails
    have accounts: the lookup, the token and the email happen in a background task."""
    enqueue("email.recovery", ref, legacy)
    db.session.commit()
    return RECOVERY_MESSAGE


def send_recovery(ref: str, *, legacy: bool) -> None:
    """A reset link (or, for legacy callers, a temporary password) for the account, if any."""
    user = _find(ref)
    if user is None:
        return
    if legacy:
        generated = passwords.generate_password()
        _new_one_time_token(user, OneTimeTokenKind.TEMPORARY_PASSWORD, secret=generated)
        email_service.send_temporary_password(user, generated)
    else:
        raw = _new_one_time_token(user, OneTimeTokenKind.PASSWORD_RESET)
        email_service.send_password_reset_link(user, raw)
    db.session.commit()


def reset_password(raw_token: str, password: str) -> User:
    token = db.session.scalar(
        select(OneTimeToken)
        .where(
            OneTimeToken.secret_hash == auth_service.sha256(raw_token),
            OneTimeToken.kind.in_(
                [OneTimeTokenKind.PASSWORD_RESET, OneTimeTokenKind.ACCOUNT_SETUP]
            ),
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > utcnow(),
        )
        .with_for_update()
    )
    user = db.session.get(User, token.user_id) if token else None
    if user is None or user.deleted:
        raise TokenNotFound()
    _set_password(user, password)
    token.used_at = utcnow()
    db.session.commit()
    return user


def change_password(user: User, old_password: str, new_password: str) -> User:
    if not passwords.verify_password(user.password_hash, old_password):
        raise ValidationError(
            "The current password is wrong", errors={"old_password": ["Wrong password."]}
        )
    _set_password(user, new_password, field="new_password")
    db.session.commit()
    return user


def _new_one_time_token(user: User, kind: OneTimeTokenKind, *, secret: str | None = None) -> str:
    """Invalidate the user's unused tokens of this kind and make a new one. No commit."""
    db.session.execute(
        OneTimeToken.__table__.update()
        .where(
            OneTimeToken.user_id == user.id,
            OneTimeToken.kind == kind,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    raw = secret or secrets.token_urlsafe(32)
    hours = current_app.config[
        "ACCOUNT_SETUP_HOURS" if kind == OneTimeTokenKind.ACCOUNT_SETUP else "PASSWORD_RESET_HOURS"
    ]
    stored = (
        passwords.hash_password(raw)
        if kind == OneTimeTokenKind.TEMPORARY_PASSWORD
        else auth_service.sha256(raw)
    )
    db.session.add(
        OneTimeToken(
            user_id=user.id,
            kind=kind,
            secret_hash=stored,
            expires_at=utcnow() + timedelta(hours=hours),
        )
    )
    return raw
