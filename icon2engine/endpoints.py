"""One outbound client for OpenAI-compatible judge endpoints, safe to run on a server.

Every request to a judge endpoint goes through :func:`request_json`: the web's launch check
(``GET …/models``) and the LLM judge's ``POST …/chat/completions`` in calibration and evaluation
(whose verdicts the agreement page shows). It:

- refuses a URL with user info, spaces, control characters (CR/LF), non-ASCII text or a bad port
  (:func:`url_problem`, which the web's judge form uses too);
- resolves the host once, refuses private, loopback, link-local and other non-public addresses
  unless :class:`EndpointPolicy` allows the host, and connects to the address it checked (a DNS
  answer that changes between the check and the connection cannot move the request);
- never follows a redirect, and ignores proxy settings from the environment;
- sends an API key only to the origin (scheme, host, port) the key was saved for.

No Django here: the web passes its settings in as an :class:`EndpointPolicy`.

Example:
    >>> policy = EndpointPolicy(allowed_hosts=("localhost", "127.0.0.0/8"))
    >>> request_json("GET", "http://127.0.0.1:8000/v1/models", policy=policy)
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, JudgeError

__all__ = [
    "EndpointError", "EndpointRefused", "EndpointPolicy", "LOOPBACK_HOSTS", "url_problem", "url_origin",
    "request_json",
]

# What the engine allows when nobody says otherwise: a judge served on this machine (vLLM,
# `transformers serve`, llama.cpp) is the common case for the command line.
LOOPBACK_HOSTS = ("localhost", "127.0.0.0/8", "::1")
MAX_BODY_BYTES = 4_000_000


class EndpointError(JudgeError):
    """A judge endpoint could not be used. ``status`` is the HTTP status when it answered one."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class EndpointRefused(EndpointError):
    """The request was refused before anything was sent (the URL, the address or the key's origin)."""


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a judge's base URL, or None. Nothing is resolved or sent."""
    if not url:
        return "Give an http:// or https:// address, e.g. http://127.0.0.1:8000/v1."
    if not url.isascii():
        return "Use plain ASCII in the address (write an international host name in its xn-- form)."
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "The address contains a space or a control character (such as a line break); remove it."
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address
        return "The address is not a valid URL; check the host (an IPv6 address goes in [brackets])."
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "Give an http:// or https:// address, e.g. http://127.0.0.1:8000/v1."
    if "@" in parts.netloc:
        return "Leave user names and passwords out of the address; put the key in the API key field."
    if not parts.hostname:
        return "The address has no host name."
    try:
        port = parts.port
    except ValueError:
        return "The address's port must be a number from 1 to 65535."
    if port == 0:
        return "The address's port must be a number from 1 to 65535."
    if parts.query or parts.fragment:
        return "Leave the query (?…) and fragment (#…) out of the base URL."
    return None


def url_origin(url: str) -> str:
    """``scheme://host:port`` of a URL that passed :func:`url_problem` (the port always written)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@dataclass(frozen=True)
class EndpointPolicy:
    """Which hosts a judge endpoint may be on, beyond the public internet.

    Args:
        allowed_hosts: host names (exact, any case) and address ranges (``10.0.0.0/8``, ``::1``)
            that may resolve to private, loopback or link-local addresses. Every other host must
            resolve to public addresses only.
        timeout: seconds to connect and then to read an answer.
    """

    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    timeout: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", tuple(h.strip().lower() for h in self.allowed_hosts if h.strip()))
        for entry in self.allowed_hosts:
            if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ConfigError(f"allowed judge host {entry!r} is not an address or a range such as 10.0.0.0/8") from None
        if not 0 < self.timeout <= 600:
            raise ConfigError(f"timeout must be in (0, 600] seconds, got {self.timeout}")

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for entry in self.allowed_hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue  # a host name
        return networks

    def address_problem(self, host: str, address: str) -> str | None:
        """Why ``host`` (resolved to ``address``) may not be used, or None."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if getattr(ip, "ipv4_mapped", None):
            ip = ip.ipv4_mapped
        if ip.is_global and not ip.is_multicast:
            return None
        if host.lower().rstrip(".") in self.allowed_hosts or any(ip in net for net in self._networks()):
            return None
        kind = ("a link-local" if ip.is_link_local else "a loopback" if ip.is_loopback
                else "a private" if ip.is_private else "a non-public")
        return (f"{host} is {kind} address, which this site does not send judge requests to "
                "(an operator may allow it in ICON2_JUDGE_ALLOWED_HOSTS).")

    def resolve(self, host: str, port: int) -> str:
        """The one address of ``host`` to connect to, after checking every address it has."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            problem = self.address_problem(host, host)
            if problem:
                raise EndpointRefused(problem)
            return host
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise EndpointError(f"cannot resolve {host}") from None
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            problem = self.address_problem(host, address)
            if problem:
                raise EndpointRefused(problem)
        if not addresses:
            raise EndpointError(f"cannot resolve {host}")
        return addresses[0]


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to one checked address, with the URL's host name in Host and in TLS."""

    def __init__(self, host: str, port: int, *, address: str, tls: bool, timeout: float) -> None:
        self.default_port = 443 if tls else 80  # so Host: omits a default port
        super().__init__(host, port, timeout=timeout)
        self.address, self.tls = address, tls

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        if self.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


def request_json(method: str, url: str, *, policy: EndpointPolicy, payload: Any = None,
                 api_key: str | None = None, key_origin: str | None = None) -> Any:
    """Send one request to a judge endpoint and return its JSON answer.

    Args:
        method: "GET" or "POST"; payload: a JSON body for POST.
        api_key: sent as ``Authorization: Bearer …`` only when ``url``'s origin equals
            ``key_origin`` (the origin the key was saved with); a key for another origin is an
            :class:`EndpointRefused` error and nothing is sent.
    Raises:
        EndpointRefused: the URL, the address or the key's origin is not allowed (nothing sent).
        EndpointError: no connection, a redirect, an error status or an answer that is not JSON.
    """
    problem = url_problem(url)
    if problem:
        raise EndpointRefused(problem)
    headers = {"Accept": "application/json"}
    if api_key:
        if key_origin is None or url_origin(url) != key_origin:
            raise EndpointRefused("the API key was saved for another address; enter it again for this one")
        headers["Authorization"] = f"Bearer {api_key}"
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    address = policy.resolve(parts.hostname or "", port)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = _PinnedConnection(parts.hostname or "", port, address=address, tls=tls, timeout=policy.timeout)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(MAX_BODY_BYTES)
    except (OSError, http.client.HTTPException) as error:
        raise EndpointError(f"no answer ({type(error).__name__})", retryable=True) from None
    finally:
        connection.close()
    status = response.status
    if 300 <= status < 400:
        raise EndpointError(f"answered a redirect (HTTP {status}), which is not followed", status=status)
    if status >= 400:
        raise EndpointError(f"answered HTTP {status}", status=status, retryable=status >= 500 or status == 429)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EndpointError("answered with something that is not JSON", status=status) from None
