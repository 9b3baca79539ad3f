"""One configuration, read from the environment. docs/configuration.md lists every setting."""

import os
from datetime import timedelta


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int) -> int:
    return int(env_str(name, str(default)))


def env_bool(name: str, default: bool) -> bool:
    return env_str(name, "true" if default else "false").lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def psycopg2_url(url: str | None) -> str | None:
    """SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3; we ship psycopg2."""
    if url and url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


WEAK_SECRETS = {"", "secret", "changeme", "change-me", "dev", "development", "test"}


class Config:
    ENVIRONMENT = env_str("ENVIRONMENT", "development")
    SECRET_KEY = env_str("SECRET_KEY", "dev-only-secret-key-change-me-in-production!")
    JWT_SECRET_KEY = env_str("JWT_SECRET_KEY") or SECRET_KEY
    JWT_ALGORITHM = env_str("JWT_ALGORITHM", "HS256")
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=env_int("ACCESS_TOKEN_SECONDS", 3600))
    JWT_FRESH_SECONDS = env_int("JWT_FRESH_SECONDS", 15 * 60)
    REFRESH_TOKEN_DAYS = env_int("REFRESH_TOKEN_DAYS", 30)
    PASSWORD_RESET_HOURS = env_int("PASSWORD_RESET_HOURS", 1)
    ACCOUNT_SETUP_HOURS = env_int("ACCOUNT_SETUP_HOURS", 48)
    JWT_TOKEN_LOCATION = ["headers"]  # download endpoints also accept ?token=
    JWT_QUERY_STRING_NAME = "token"
    JWT_ERROR_MESSAGE_KEY = "detail"

    SQLALCHEMY_DATABASE_URI = psycopg2_url(env_str("DATABASE_URL"))
    # No ping per checkout (a round trip on every request): a connection broken by a database
    # restart fails one request with 503 and SQLAlchemy then replaces the whole pool.
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_recycle": 1800}
    REDIS_URL = env_str("REDIS_URL")
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")  # default: REDIS_URL

    PORT = env_int("PORT", 5000)
    API_PUBLIC_URL = env_str("API_PUBLIC_URL") or f"http://127.0.0.1:{PORT}"
    PASSWORD_RESET_URL = env_str(
        "PASSWORD_RESET_URL", API_PUBLIC_URL + "/api/v1/user/reset-password?token={token}"
    )
    CORS_ORIGINS = env_list("CORS_ORIGINS")
    TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

    # Request size limits.
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 50 * 1024 * 1024)
    MAX_DECOMPRESSED_REQUEST_SIZE = env_int("MAX_DECOMPRESSED_REQUEST_SIZE", 20 * 1024 * 1024)
    MAX_JSON_BODY_SIZE = env_int("MAX_JSON_BODY_SIZE", 20 * 1024 * 1024)

    # Lists and logs.
    MAX_UNPAGINATED_EXECUTIONS = env_int("MAX_UNPAGINATED_EXECUTIONS", 1000)
    LOG_PAGE_SIZE = env_int("LOG_PAGE_SIZE", 5000)
    MAX_LOG_BATCH = env_int("MAX_LOG_BATCH", 1000)

    # Per-process cache of token checks and execution reads, invalidated by PostgreSQL
    # notifications (gefapi/cache.py). Turn it off behind a pooler that drops LISTEN.
    CACHE_ENABLED = env_bool("CACHE_ENABLED", True)
    CACHE_MAX_MB = env_int("CACHE_MAX_MB", 64)
    CACHE_TTL_SECONDS = env_int("CACHE_TTL_SECONDS", 300)

    # Scripts and executions.
    STORAGE_URL = env_str("STORAGE_URL")
    SCRIPT_MAX_ARCHIVE_BYTES = env_int("SCRIPT_MAX_ARCHIVE_BYTES", 10 * 1024 * 1024)
    SCRIPT_MAX_UNPACKED_BYTES = env_int("SCRIPT_MAX_UNPACKED_BYTES", 100 * 1024 * 1024)
    SCRIPT_MAX_MEMBERS = env_int("SCRIPT_MAX_MEMBERS", 2000)
    RESULTS_MAX_BYTES = env_int("RESULTS_MAX_BYTES", 10 * 1024 * 1024)
    # geoBoundaries files read by `flask boundaries import`, and news messages (markdown).
    BOUNDARIES_IMPORT_MAX_BYTES = env_int("BOUNDARIES_IMPORT_MAX_BYTES", 64 * 1024 * 1024)
    BOUNDARIES_IMPORT_TIMEOUT = env_int("BOUNDARIES_IMPORT_TIMEOUT", 60)
    NEWS_MAX_MESSAGE_CHARS = env_int("NEWS_MAX_MESSAGE_CHARS", 20_000)
    EXECUTION_MAX_RUNTIME_SECONDS = env_int("EXECUTION_MAX_RUNTIME_SECONDS", 24 * 3600)
    EXECUTION_MAX_QUEUE_SECONDS = env_int("EXECUTION_MAX_QUEUE_SECONDS", 24 * 3600)
    EXECUTION_MAX_PER_USER = env_int("EXECUTION_MAX_PER_USER", 5)
    # A container that exited without reporting gets this long for its last PATCH to land.
    EXECUTION_REPORT_GRACE_SECONDS = env_int("EXECUTION_REPORT_GRACE_SECONDS", 10)
    RECONCILE_SECONDS = float(env_str("RECONCILE_SECONDS", "15"))
    # Executions one periodic pass checks (and leftover containers it removes) at most.
    RECONCILE_BATCH = env_int("RECONCILE_BATCH", 500)
    # Sent again when their message or worker was lost (both steps are idempotent).
    DISPATCH_STALE_SECONDS = env_int("DISPATCH_STALE_SECONDS", 60)
    BUILD_STALE_SECONDS = env_int("BUILD_STALE_SECONDS", 1800)

    # Container engine.
    EXECUTION_BACKEND = env_str("EXECUTION_BACKEND", "auto")
    EXECUTION_NETWORK = env_str("EXECUTION_NETWORK")
    EXECUTION_API_URL = env_str("EXECUTION_API_URL") or f"http://127.0.0.1:{PORT}"
    ENVIRONMENT_IMAGE = env_str("ENVIRONMENT_IMAGE", "gefapi/environment:latest")
    BASE_IMAGE = env_str("BASE_IMAGE", "python:3.11-slim")
    REGISTRY_URL = env_str("REGISTRY_URL")
    BUILD_CA_BUNDLE = env_str("BUILD_CA_BUNDLE")
    BUILD_NETWORK = env_str("BUILD_NETWORK")
    DOCKER_HOST = env_str("DOCKER_HOST")
    DOCKER_TIMEOUT_SECONDS = env_int("DOCKER_TIMEOUT_SECONDS", 120)
    # Local backend: as root, each build and run gets its own uid counted from the base.
    # Without root, scripts run as the server's user: outside development and testing that
    # needs LOCAL_BACKEND_TRUSTED_SCRIPTS.
    LOCAL_BACKEND_DIR = env_str("LOCAL_BACKEND_DIR")
    LOCAL_BACKEND_TRUSTED_SCRIPTS = env_bool("LOCAL_BACKEND_TRUSTED_SCRIPTS", False)
    LOCAL_BACKEND_UID_BASE = env_int("LOCAL_BACKEND_UID_BASE", 3_000_000_000)
    # Legacy environment images log in with these (CONTRACT section 9); off unless both are set.
    LEGACY_ENVIRONMENT_PASSWORD = env_str("API_ENVIRONMENT_USER_PASSWORD")
    PARAMS_S3_BUCKET = env_str("PARAMS_S3_BUCKET")
    PARAMS_S3_PREFIX = env_str("PARAMS_S3_PREFIX", "params")
    S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL")

    # Artifacts: files an execution uploads (docs/configuration.md).
    ARTIFACT_MAX_BYTES = env_int("ARTIFACT_MAX_BYTES", 2 * 1024**3)
    ARTIFACT_MAX_EXECUTION_BYTES = env_int("ARTIFACT_MAX_EXECUTION_BYTES", 10 * 1024**3)
    ARTIFACT_MAX_PER_EXECUTION = env_int("ARTIFACT_MAX_PER_EXECUTION", 500)
    ARTIFACT_RETENTION_DAYS = env_int("ARTIFACT_RETENTION_DAYS", 30)  # 0: kept
    ARTIFACT_MAX_RETENTION_DAYS = env_int("ARTIFACT_MAX_RETENTION_DAYS", 365)  # 0: no cap
    ARTIFACT_USER_QUOTA_BYTES = env_int("ARTIFACT_USER_QUOTA_BYTES", 0)  # 0: no quota
    ARTIFACT_URL_SECONDS = env_int("ARTIFACT_URL_SECONDS", 30 * 24 * 3600)
    ARTIFACT_S3_REDIRECT_SECONDS = env_int("ARTIFACT_S3_REDIRECT_SECONDS", 3600)
    ARTIFACT_PURGE_SECONDS = float(env_str("ARTIFACT_PURGE_SECONDS", "3600"))
    ARTIFACT_PURGE_BATCH = env_int("ARTIFACT_PURGE_BATCH", 1000)
    # Scripts naming an environment (CONTRACT section 10) build FROM this template, for the
    # environments allowed here (comma-separated names).
    LEGACY_ENVIRONMENT_IMAGE = env_str(
        "LEGACY_ENVIRONMENT_IMAGE", "conservationinternational/{environment}:{environment_version}"
    )
    LEGACY_ENVIRONMENTS = env_str("LEGACY_ENVIRONMENTS", "trends.earth-environment")
    # What execution containers get to read their params from S3: their own endpoint (as the
    # containers reach it), region and keys, separate from the server's (none: the nodes'
    # instance role).
    EXECUTION_S3_ENDPOINT_URL = env_str("EXECUTION_S3_ENDPOINT_URL") or S3_ENDPOINT_URL
    EXECUTION_AWS_REGION = env_str("EXECUTION_AWS_REGION") or env_str("AWS_DEFAULT_REGION")
    EXECUTION_AWS_ACCESS_KEY_ID = env_str("EXECUTION_AWS_ACCESS_KEY_ID")
    EXECUTION_AWS_SECRET_ACCESS_KEY = env_str("EXECUTION_AWS_SECRET_ACCESS_KEY")
    # Earth Engine for runs without credentials of their own: a service account key (JSON, or
    # its base64), passed on as base64 EE_SERVICE_ACCOUNT_JSON; without one, SKIP_GEE_INIT.
    EE_SERVICE_ACCOUNT_JSON = env_str("EE_SERVICE_ACCOUNT_JSON")
    GOOGLE_PROJECT_ID = env_str("GOOGLE_PROJECT_ID")
    GEE_ENDPOINT = env_str("GEE_ENDPOINT")

    # Login throttling: the first lock lasts LOGIN_LOCK_MINUTES and doubles per further
    # batch of failures, up to LOGIN_LOCK_MAX_MINUTES. Never permanent.
    LOGIN_FAILURES_BEFORE_LOCK = env_int("LOGIN_FAILURES_BEFORE_LOCK", 10)
    LOGIN_LOCK_MINUTES = env_int("LOGIN_LOCK_MINUTES", 1)
    LOGIN_LOCK_MAX_MINUTES = env_int("LOGIN_LOCK_MAX_MINUTES", 30)
    # A day without a failed login forgets the count and the lock history.
    LOGIN_FAILURES_FORGOTTEN_HOURS = env_int("LOGIN_FAILURES_FORGOTTEN_HOURS", 24)
    # The account that legacy environment images log in with; never throttled.
    API_ENVIRONMENT_USER = env_str("API_ENVIRONMENT_USER")

    # Rate limits (Flask-Limiter syntax, ";" separates several).
    RATELIMIT_ENABLED = env_bool("RATE_LIMITING_ENABLED", True)
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True  # Redis down: fall back to in-memory counting
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATE_LIMIT_DEFAULT = env_str("RATE_LIMIT_DEFAULT", "2000 per hour;300 per minute")
    RATE_LIMIT_AUTH_FAILURES = env_str("RATE_LIMIT_AUTH_FAILURES", "30 per minute;300 per hour")
    RATE_LIMIT_PASSWORD_RECOVERY = env_str(
        "RATE_LIMIT_PASSWORD_RECOVERY", "5 per minute;20 per hour"
    )
    RATE_LIMIT_USER_CREATION = env_str("RATE_LIMIT_USER_CREATION", "20 per minute;100 per hour")

    # Per-user Earth Engine and openEO credentials (docs/configuration.md, "Credentials").
    # Comma-separated Fernet keys or 32+ character passphrases: the first encrypts, all decrypt.
    CREDENTIALS_ENCRYPTION_KEYS = env_str("CREDENTIALS_ENCRYPTION_KEYS")
    GOOGLE_OAUTH_CLIENT_ID = env_str("GOOGLE_OAUTH_CLIENT_ID")
    GOOGLE_OAUTH_CLIENT_SECRET = env_str("GOOGLE_OAUTH_CLIENT_SECRET")
    GOOGLE_OAUTH_AUTHORIZATION_URI = env_str(
        "GOOGLE_OAUTH_AUTHORIZATION_URI", "https://accounts.google.com/o/oauth2/v2/auth"
    )
    GOOGLE_OAUTH_TOKEN_URI = env_str(
        "GOOGLE_OAUTH_TOKEN_URI", "https://oauth2.googleapis.com/token"
    )
    GOOGLE_OAUTH_REDIRECT_URI = env_str(
        "GOOGLE_OAUTH_REDIRECT_URI", API_PUBLIC_URL + "/api/v1/gee-oauth/callback"
    )
    GEE_OAUTH_SCOPES = env_str(
        "GEE_OAUTH_SCOPES",
        "https://www.googleapis.com/auth/earthengine https://www.googleapis.com/auth/cloud-platform",
    )
    GEE_OAUTH_STATE_SECONDS = env_int("GEE_OAUTH_STATE_SECONDS", 600)
    # POST .../gee-credentials/test: a fresh access token is fetched from GOOGLE_OAUTH_TOKEN_URI,
    # then this URL is read with it ({project} is replaced by the cloud project).
    GEE_CREDENTIALS_TEST_URL = env_str(
        "GEE_CREDENTIALS_TEST_URL",
        "https://earthengine.googleapis.com/v1/projects/{project}/algorithms",
    )
    GEE_HTTP_TIMEOUT_SECONDS = float(env_str("GEE_HTTP_TIMEOUT_SECONDS", "15"))
    GEE_SERVICE_ACCOUNT_MAX_BYTES = env_int("GEE_SERVICE_ACCOUNT_MAX_BYTES", 16 * 1024)
    OPENEO_CREDENTIALS_MAX_BYTES = env_int("OPENEO_CREDENTIALS_MAX_BYTES", 16 * 1024)

    # Email.
    SMTP_HOST = env_str("SMTP_HOST")
    SMTP_PORT = env_int("SMTP_PORT", 25)
    SMTP_USER = env_str("SMTP_USER")
    SMTP_PASSWORD = env_str("SMTP_PASSWORD")
    SMTP_STARTTLS = env_bool("SMTP_STARTTLS", False)
    SMTP_SSL = env_bool("SMTP_SSL", False)
    EMAIL_FROM = env_str("EMAIL_FROM", "gefapi <no-reply@localhost>")
    EMAIL_BATCH_SIZE = env_int("EMAIL_BATCH_SIZE", 50)

    # OGC API - Processes (/ogc). Above 0, a request that does not prefer respond-async waits
    # up to this long for its job and gets the results when it ends in time (else the job, 201).
    OGC_SYNC_EXECUTE_SECONDS = float(env_str("OGC_SYNC_EXECUTE_SECONDS", "0"))

    # Prometheus /metrics: open to these networks (CIDR, comma-separated; empty for none) and
    # to `Authorization: Bearer $METRICS_TOKEN` when a token is set.
    METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", "127.0.0.1/32,::1/128")
    METRICS_TOKEN = env_str("METRICS_TOKEN")
    ENGINE_PROBE_SECONDS = float(env_str("ENGINE_PROBE_SECONDS", "30"))

    # Webhooks: targets outside public address space are refused unless in these networks.
    WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS")
    WEBHOOK_TIMEOUT_SECONDS = float(env_str("WEBHOOK_TIMEOUT_SECONDS", "10"))
    WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 6)
    WEBHOOK_RETRY_SECONDS = float(env_str("WEBHOOK_RETRY_SECONDS", "30"))  # doubles per attempt
    WEBHOOK_SWEEP_SECONDS = float(env_str("WEBHOOK_SWEEP_SECONDS", "10"))
    WEBHOOK_SWEEP_GRACE_SECONDS = float(env_str("WEBHOOK_SWEEP_GRACE_SECONDS", "10"))
    WEBHOOK_SWEEP_BATCH = env_int("WEBHOOK_SWEEP_BATCH", 500)

    # API docs.
    API_TITLE = "gefapi"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "swagger.json"
    OPENAPI_SWAGGER_UI_PATH = "api/docs"
    # Swagger UI from the package's own copy of swagger-ui-dist (gefapi/static/swagger-ui,
    # Apache-2.0): the page works without internet access. Api._openapi_swagger_ui builds the
    # address with url_for, so it also works under a path prefix.
    OPENAPI_SWAGGER_UI_URL = "/static/swagger-ui/"
    OPENAPI_SWAGGER_UI_CONFIG = {"deepLinking": True, "displayRequestDuration": True}

    # First administrator (created by `flask create-admin` / gefapi.sh start).
    ADMIN_EMAIL = env_str("ADMIN_EMAIL")
    ADMIN_PASSWORD = env_str("ADMIN_PASSWORD")

    CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

    @classmethod
    def celery(cls, config) -> dict:
        broker = config.get("CELERY_BROKER_URL") or config.get("REDIS_URL")
        every = config.get("RECONCILE_SECONDS", 15)
        return {
            # A periodic run that waits longer than its period is dropped, not piled up.
            "beat_schedule": {
                "reconcile": {
                    "task": "executions.reconcile",
                    "schedule": every,
                    "options": {"expires": every},
                },
                "dispatch-waiting": {
                    "task": "executions.dispatch_waiting",
                    "schedule": every,
                    "options": {"expires": every},
                },
                "purge-tokens": {
                    "task": "tokens.purge_expired",
                    "schedule": 3600.0,
                    "options": {"expires": 3600.0},
                },
                "probe-engine": {
                    "task": "metrics.probe_engine",
                    "schedule": config.get("ENGINE_PROBE_SECONDS", 30.0),
                    "options": {"expires": config.get("ENGINE_PROBE_SECONDS", 30.0)},
                },
                "webhooks-retry": {
                    "task": "webhooks.retry_due",
                    "schedule": config.get("WEBHOOK_SWEEP_SECONDS", 10.0),
                    "options": {"expires": config.get("WEBHOOK_SWEEP_SECONDS", 10.0)},
                },
                "purge-artifacts": {
                    "task": "artifacts.purge",
                    "schedule": config.get("ARTIFACT_PURGE_SECONDS", 3600.0),
                    "options": {"expires": config.get("ARTIFACT_PURGE_SECONDS", 3600.0)},
                },
            },
            "broker_url": broker,
            "task_ignore_result": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "task_always_eager": config.get("CELERY_TASK_ALWAYS_EAGER", False),
            "task_eager_propagates": True,
            "broker_connection_retry_on_startup": True,
            # Unacknowledged tasks of a dead worker come back after this (Redis broker only:
            # the SQLAlchemy transport hands these options to create_engine).
            "broker_transport_options": (
                {"visibility_timeout": 3600} if (broker or "").startswith("redis") else {}
            ),
            "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0.2},
        }


class TestingConfig(Config):
    ENVIRONMENT = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key-that-is-long-enough-0123456789"
    JWT_SECRET_KEY = SECRET_KEY
    CELERY_TASK_ALWAYS_EAGER = True
    RATE_LIMIT_DEFAULT = "100000 per minute"
    RATE_LIMIT_PASSWORD_RECOVERY = "100000 per minute"
    RATE_LIMIT_USER_CREATION = "100000 per minute"
    RATE_LIMIT_AUTH_FAILURES = "100000 per minute"
    PASSWORD_HASH_MEMORY_KIB = 1024
    API_ENVIRONMENT_USER = "gef@gef.com"


def check_secrets(config) -> None:
    """Refuse weak secrets anywhere but development and testing."""
    if config.get("ENVIRONMENT") in ("development", "testing"):
        return
    for key in ("SECRET_KEY", "JWT_SECRET_KEY"):
        value = config.get(key) or ""
        if value.lower() in WEAK_SECRETS or len(value) < 32 or "dev-only" in value:
            raise RuntimeError(f"{key} is weak: set a random value of at least 32 characters")
