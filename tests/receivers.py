"""Loopback receivers for notifications: a webhook endpoint and an SMTP server.

Both listen on 127.0.0.1 on a port chosen at start, run in background threads,
record everything they receive and stop cleanly as context managers::

    with WebhookReceiver() as hook, SmtpReceiver() as smtp:
        ...  # hook.url, smtp.host, smtp.port
        hook.wait_for(1)            # the recorded requests, or AssertionError after the timeout
        smtp.wait_for(1)            # the recorded messages

The webhook can be told how to answer the next requests, to test retries and bounds:
``respond_next(count, status)``, ``hang_next(count)`` (read the request, never answer),
``endless_next(count, status)`` (headers, then a body that never ends). The SMTP
server can refuse chosen senders and recipients, and require a login.
"""

from __future__ import annotations

import collections
import email
import email.policy
import hashlib
import hmac
import http
import json
import threading
import time
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.targets import free_port

HOST = "127.0.0.1"
SIGNATURE_HEADER = "X-Admin-Mit-Signature"


def _wait(condition: Callable[[], bool], timeout: float, lock: threading.Condition) -> bool:
    deadline = time.monotonic() + timeout
    with lock:
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            lock.wait(left)
    return True


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as the webhook receiver read it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class _Plan:
    """How to answer the next ``count`` requests."""

    count: int
    action: str  # "status", "hang" or "endless"
    status: int = 200
    body: bytes = b""


class _WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_WebhookServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # requests are recorded, not logged

    def _handle(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = ReceivedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                  body, parsed)
        plan = receiver._record(request)
        if plan.action == "hang":
            receiver._closing.wait()
            self.close_connection = True
            return
        phrase = http.HTTPStatus(plan.status).phrase if plan.status in http.HTTPStatus._value2member_map_ else ""
        self.send_response(plan.status, phrase)
        if plan.action == "endless":
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunk = b"x" * 65536
            try:
                while not receiver._closing.is_set():
                    self.wfile.write(chunk)
                    receiver._count_endless(len(chunk))
            except OSError:
                pass  # the client went away: what a bounded reader does
            return
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(plan.body)))
        self.end_headers()
        self.wfile.write(plan.body)

    do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: "WebhookReceiver") -> None:
        self.receiver = receiver
        super().__init__((HOST, 0), _WebhookHandler)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every request and answers 200 unless told otherwise."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.endless_bytes_sent = 0
        self._plans: collections.deque[_Plan] = collections.deque()
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._server: _WebhookServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> "WebhookReceiver":
        self._server = _WebhookServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # releases hanging and endless answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the receiver is not running"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL; any path is accepted and recorded."""
        return f"http://{HOST}:{self.port}"

    # -- behaviour of the next requests

    def respond_next(self, count: int, status: int, body: bytes | str = b"") -> None:
        """Answer the next ``count`` requests with ``status`` (and ``body``)."""
        raw = body.encode() if isinstance(body, str) else body
        with self._changed:
            self._plans.append(_Plan(count, "status", status, raw))

    def hang_next(self, count: int = 1) -> None:
        """Read the next ``count`` requests and never answer them (until the receiver stops)."""
        with self._changed:
            self._plans.append(_Plan(count, "hang"))

    def endless_next(self, count: int = 1, status: int = 200) -> None:
        """Answer the next ``count`` requests with ``status`` and a body that never ends."""
        with self._changed:
            self._plans.append(_Plan(count, "endless", status))

    def _record(self, request: ReceivedRequest) -> _Plan:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()
            if not self._plans:
                return _Plan(1, "status", 200)
            plan = self._plans[0]
            plan.count -= 1
            if plan.count <= 0:
                self._plans.popleft()
            return plan

    def _count_endless(self, sent: int) -> None:
        with self._changed:
            self.endless_bytes_sent += sent

    # -- what arrived

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """The first ``count`` requests, waiting up to ``timeout`` seconds for them to arrive."""
        if not _wait(lambda: len(self.requests) >= count, timeout, self._changed):
            raise AssertionError(f"webhook receiver: {len(self.requests)} of {count} requests "
                                 f"arrived within {timeout} s")
        with self._changed:
            return list(self.requests[:count])

    @property
    def last(self) -> ReceivedRequest:
        with self._changed:
            assert self.requests, "the webhook receiver has received nothing"
            return self.requests[-1]

    def verify(self, signing_key: str, request: ReceivedRequest | None = None) -> bool:
        """Whether ``request`` (default: the last one) carries a valid signature made with ``signing_key``."""
        request = request or self.last
        header = request.header(SIGNATURE_HEADER) or ""
        scheme, _, signature = header.partition("=")
        if scheme != "sha256" or not signature:
            return False
        expected = hmac.new(signing_key.encode(), request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP receiver accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage = field(repr=False)
    login: str | None  # the user that logged in, if any

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        """The plain-text body."""
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""


class _SmtpHandler:
    def __init__(self, receiver: "SmtpReceiver") -> None:
        self.receiver = receiver

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if address in self.receiver.refuse_senders:
            return f"553 5.7.1 <{address}>: Sender address rejected: not allowed here"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.receiver.refuse_recipients:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.receiver._record(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), raw, message, login))
        return "250 Message accepted for delivery"


class _QuietController(Controller):
    """aiosmtpd warns about AUTH without TLS when each session starts: deliberate here, on loopback only."""

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return super().factory()


class SmtpReceiver:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that records every message it accepts.

    ``refuse_senders`` / ``refuse_recipients`` are answered 553 / 550. With ``credentials``
    the server offers AUTH (without TLS, loopback only) and refuses mail from clients that
    did not log in with them.
    """

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.messages: list[ReceivedMail] = []
        self.refuse_senders: set[str] = set()
        self.refuse_recipients: set[str] = set()
        self.credentials = credentials
        self._changed = threading.Condition()
        self._controller: Controller | None = None
        self.host = HOST
        self.port = 0

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        # handled=False: aiosmtpd answers a refused login with 535 itself.
        return AuthResult(success=ok, handled=ok, auth_data=auth_data if ok else None)

    def start(self) -> "SmtpReceiver":
        self.port = free_port()
        options: dict[str, Any] = {}
        if self.credentials is not None:
            options = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self._controller = _QuietController(_SmtpHandler(self), hostname=self.host, port=self.port,
                                            server_hostname="receiver.test", ready_timeout=10, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "SmtpReceiver":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _record(self, mail: ReceivedMail) -> None:
        with self._changed:
            self.messages.append(mail)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """The first ``count`` messages, waiting up to ``timeout`` seconds for them to arrive."""
        if not _wait(lambda: len(self.messages) >= count, timeout, self._changed):
            raise AssertionError(f"SMTP receiver: {len(self.messages)} of {count} messages "
                                 f"arrived within {timeout} s")
        with self._changed:
            return list(self.messages[:count])
