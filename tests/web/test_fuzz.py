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
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings, strategies as st

EXAMPLES = 300

BAD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "", " ", "0", "-1", "1e309", "-1e309", "nan", "NaN", "inf", "-0", "0x10", "1_000", "１２",
        "9223372036854775807", "9223372036854775808", "9" * 40, "-" + "9" * 40,
        "\x00", "a\x00b", "[[[[[[[[", "{\"instruction\": " * 50, "' OR 1=1 --", "<script>alert(1)</script>",
        "../../../../etc/passwd", "/etc", "~", "%00", "\ud7ff\ue000", "e\u0301", "\u202e", "true", "on", "null",
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
