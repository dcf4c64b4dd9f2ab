"""HTTP and HTTPS probes: a new connection per request, redirects followed hop by hop.

The host is resolved here so DNS is timed; the request then goes to the
resolved address with the original Host header and TLS server name (SNI).
Every hop of a redirect is resolved, connected and timed, and the phase
timings of all hops add up. Credentials in the URL are sent as Basic auth and
never appear in a message (``Url.redacted``). ``spec.expect`` is a body check:
the (decoded) body must contain it.
"""

from __future__ import annotations

import codecs
import socket
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from app.probes.base import ProbeError, ProbeOutcome, ProbeRun, ProbeStatus, Protocol
from app.probes.fields import Expect, Payload, WithHeaders
from app.probes.http1 import Response, exchange
from app.probes.net import resolve
from app.probes.text import quote
from app.probes.urls import Url, parse_url, url_target

MAX_REDIRECTS = 10
USER_AGENT = "admin-mit-probe/1.0"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Not forwarded when a redirect leads to another origin, as browsers do.
_ORIGIN_BOUND_HEADERS = ("authorization", "cookie", "host")
# Framing is the client's business: computed from the body, never taken from the spec.
_FRAMING_HEADERS = ("content-length", "transfer-encoding")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

Headers = dict[str, tuple[str, str]]  # lower-case name -> (name as given, value)


def _known_method(value: object) -> object:
    if isinstance(value, str):
        if value.upper() not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {value!r}; expected one of {', '.join(HTTP_METHODS)}")
        return value.upper()
    return value


class HttpSpec(WithHeaders):
    """An HTTP(S) request: the response must arrive within the timeout, and contain ``expect`` if set."""

    TARGET_HELP = "a URL: http://host[:port]/path for http, https://… for https"

    protocol: Literal["http", "https"]
    method: Annotated[Literal[HTTP_METHODS], BeforeValidator(_known_method)] = "GET"  # type: ignore[valid-type]
    body: Payload = Field(None, description="Request body, sent as given.")
    expect: Expect = Field(None, description="Text the response body must contain.")
    verify_tls: bool = Field(True, description="Check the certificate chain and host name (https).")
    follow_redirects: bool = True

    @classmethod
    def normalise_target(cls, protocol: str, target: str) -> str:
        return url_target(protocol, target, (protocol,))


def _user_headers(spec: HttpSpec) -> Headers:
    return {name.lower(): (name, value) for name, value in spec.headers.items()
            if name.lower() not in _FRAMING_HEADERS}


def _request(method: str, url: Url, user_headers: Headers, body: bytes | None) -> bytes:
    headers: Headers = {
        "host": ("Host", url.netloc),
        "user-agent": ("User-Agent", USER_AGENT),
        "accept": ("Accept", "*/*"),
        "accept-encoding": ("Accept-Encoding", "gzip, deflate"),
        "connection": ("Connection", "close"),  # every run opens its own connection
    }
    if auth := url.basic_auth():
        headers["authorization"] = ("Authorization", auth)
    headers.update(user_headers)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        headers["content-length"] = ("Content-Length", str(len(body or b"")))
    head = f"{method} {url.request_target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.values()
    )
    return (head + "\r\n").encode() + (body or b"")


def _redirect_method(status_code: int, method: str, body: bytes | None) -> tuple[str, bytes | None]:
    """Method and body for the next hop, by the rules browsers follow."""
    if (status_code in (302, 303) and method != "HEAD") or (status_code == 301 and method == "POST"):
        return "GET", None
    return method, body


def _charset(content_type: str) -> str:
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip('"')
            try:
                return codecs.lookup(name).name
            except LookupError:
                break
    return "utf-8"


async def _fetch(
    spec: HttpSpec, run: ProbeRun, url: Url, method: str, headers: Headers, body: bytes | None
) -> Response:
    """One hop: resolve, connect, (TLS,) request, response."""
    run.status_code = None
    return await exchange(
        await resolve(url.host, url.port, run.timings, socket.SOCK_STREAM),
        _request(method, url, headers, body),
        tls_host=url.host if url.secure else None,
        head_only=method == "HEAD",
        max_body=spec.max_body_bytes,
        run=run,
    )


async def probe(spec: HttpSpec, run: ProbeRun) -> ProbeOutcome:
    try:
        url = parse_url(spec.target)
    except ValueError as exc:
        raise ProbeError(ProbeStatus.ERROR, str(exc)) from None
    if url.scheme not in ("http", "https"):
        raise ProbeError(ProbeStatus.ERROR, "HTTP targets must start with http:// or https://")
    method = spec.method
    body = spec.body.encode() if spec.body is not None else None
    headers = _user_headers(spec)
    for _ in range(MAX_REDIRECTS + 1):
        response = await _fetch(spec, run, url, method, headers, body)
        location = response.headers.get("location")
        if not (spec.follow_redirects and location and response.status_code in REDIRECT_CODES):
            break
        try:
            next_url = url.join(location)
        except ValueError:
            raise ProbeError(
                ProbeStatus.FAILED, "the redirect location is not a valid URL", response.status_code
            ) from None
        if next_url.scheme not in ("http", "https"):
            raise ProbeError(
                ProbeStatus.FAILED, f"cannot follow a redirect to {next_url.redacted()}", response.status_code
            )
        if (next_url.scheme, next_url.host, next_url.port) != (url.scheme, url.host, url.port):
            for name in _ORIGIN_BOUND_HEADERS:
                headers.pop(name, None)
        url = next_url
        method, body = _redirect_method(response.status_code, method, body)
    else:
        raise ProbeError(ProbeStatus.FAILED, f"more than {MAX_REDIRECTS} redirects", response.status_code)

    text = response.body.decode(_charset(response.headers.get("content-type", "")), errors="replace")
    if spec.expect is not None and spec.expect not in text:
        cut = f" ({response.body_truncated})" if response.body_truncated else ""
        raise ProbeError(ProbeStatus.FAILED, f"body does not contain {quote(spec.expect)}{cut}", response.status_code)
    return ProbeOutcome(
        ProbeStatus.SUCCESS,
        status_code=response.status_code,
        headers=response.headers,
        body=text,
        bytes_read=len(response.body),
        body_truncated=response.body_truncated,
    )


PROTOCOL = Protocol(HttpSpec, probe)
