"""WebSocket (ws/wss) probe with the ``websockets`` asyncio client.

Timings: ``dns_ms`` and ``connect_ms`` (TCP) are measured here, since the socket
is opened here and handed to websockets. ``tls_ms`` runs from handing it over to
the moment the transport is ready (wss only), ``processing_ms`` is the opening
handshake (upgrade request -> 101 response) and ``transfer_ms`` the message
exchange (send ``body``, wait for ``expect``) when ``expect`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.uri import WebSocketURI, parse_uri

from app.probes.base import PhaseTimings, ProbeOutcome, ProbeSpec, ProbeStatus
from app.probes.net import (
    ProbeError,
    elapsed_ms,
    expect_missing,
    open_socket,
    resolve,
    ssl_context,
    timed_out,
    tls_error,
)

CLOSE_TIMEOUT = 1.0  # the closing handshake happens after the result is known; don't wait long


class _TimedConnection(ClientConnection):
    """Notes when asyncio hands over the transport: after the TLS handshake for wss."""

    transport_ready_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport_ready_at = time.perf_counter()
        super().connection_made(transport)


async def _open(
    spec: ProbeSpec, uri: WebSocketURI, timings: PhaseTimings, stack: contextlib.AsyncExitStack
) -> ClientConnection:
    addresses = await resolve(uri.host, uri.port, timings, socket.SOCK_STREAM)
    sock = await open_socket(addresses, timings)
    stack.callback(sock.close)
    handed_over = time.perf_counter()
    try:
        ws = await stack.enter_async_context(
            connect(
                spec.target,
                sock=sock,
                ssl=ssl_context(spec.verify_tls) if uri.secure else None,
                additional_headers=spec.headers or None,
                open_timeout=None,  # spec.timeout bounds the whole probe
                close_timeout=CLOSE_TIMEOUT,
                ping_interval=None,
                create_connection=_TimedConnection,
            )
        )
    except ssl.SSLError as exc:  # before ValueError: certificate errors are ValueErrors too
        raise tls_error(exc) from exc
    except (InvalidHandshake, ValueError) as exc:
        # A redirect comes back as ValueError (websockets can't follow it on our socket).
        rejected = exc if isinstance(exc, InvalidStatus) else exc.__cause__
        if isinstance(rejected, InvalidStatus):
            code = rejected.response.status_code
            raise ProbeError(ProbeStatus.FAILED, f"handshake rejected with HTTP {code}", code) from exc
        if isinstance(exc, ValueError):
            raise
        raise ProbeError(ProbeStatus.FAILED, f"WebSocket handshake failed: {exc}") from exc
    except OSError as exc:
        raise ProbeError(ProbeStatus.FAILED, f"connection error: {exc.strerror or exc}") from exc
    assert isinstance(ws, _TimedConnection)
    if uri.secure:
        timings.tls_ms = round((ws.transport_ready_at - handed_over) * 1000, 3)
    timings.processing_ms = elapsed_ms(ws.transport_ready_at)
    return ws


async def _exchange(
    spec: ProbeSpec, timings: PhaseTimings, received: list[str], stack: contextlib.AsyncExitStack
) -> ProbeOutcome:
    ws = await _open(spec, parse_uri(spec.target), timings, stack)
    started = time.perf_counter()
    bytes_read = 0
    try:
        if spec.body is not None:
            await ws.send(spec.body)
        if spec.expect is not None:
            while not received or spec.expect not in received[-1]:
                message = await ws.recv()
                data = message.encode() if isinstance(message, str) else message
                bytes_read += len(data)
                received.append(data.decode("utf-8", errors="replace"))
            timings.transfer_ms = elapsed_ms(started)
    except ConnectionClosed as exc:
        if spec.expect is not None:
            raise expect_missing(spec.expect, "\n".join(received), "connection closed") from exc
        raise ProbeError(ProbeStatus.FAILED, f"connection closed by server: {exc}") from exc
    body = received[-1] if received else None
    return ProbeOutcome(ProbeStatus.SUCCESS, body=body, bytes_read=bytes_read)


async def probe(spec: ProbeSpec) -> ProbeOutcome:
    timings = PhaseTimings()
    received: list[str] = []
    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:  # closes the connection after timing stops
        try:
            async with asyncio.timeout(spec.timeout):
                outcome = await _exchange(spec, timings, received, stack)
        except TimeoutError:
            outcome = timed_out(spec, "\n".join(received), connected=timings.processing_ms is not None).outcome()
        except ProbeError as exc:
            outcome = exc.outcome()
        outcome.timings = timings
        outcome.response_time_ms = elapsed_ms(started)
    return outcome
