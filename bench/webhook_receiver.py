"""A loopback webhook receiver for the benchmarks: records when each notification arrived.

A ``ThreadingHTTPServer`` on 127.0.0.1 (a port chosen at start) answers every POST with
``204 No Content`` and records, per request, the arrival time (``time.time()`` taken
as soon as the body is read), the ``X-Admin-Mit-Notification-Id`` header, the parsed
JSON body and whether its HMAC-SHA256 signature (``X-Admin-Mit-Signature``) matches
the signing key it was given::

    with WebhookReceiver(signing_key) as hook:
        ...  # a webhook channel at hook.url
        hook.arrivals()  # every Arrival so far, in arrival order
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
ID_HEADER = "X-Admin-Mit-Notification-Id"
SIGNATURE_HEADER = "X-Admin-Mit-Signature"


@dataclass(frozen=True)
class Arrival:
    """One notification as it reached the receiver."""

    at: float  # epoch seconds, when its body had been read
    notification_id: str  # the X-Admin-Mit-Notification-Id header
    body: dict[str, Any]  # the parsed JSON body ({} when it was not JSON)
    signed: bool  # the signature header matched the signing key

    @property
    def event(self) -> str:
        return str(self.body.get("event", ""))

    @property
    def data(self) -> dict[str, Any]:
        data = self.body.get("data")
        return data if isinstance(data, dict) else {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        at = time.time()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        expected = "sha256=" + hmac.new(self.server.signing_key, raw, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, self.headers.get(SIGNATURE_HEADER) or "")
        self.server.record(Arrival(at, self.headers.get(ID_HEADER) or "", body if isinstance(body, dict) else {},
                                   signed))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, signing_key: bytes) -> None:
        super().__init__((HOST, 0), _Handler)
        self.signing_key = signing_key
        self.lock = threading.Lock()
        self.received: list[Arrival] = []

    def record(self, arrival: Arrival) -> None:
        with self.lock:
            self.received.append(arrival)


class WebhookReceiver:
    """The receiver as a context manager: serves in a daemon thread until the block ends."""

    def __init__(self, signing_key: str) -> None:
        self._server = _Server(signing_key.encode())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="bench-webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/hook"

    def arrivals(self) -> list[Arrival]:
        with self._server.lock:
            return list(self._server.received)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
