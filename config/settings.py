"""Django settings for the VisionAD leaderboard.

Every value comes from the environment through one ``environ.Env`` object, with defaults that
need no services at all: SQLite in ``var/``, Celery tasks run eagerly in-process, a local-memory
cache. Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL``, ``CACHE_URL``,
``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG=0`` and ``DJANGO_ALLOWED_HOSTS``. See ``.env.example``.
"""

from __future__ import annotations

import secrets
import warnings
from pathlib import Path

import environ

from config.queues import (
    BENCHMARKS,
    HOUSEKEEPING,
    SCORING,
    Work,
    queue_setting,
    task_annotations,
    task_routes,
    visibility_timeout_s,
)
from leaderboard.tasknames import SWEEP_STALE_JOBS_TASK

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

# GENERAL
# ------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
#: Keys that were ever published (a deployment file's old default) or are placeholders.
KNOWN_SECRET_KEYS = frozenset({"change-me-to-a-long-random-string", "change-me", "changeme", "secret", "build-only"})


def secret_key_problem(key: str) -> str:
    """Why ``key`` cannot sign production sessions ('' when it can): Django's own W009 rules and known keys."""
    if not key:
        return "DJANGO_SECRET_KEY is not set"
    if key in KNOWN_SECRET_KEYS or key.startswith(("django-insecure", "insecure-dev-")):
        return "DJANGO_SECRET_KEY is a published placeholder, not a secret"
    if len(key) < 50 or len(set(key)) < 5:
        return "DJANGO_SECRET_KEY is too short or too simple (at least 50 characters, 5 different ones)"
    return ""


if not DEBUG and secret_key_problem(SECRET_KEY):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"{secret_key_problem(SECRET_KEY)}. DJANGO_SECRET_KEY must be set to a long random value when "
        "DJANGO_DEBUG is off; generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
if not SECRET_KEY:
    SECRET_KEY = "insecure-dev-" + secrets.token_urlsafe(40)
    warnings.warn("DJANGO_SECRET_KEY is not set; using a random development key.", stacklevel=1)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
TIME_ZONE = "UTC"
USE_TZ = True
LANGUAGE_CODE = "en"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

# DIRECTORIES (writable state lives under var/ by default)
# ------------------------------------------------------------------------------
VAR_DIR = Path(env("VADI_VAR_DIR", default=str(BASE_DIR / "var")))
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

WHITENOISE_USE_FINDERS = DEBUG
for _directory in (VAR_DIR, STATIC_ROOT):
    _directory.mkdir(parents=True, exist_ok=True)

# Dataset roots, passed to ``algorithms.data`` by the worker code paths.
VADI_DATA_ROOT = Path(env("VADI_DATA_ROOT", default=str(VAR_DIR / "data")))
DATASET_ROOTS = {
    "mvtec": env("VADI_MVTEC_ROOT", default=str(VADI_DATA_ROOT / "mvtec")),
    "visa": env("VADI_VISA_ROOT", default=str(VADI_DATA_ROOT / "visa")),
    "synthetic": env("VADI_SYNTHETIC_ROOT", default=str(VADI_DATA_ROOT / "synthetic")),
    # The blind suite (generated here with VADI_BLIND_SEED; its ground truth never leaves the server).
    "blind": env("VADI_BLIND_ROOT", default=str(VADI_DATA_ROOT / "blind")),
}

# OPAQUE TEST IDS AND THE BLIND SUITE (docs/bundle-format.md, "Test-image ids")
# ------------------------------------------------------------------------------
#: HMAC key of the published test-image ids (``algorithms.data.ids``). Changing it changes every
#: published id (re-run ``manage.py sync_catalog``). Unset: a fixed development key with
#: DJANGO_DEBUG on; with DJANGO_DEBUG off, a key derived from DJANGO_SECRET_KEY (a secret that is
#: required there), so no published default ever keys production ids. Set it explicitly so that
#: rotating DJANGO_SECRET_KEY does not change the ids.
VADI_TEST_ID_KEY = env("VADI_TEST_ID_KEY", default="")
#: Seed of the blind suite's generator: a secret, never in the repository or an API answer
#: (unset: a development seed with DJANGO_DEBUG on, else derived from DJANGO_SECRET_KEY).
VADI_BLIND_SEED = env("VADI_BLIND_SEED", default="")


def _derived_secret(label: str) -> str:
    import hashlib
    import hmac

    return hmac.new(SECRET_KEY.encode(), label.encode(), hashlib.sha256).hexdigest()


if DEBUG:
    VADI_TEST_ID_KEY = VADI_TEST_ID_KEY or "insecure-dev-test-id-key"
    VADI_BLIND_SEED = int(VADI_BLIND_SEED or 1_000_003)
else:
    VADI_TEST_ID_KEY = VADI_TEST_ID_KEY or _derived_secret("vadi-test-id-key")
    VADI_BLIND_SEED = int(VADI_BLIND_SEED or int(_derived_secret("vadi-blind-seed")[:12], 16))
#: Sizes of the generated blind suite (``manage.py blind_generate``; the demo passes smaller ones).
VADI_BLIND_IMAGE_SIZE = env.int("VADI_BLIND_IMAGE_SIZE", default=256)
VADI_BLIND_N_TRAIN = env.int("VADI_BLIND_N_TRAIN", default=200)
VADI_BLIND_N_TEST_GOOD = env.int("VADI_BLIND_N_TEST_GOOD", default=40)
VADI_BLIND_N_TEST_DEFECT = env.int("VADI_BLIND_N_TEST_DEFECT", default=60)
#: Scored submissions per user to the blind suite per 24 hours (against probing the hidden labels).
VADI_BLIND_SUBMISSIONS_PER_DAY = env.int("VADI_BLIND_SUBMISSIONS_PER_DAY", default=1)
# Where benchmark workers keep run outputs (results JSON, checkpoints).
VADI_RUNS_ROOT = Path(env("VADI_RUNS_ROOT", default=str(VAR_DIR / "runs")))
# The run configs that re-benchmarks (admin, staff API, manage.py rebenchmark) may name.
VADI_RUN_CONFIG_DIR = Path(env("VADI_RUN_CONFIG_DIR", default=str(BASE_DIR / "algorithms" / "configs")))
# The config the admin's re-benchmark form starts from; empty: synthetic_cpu with DEBUG (the demo,
# random-initialised backbones), else paper (services.benchmark_runs.benchmark_config_default).
VADI_DEFAULT_RUN_CONFIG = env("VADI_DEFAULT_RUN_CONFIG", default="")

# SUBMISSIONS (uploaded bundles; see docs/bundle-format.md). Sized for MVTec AD + VisA at 256^2.
# ------------------------------------------------------------------------------
VADI_BUNDLE_MAX_BYTES = env.int("VADI_BUNDLE_MAX_BYTES", default=1 << 30)
VADI_BUNDLE_MAX_UNCOMPRESSED_BYTES = env.int("VADI_BUNDLE_MAX_UNCOMPRESSED_BYTES", default=2 << 30)
VADI_BUNDLE_MAX_MEMBERS = env.int("VADI_BUNDLE_MAX_MEMBERS", default=512)
VADI_BUNDLE_MAX_COMPRESSION_RATIO = env.float("VADI_BUNDLE_MAX_COMPRESSION_RATIO", default=1100.0)
VADI_SUBMISSIONS_PER_DAY = env.int("VADI_SUBMISSIONS_PER_DAY", default=5)
# The dry run (POST /api/v1/submissions/validate/) costs no quota; it has its own rate per user.
VADI_VALIDATE_RATE = env.str("VADI_VALIDATE_RATE", default="60/hour")
VADI_SUBMISSIONS_CONCURRENT = env.int("VADI_SUBMISSIONS_CONCURRENT", default=2)
# Stuck-job detection: a running job whose heartbeat is older than this is requeued (up to
# VADI_MAX_ATTEMPTS attempts in all), then failed with "worker lost".
VADI_HEARTBEAT_TIMEOUT_S = env.int("VADI_HEARTBEAT_TIMEOUT_S", default=120)
VADI_MAX_ATTEMPTS = env.int("VADI_MAX_ATTEMPTS", default=2)
VADI_SWEEP_INTERVAL_S = env.int("VADI_SWEEP_INTERVAL_S", default=60)
# `manage.py migrate` also creates the catalog: suites, datasets, categories, registered methods.
VADI_CATALOG_ON_MIGRATE = env.bool("VADI_CATALOG_ON_MIGRATE", default=True)

# DATABASES
# ------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, eager tasks, the demo's local worker processes) share the file: wait
    # for locks (30 s), take the write lock when a transaction begins (a deferred one that reads
    # and then writes fails at once with "database is locked" when another process writes; Django
    # 5.1+), and let readers go on while one process writes (write-ahead log).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;"
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)

# CACHES
# ------------------------------------------------------------------------------
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://vadi-default")}

# ACCOUNTS (django-allauth: sign-up with a verified e-mail address, sign-in, password reset)
# ------------------------------------------------------------------------------
# https://docs.allauth.org/en/latest/account/configuration.html
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_EMAIL_VERIFICATION = "mandatory"  # no sign-in (and no upload) before the address is confirmed
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_REDIRECT_URL = "leaderboard:home"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[VisionAD] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env("VADI_ACCOUNT_HTTP_PROTOCOL", default="http" if DEBUG else "https")
# Social sign-in is offered only for the providers whose client id and secret are set.
# GitHub: https://github.com/settings/developers; ORCID: https://orcid.org/developer-tools
# (VADI_ORCID_BASE_DOMAIN=sandbox.orcid.org for ORCID's sandbox).
SOCIALACCOUNT_PROVIDERS: dict[str, dict] = {}
if env("VADI_GITHUB_CLIENT_ID", default="") and env("VADI_GITHUB_SECRET", default=""):
    SOCIALACCOUNT_PROVIDERS["github"] = {
        "APPS": [{"client_id": env("VADI_GITHUB_CLIENT_ID"), "secret": env("VADI_GITHUB_SECRET")}],
        "SCOPE": ["user:email"],
    }
if env("VADI_ORCID_CLIENT_ID", default="") and env("VADI_ORCID_SECRET", default=""):
    SOCIALACCOUNT_PROVIDERS["orcid"] = {
        "APPS": [{"client_id": env("VADI_ORCID_CLIENT_ID"), "secret": env("VADI_ORCID_SECRET")}],
        "BASE_DOMAIN": env("VADI_ORCID_BASE_DOMAIN", default="orcid.org"),
        "MEMBER_API": False,
    }
SOCIAL_PROVIDER_APPS = [f"allauth.socialaccount.providers.{name}" for name in SOCIALACCOUNT_PROVIDERS]
SOCIALACCOUNT_EMAIL_VERIFICATION = "mandatory"
SOCIALACCOUNT_EMAIL_REQUIRED = True

# E-MAIL (the console in development; production sets DJANGO_EMAIL_URL, e.g.
# smtp+tls://user:password@smtp.example.org:587)
# ------------------------------------------------------------------------------
globals().update(env.email_url("DJANGO_EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", default="VisionAD Leaderboard <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# APPS
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    *SOCIAL_PROVIDER_APPS,
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "leaderboard",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Answers to signed-in users are never stored by caches (after WhiteNoise: static files stay cacheable).
    "leaderboard.middleware.PrivateResponsesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "submissions:new"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # the admin's sign-in, by username
    "allauth.account.auth_backends.AuthenticationBackend",  # the site's: username or e-mail
]

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# UPLOADS: stream anything larger than 2.5 MB to a temporary file, never into memory.
# ------------------------------------------------------------------------------
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.TemporaryFileUploadHandler"]

# SECURITY (production-like settings pass `manage.py check --deploy`)
# ------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)

# DJANGO REST FRAMEWORK
# ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": (
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ),
    "DEFAULT_PERMISSION_CLASSES": ("rest_framework.permissions.IsAuthenticatedOrReadOnly",),
    "DEFAULT_SCHEMA_CLASS": "leaderboard.apis.schema.ApiSchema",
    "DEFAULT_FILTER_BACKENDS": ("django_filters.rest_framework.DjangoFilterBackend",),
    "DEFAULT_PAGINATION_CLASS": "leaderboard.apis.params.Pagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "leaderboard.apis.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "VisionAD Leaderboard API",
    "DESCRIPTION": "Verified anomaly-detection results: every number computed by this service.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Method.family and Method.secondary_family share one choice set: name it once in the schema.
    "ENUM_NAME_OVERRIDES": {
        "FamilyEnum": "algorithms.info.FAMILY_CHOICES",
        "JobStatusEnum": "leaderboard.models.JobStatus",
        "HealthStatusEnum": ["ok"],
    },
    # Request and response components apart: uploads are binary (multipart), answers' fields required.
    "COMPONENT_SPLIT_REQUEST": True,
    # Path parameters as the URL patterns match them (leaderboard/api_urls*.py).
    "PATH_CONVERTER_OVERRIDES": {
        "slug": {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"},
        "int": {"type": "integer", "minimum": 0, "maximum": 9223372036854775807},
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "leaderboard.apis.schema.postprocess",  # links: upload, then read the submission
    ],
}

# CELERY
# ------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
# No broker configured: run tasks eagerly in-process (the zero-setup demo and unit tests).
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL or None)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXTENDED = True
# Queues by kind of work (config/queues.py): uploads are scored on their own queue, so a
# re-benchmark that keeps every GPU busy for days never delays a verified score.
VADI_SCORING_SOFT_TIME_LIMIT_S = env.int("VADI_SCORING_SOFT_TIME_LIMIT_S", default=30 * 60)
VADI_SCORING_TIME_LIMIT_S = env.int("VADI_SCORING_TIME_LIMIT_S", default=35 * 60)
# The paper's budget is 2 h of training per category; data loading and evaluation come on top.
VADI_BENCHMARK_SOFT_TIME_LIMIT_S = env.int("VADI_BENCHMARK_SOFT_TIME_LIMIT_S", default=3 * 60 * 60)
VADI_BENCHMARK_TIME_LIMIT_S = env.int("VADI_BENCHMARK_TIME_LIMIT_S", default=3 * 60 * 60 + 10 * 60)
VADI_HOUSEKEEPING_SOFT_TIME_LIMIT_S = env.int("VADI_HOUSEKEEPING_SOFT_TIME_LIMIT_S", default=2 * 60)
VADI_HOUSEKEEPING_TIME_LIMIT_S = env.int("VADI_HOUSEKEEPING_TIME_LIMIT_S", default=3 * 60)
VADI_WORK = {
    SCORING: Work(
        queue=env(queue_setting(SCORING), default=SCORING),
        soft_time_limit_s=VADI_SCORING_SOFT_TIME_LIMIT_S,
        time_limit_s=VADI_SCORING_TIME_LIMIT_S,
    ),
    BENCHMARKS: Work(
        queue=env(queue_setting(BENCHMARKS), default=BENCHMARKS),
        soft_time_limit_s=VADI_BENCHMARK_SOFT_TIME_LIMIT_S,
        time_limit_s=VADI_BENCHMARK_TIME_LIMIT_S,
    ),
    HOUSEKEEPING: Work(
        queue=env(queue_setting(HOUSEKEEPING), default=HOUSEKEEPING),
        soft_time_limit_s=VADI_HOUSEKEEPING_SOFT_TIME_LIMIT_S,
        time_limit_s=VADI_HOUSEKEEPING_TIME_LIMIT_S,
    ),
}
CELERY_TASK_ROUTES = task_routes({kind: work.queue for kind, work in VADI_WORK.items()})
CELERY_TASK_ANNOTATIONS = task_annotations(VADI_WORK)
CELERY_TASK_DEFAULT_QUEUE = VADI_WORK[SCORING].queue  # anything unrouted is light work
CELERY_TASK_SOFT_TIME_LIMIT = VADI_WORK[SCORING].soft_time_limit_s
CELERY_TASK_TIME_LIMIT = VADI_WORK[SCORING].time_limit_s
# Redis redelivers an unacknowledged task after this long: above the longest hard time limit plus
# the longest retry countdown (evaluation.tasks.jobs.MAX_COUNTDOWN_S, 300 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": visibility_timeout_s(VADI_WORK, longest_retry_countdown_s=300)}
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("CELERY_WORKER_MAX_TASKS_PER_CHILD", default=50)
# `celery -A config beat` runs the stuck-job sweeper (which also tops up the benchmark queue)
# every minute; a sweep that waited longer than one interval is dropped, not run late.
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-jobs": {
        "task": SWEEP_STALE_JOBS_TASK,
        "schedule": float(VADI_SWEEP_INTERVAL_S),
        "options": {"expires": float(VADI_SWEEP_INTERVAL_S)},
    },
}

# BENCHMARK JOBS ON GPU WORKERS
# ------------------------------------------------------------------------------
# The device a benchmark job uses when its run asks for "auto": set per worker process by
# scripts/gpu_workers.py (one process per GPU, CUDA_VISIBLE_DEVICES=<that GPU>, VADI_DEVICE=cuda:0);
# empty = cuda:0 when a GPU is visible, else cpu.
VADI_DEVICE = env("VADI_DEVICE", default="")
# Fair dispatch (leaderboard/services/dispatch.py): a re-benchmark's jobs wait in the database and
# are sent to the broker a few at a time, round-robin across users and runs, so that a new run
# starts after at most this many queued jobs of others. A worker's claim, a finished job and the
# sweeper send the next ones.
VADI_BENCHMARK_DISPATCH_AHEAD = env.int("VADI_BENCHMARK_DISPATCH_AHEAD", default=2)
# A dispatched job still unclaimed is sent again (same task id; duplicates are skipped by the
# claim) when a job dispatched after it was claimed this long ago (the broker queue is FIFO)...
VADI_BENCHMARK_RESEND_GRACE_S = env.int("VADI_BENCHMARK_RESEND_GRACE_S", default=10 * 60)
# ...or when it has waited this long in any case (a lost message, a flushed broker).
VADI_BENCHMARK_RESEND_AFTER_S = env.int("VADI_BENCHMARK_RESEND_AFTER_S", default=VADI_BENCHMARK_TIME_LIMIT_S)

# LOGGING
# ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
}
