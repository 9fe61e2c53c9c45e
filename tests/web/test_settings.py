"""Configuration: the production settings pass `check --deploy` and refuse to start half-configured."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_the_deploy_check_without_warnings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="webapp.settings_production",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check", DJANGO_SETTINGS_MODULE="webapp.settings_production", ALLOWED_HOSTS="example.com")
    assert result.returncode != 0
    assert "Set the environment variable SECRET_KEY" in result.stderr


def test_production_refuses_a_weak_secret_key():
    result = _manage(
        "check", DJANGO_SETTINGS_MODULE="webapp.settings_production", SECRET_KEY="short", ALLOWED_HOSTS="example.com"
    )
    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = _manage("check", DJANGO_SETTINGS_MODULE="webapp.settings_production", SECRET_KEY=secrets.token_urlsafe(64))
    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


def test_a_malformed_debug_flag_stops_the_dev_server_with_its_name():
    result = _manage("check", DJANGO_SETTINGS_MODULE="webapp.settings", DEBUG="sometimes")
    assert result.returncode != 0
    assert "DEBUG='sometimes' is not a boolean" in result.stderr


def test_the_settings_expose_what_the_worker_needs():
    assert settings.ASGI_APPLICATION == "webapp.asgi.application"
    assert settings.INSTALLED_APPS[0] == "daphne"
    assert settings.REDIS_URL.startswith("redis://")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert isinstance(settings.MEDIA_ROOT, Path | str)
    assert isinstance(settings.ICON2_MODEL_CACHE, Path)


def test_the_asgi_app_routes_http_and_websockets():
    from channels.routing import ProtocolTypeRouter

    from webapp.asgi import application

    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http", "websocket"}


DEFAULT_SITE_PROBE = """
import django
django.setup()
from django.conf import settings
from django.test import Client
page = Client(HTTP_HOST="127.0.0.1").get("/no-such-page/")
text = page.content.decode()
print(settings.DEBUG, page.status_code, "URLconf" in text or "&lt;id:" in text or "<id:" in text, settings.SECRET_KEY, sep="\\n")
"""


def test_a_site_started_by_run_sh_has_debug_off_its_own_secret_key_and_a_404_without_the_url_list(tmp_path):
    """What scripts/run.sh sets up (its settings module, the key it keeps in var/, no DEBUG), on a
    fresh clone: the issue 29 probe found DEBUG on, the public development key, and every URL
    pattern listed on a 404."""
    run_sh = (ROOT / "scripts/run.sh").read_text()
    assert "source scripts/site_secret.sh" in run_sh
    assert not [line for line in run_sh.splitlines() if "DEBUG=" in line and not line.lstrip().startswith("#")]
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env = {**clean, "DJANGO_SETTINGS_MODULE": "webapp.settings", "ICON2_VAR_DIR": str(tmp_path / "var"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "ICON2_STATIC_ROOT": str(tmp_path / "static")}
    keys = []
    for _ in range(2):  # the second start keeps the first one's key
        result = subprocess.run(["bash", "-c", f'source scripts/site_secret.sh && exec "{sys.executable}" -c "$0"',
                                 DEFAULT_SITE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        debug, status, lists_urls, key = result.stdout.split("\n")[:4]
        assert (debug, status, lists_urls) == ("False", "404", "False")
        keys.append(key)
    key_file = tmp_path / "var" / "secret_key"
    assert keys[0] == keys[1] == key_file.read_text().strip() and len(keys[0]) >= 50
    assert "insecure" not in keys[0] and key_file.stat().st_mode & 0o077 == 0


def test_a_production_site_sends_judge_requests_to_no_private_address_unless_configured():
    base = {"DJANGO_SETTINGS_MODULE": "webapp.settings_production", "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "example.com"}
    show = "from django.conf import settings; print(settings.ICON2_JUDGE_ALLOWED_HOSTS)"
    assert _manage("shell", "-c", show, **base).stdout.strip().splitlines()[-1] == "[]"
    allowed = _manage("shell", "-c", show, **base, ICON2_JUDGE_ALLOWED_HOSTS="vllm.internal,10.0.0.0/8")
    assert allowed.stdout.strip().splitlines()[-1] == "['vllm.internal', '10.0.0.0/8']"
    bad = _manage("check", **base, ICON2_JUDGE_ALLOWED_HOSTS="10.0.0.0/99")
    assert bad.returncode != 0 and "ICON2_JUDGE_ALLOWED_HOSTS" in bad.stderr


def test_an_error_page_never_shows_local_variables_even_with_debug_on(rf, settings):
    """A 500 page of the probed site showed a judge's API key among its local variables."""
    from django.views.debug import ExceptionReporter

    settings.DEBUG = True

    key = "".join(reversed("lacol-a-ni-terces-ks"))  # spelt nowhere in the source the page quotes

    def ask_the_judge(api_key: str):
        raise RuntimeError("the judge failed")

    try:
        ask_the_judge(key)
    except RuntimeError:
        page = ExceptionReporter(rf.get("/"), *sys.exc_info()).get_traceback_html()
    assert "the judge failed" in page and key not in page
