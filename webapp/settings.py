"""Settings, read from environment variables in this one place.

Defaults are safe for development on one machine: a SQLite file, Celery over kombu's filesystem
transport, the tiny local policy. With DEBUG off (production) a real SECRET_KEY is required and the
deployment checks pass.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

_DEV_SECRET_KEY = "dev-only-insecure-key-never-used-with-debug-off"
SECRET_KEY = env.str("SECRET_KEY", default="" if not DEBUG else _DEV_SECRET_KEY)
if not DEBUG and (
    SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5
):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 50 characters when DEBUG is off "
        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(64))')."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "curation",
    "webapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Compresses pages (a long trajectory's 600 kB of HTML moves as ~60 kB) and, above WhiteNoise,
    # static files where no precompressed copy exists (DEBUG); Django pads it against BREACH.
    "django.middleware.gzip.GZipMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "webapp.middleware.DebugPagesCSPMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.ui.context.demo_status",
            ],
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo's SQLite under concurrent saves: readers never block the writer (WAL), a writer
    # waits for another instead of failing "database is locked", and a transaction takes the
    # write lock when it starts, so a read-then-write cannot deadlock on the upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
            "transaction_mode": "IMMEDIATE",
        }
    )
# Lets two test runs share one Postgres server (default: "test_" + the database name).
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default=None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ui:queue"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")

# An enforced Content-Security-Policy: scripts and styles only from this site (htmx is served from
# static files), so model text that slipped through escaping still could not run.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Production hardening: on whenever DEBUG is off, so `check --deploy` is clean.
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = Path(env.str("CELERY_BROKER_FOLDER", default=str(BASE_DIR / ".celery-broker")))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Above the longest task (an SFT job of a 32B model can run for days), so Redis never
    # redelivers a task that is still running under acks_late.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=7 * 24 * 3600)
    }
CELERY_RESULT_BACKEND = None  # results live in the database rows the tasks update
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# The app `curation.dispatch` sends tasks through, by dotted path (the domain never imports it).
CELERY_APP = "workers.celery.app"

# --- Generation, sandbox, training ----------------------------------------------------------------
# The engine the rollout workers use: "vllm-local" (vLLM inside the worker, the one-machine default)
# or "vllm-server" (OpenAI-compatible endpoints at VLLM_SERVER_URLS, as in docker-compose).
ROLLOUT_ENGINE = env.str("ROLLOUT_ENGINE", default="vllm-local")
# One or more, comma-separated: a round's trajectories spread over them (workers/engines/pool.py).
VLLM_SERVER_URLS = env.list("VLLM_SERVER_URLS", default=["http://127.0.0.1:8001/v1"])
# Empty: the tiny policy the project builds itself (`manage.py build_tiny_policy`).
DEFAULT_POLICY_PATH = env.str("DEFAULT_POLICY_PATH", default="")
ROLLOUT_CONCURRENCY = env.int("ROLLOUT_CONCURRENCY", default=64)
ROLLOUT_CHUNK_SIZE = env.int("ROLLOUT_CHUNK_SIZE", default=16)
# A chunk still running after this long is stopped (its error recorded; re-running resumes it).
ROLLOUT_CHUNK_TIME_LIMIT_S = env.int("ROLLOUT_CHUNK_TIME_LIMIT_S", default=6 * 3600)
# A running chunk whose worker has been silent this long is re-enqueued (it beats every 10 s).
CHUNK_LOST_AFTER_S = env.int("CHUNK_LOST_AFTER_S", default=60)
VLLM_ENFORCE_EAGER = env.bool("VLLM_ENFORCE_EAGER", default=True)
VLLM_MAX_MODEL_LEN = env.int("VLLM_MAX_MODEL_LEN", default=4096)
VLLM_CPU_KVCACHE_GIB = env.int("VLLM_CPU_KVCACHE_GIB", default=1)
# The CodeRunner (curation.execution) that re-runs cells and scores code problems, by dotted path.
CODE_RUNNER = env.str("CODE_RUNNER", default="workers.sandbox.run")
SANDBOX_ALLOW_UNISOLATED = env.bool("SANDBOX_ALLOW_UNISOLATED", default=False)
# Set by scripts/demo.sh: the demo's progress while it builds its policy (curation/demo.py).
DEMO_STATUS_FILE = Path(env.str("DEMO_STATUS_FILE")) if env.str("DEMO_STATUS_FILE", "") else None
TRAINING_OUTPUT_ROOT = env.path("TRAINING_OUTPUT_ROOT", default=BASE_DIR / ".cache" / "policies")

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "webapp.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "webapp.api.views.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "START curation API",
    "DESCRIPTION": "Problems, rounds, trajectories, datasets and SFT jobs of the Hint-RFT loop.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page's Swagger UI is served from this app's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # A review status and a decision share one choice set: one enum in the schema.
    "ENUM_NAME_OVERRIDES": {"ReviewStatusEnum": "curation.models.ReviewStatus"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
