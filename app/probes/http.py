"""HTTP and HTTPS probes over httpx, timed phase by phase.

The host is resolved here rather than by httpx so DNS time can be measured; the
request then goes to the resolved address with the original Host header and TLS
server name. Redirects are followed by hand so every hop is resolved and timed;
the phase timings of all hops are added up.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from datetime import datetime
from typing import Any, TypeVar

import httpx
from cryptography import x509

from app.probes.base import PhaseTimings, ProbeOutcome, ProbeSpec, ProbeStatus
from app.probes.net import (
    ProbeError,
    describe_connect_error,
    elapsed_ms,
    is_ip,
    resolve,
    ssl_context,
    tls_error,
)

MAX_REDIRECTS = 10

# httpcore trace event ending a phase -> (event starting it, PhaseTimings field)
_PHASES = {
    "connection.connect_tcp": ("connection.connect_tcp", "connect_ms"),
    "connection.start_tls": ("connection.start_tls", "tls_ms"),
    "http11.receive_response_headers": ("http11.send_request_headers", "processing_ms"),
}
# Not forwarded when a redirect leads to another host, as browsers and httpx do.
_ORIGIN_BOUND_HEADERS = ("authorization", "cookie", "host")

E = TypeVar("E", bound=BaseException)


def _add(timings: PhaseTimings, field: str, ms: float) -> None:
    setattr(timings, field, round((getattr(timings, field) or 0.0) + ms, 3))


class _Tracer:
    """httpx ``trace`` extension: adds each finished phase to the timings as it happens."""

    def __init__(self, timings: PhaseTimings) -> None:
        self._timings = timings
        self._started: dict[str, float] = {}

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        name, _, stage = event.rpartition(".")
        if stage == "started":
            self._started[name] = time.perf_counter()
        elif stage == "complete" and name in _PHASES:
            start_event, field = _PHASES[name]
            _add(self._timings, field, elapsed_ms(self._started[start_event]))


def _innermost(exc: BaseException | None, kind: type[E]) -> E | None:
    """The deepest exception of ``kind`` in ``exc``'s cause chain (httpx wraps the OS error twice)."""
    found = None
    while exc is not None:
        if isinstance(exc, kind):
            found = exc
        exc = exc.__cause__ or exc.__context__
    return found


def _redirect_method(status_code: int, method: str, content: str | None) -> tuple[str, str | None]:
    """Method and body for the next hop, by the rules browsers (and httpx) follow."""
    if (status_code in (302, 303) and method != "HEAD") or (status_code == 301 and method == "POST"):
        return "GET", None
    return method, content


def _cert_expiry(response: httpx.Response) -> datetime | None:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der).not_valid_after_utc if der else None


async def _send(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    headers: httpx.Headers,
    content: str | None,
    tracer: _Tracer,
    timings: PhaseTimings,
) -> httpx.Response:
    """Send one request to the first resolved address that accepts the connection."""
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await resolve(url.host, port, timings, socket.SOCK_STREAM)
    hop_headers = httpx.Headers(headers)
    hop_headers.setdefault("Host", url.netloc.decode("ascii"))
    extensions: dict[str, Any] = {"trace": tracer}
    if not is_ip(url.host):
        extensions["sni_hostname"] = url.host
    error: httpx.ConnectError | None = None
    for _, sockaddr in addresses:
        request = client.build_request(
            method, url.copy_with(host=sockaddr[0]), headers=hop_headers, content=content, extensions=extensions
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            if tls := _innermost(exc, ssl.SSLError):
                raise tls_error(tls) from exc
            error = exc
    os_error = _innermost(error, OSError)
    message = describe_connect_error(os_error) if os_error else f"could not connect: {error}"
    raise ProbeError(ProbeStatus.FAILED, message) from error


async def _read_body(response: httpx.Response, limit: int, timings: PhaseTimings) -> bytes:
    started = time.perf_counter()
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    _add(timings, "transfer_ms", elapsed_ms(started))
    return bytes(body)


async def _fetch(spec: ProbeSpec, timings: PhaseTimings) -> ProbeOutcome:
    url = httpx.URL(spec.target)
    method, content = spec.method.upper(), spec.body
    headers = httpx.Headers(spec.headers)
    tracer = _Tracer(timings)
    cert_expires_at = None
    async with httpx.AsyncClient(
        verify=ssl_context(spec.verify_tls), trust_env=False, timeout=spec.timeout
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            response = await _send(client, method, url, headers, content, tracer, timings)
            try:
                cert_expires_at = _cert_expiry(response) or cert_expires_at
                body = await _read_body(response, spec.max_body_bytes, timings)
            finally:
                await response.aclose()
            if not (spec.follow_redirects and response.has_redirect_location):
                break
            location = response.headers["location"]
            try:
                next_url = url.join(location)
            except httpx.InvalidURL:
                raise ProbeError(ProbeStatus.FAILED, f"invalid redirect location {location!r}") from None
            if next_url.scheme not in ("http", "https"):
                raise ProbeError(ProbeStatus.FAILED, f"cannot follow redirect to {location!r}")
            if next_url.host != url.host:
                for name in _ORIGIN_BOUND_HEADERS:
                    headers.pop(name, None)
            url = next_url
            method, content = _redirect_method(response.status_code, method, content)
        else:
            raise ProbeError(
                ProbeStatus.FAILED, f"more than {MAX_REDIRECTS} redirects", status_code=response.status_code
            )
    return ProbeOutcome(
        status=ProbeStatus.SUCCESS,
        status_code=response.status_code,
        headers=dict(response.headers),
        body=body.decode(response.encoding or "utf-8", errors="replace"),
        bytes_read=len(body),
        cert_expires_at=cert_expires_at,
    )


async def probe(spec: ProbeSpec) -> ProbeOutcome:
    timings = PhaseTimings()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout):
            outcome = await _fetch(spec, timings)
    except (TimeoutError, httpx.TimeoutException):
        outcome = ProbeOutcome(ProbeStatus.TIMEOUT, error=f"no response within {spec.timeout:g}s")
    except ProbeError as exc:
        outcome = exc.outcome()
    except httpx.TransportError as exc:  # connection dropped, malformed response, ...
        outcome = ProbeOutcome(ProbeStatus.FAILED, error=str(exc) or type(exc).__name__)
    outcome.timings = timings
    outcome.response_time_ms = elapsed_ms(started)
    return outcome
