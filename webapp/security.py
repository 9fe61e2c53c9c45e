"""Safe defaults for what the web process sends back and writes down (docs/security.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import BadRequest, PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import add_never_cache_headers
from django.views.debug import SafeExceptionReporterFilter
from django.views.defaults import bad_request


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every page Django renders: signed-in pages and exports hold
    team data, and a shared or back-button cache must not keep them. Static files are served
    before this (WhiteNoise, earlier in MIDDLEWARE) and stay cacheable."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if "Cache-Control" not in response:
            add_never_cache_headers(response)  # no-cache, no-store, must-revalidate, private
        return response


class FormEncodingMiddleware:
    """A 400 for a form body declared in another charset than UTF-8 (``charset=utf-16``), before
    anything reads it: Django refuses such a body each time it is read, and under DEBUG its error
    page reads it again and turns the 400 into a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        encoding = request.encoding
        if request.content_type == "application/x-www-form-urlencoded" and encoding and encoding.lower() != "utf-8":
            return bad_request(request, BadRequest("Send forms as UTF-8."))
        return self.get_response(request)


class OneLineForbiddenFilter(logging.Filter):
    """Log a PermissionDenied (a 403 anyone signed in can cause) as its one line, without the
    traceback, so that refused requests cannot flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True


class NoLocalsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Error pages and reports without any frame's local variables (a judge's key was one)."""

    def get_traceback_frame_variables(self, request, tb_frame) -> list:
        return []
