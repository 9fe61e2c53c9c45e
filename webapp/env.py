"""Typed helpers that read settings from the environment and fail loudly.

Every helper names the variable and the form it expects when the value is missing or
malformed, so a misconfigured deployment stops at start-up instead of half working.

    >>> DEBUG = env_bool("DEBUG", default=False)
    >>> ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")  # required: raises if unset
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

from icon2engine.endpoints import EndpointPolicy
from icon2engine.errors import ConfigError
from icon2engine.formats import parse_flag

T = TypeVar("T")

_REQUIRED = object()


def _raw(name: str, default: object) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        if default is _REQUIRED:
            raise ImproperlyConfigured(f"Set the environment variable {name}.")
        return None
    return value.strip()


def env_str(name: str, default: str | object = _REQUIRED) -> str:
    """A string; required unless a default is given."""
    value = _raw(name, default)
    return value if value is not None else default  # type: ignore[return-value]


def env_bool(name: str, default: bool | object = _REQUIRED) -> bool:
    """A boolean written as 1/0, true/false, yes/no or on/off (any case)."""
    value = _raw(name, default)
    if value is None:
        return default  # type: ignore[return-value]
    try:
        return parse_flag(name, value)  # the engine's reading of a switch: one rule for both sides
    except ConfigError as error:
        raise ImproperlyConfigured(str(error)) from None


def env_int(
    name: str,
    default: int | object = _REQUIRED,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
) -> int:
    """An integer, optionally within [min_value, max_value]."""
    value = _raw(name, default)
    if value is None:
        return default  # type: ignore[return-value]
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer; use digits, e.g. {name}=8000.") from None
    if min_value is not None and number < min_value:
        raise ImproperlyConfigured(f"{name}={number} is too small; it must be at least {min_value}.")
    if max_value is not None and number > max_value:
        raise ImproperlyConfigured(f"{name}={number} is too large; it must be at most {max_value}.")
    return number


def env_list(name: str, default: list[str] | object = _REQUIRED) -> list[str]:
    """A comma-separated list, e.g. ALLOWED_HOSTS=example.com,www.example.com."""
    value = _raw(name, default)
    if value is None:
        return list(default)  # type: ignore[call-overload]
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(
            f"{name}={value!r} has no items; use a comma-separated list, e.g. {name}=a,b."
        )
    return items


def env_path(name: str, default: Path | str | object = _REQUIRED) -> Path:
    """A filesystem path; `~` is expanded and relative paths stay relative to the working directory."""
    value = _raw(name, default)
    if value is None:
        return Path(default).expanduser()  # type: ignore[arg-type]
    if "\x00" in value:
        raise ImproperlyConfigured(f"{name} is not a valid path; give a folder such as /var/lib/icon2.")
    return Path(value).expanduser()


def env_hosts(name: str, default: list[str]) -> list[str]:
    """Host names and address ranges (``localhost,10.0.0.0/8``), or ``none`` for an empty list."""
    hosts = [h for h in env_list(name, default=default) if h.lower() != "none"]
    try:
        EndpointPolicy(allowed_hosts=tuple(hosts))
    except ConfigError as error:
        raise ImproperlyConfigured(f"{name}: {error}.") from None
    return hosts
