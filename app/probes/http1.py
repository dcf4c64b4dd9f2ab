"""One HTTP/1.1 exchange on a connection of its own, the response parsed by llhttp (``httptools``).

The caller resolves the host (so DNS is timed there); this module connects to
the address, starts TLS when asked, writes the request and reads one response.
Timed here: connect, TLS (handshake), processing (request written → response
headers complete) and transfer (headers → end of body).

Bounded here, so a hostile server costs a probe little memory and no event-loop
time worth speaking of: the response head (``MAX_HEADER_BYTES``, ``MAX_HEADERS``),
trailers (``MAX_HEADER_BYTES``) and the body after decoding (``max_body``,
``BodyDecoder``). Framing: Content-Length, chunked, or read until the server
closes; a HEAD response ends with its headers; 1xx interim responses are skipped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httptools

from app.probes.base import ProbeError, ProbeRun, ProbeStatus
from app.probes.decoding import BodyDecoder
from app.probes.net import Address, connect, connection_error
from app.probes.text import size
from app.probes.tls import start_tls

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytearray
    body_truncated: str | None


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the response is complete, or long enough."""


class _ResponseReader(asyncio.Protocol):
    """Feeds what arrives to llhttp; resolves ``done`` with the response, or with a ``ProbeError``."""

    def __init__(self, head_only: bool, max_body: int, run: ProbeRun) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # When TLS fails, the protocol hears of it too, with no one left waiting: not an unseen error.
        self.done.add_done_callback(lambda done: done.cancelled() or done.exception())
        self.headers_at = self.complete_at = 0.0
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self.decoder = BodyDecoder("", max_body)
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._max_body = max_body
        self._run = run
        self._in_head = True
        self._interim = False  # a 1xx response, to be skipped
        self._framed = False  # Content-Length or chunked, not "until the server closes"
        self._head_bytes = 0
        self._header_count = 0
        self._chunk_gap = False  # a chunk header came and no data since: trailers may be arriving
        self._trailer_bytes = 0
        self._body_wire_bytes = 0

    # --- transport events -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        body_before = self._body_wire_bytes
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Stop):
                self._finish()
            elif isinstance(cause, ProbeError):
                self._fail(cause)
            else:
                self.done.set_exception(cause or exc)  # a bug: run_probe reports it
            return
        except httptools.HttpParserUpgrade:
            self._finish()
            return
        except httptools.HttpParserError as exc:
            self._fail(ProbeError(ProbeStatus.FAILED, f"malformed HTTP response ({str(exc).lower()})"))
            return
        overhead = len(data) - (self._body_wire_bytes - body_before)
        if self._in_head:
            self._head_bytes += overhead
            if self._head_bytes > MAX_HEADER_BYTES:
                self._fail(ProbeError(ProbeStatus.FAILED, f"response headers larger than {size(MAX_HEADER_BYTES)}"))
        elif self._chunk_gap:
            self._trailer_bytes += overhead
            if self._trailer_bytes > MAX_HEADER_BYTES:
                self._fail(ProbeError(ProbeStatus.FAILED, f"response trailers larger than {size(MAX_HEADER_BYTES)}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self.headers_at and not self._framed:
            self._finish()  # the body ran until the server closed: that is its end
        elif self.headers_at:
            self._fail(ProbeError(ProbeStatus.FAILED, "connection closed before the response body was complete"))
        elif isinstance(exc, OSError):
            self._fail(connection_error(exc))
        else:
            self._fail(ProbeError(ProbeStatus.FAILED, "connection closed without a response"))

    # --- parser callbacks (httptools) --------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.done.done():
            return
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise ProbeError(ProbeStatus.FAILED, f"response has more than {MAX_HEADERS} headers")
        if not self._in_head:
            return  # a trailer: counted, not kept
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        if self.done.done():
            return
        code = self._parser.get_status_code()
        if 100 <= code < 200 and code != 101:
            self._interim = True
            self.headers.clear()
            return
        self._in_head = False
        self.status_code = self._run.status_code = code
        self.headers_at = time.perf_counter()
        self._framed = "content-length" in self.headers or "chunked" in self.headers.get("transfer-encoding", "")
        self.decoder = BodyDecoder(self.headers.get("content-encoding", ""), self._max_body)
        if self._head_only or code == 101:
            raise _Stop

    def on_body(self, body: bytes) -> None:
        if self.done.done():
            return
        self._body_wire_bytes += len(body)
        self._chunk_gap = False
        self._trailer_bytes = 0
        self.decoder.feed(body)
        if self.decoder.full:
            raise _Stop

    def on_chunk_header(self) -> None:
        self._chunk_gap = True

    def on_chunk_complete(self) -> None:
        self._chunk_gap = False

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        else:
            self._finish()  # not raising _Stop: an exception per run costs more than the few
            # callbacks a server sending more than one response could still cause (ignored below)

    # --- outcome -----------------------------------------------------------------------

    def _finish(self) -> None:
        if not self.done.done():
            self.complete_at = time.perf_counter()
            self.done.set_result(None)

    def _fail(self, error: ProbeError) -> None:
        if not self.done.done():
            if self.status_code and error.status_code is None:
                error.status_code = self.status_code
            self.done.set_exception(error)


async def exchange(
    addresses: list[Address],
    request: bytes,
    *,
    tls_host: str | None,
    head_only: bool,
    max_body: int,
    run: ProbeRun,
) -> Response:
    """Connect to the first of ``addresses`` that accepts, (TLS with SNI ``tls_host``,) send, read one response."""
    reader = _ResponseReader(head_only, max_body, run)
    transport, _ = await connect(addresses, run.timings, lambda: reader)
    completed = False
    try:
        if tls_host is not None:
            transport = await start_tls(transport, reader, tls_host, run)
        sent_at = time.perf_counter()
        transport.write(request)
        await reader.done
        completed = True
    finally:
        # A finished exchange is closed politely; anything else (a cut-off body, an error,
        # the deadline) drops the connection at once.
        if completed and not reader.decoder.full:
            transport.close()
        else:
            transport.abort()
    run.timings.add("processing_ms", (reader.headers_at - sent_at) * 1000)
    run.timings.add("transfer_ms", (reader.complete_at - reader.headers_at) * 1000)
    return Response(
        status_code=reader.status_code,
        headers=reader.headers,
        body=reader.decoder.body,
        body_truncated=reader.decoder.truncated_reason(),
    )
