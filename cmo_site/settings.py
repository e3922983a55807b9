"""CMO settings, read from the environment.

Embedded default (no DATABASE_URL, no REDIS_URL): a SQLite file under var/,
an in-process channel layer and artifacts on the filesystem. Production:
DATABASE_URL=postgres://..., REDIS_URL=redis://..., SECRET_KEY, DEBUG=false.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cmo_site.shared.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CMO_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)
_DEV_SECRET = "cmo-embedded-development-key-not-for-production"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (the development key is refused)")
if not DEBUG and len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # serves the API docs' Swagger UI from our static files (no CDN)
    "cmo_site",
    "runs",
    "replay",
    "approvals",
    "schedules",
    "hooks",
]

MIDDLEWARE = [
    "cmo_site.middleware.BodySizeLimit",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cmo_site.urls"
ASGI_APPLICATION = "cmo_site.asgi.application"

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

# --- database -----------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("CMO_DB_CONN_MAX_AGE", 60, minimum=0))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if _db.get("ENGINE") == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {})
        _db["CONN_HEALTH_CHECKS"] = True
        # A pool per process (psycopg_pool): runner threads check a connection out
        # only for a checkpoint write, so 32 runs in flight need far fewer than 32.
        CMO_DB_POOL_SIZE = env_int("CMO_DB_POOL_SIZE", 8, minimum=0)
        if CMO_DB_POOL_SIZE:
            _db["CONN_MAX_AGE"] = 0
            _db["CONN_HEALTH_CHECKS"] = False  # the pool hands out healthy connections; writes retry
            _db["OPTIONS"]["pool"] = {"min_size": 1, "max_size": CMO_DB_POOL_SIZE, "timeout": 60}
        _db.setdefault("TEST", {})["NAME"] = env_str("CMO_TEST_DB_NAME", "") or None
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(VAR_DIR / "cmo.sqlite3"),
        # WAL lets the web server read while a worker commits; IMMEDIATE avoids
        # lock upgrades that SQLite would otherwise fail with "database is locked".
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # A file, not memory: tests run worker threads that each open a connection.
        "TEST": {"NAME": env_str("CMO_TEST_SQLITE", str(VAR_DIR / "test-cmo.sqlite3"))},
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer --------------------------------------------------------------
# Least privilege on Redis (README "Redis ACL users"; `manage.py redis_acl` prints the ACL): each process
# may connect as its own Redis user. Its role is CMO_PROCESS_ROLE, else that of what it runs (daphne: web;
# manage.py cmo_worker or runworker: worker; cmo_scheduler: scheduler; run_specialist: specialist), and its
# URL is the role's variable below when set, else REDIS_URL (as for every other command, such as start_run,
# and the embedded cmo_serve, which plays every role). Decided here, from the environment and the command
# line, as the settings load: the channel layer, the streams transport and the health checks of a process
# then all connect as the one user, and nothing has to be set before Django starts.
CMO_REDIS_URL_VARIABLES = {
    "web": "CMO_REDIS_URL_WEB",
    "worker": "CMO_REDIS_URL_WORKER",
    "scheduler": "CMO_REDIS_URL_SCHEDULER",
    "specialist": "CMO_REDIS_URL_SPECIALIST",
}
_ROLE_OF_PROGRAM = {"daphne": "web"}
_ROLE_OF_COMMAND = {
    "cmo_worker": "worker",
    "runworker": "worker",
    "cmo_scheduler": "scheduler",
    "run_specialist": "specialist",
}


def _process_role(argv: list[str]) -> str:
    """CMO_PROCESS_ROLE, else the role of the program (``daphne``, ``python -m daphne``) or of the
    ``manage.py``/``django-admin`` command in ``argv``; "" for none."""
    role = env_choice("CMO_PROCESS_ROLE", "", ["", *CMO_REDIS_URL_VARIABLES])
    if role or not argv:
        return role
    program = Path(argv[0])
    name = program.parent.name if program.name == "__main__.py" else program.name
    if name in _ROLE_OF_PROGRAM:
        return _ROLE_OF_PROGRAM[name]
    if name in ("manage.py", "django-admin", "django"):
        command = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
        return _ROLE_OF_COMMAND.get(command, "")
    return ""


CMO_PROCESS_ROLE = _process_role(sys.argv)
_ROLE_REDIS_URL = env_str(CMO_REDIS_URL_VARIABLES[CMO_PROCESS_ROLE], "") if CMO_PROCESS_ROLE else ""
REDIS_URL = _ROLE_REDIS_URL or env_str("REDIS_URL", "")
if REDIS_URL:
    from redis.exceptions import ConnectionError as RedisConnectionError

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 defaults to a 5 s socket timeout, equal to channels-redis's
            # blocking read: idle workers would die (django/channels_redis#422).
            # max_connections is per event loop (redis-py 8's default, stated here because
            # its default has changed before); cmo_site.shared.live holds its sends to
            # SEND_SLOTS (32) of them, so runner threads wait for one instead of failing.
            # retry_on_error: a command on a connection that a Redis restart closed is sent
            # once more on a new one (by default redis-py retries nothing on the pool's
            # connections), so the first live update after a restart is not lost; a message
            # sent twice is harmless (messages only wake).
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "max_connections": 100,
                        "retry_on_error": [RedisConnectionError],
                    }
                ],
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- storage --------------------------------------------------------------------
STORAGE_BACKEND = env_choice("CMO_STORAGE", "filesystem", ["filesystem", "s3"])
MEDIA_ROOT = Path(env_str("CMO_MEDIA_ROOT", str(VAR_DIR / "artifacts")))
MEDIA_URL = "/media/"
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("CMO_S3_BUCKET", "cmo"),
            "endpoint_url": env_str("CMO_S3_ENDPOINT_URL", "") or None,
            "access_key": env_str("CMO_S3_ACCESS_KEY", "") or None,
            "secret_key": env_str("CMO_S3_SECRET_KEY", "") or None,
            "region_name": env_str("CMO_S3_REGION", "") or None,
            "addressing_style": env_str("CMO_S3_ADDRESSING_STYLE", "") or None,
            "file_overwrite": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Overwrite in place: a rewritten artifact is never deleted first (as S3's file_overwrite).
        "OPTIONS": {"location": MEDIA_ROOT, "allow_overwrite": True},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

# --- auth and security ----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("CMO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# HTTPS in production: a TLS-terminating proxy sets X-Forwarded-Proto (CMO_TRUST_X_FORWARDED_PROTO=true);
# redirects and HSTS are opt-in so plain-HTTP local runs with DEBUG off keep working.
if env_bool("CMO_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("CMO_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^health(/ready)?$", r"^metrics$"]  # probes and scrapers on the private network
SECURE_HSTS_SECONDS = env_int("CMO_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("CMO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("CMO_HSTS_PRELOAD", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- the engine -----------------------------------------------------------------
# Modules that define graphs, nodes and specialists; imported by the runs app.
CMO_GRAPH_MODULES = env_list("CMO_GRAPH_MODULES", ["runs.demo"])
CMO_WORKER_CHANNEL = "cmo.runs"
CMO_LEASE_SECONDS = env_float("CMO_LEASE_SECONDS", 30.0, minimum=1.0)
# A worker whose heartbeat (every second) is this old is dead: its leases are released at once, so its runs
# resume within seconds instead of waiting out the lease (runs.services.leases.leases_release_dead).
CMO_WORKER_DEAD_SECONDS = env_float("CMO_WORKER_DEAD_SECONDS", 3.5, minimum=2.0)
# How long a schedule's record of closed fires and a hook's audit rows are kept (pruned hourly by the scheduler).
CMO_TRIGGER_HISTORY_DAYS = env_int("CMO_TRIGGER_HISTORY_DAYS", 30, minimum=1)
CMO_POLL_SECONDS = env_float("CMO_POLL_SECONDS", 2.0, minimum=0.05)
CMO_WORKER_CONCURRENCY = env_int("CMO_WORKER_CONCURRENCY", 4, minimum=1)
CMO_SWEEP_SECONDS = env_float("CMO_SWEEP_SECONDS", 5.0, minimum=0.1)
# A runner gives a run back to the queue after this many steps, so a 10,000-step run
# cannot starve runs submitted after it.
CMO_STEPS_PER_SLICE = env_int("CMO_STEPS_PER_SLICE", 100, minimum=1)
CMO_BLOB_THRESHOLD = env_int("CMO_BLOB_THRESHOLD", 64 * 1024, minimum=1024)
# A run whose worker dies (or stalls past its lease) this many times in a row without committing a
# step fails instead of being claimed again; from the second time it waits CMO_CRASH_BACKOFF_SECONDS, doubling.
CMO_MAX_CRASHES = env_int("CMO_MAX_CRASHES", 3, minimum=1)
CMO_CRASH_BACKOFF_SECONDS = env_float("CMO_CRASH_BACKOFF_SECONDS", 5.0, minimum=0.0)
# The largest request body (API JSON, forms): the policies deny payloads over 10 MB anyway.
CMO_MAX_REQUEST_BYTES = env_int("CMO_MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1024)
# The largest trace bundle an import takes (API body or uploaded file). Larger than a request, so the
# export of a run whose input was a full-size request imports again (cmo_site.middleware.BodySizeLimit).
CMO_MAX_BUNDLE_BYTES = env_int("CMO_MAX_BUNDLE_BYTES", 100 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(CMO_MAX_REQUEST_BYTES, CMO_MAX_BUNDLE_BYTES)
# How many times in all a specialist may be invoked for one activity when it answers with a RetryDirective.
CMO_A2A_MAX_ATTEMPTS = env_int("CMO_A2A_MAX_ATTEMPTS", 3, minimum=1)
try:
    CMO_MCP_SERVERS = json.loads(env_str("CMO_MCP_SERVERS", "{}"))
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"CMO_MCP_SERVERS must be a JSON object: {exc}") from None
if not isinstance(CMO_MCP_SERVERS, dict):
    raise ImproperlyConfigured("CMO_MCP_SERVERS must be a JSON object of name -> server config")

# Model providers for ctx.activities.llm (runs.llm.providers): name -> {"kind": "openai"|"anthropic",
# "base_url", "api_key_secret", "default_model", "prices": {model: {"input", "output", "cached"}}}.
try:
    CMO_LLM_PROVIDERS = json.loads(env_str("CMO_LLM_PROVIDERS", "{}"))
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"CMO_LLM_PROVIDERS must be a JSON object: {exc}") from None
if not isinstance(CMO_LLM_PROVIDERS, dict):
    raise ImproperlyConfigured("CMO_LLM_PROVIDERS must be a JSON object of name -> provider config")
# The provider a call without provider=... uses ("" with one configured provider: that one).
CMO_LLM_DEFAULT_PROVIDER = env_str("CMO_LLM_DEFAULT_PROVIDER", "")

# --- logs -------------------------------------------------------------------------
# One JSON object per line by default in production (CMO_LOG_FORMAT=json|text), with
# run and step ids where known; credentials are masked by the redaction filter.
CMO_LOG_FORMAT = env_choice("CMO_LOG_FORMAT", "text" if DEBUG else "json", ["json", "text"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "client_errors": {"()": "cmo_site.shared.log_format.ClientErrorFilter"},
        "context": {"()": "cmo_site.shared.log_format.ContextFilter"},
        "redact": {"()": "cmo_site.shared.log_format.RedactionFilter"},
    },
    "formatters": {
        "json": {"()": "cmo_site.shared.log_format.JsonFormatter"},
        "text": {"()": "cmo_site.shared.log_format.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": CMO_LOG_FORMAT,
            "filters": ["client_errors", "context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("CMO_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- approvals and policies -------------------------------------------------------
# Hours a pending approval waits before it expires, by risk level: "critical=4,high=4,medium=8,low=24".
CMO_APPROVAL_EXPIRY_HOURS = {"critical": 4.0, "high": 4.0, "medium": 8.0, "low": 24.0}
for _item in env_list("CMO_APPROVAL_EXPIRY_HOURS", []):
    _level, _, _hours = _item.partition("=")
    if _level.strip() not in CMO_APPROVAL_EXPIRY_HOURS:
        raise ImproperlyConfigured(
            f"CMO_APPROVAL_EXPIRY_HOURS: unknown level {_level.strip()!r} (use critical, high, medium, low)"
        )
    try:
        CMO_APPROVAL_EXPIRY_HOURS[_level.strip()] = float(_hours)
    except ValueError:
        raise ImproperlyConfigured(f"CMO_APPROVAL_EXPIRY_HOURS: {_item!r} is not level=hours") from None
    if CMO_APPROVAL_EXPIRY_HOURS[_level.strip()] <= 0:
        raise ImproperlyConfigured(f"CMO_APPROVAL_EXPIRY_HOURS: {_item!r} must be a positive number of hours")
# How long the policy engine trusts its copy of the specialist registry before re-reading it.
CMO_POLICY_REGISTRY_TTL = env_float("CMO_POLICY_REGISTRY_TTL", 5.0, minimum=0.0)

# --- operations: metrics, retention -------------------------------------------------
# /metrics: when set, scrapers send "Authorization: Bearer <token>"; unset, loopback clients only.
CMO_METRICS_TOKEN = env_str("CMO_METRICS_TOKEN", "")
# Finished runs older than this many days are deleted (0 keeps them forever); failed,
# timed-out and aborted runs after CMO_RETENTION_FAILED_DAYS. Pinned runs are always kept.
CMO_RETENTION_DAYS = env_int("CMO_RETENTION_DAYS", 0, minimum=0)
CMO_RETENTION_FAILED_DAYS = env_int("CMO_RETENTION_FAILED_DAYS", 0, minimum=0)
CMO_RETENTION_INTERVAL_SECONDS = env_float("CMO_RETENTION_INTERVAL_SECONDS", 3600.0, minimum=60.0)
