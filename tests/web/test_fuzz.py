"""Fuzz: every form and id route, driven with generated bad input, never answers 5xx (issue 14).

Hypothesis draws a route of the apps' URL map (ids in range, out of range, other teams'), a
person (the owner, the annotator, the outsider), a method, and a body of bad values for the
apps' form fields: NUL bytes, huge and negative numbers, NaN, deep nesting, long text, odd
unicode, uploads of random bytes. The test client re-raises any exception a view lets escape,
so a server error fails the test with its traceback. CI runs it on PostgreSQL and, through the
second test, on SQLite too.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django import forms as django_forms
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from hypothesis import HealthCheck, given, settings, strategies as st

EXAMPLES = 300

BAD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "", " ", "0", "-1", "1e309", "-1e309", "nan", "NaN", "inf", "-0", "0x10", "1_000", "１２",
        "9223372036854775807", "9223372036854775808", "9" * 40, "-" + "9" * 40,
        "\x00", "a\x00b", "[[[[[[[[", "{\"instruction\": " * 50, "' OR 1=1 --", "<script>alert(1)</script>",
        "../../../../etc/passwd", "/etc", "~", "%00", "\ud7ff\ue000", "e\u0301", "\u202e", "true", "on", "null",
        # judge base URLs urllib used to refuse only at launch (issue 29)
        "http://judge .example/v1", "http://127.0.0.1:8000/v1\r\nX-Injected: 1", "http://jüdge.example/v1",
        "http://127.0.0.1:abc/v1", "http://user:pw@127.0.0.1:8000/v1", "http://[::1/v1", "http://169.254.169.254/",
    ]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=1_000, max_value=300_000).map(lambda n: "x" * n),
)


def _form_fields() -> list[str]:
    names: set[str] = set()
    for module in ("webapp.studio.forms", "webapp.accounts.forms", "webapp.jobs.forms"):
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, type) and issubclass(value, django_forms.BaseForm):
                names.update(value.base_fields)
    # Raw POST keys read by views outside a Django form.
    names.update({"positive", "negative", "row", "team", "next", "assignment", "choice", "rationale", "side", "text",
                  "outcome", "version", "note", "key", "preset", "threshold", "username", "password", "password1",
                  "password2", "old_password", "new_password1", "new_password2", "runs", "name"})
    return sorted(names)


def _routes() -> list[tuple[str, dict]]:
    """(pattern text, {kwarg: converter name}) for every route of our apps (not Django's admin)."""
    found: list[tuple[str, dict]] = []

    def walk(patterns, prefix: str, namespace: str | None) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and (namespace != "admin" or pattern.name == "login"):
                converters = {name: type(c).__name__ for name, c in getattr(pattern.pattern, "converters", {}).items()}
                found.append((prefix + str(pattern.pattern), converters))

    walk(get_resolver().url_patterns, "", None)
    return found


ROUTES = _routes()
FIELDS = _form_fields()


def _path(route: str, converters: dict, values: dict) -> str:
    path = route
    for name in converters:
        path = re.sub(rf"<\w+:{name}>", lambda _: quote(values[name], safe=""), path)
    return "/" + path


@st.composite
def requests(draw, ids: list[int]):
    route, converters = draw(st.sampled_from(ROUTES))
    values = {}
    for name, converter in converters.items():
        if converter in ("IdConverter", "IntConverter"):
            values[name] = draw(st.one_of(st.sampled_from(ids).map(str), st.integers(0, 10**18 - 1).map(str),
                                          st.integers(10**18, 2**80).map(str)))
        else:
            values[name] = draw(st.one_of(st.sampled_from(["extract", "review", "jsonl", "parquet", "csv", "x"]),
                                          st.text(min_size=1, max_size=20)))
    keys = draw(st.lists(st.sampled_from(FIELDS), max_size=8, unique=True))
    data: dict = {key: draw(st.one_of(BAD_TEXT, st.lists(BAD_TEXT, min_size=2, max_size=4))) for key in keys}
    if draw(st.booleans()) and route.endswith("runs/new/"):
        name = draw(st.sampled_from(["i.jsonl", "i.csv", "i.txt", "i.exe", "i"]))
        body = draw(st.one_of(st.binary(max_size=300), st.just(b"[" * 50_000 + b"]" * 50_000),
                              st.just(b'instruction\n"unclosed\nx\n'), st.just(b"ok\n\x00\n")))
        data["instructions_file"] = SimpleUploadedFile(name, body)
        data["instruction_source"] = "upload"
    method = draw(st.sampled_from(["get", "post"]))
    who = draw(st.sampled_from(["owner", "annotator", "outsider", "anonymous"]))
    htmx = draw(st.booleans())
    return method, _path(route, converters, values), data, who, htmx


def _clean(value):
    """Text a form post can carry (the test client refuses lone surrogates; a browser would too)."""
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def test_no_route_answers_a_server_error_to_bad_input(ours, theirs, owner, annotator, outsider):
    ids = [ours.run.pk, ours.project.pk, ours.dimension.pk, ours.model.pk, ours.team.pk, theirs.run.pk, theirs.team.pk, 0, 1]
    clients = {"anonymous": (Client(), Client(headers={"HX-Request": "true"}))}
    for name, user in (("owner", owner), ("annotator", annotator), ("outsider", outsider)):
        pair = (Client(), Client(headers={"HX-Request": "true"}))
        for client in pair:
            client.force_login(user)
        clients[name] = pair
    seen: list[tuple[str, str, int]] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=requests(ids))
    def drive(request):
        method, path, data, who, htmx = request
        client = clients[who][htmx]
        data = {key: _clean(value) for key, value in data.items()}
        if method == "get":
            data = {k: v for k, v in data.items() if not isinstance(v, SimpleUploadedFile)}
            response = client.get(path, data)
        else:
            response = client.post(path, data)
        seen.append((method, path, response.status_code))
        assert response.status_code < 500, (method, path, data)

    drive()
    assert len(seen) >= 200
    assert {status for _, _, status in seen} & {400, 404}  # the bad input did reach the checks
    assert len({path.split("?")[0].strip("/").split("/")[0] for _, path, _ in seen}) >= 5  # and many routes


@pytest.mark.skipif("postgres" not in os.environ.get("DATABASE_URL", ""), reason="this run is already on SQLite")
def test_the_fuzz_holds_on_sqlite_too():
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{Path(__file__)}::test_no_route_answers_a_server_error_to_bad_input"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# The causes of the 500s a probe of a fresh site found (issue 29), each driven on purpose -------

BAD_JUDGE_URLS = [
    "http://judge .example/v1", "http://127.0.0.1:8000/v 1", "http://127.0.0.1:8000/v1\r\nX-Injected: 1",
    "http://127.0.0.1:8000\n/v1", "http://jüdge.example/v1", "http://127.0.0.1:8000/vé", "http://127.0.0.1:abc/v1",
    "http://127.0.0.1:99999/v1", "http://user:pw@127.0.0.1:8000/v1", "http://[::1/v1",
]
HUGE_INTEGER = b'"A first instruction."\n{"instruction": 1' + b"9" * 5000 + b"}\n"
LONE_SURROGATE = b'"A first instruction."\n{"instruction": "Half a pair: \\ud800"}\n'


def _judge_post(client, name: str, base_url: str):
    return client.post(reverse("studio:judge_new"), {
        "name": name, "kind": "llm", "better": "higher", "criterion": "Which answer is more helpful?",
        "base_url": base_url, "model_name": "m", "api_key": "sk-x", "protocol": "pairwise", "path": ""})


def test_a_judge_url_urllib_refused_at_launch_is_a_form_error_and_never_a_500(ours, owner, client_for):
    from webapp.studio.models import Judge
    from webapp.studio.services import run_create

    client = client_for(owner)
    seen: list[tuple[str, int]] = []
    for i, url in enumerate(BAD_JUDGE_URLS):
        response = _judge_post(client, f"Judge {i}", url)
        seen.append((f"judge {url!r}", response.status_code))
        judge = Judge.objects.filter(name=f"Judge {i}").first()
        if judge is not None:  # were one saved, its launch must still answer
            run = run_create(project=ours.project, created_by=owner, model=ours.run.model, dimensions=[ours.dimension],
                             config={"name": f"Run {i}", "eval_judge": judge})
            seen.append((f"launch {url!r}", client.post(reverse("studio:run_launch", args=[run.pk])).status_code))
    assert [what for what, status in seen if status >= 500] == []
    assert not Judge.objects.filter(name__startswith="Judge ").exists()  # each was a form error on base_url


def test_a_token_name_too_long_or_with_a_nul_byte_is_refused_with_a_message(ours, owner, client_for):
    from webapp.review.models import ApiToken

    client = client_for(owner)
    for name in ("x" * 121, "a\x00b"):
        response = client.post(reverse("review:api_token_new"), {"name": name, "next": "/"}, follow=True)
        assert response.status_code == 200 and "token name" in response.content.decode(), name
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("name, body", [("huge.jsonl", HUGE_INTEGER), ("surrogate.jsonl", LONE_SURROGATE)])
def test_an_upload_with_a_huge_integer_or_a_lone_surrogate_names_its_line(ours, owner, client_for, name, body):
    response = client_for(owner).post(reverse("studio:run_new", args=[ours.project.pk]), {
        "name": name, "instruction_source": "upload", "instructions_file": SimpleUploadedFile(name, body)})
    assert response.status_code == 400 and "Line 2" in response.content.decode()


def test_a_form_declared_utf_16_is_a_400_even_with_debug_on(ours, owner, client_for, settings):
    settings.DEBUG = True  # DEBUG=1: Django's error page read the body again and turned the 400 into a 500
    client = client_for(owner)
    for path in ("/accounts/login/", reverse("accounts:team_new")):
        response = client.generic("POST", path, "name=caf\u00e9".encode("utf-16"),
                                  content_type="application/x-www-form-urlencoded; charset=utf-16")
        assert response.status_code == 400, path


@pytest.mark.parametrize("path", ["/ws/runs/abc/", "/ws/nope/", "/ws/", "/ws/probes/-1/", "/anything"])
@pytest.mark.parametrize("who", ["anonymous", "owner"])
def test_a_websocket_path_no_route_serves_is_refused_cleanly(ours, owner, path, who):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from webapp.asgi import application

    async def handshake() -> bool:
        communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://testserver"),
                                                                          (b"host", b"testserver")])
        if who == "owner":
            communicator.scope["user"] = owner
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(handshake)() is False


def test_a_refused_request_is_one_line_in_the_log_not_a_traceback(ours, annotator, client_for, caplog):
    with caplog.at_level("WARNING", logger="django.request"):
        response = client_for(annotator).get(reverse("studio:judge_new"))
    assert response.status_code == 403
    forbidden = [r for r in caplog.records if r.name == "django.request"]
    assert len(forbidden) == 1 and forbidden[0].exc_info is None and "Traceback" not in caplog.text
