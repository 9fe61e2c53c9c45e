"""Shared by the benches that run the web app's code in-process: a Django set up on a database of
the bench's own (a temporary SQLite file, or a fresh PostgreSQL database)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def postgres_database(url: str, name: str) -> str:
    """A database called ``name`` on the server ``url`` points at, dropped and made afresh."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def databases(work: Path, pg_name: str) -> list[tuple[str, str]]:
    """SQLite always; PostgreSQL too when DATABASE_URL points at one."""
    out = [("sqlite", f"sqlite:///{work}/bench.sqlite3")]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        out.append(("postgresql", postgres_database(os.environ["DATABASE_URL"], pg_name)))
    return out


def setup(database_url: str, work: Path, **env: str) -> None:
    """Point Django at ``database_url`` (media and model folders under ``work``), migrate."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="webapp.settings", DATABASE_URL=database_url, ICON2_QUEUE="none",
        ICON2_LAUNCH_CHECKS="0", ICON2_MODEL_ROOTS=str(work), ICON2_MEDIA_ROOT=str(work / "media"),
        HF_HUB_OFFLINE="1", **env,
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
