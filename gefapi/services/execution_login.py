"""An execution's own credentials: its token (`API_TOKEN`, CONTRACT section 9) and the
per-execution login of legacy environment images (CONTRACT section 10).

gefcore logs in with `API_USER`/`API_PASSWORD` instead of reading `API_TOKEN`. Each execution
gets its own pair, and `/auth` with it answers tokens scoped to that one execution, exactly as
`API_TOKEN` is, so no container holds a person's or an administrator's password.

The secret is derived from the server's key and the execution id rather than drawn at random
and stored: a redelivered dispatch must hand out the same credential that an already started
container holds (starting is idempotent and keeps the first container's environment), and a
derived secret needs no row to keep or clean up. Only the server can derive it; it stops
working when the execution ends, like the token it buys.
"""

import hashlib
import hmac
import uuid
from datetime import timedelta

from flask import current_app
from flask_jwt_extended import create_access_token

from gefapi.auth import EXECUTION_SCOPE
from gefapi.errors import InvalidCredentials
from gefapi.extensions import db
from gefapi.models import Execution, User
from gefapi.models.base import utcnow
from gefapi.services.execution_service import RUNTIME_ENDED

PREFIX = "execution:"  # no "@": a login name that can never be a person's email


def login_name(execution_id) -> str:
    return f"{PREFIX}{execution_id}"


def is_execution_login(name: str) -> bool:
    return name.strip().lower().startswith(PREFIX)


def secret(execution_id, purpose: str = "password") -> str:
    key = current_app.config["SECRET_KEY"].encode()
    message = f"gefapi execution {purpose}:{execution_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def credentials(execution: Execution) -> dict[str, str]:
    return {"API_USER": login_name(execution.id), "API_PASSWORD": secret(execution.id)}


def login(name: str, password: str) -> tuple[Execution, dict]:
    """Tokens scoped to the execution `name` names; InvalidCredentials for a wrong secret, an
    unknown execution or one that has ended (the same answer for each)."""
    execution = _active_execution(name.strip().lower()[len(PREFIX) :])
    if execution is None or not hmac.compare_digest(password, secret(execution.id)):
        raise InvalidCredentials()
    return execution, tokens(execution)


def refresh(raw_token: str) -> dict | None:
    """New tokens for an execution's refresh token; None when it is not one."""
    name, _, given = raw_token.rpartition(":")
    if not is_execution_login(name):
        return None
    execution = _active_execution(name[len(PREFIX) :])
    if execution is None or not hmac.compare_digest(given, secret(execution.id, "refresh")):
        raise InvalidCredentials("Invalid or expired refresh token")
    return tokens(execution)


def tokens(execution: Execution) -> dict:
    return {
        "access_token": runtime_token(execution),
        "refresh_token": f"{login_name(execution.id)}:{secret(execution.id, 'refresh')}",
        "user_id": str(execution.user_id),
        "expires_in": _token_seconds(),
    }


def runtime_token(execution) -> str:
    """A token for the code inside one execution: that execution only, for its maximum runtime."""
    return create_access_token(
        identity=str(execution.user_id),
        expires_delta=timedelta(seconds=_token_seconds()),
        additional_claims={"scope": EXECUTION_SCOPE, "execution_id": str(execution.id)},
    )


def _token_seconds() -> int:
    """The longest an execution's token lives: its maximum runtime and an hour to report."""
    return current_app.config["EXECUTION_MAX_RUNTIME_SECONDS"] + 3600


def _active_execution(execution_id: str) -> Execution | None:
    """The execution, if its runtime may still report (as for API_TOKEN), it is within its
    maximum runtime, and its owner's account still exists."""
    try:
        key = uuid.UUID(execution_id)
    except ValueError:
        return None
    execution = db.session.get(Execution, key)
    if execution is None or execution.status in RUNTIME_ENDED:
        return None
    limit = timedelta(seconds=current_app.config["EXECUTION_MAX_RUNTIME_SECONDS"])
    if execution.dispatched_at and utcnow() - execution.dispatched_at > limit:
        return None
    owner = db.session.get(User, execution.user_id)
    return None if owner is None or owner.deleted else execution
