"""WebSocket (ws/wss) probe with the ``websockets`` asyncio client.

Timings: ``dns_ms`` and ``connect_ms`` (TCP) are measured here, since the socket
is opened here and handed to websockets. ``tls_ms`` runs from handing it over to
the moment the transport is ready (wss only), ``processing_ms`` is the opening
handshake (upgrade request -> 101 response) and ``transfer_ms`` the message
exchange (send ``body``, wait for ``expect``) when ``expect`` is set.

websockets logs every request line and header at DEBUG (a token in the query,
a Basic auth header); the probe hands it a logger that never emits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.uri import WebSocketURI, parse_uri

from typing import Literal

from pydantic import Field

from app.probes.base import ProbeError, ProbeOutcome, ProbeRun, ProbeStatus, Protocol
from app.probes.fields import Expect, Payload, WithHeaders
from app.probes.net import elapsed_ms, open_socket, resolve
from app.probes.text import expect_missing, os_error, size
from app.probes.tls import check_peer_certificate, handshake_failed, ssl_context, verification_failed
from app.probes.urls import url_target

CLOSE_TIMEOUT = 1.0  # the closing handshake happens after the result is known; don't wait long
MAX_QUEUE = 2  # messages websockets may buffer: a flooding server costs little memory

_SILENT = logging.Logger("app.probes.websocket.connection")
_SILENT.disabled = True


class _TimedConnection(ClientConnection):
    """Notes when asyncio hands over the transport: after the TLS handshake for wss."""

    transport_ready_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport_ready_at = time.perf_counter()
        super().connection_made(transport)


class WebSocketSpec(WithHeaders):
    """A WebSocket opening handshake; then, if set, send ``body`` and wait for a message containing ``expect``."""

    TARGET_HELP = "a URL: ws://host[:port]/path or wss://…"

    protocol: Literal["websocket"]
    body: Payload = Field(None, description="A text message sent once the connection is open.")
    expect: Expect = Field(None, description="Text a message from the server must contain.")
    verify_tls: bool = Field(True, description="Check the certificate chain and host name (wss).")

    @classmethod
    def normalise_target(cls, protocol: str, target: str) -> str:
        return url_target(protocol, target, ("ws", "wss"))


def _rejected(exc: Exception) -> ProbeError:
    """A refused or otherwise failed opening handshake, said without the URL (it may hold credentials)."""
    status = exc if isinstance(exc, InvalidStatus) else exc.__cause__
    if isinstance(status, InvalidStatus):
        code = status.response.status_code
        if 300 <= code < 400:
            message = f"handshake redirected with HTTP {code} (WebSocket probes do not follow redirects)"
        else:
            message = f"handshake rejected with HTTP {code}"
        return ProbeError(ProbeStatus.FAILED, message, code)
    return ProbeError(ProbeStatus.FAILED, f"WebSocket handshake failed: {exc}")


async def _open(spec: WebSocketSpec, uri: WebSocketURI, run: ProbeRun) -> ClientConnection:
    sock = await open_socket(await resolve(uri.host, uri.port, run.timings, socket.SOCK_STREAM), run.timings)
    peer = sock.getpeername()
    run.cleanup.callback(sock.close)
    handed_over = time.perf_counter()
    try:
        ws = await run.cleanup.enter_async_context(
            connect(
                spec.target,
                sock=sock,
                ssl=ssl_context(spec.verify_tls) if uri.secure else None,
                additional_headers=spec.headers or None,
                open_timeout=None,  # run_probe's deadline bounds the whole probe
                close_timeout=CLOSE_TIMEOUT,
                ping_interval=None,
                max_size=spec.max_body_bytes,
                max_queue=MAX_QUEUE,
                logger=_SILENT,
                create_connection=_TimedConnection,
            )
        )
    except ssl.SSLCertVerificationError as exc:
        raise await verification_failed(exc, peer, uri.host, run) from exc
    except ssl.SSLError as exc:  # before ValueError: certificate errors are ValueErrors too
        raise handshake_failed(exc) from exc
    except (InvalidHandshake, ValueError) as exc:
        raise _rejected(exc) from exc
    except OSError as exc:
        raise ProbeError(ProbeStatus.FAILED, f"connection error: {os_error(exc)}") from exc
    assert isinstance(ws, _TimedConnection)
    if uri.secure:
        run.timings.tls_ms = round((ws.transport_ready_at - handed_over) * 1000, 3)
        check_peer_certificate(ws.transport.get_extra_info("ssl_object"), run)
    run.timings.processing_ms = elapsed_ms(ws.transport_ready_at)
    return ws


async def probe(spec: WebSocketSpec, run: ProbeRun) -> ProbeOutcome:
    try:
        uri = parse_uri(spec.target)
    except InvalidURI:  # its text repeats the URL, which may hold credentials
        raise ProbeError(ProbeStatus.ERROR, "not a valid ws:// or wss:// URL") from None
    ws = await _open(spec, uri, run)
    started = time.perf_counter()
    last: str | None = None
    bytes_read = 0
    try:
        if spec.body is not None:
            await ws.send(spec.body)
        if spec.expect is not None:
            run.awaiting_reply = True
            while last is None or spec.expect not in last:
                message = await ws.recv()
                data = message.encode() if isinstance(message, str) else message
                bytes_read += len(data)
                if bytes_read > spec.max_body_bytes:
                    then = f"more than {size(spec.max_body_bytes)} arrived"
                    raise ProbeError(ProbeStatus.FAILED, expect_missing(spec.expect, run.received.decode(errors="replace"), then))
                run.received += (b"\n" if run.received else b"") + data
                last = data.decode("utf-8", errors="replace")
            run.timings.transfer_ms = elapsed_ms(started)
    except ConnectionClosed as exc:
        text = run.received.decode("utf-8", errors="replace")
        if spec.expect is not None:
            raise ProbeError(ProbeStatus.FAILED, expect_missing(spec.expect, text, "the connection closed")) from exc
        raise ProbeError(ProbeStatus.FAILED, "connection closed by the server") from exc
    return ProbeOutcome(ProbeStatus.SUCCESS, body=last, bytes_read=bytes_read)


PROTOCOL = Protocol(WebSocketSpec, probe)
