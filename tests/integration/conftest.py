"""Fixtures for integration tests: real processes, a database of their own.

The stack does not use pytest-django's test database (other processes must share it): it gets
a fresh SQLite file, or, when DATABASE_URL names PostgreSQL (CI), a fresh PostgreSQL database
that is dropped afterwards. The test process reads it through a second connection alias.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import dj_database_url
import pytest

from tests.integration.stack import Browser, RedisServer, Stack

ALIAS = "integration"


def _database(tmp: Path):
    base = os.environ.get("DATABASE_URL", "")
    if base.startswith(("postgres://", "postgresql://")):
        import psycopg

        cfg = dj_database_url.parse(base)
        name = f"icon2_it_{uuid.uuid4().hex[:8]}"
        admin = dict(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"] or "postgres",
                     password=cfg["PASSWORD"] or None, dbname=cfg["NAME"] or "postgres", autocommit=True)
        with psycopg.connect(**admin) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop():
            with psycopg.connect(**admin) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        url = base.rsplit("/", 1)[0] + f"/{name}"
        return url, drop
    return f"sqlite:///{tmp / 'studio.sqlite3'}", lambda: None


@pytest.fixture
def stack(tmp_path, django_db_blocker):
    from django.db import connections

    redis = RedisServer(tmp_path)
    redis.start()
    url, drop = _database(tmp_path)
    s = Stack(tmp_path, url, redis)
    try:
        s.env["ICON2_STATIC_ROOT"] = str(tmp_path / "static")  # DEBUG is off: whitenoise serves collected files
        s.manage("collectstatic", "--noinput")
        s.manage("migrate", "--noinput")
        s.manage("bootstrap_demo")
        s.start_web()
        cfg = dj_database_url.parse(url)
        if cfg["ENGINE"].endswith("sqlite3"):
            cfg["OPTIONS"] = {"timeout": 30}
        connections.databases[ALIAS] = {**connections.databases["default"], **cfg, "TEST": {}}
        with django_db_blocker.unblock():
            yield s
    finally:
        s.stop_all()
        redis.stop()
        if ALIAS in connections.databases:
            connections[ALIAS].close()
            del connections[ALIAS]  # drop the cached connection too: the next stack has another database
            del connections.databases[ALIAS]
        drop()


@pytest.fixture
def demo(stack):
    b = Browser(stack)
    b.login("demo", "integration-pass-123")
    return b
