"""/auth: log in, refresh, log out. Bare JSON objects, as every client expects."""

from flask import current_app, request
from flask.views import MethodView
from flask_jwt_extended import current_user, get_jwt

from gefapi.auth import login_required
from gefapi.extensions import limiter
from gefapi.routes import Blueprint
from gefapi.schemas.common import MessageSchema
from gefapi.schemas.user import (
    LoginSchema,
    LogoutSchema,
    RefreshArgs,
    RefreshSchema,
    TokenPairSchema,
)
from gefapi.services import auth_service, client_service

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Authentication")


def _is_environment_login() -> bool:
    account = current_app.config.get("API_ENVIRONMENT_USER")
    body = request.get_json(silent=True)
    return bool(account) and isinstance(body, dict) and body.get("email") == account


def _failures_key() -> str:
    """Failures count per address and per credential tried (email or refresh token): many
    people share an address behind a proxy or NAT, and one's wrong guesses must not block the
    others' logins. Guessing at one account is also bounded by the account lock."""
    body = request.get_json(silent=True)
    tried = (body.get("email") or body.get("refresh_token")) if isinstance(body, dict) else None
    return f"{request.remote_addr}:{auth_service.sha256(str(tried or '').strip().lower())}"


auth_failures_limit = limiter.limit(
    lambda: current_app.config["RATE_LIMIT_AUTH_FAILURES"],
    key_func=_failures_key,
    deduct_when=lambda response: response.status_code == 401,
    exempt_when=_is_environment_login,
    scope="auth-failures",
)


@blp.route("")
class Login(MethodView):
    decorators = [auth_failures_limit]

    @blp.arguments(LoginSchema)
    @blp.alt_response(200, schema=TokenPairSchema, success=True)
    def post(self, body):
        """Log in with email and password"""
        user, tokens = auth_service.login(body["email"], body["password"])
        client_service.record(user, request.headers.get("X-TE-Client"))
        return tokens


@blp.route("/refresh")
class Refresh(MethodView):
    decorators = [auth_failures_limit]

    @blp.arguments(RefreshArgs, location="query")
    @blp.arguments(RefreshSchema)
    @blp.alt_response(200, schema=TokenPairSchema, success=True)
    def post(self, args, body):
        """New access token from a refresh token (kept unless rotate=true)"""
        return auth_service.refresh(body["refresh_token"], rotate=args.get("rotate", False))


@blp.route("/logout")
class Logout(MethodView):
    @login_required
    @blp.arguments(LogoutSchema, required=False)
    @blp.alt_response(200, schema=MessageSchema, success=True)
    def post(self, body):
        """Revoke this access token and its refresh token"""
        auth_service.logout(current_user, get_jwt(), body.get("refresh_token"))
        return {"msg": "Successfully logged out", "message": "Successfully logged out"}


@blp.route("/logout-all")
class LogoutAll(MethodView):
    @login_required
    @blp.alt_response(200, schema=MessageSchema, success=True)
    def post(self):
        """Revoke every session of the user"""
        count = auth_service.logout_all(current_user)
        text = f"Successfully logged out from {count} sessions"
        return {"msg": text, "message": text}
