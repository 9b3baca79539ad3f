"""gefapi: publish analysis scripts, run them in containers, collect what they report."""

from collections.abc import Mapping

from flask import Flask, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from gefapi.config import Config, check_secrets
from gefapi.jsonprovider import OrjsonProvider


def create_app(config: type | Mapping | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    # A path with a trailing slash answers exactly as the path without it, for every method
    # (CONTRACT section 1): matched as it is, never redirected (a 308 would make clients resend
    # a POST body). Set before any route is added: each rule takes the map's setting then.
    app.url_map.strict_slashes = False
    app.json = OrjsonProvider(app)
    app.config.from_object(Config)
    if isinstance(config, Mapping):
        app.config.update(config)
    elif config is not None:
        app.config.from_object(config)
    check_secrets(app.config)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        raise RuntimeError("DATABASE_URL is not set: point it at a PostgreSQL database")
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")

    _init_extensions(app)
    _init_http(app)
    _register_blueprints(app)
    from gefapi.cli import register_commands

    register_commands(app)
    return app


def _init_extensions(app: Flask) -> None:
    import os

    from gefapi import (
        cache,
        models,  # noqa: F401  (every table known to Alembic)
    )
    from gefapi.auth import register_jwt_callbacks
    from gefapi.errors import register_error_handlers
    from gefapi.extensions import db, jwt, limiter, migrate
    from gefapi.openapi import Api
    from gefapi.storage import storage_from_config
    from gefapi.tasks import celery_init_app

    db.init_app(app)
    migrations = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
    migrate.init_app(app, db, directory=migrations, compare_type=True)
    jwt.init_app(app)
    register_jwt_callbacks(app)
    cache.init_app(app)
    limiter.init_app(app)
    app.extensions["smorest_api"] = Api(app)
    register_error_handlers(app)
    celery_init_app(app)
    app.config.setdefault("INSTANCE_PATH", app.instance_path)
    app.extensions["storage"] = storage_from_config(app.config)
    if app.config["CORS_ORIGINS"]:
        CORS(app, origins=app.config["CORS_ORIGINS"])


def _init_http(app: Flask) -> None:
    from gefapi.errors import NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationError
    from gefapi.middleware import (
        BODY_ERROR_KEY,
        ChunkedRequestMiddleware,
        GzipRequestMiddleware,
        contains_nul,
    )
    from gefapi.routes import MULTIPART_ENDPOINTS, RAW_BODY_ENDPOINTS

    app.wsgi_app = GzipRequestMiddleware(
        app.wsgi_app,
        lambda: (app.config["MAX_CONTENT_LENGTH"], app.config["MAX_DECOMPRESSED_REQUEST_SIZE"]),
    )
    app.wsgi_app = ChunkedRequestMiddleware(app.wsgi_app, lambda: app.config["MAX_CONTENT_LENGTH"])
    if app.config["TRUSTED_PROXY_COUNT"]:
        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)

    @app.before_request
    def refuse_nul_characters():
        """PostgreSQL cannot store NUL in text; refuse it before it reaches a query."""
        if "\x00" in request.path:
            raise NotFound()
        if b"%00" in request.query_string or b"\x00" in request.query_string:
            raise ValidationError("NUL characters are not allowed", error_code="nul_character")
        if request.is_json and request.content_length and contains_nul(request.get_data()):
            raise ValidationError("NUL characters are not allowed", error_code="nul_character")

    @app.before_request
    def check_body():
        error = request.environ.get(BODY_ERROR_KEY)
        if error == "body_too_large":
            raise PayloadTooLarge()
        if error == "too_large":
            raise PayloadTooLarge("Decompressed request body too large")
        if error == "bad_encoding":
            raise ValidationError("Request body is not valid gzip")
        if request.routing_exception is not None:
            return  # 404/405 come first: an undeclared method is a 405, whatever its body
        if not request.content_length or request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if (request.endpoint, request.method) in RAW_BODY_ENDPOINTS:
            return  # the view streams the body and applies its own limits
        if (request.endpoint, request.method) in MULTIPART_ENDPOINTS:
            if request.mimetype != "multipart/form-data":
                raise UnsupportedMediaType("Send the archive as multipart/form-data")
        elif not request.is_json:
            raise UnsupportedMediaType("Send JSON with Content-Type: application/json")
        elif request.content_length > app.config["MAX_JSON_BODY_SIZE"]:
            raise PayloadTooLarge()

    @app.after_request
    def security_headers(response):
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


def _register_blueprints(app: Flask) -> None:
    from gefapi.routes import artifacts, auth, email, executions, health, scripts, users

    for module in (auth, users, scripts, executions, artifacts, email, health):
        app.extensions["smorest_api"].register_blueprint(module.blp)
    from gefapi.routes import credentials  # Earth Engine and openEO credentials (issue 13)

    app.extensions["smorest_api"].register_blueprint(credentials.blp)
    from gefapi.routes import boundaries, news  # geoBoundaries and news (issue 13)

    app.extensions["smorest_api"].register_blueprint(boundaries.blp)
    app.extensions["smorest_api"].register_blueprint(news.blp)
    from gefapi import metrics
    from gefapi.routes import metrics as metrics_routes
    from gefapi.routes import ogc, webhooks  # OGC API - Processes, /metrics, webhooks (issue 17)

    app.extensions["smorest_api"].register_blueprint(ogc.blp)
    app.extensions["smorest_api"].register_blueprint(metrics_routes.blp)
    app.extensions["smorest_api"].register_blueprint(webhooks.blp)
    metrics.init_app(app)
