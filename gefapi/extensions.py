"""Extensions, created unbound; create_app() binds them."""

import time
from datetime import timedelta

import flask_jwt_extended
from flask import current_app
from flask_jwt_extended.config import config as jwt_config
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from marshmallow import INCLUDE, Schema, fields
from sqlalchemy import MetaData

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ErrorSchema(Schema):
    """CONTRACT section 1: one error shape everywhere (documentation only: never loaded).
    Some answers add keys of their own, so the document allows more."""

    class Meta:
        unknown = INCLUDE

    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    error_code = fields.String(required=True)
    msg = fields.String(required=True)
    message = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(), metadata={"description": "Validation errors: field -> reasons"}
    )
    # While an account is locked, /auth adds these (CONTRACT section 3; the plugin shows them).
    minutes_remaining = fields.Integer(
        allow_none=True, metadata={"description": "With account_locked: minutes until unlock"}
    )
    requires_password_reset = fields.Boolean(
        metadata={
            "description": "With account_locked: the lock has come back; a password reset "
            "lifts it at once"
        }
    )


class JWTManager(flask_jwt_extended.JWTManager):
    """Keeps what each encoded token decoded to, per app: a token's signature and claims are
    verified once per process, and only its expiry again on each use. Tokens that fail are
    never kept. Revocation is checked on every request (auth.py), as before."""

    DECODED_MAX = 10_000

    def init_app(self, app, add_context_processor: bool = False) -> None:
        super().init_app(app, add_context_processor)
        app.extensions["jwt_decoded"] = {}

    def _decode_jwt_from_config(self, encoded_token, csrf_value=None, allow_expired=False):
        decoded = current_app.extensions["jwt_decoded"]
        key = (encoded_token, csrf_value)
        claims = decoded.get(key)
        if claims is not None and not _expired(claims):
            return dict(claims)
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if "exp" in claims and not _expired(claims):
            if len(decoded) >= self.DECODED_MAX:
                decoded.clear()
            decoded[key] = dict(claims)
        return claims


def _expired(claims: dict) -> bool:
    """PyJWT's own rule: expired once `exp` plus the leeway is in the past."""
    leeway = jwt_config.leeway
    if isinstance(leeway, timedelta):
        leeway = leeway.total_seconds()
    return claims["exp"] + leeway <= time.time()


db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
jwt = JWTManager()
limiter = Limiter(
    key_func=lambda: rate_limit_key(),
    default_limits=[lambda: current_app.config["RATE_LIMIT_DEFAULT"]],
)


def rate_limit_key() -> str:
    """The user of a validly signed token, else the client address."""
    from flask import request
    from flask_jwt_extended import decode_token

    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        try:
            claims = decode_token(header[7:])
            return (
                f"execution:{claims['execution_id']}"
                if "execution_id" in claims
                else (f"user:{claims['sub']}")
            )
        except Exception:
            pass
    return f"ip:{request.remote_addr}"
