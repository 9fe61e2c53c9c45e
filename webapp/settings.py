"""Settings for Icon² Studio, read from the environment (see webapp/env.py).

This module is the one-machine default (scripts/run.sh): DEBUG is off unless DEBUG=1, the
database is SQLite in var/ unless DATABASE_URL is set, and SECRET_KEY comes from the environment,
else from var/secret_key (scripts/run.sh writes a random one there on its first run), else an
insecure development key *only here*. Production uses webapp.settings_production, tests
webapp.settings_test. What each safety setting does and why: docs/security.md.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url

from webapp.env import env_bool, env_hosts, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

SITE_SECRET_KEY_FILE = VAR_DIR / "secret_key"  # per site, written by scripts/run.sh on its first run
SECRET_KEY = env_str(
    "SECRET_KEY",
    default=(SITE_SECRET_KEY_FILE.read_text().strip() if SITE_SECRET_KEY_FILE.is_file() else "")
    or "django-insecure-development-only-do-not-use-in-production",
)
DEBUG = env_bool("DEBUG", default=False)
# Error pages and reports never show a frame's local variables (a judge's key was one).
DEFAULT_EXCEPTION_REPORTER_FILTER = "webapp.security.NoLocalsExceptionReporterFilter"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "csp",
    "webapp.accounts",
    "webapp.studio",
    "webapp.jobs",
    "webapp.review",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webapp.security.FormEncodingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "webapp.security.NoStoreMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

# Login throttling (django-axes): after ICON2_LOGIN_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is locked out for ICON2_LOGIN_COOLOFF_MINUTES, on
# /accounts/login/ and /admin/login/ alike. Attempts live in the database, so every web process
# sees them. Locking by the pair (not the address alone) keeps one office behind NAT usable.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("ICON2_LOGIN_THROTTLE", default=True)
AXES_FAILURE_LIMIT = env_int("ICON2_LOGIN_FAILURE_LIMIT", default=5, min_value=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ICON2_LOGIN_COOLOFF_MINUTES", default=15, min_value=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "webapp.accounts.views.locked_out"
AXES_VERBOSE = False

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"
WSGI_APPLICATION = "webapp.wsgi.application"

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
                "webapp.accounts.context_processors.teams",
            ],
        },
    },
]

_default_db = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASE_URL = env_str("DATABASE_URL", default=_default_db)
if DATABASE_URL == _default_db:
    VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", default=0))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studio:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("ICON2_STATIC_ROOT", default=VAR_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Uploaded instruction lists and run artifacts. Never served publicly: they are team data.
MEDIA_ROOT = env_path("ICON2_MEDIA_ROOT", default=VAR_DIR / "media")
MEDIA_URL = "media/"
ICON2_MODEL_CACHE = env_path("ICON2_MODEL_CACHE", default="~/.cache/icon2studio/models")
# Folders on the worker machine that team models (local directories, .gguf files) may come from;
# anything else, and anything under MEDIA_ROOT (team data, trained adapters), is refused.
ICON2_MODEL_ROOTS = [
    Path(p).expanduser()
    for p in env_list("ICON2_MODEL_ROOTS", default=[str(ICON2_MODEL_CACHE), str(VAR_DIR / "models")])
]
ICON2_PRESETS_PATH = env_path("ICON2_PRESETS_PATH", default=BASE_DIR / "icon2engine" / "data" / "dimensions.json")
ICON2_MAX_UPLOAD_MB = env_int("ICON2_MAX_UPLOAD_MB", default=50, min_value=1)
ICON2_INVITE_DAYS = env_int("ICON2_INVITE_DAYS", default=7, min_value=1, max_value=365)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

REDIS_URL = env_str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", default=REDIS_URL)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

# Content-Security-Policy (django-csp): scripts and styles come only from our static files
# (htmx is vendored, no inline <script>, no inline event handlers, no eval); style *attributes*
# stay allowed for the widths of progress bars. 'self' in connect-src covers the same-origin
# WebSockets (ws:// and wss://) of live runs and the playground.
_SELF, _NONE = "'self'", "'none'"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_SELF],
        "script-src": [_SELF],
        "style-src": [_SELF],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": [_SELF, "data:"],
        "connect-src": [_SELF],
        "object-src": [_NONE],
        "base-uri": [_NONE],
        "form-action": [_SELF],
        "frame-ancestors": [_NONE],
    },
}

# A refused request (PermissionDenied, 403) is logged as one line, not a traceback: anyone
# signed in can cause one, and the log must not fill with them.
LOG_FILTERS = {"one_line_forbidden": {"()": "webapp.security.OneLineForbiddenFilter"}}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": LOG_FILTERS,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"filters": ["one_line_forbidden"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", default="INFO")},
}

# Running runs (the Celery workers in worker/). The database is the truth about jobs.
ICON2_QUEUE = env_str("ICON2_QUEUE", default="celery")  # "none": never send tasks (web unit tests)
ICON2_SYNTH_CHUNK = env_int("ICON2_SYNTH_CHUNK", default=64, min_value=1)  # instructions per synthesis chunk
ICON2_SCORE_CHUNK = env_int("ICON2_SCORE_CHUNK", default=128, min_value=1)  # instructions per scoring chunk
ICON2_SCORE_BATCH = env_int("ICON2_SCORE_BATCH", default=16, min_value=1, max_value=4096)  # prompts per forward pass when scoring
ICON2_PAIR_CHUNK = env_int("ICON2_PAIR_CHUNK", default=16, min_value=1)  # pairs per generation chunk
ICON2_GENERATE_BATCH = env_int("ICON2_GENERATE_BATCH", default=32, min_value=2)  # rows per forward (a pair is 2)
ICON2_HEARTBEAT_S = env_int("ICON2_HEARTBEAT_S", default=5, min_value=1)
ICON2_STALE_AFTER_S = env_int("ICON2_STALE_AFTER_S", default=60, min_value=2)  # no heartbeat this long: re-queue
ICON2_RESEND_AFTER_S = env_int("ICON2_RESEND_AFTER_S", default=60, min_value=2)  # queued this long: send again
ICON2_CALIBRATION_JUDGE = env_str("ICON2_CALIBRATION_JUDGE", default="lexicon")  # lexicon, length or formality (no setup)
ICON2_CALIBRATION_SAMPLE = env_int("ICON2_CALIBRATION_SAMPLE", default=100, min_value=1)  # paper: ~100
# On a CPU worker the sweep takes at most this many (a few minutes on a small model): calibration is
# on by default for any model other than the embedded one.
ICON2_CALIBRATION_SAMPLE_CPU = env_int("ICON2_CALIBRATION_SAMPLE_CPU", default=24, min_value=1)
ICON2_EVAL_JUDGE = env_str("ICON2_EVAL_JUDGE", default="lexicon")  # judge for trained-vs-base, when a run picks none
ICON2_COST_SAMPLES = env_int("ICON2_COST_SAMPLES", default=5, min_value=2)  # sample-and-rank estimate: samples per instruction
ICON2_EVAL_MAX = env_int("ICON2_EVAL_MAX", default=32, min_value=1)  # held-out instructions evaluated
ICON2_AUDIT_MAX_PAIRS = env_int("ICON2_AUDIT_MAX_PAIRS", default=2000, min_value=10)  # bias audit: pairs measured per dimension
ICON2_AUDIT_AUTO = env_bool("ICON2_AUDIT_AUTO", default=True)  # audit every run's pairs when they are generated
# The worker process: its device, whether it may fetch hub models, torch threads, the reaper's period.
ICON2_DEVICE = env_str("ICON2_DEVICE", default="auto")
ICON2_ALLOW_DOWNLOAD = env_bool("ICON2_ALLOW_DOWNLOAD", default=False)
ICON2_TORCH_THREADS = env_int("ICON2_TORCH_THREADS", default=0, min_value=0)  # 0: torch's default
ICON2_REAP_EVERY_S = env_int("ICON2_REAP_EVERY_S", default=10, min_value=1)
ICON2_LAUNCH_CHECKS = env_bool("ICON2_LAUNCH_CHECKS", default=True)  # model paths and judges checked at launch
# Judge endpoints may be on public addresses; a private, loopback or link-local one (the cloud's
# metadata service at 169.254.169.254, the office network, this machine) only when listed here:
# host names and address ranges, or "none". On a one-machine site (scripts/run.sh) loopback is
# allowed, since a judge served beside the studio (vLLM, `transformers serve`) is the common
# case; settings_production allows nothing unless configured. See docs/security.md.
ICON2_JUDGE_ALLOWED_HOSTS = env_hosts("ICON2_JUDGE_ALLOWED_HOSTS", default=["localhost", "127.0.0.0/8", "::1"])
ICON2_PROGRESS_INTERVAL_MS = env_int("ICON2_PROGRESS_INTERVAL_MS", default=500, min_value=0)

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web, workers and beat share one SQLite file: wait for locks, take the write lock up front.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
