"""Test settings: fast hashing, in-memory channel layer, SQLite unless DATABASE_URL is set (CI: PostgreSQL)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from webapp.settings import *  # noqa: F403

DEBUG = False
SECRET_KEY = "test-only-secret-key-not-used-anywhere-else-0123456789abcdefghijklmnop"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
LOGGING = {"version": 1, "disable_existing_loggers": False, "filters": LOG_FILTERS,  # noqa: F405
           "loggers": {"django.request": {"filters": ["one_line_forbidden"]}}}

ICON2_AUDIT_AUTO = False  # tests that want the audit after generation turn it on
ICON2_QUEUE = "none"  # unit tests never need a broker; the integration tests run real workers
# The named people's fixtures register local models under /models (never read: no test loads them).
ICON2_MODEL_ROOTS = [*ICON2_MODEL_ROOTS, Path("/models")]  # noqa: F405
