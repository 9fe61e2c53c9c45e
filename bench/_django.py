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


def run_children(script: str, sizes: list[int], pg_name: str, only: str | None = None) -> dict[str, list[dict]]:
    """Run ``script --child`` once per database (a temporary SQLite file always; PostgreSQL too
    when DATABASE_URL points at one, in a fresh database ``pg_name``), each in a process of its
    own; its JSON lines, by database. A database's raw figures are printed as soon as it is done."""
    import json
    import subprocess
    import tempfile

    names = ["sqlite"] + (["postgresql"] if os.environ.get("DATABASE_URL", "").startswith("postgres") else [])
    results: dict[str, list[dict]] = {}
    for name in names:
        if only and name != only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"icon2-bench-{name}-") as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite3" if name == "sqlite" else postgres_database(os.environ["DATABASE_URL"], pg_name)
            env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
            proc = subprocess.run([sys.executable, script, "--sizes", *map(str, sizes), "--child", f"{url}|{tmp}"],
                                  env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        print(f"{name}: " + json.dumps(rows), flush=True)
        if proc.returncode or len(rows) != len(sizes):
            raise SystemExit(f"{name}: the bench child failed (exit {proc.returncode})")
        results[name] = rows
    return results


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
