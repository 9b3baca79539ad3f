"""The one error hierarchy and the one handler that turns every error into the contract's shape."""

import logging
from collections.abc import Callable

from flask import Flask, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

log = logging.getLogger(__name__)


class AppError(Exception):
    status = 400
    error_code = "bad_request"
    message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: dict | None = None,
        error_code: str | None = None,
        **extra,
    ):
        super().__init__(message or self.message)
        self.detail = message or self.message
        self.errors = errors
        if error_code:
            self.error_code = error_code
        self.extra = extra


class ValidationError(AppError):
    error_code = "validation_error"
    message = "Invalid input"


class AuthenticationFailed(AppError):
    status = 401
    error_code = "authentication_failed"
    message = "Authentication failed"


class InvalidCredentials(AuthenticationFailed):
    error_code = "invalid_credentials"
    message = "Invalid email or password"


class AccountLocked(AuthenticationFailed):
    error_code = "account_locked"
    message = "Too many failed logins; try again later"


class FreshLoginRequired(AuthenticationFailed):
    error_code = "fresh_login_required"
    message = "This change needs a recent login: log in again"


class PermissionDenied(AppError):
    status = 403
    error_code = "permission_denied"
    message = "You are not allowed to do this"


class NotFound(AppError):
    status = 404
    error_code = "not_found"
    message = "Not found"


class UserNotFound(NotFound):
    error_code = "user_not_found"


class ScriptNotFound(NotFound):
    error_code = "script_not_found"


class ExecutionNotFound(NotFound):
    error_code = "execution_not_found"


class TokenNotFound(NotFound):
    error_code = "token_not_found"
    message = "The link is invalid, used or expired"


class Conflict(AppError):
    status = 409
    error_code = "conflict"
    message = "Conflict with the current state"


class EmailTaken(Conflict):
    error_code = "email_taken"
    message = "Email address is already registered"


class PayloadTooLarge(AppError):
    status = 413
    error_code = "payload_too_large"
    message = "Request body too large"


class UnsupportedMediaType(AppError):
    status = 415
    error_code = "unsupported_media_type"
    message = "Unsupported content type"


class ServiceUnavailable(AppError):
    status = 503
    error_code = "service_unavailable"
    message = "A dependency is unavailable; try again shortly"


class NotAvailable(Conflict):
    """A feature this server is not set up for (CONTRACT section 11): a 409, not a 5xx, since
    retrying will not help."""

    error_code = "not_available"
    message = "This feature is not available on this server"


# Per-user Earth Engine and openEO credentials.


class OAuthStateInvalid(ValidationError):
    error_code = "invalid_oauth_state"
    message = "This authorization is unknown, expired or already used: start again"


class OAuthExchangeFailed(AppError):
    error_code = "oauth_exchange_failed"
    message = "The authorization code was refused: start again"


class OAuthProviderUnavailable(ServiceUnavailable):
    error_code = "oauth_provider_unavailable"
    message = "The sign-in provider did not answer; try again shortly"


class GeeCredentialsNotFound(NotFound):
    error_code = "gee_credentials_not_found"
    message = "No Earth Engine credentials are set"


class GeeCredentialsInvalid(AppError):
    error_code = "gee_credentials_invalid"
    message = "Earth Engine refused the credentials"


class OpenEOCredentialsNotFound(NotFound):
    error_code = "openeo_credentials_not_found"
    message = "No openEO credentials are set"


class CredentialsUnreadable(Conflict):
    error_code = "credentials_unreadable"
    message = "The stored credentials cannot be read with this server's keys: set them again"


def error_body(status: int, detail: str, error_code: str, **extra) -> dict:
    body = {
        "status": status,
        "detail": detail,
        "error_code": error_code,
        "msg": detail,
        "message": detail,
    }
    body.update({k: v for k, v in extra.items() if k not in body})
    return body


# Path prefixes whose errors another format renders: prefix -> render(body) -> Response. The
# OGC API - Processes answers RFC 7807 problem details there (gefapi/routes/ogc.py).
ERROR_RENDERERS: dict[str, Callable] = {}


def _renderer() -> Callable | None:
    if not ERROR_RENDERERS or not has_request_context():
        return None
    path = request.path
    for prefix, render in ERROR_RENDERERS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return render
    return None


def error_response(status: int, detail: str, error_code: str, headers=None, **extra):
    body = error_body(status, detail, error_code, **extra)
    render = _renderer()
    response = render(body) if render else jsonify(body)
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def _http_error_code(status: int) -> str:
    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_").replace("-", "_")


def handle_app_error(exc: AppError):
    extra = dict(exc.extra)
    if exc.errors:
        extra["errors"] = exc.errors
    return error_response(exc.status, exc.detail, exc.error_code, **extra)


def flatten_validation_messages(messages) -> dict:
    """webargs keys messages by location ({"json": {...}}); clients want {"field": [...]}."""
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict = {}
    for location, value in messages.items():
        if location in ("json", "query", "form", "files", "headers", "json_or_form", "querystring"):
            flat.update(value if isinstance(value, dict) else {"_schema": value})
        else:
            flat[location] = value
    return flat


def handle_http_exception(exc: HTTPException):
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if messages is not None and status in (400, 422):
        errors = flatten_validation_messages(messages)
        return error_response(400, "Invalid input", "validation_error", errors=errors)
    if status == 413:
        return error_response(413, "Request body too large", "payload_too_large")
    detail = exc.description if status < 500 else "Internal server error"
    headers = dict(exc.get_response().headers) if status == 405 else None
    if headers:
        headers = {"Allow": headers.get("Allow", "")}
    return error_response(status, detail, _http_error_code(status), headers=headers)


def _is_dependency_failure(exc: Exception) -> bool:
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    return isinstance(
        exc,
        sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | redis.exceptions.ConnectionError
        | kombu.exceptions.OperationalError
        | ConnectionError,
    )


def handle_unexpected(exc: Exception):
    if _is_dependency_failure(exc):
        log.warning("Dependency unavailable: %s", exc)
        return error_response(503, ServiceUnavailable.message, ServiceUnavailable.error_code)
    log.exception("Unhandled error")
    return error_response(500, "Internal server error", "internal_error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(AppError, handle_app_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
