"""Loopback target servers for probe tests and benchmarks.

``LoopbackTargets`` starts, on 127.0.0.1 ephemeral ports and in background
threads, everything a probe may be pointed at: HTTP and HTTPS (self-signed)
servers with test routes, WebSocket echo servers (ws and wss) with a rejecting
path, TCP echo/banner/silent servers and UDP echo/silent servers. It has no
pytest dependency, so worker tests and benchmarks can use it as well::

    with LoopbackTargets() as targets:
        ...  # targets.http_url + "/ok", targets.tcp_echo, ...

HTTP routes (any method): ``/ok``, ``/status/<code>``, ``/json``, ``/slow?ms=N``,
``/hang`` (no answer until stop), ``/redirect?to=/ok`` (302), ``/loop`` (302 to
itself), ``/echo`` (method, path, headers and body as JSON), ``/hold`` (blocks
until ``release_hold()``), ``/gzip`` and ``/deflate`` (the ``/json`` body, compressed),
``/chunked`` and ``/until-close`` (the same body framed so), ``/slow-body`` (headers,
then nothing), ``/early-hints`` (a 103 before the 200). ``hits(path)`` counts requests received per path.

Hostile HTTP routes, for the engine's bounds: ``/gzip-bomb`` (0.5 MB on the wire,
512 MiB inflated), ``/endless-body`` (streams until the client leaves),
``/endless-headers`` (header lines forever), ``/endless-header-value`` (one header
line that never ends), ``/many-headers`` (1,000 headers), ``/endless-trailer``
(a chunked body, then one trailer line that never ends).

TCP: ``tcp_echo``, ``tcp_banner`` (``READY\n``), ``tcp_silent`` and ``tcp_resp``,
which speaks like Redis: ``PING\r\n`` → ``+PONG\r\n``, any other line →
``-ERR unknown command``; a ``PING`` without its line end gets no answer.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import http
import ipaddress
import json
import logging
import socket
import ssl
import struct
import tempfile
import threading
import zlib
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

HOST = "127.0.0.1"
# The targets' own request logs would repeat what probes send (credential tests read the log).
_QUIET = logging.Logger("loopback-targets")
_QUIET.disabled = True
BANNER = b"READY\n"
STARTUP_TIMEOUT = 10.0


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def make_self_signed_cert(directory: Path, days: int, signed_by_ca: bool = False) -> tuple[Path, Path, datetime]:
    """Certificate and key files for ``localhost`` / 127.0.0.1, and the certificate's expiry.

    ``days`` may be negative: a certificate that expired that long ago. With
    ``signed_by_ca`` the certificate is issued by a test CA written to
    ``directory / "ca.pem"`` (valid for a year), for clients that are told to trust it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    issuer_name, issuer_key = name, key
    # X.509 validity has second precision; round so callers can compare exactly.
    now = datetime.now(timezone.utc).replace(microsecond=0)
    not_after = now + timedelta(days=days)
    if signed_by_ca:
        issuer_key = ec.generate_private_key(ec.SECP256R1())
        issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(issuer_name)
            .issuer_name(issuer_name)
            .public_key(issuer_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=400))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )
        (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, not_after) - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path, not_after


BOMB_INFLATED = 512 << 20


@functools.cache
def gzip_bomb() -> bytes:
    """A response of about 0.5 MB of valid gzip that inflates to ``BOMB_INFLATED`` zero bytes.

    Built from one fully flushed deflate block of 1 MiB of zeros, repeated: a
    full flush resets the compressor, so every block compresses the same.
    """
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(BOMB_INFLATED >> 20):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    trailer = struct.pack("<II", crc, BOMB_INFLATED & 0xFFFFFFFF)
    data = header + block * (BOMB_INFLATED >> 20) + deflate.flush() + trailer
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


class _State:
    """What the HTTP handlers share with the test: hit counts and the events they wait on."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.hold_released = threading.Event()
        self.lock = threading.Lock()
        self.hits: collections.Counter[str] = collections.Counter()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # A batch of probes connects at once; socketserver's default backlog of 5 would drop most.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, state: _State, tls: ssl.SSLContext | None) -> None:
        self.state = state
        self.tls = tls
        super().__init__((HOST, 0), _Handler)

    def get_request(self) -> tuple[socket.socket, tuple]:
        sock, addr = super().get_request()
        if self.tls is not None:
            # Handshake in the handler thread (on first read), not in the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up (timeouts, rejected certificates) are expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    timeout = 10  # idle keep-alive connections must not pin handler threads forever
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _respond(self, code: int, body: bytes = b"", content_type: str = "text/plain", **headers: str) -> None:
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        with state.lock:
            state.hits[url.path] += 1
        request_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))

        if url.path == "/ok":
            self._respond(200, b"ok")
        elif url.path.startswith("/status/"):
            code = url.path.removeprefix("/status/")
            if code.isdecimal() and 200 <= int(code) <= 599:
                self._respond(int(code), f"status {code}".encode())
            else:
                self._respond(400, b"status must be 200..599")
        elif url.path == "/json":
            self._respond(200, json.dumps({"status": "ok", "items": [1, 2]}).encode(), "application/json")
        elif url.path == "/slow":
            state.stopping.wait(int(query.get("ms", "1000")) / 1000)
            self._respond(200, b"ok")
        elif url.path == "/hang":
            state.stopping.wait()
            self.close_connection = True
        elif url.path == "/redirect":
            self._respond(302, b"", Location=query.get("to", "/ok"))
        elif url.path == "/loop":
            self._respond(302, b"", Location="/loop")
        elif url.path == "/echo":
            echo = {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": request_body.decode("utf-8", errors="replace"),
            }
            self._respond(200, json.dumps(echo).encode(), "application/json")
        elif url.path == "/hold":
            state.hold_released.wait()
            self._respond(200, b"released")
        elif url.path in _HOSTILE or url.path in _FRAMED:
            self.close_connection = True
            (_HOSTILE.get(url.path) or _FRAMED[url.path])(self)
        else:
            self._respond(404, b"not found")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


JSON_BODY = json.dumps({"status": "ok", "items": [1, 2]}).encode()
STATUS_LINE = b"HTTP/1.1 200 OK\r\n"


def _write_until_gone(handler: _Handler, head: bytes, piece: bytes) -> None:
    """Send ``head``, then ``piece`` again and again until the client leaves or the targets stop."""
    try:
        handler.wfile.write(head)
        while not handler.server.state.stopping.is_set():
            handler.wfile.write(piece)
    except OSError:
        pass  # the client hung up: that is how these routes end


def _raw(handler: _Handler, data: bytes) -> None:
    try:
        handler.wfile.write(data)
    except OSError:
        pass


def _head(*headers: str, status: str = "200 OK") -> bytes:
    return "".join(f"{line}\r\n" for line in (f"HTTP/1.1 {status}", *headers, "")).encode()


def _encoded(encoding: str, body: bytes) -> bytes:
    wbits = {"gzip": 31, "deflate": zlib.MAX_WBITS}[encoding]
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    data = packer.compress(body) + packer.flush()
    return _head("Content-Type: application/json", f"Content-Encoding: {encoding}", f"Content-Length: {len(data)}") + data


def _chunked(body: bytes) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7))
    return _head("Content-Type: application/json", "Transfer-Encoding: chunked") + chunks + b"0\r\n\r\n"


def _slow_body(handler: _Handler) -> None:
    _raw(handler, _head("Content-Type: text/plain", "Content-Length: 10") + b"part")
    handler.server.state.stopping.wait()


_FRAMED: dict[str, Callable[[_Handler], None]] = {
    "/gzip": lambda h: _raw(h, _encoded("gzip", JSON_BODY)),
    "/deflate": lambda h: _raw(h, _encoded("deflate", JSON_BODY)),
    "/chunked": lambda h: _raw(h, _chunked(JSON_BODY)),
    "/until-close": lambda h: _raw(h, _head("Content-Type: application/json") + JSON_BODY),
    "/slow-body": _slow_body,
    "/early-hints": lambda h: _raw(
        h, _head("Link: </style.css>; rel=preload", status="103 Early Hints") + _head("Content-Length: 2") + b"ok"
    ),
}
_HOSTILE: dict[str, Callable[[_Handler], None]] = {
    "/gzip-bomb": lambda h: _raw(h, gzip_bomb()),
    "/endless-body": lambda h: _write_until_gone(h, _head("Content-Type: text/plain"), b"x" * 65536),
    "/endless-headers": lambda h: _write_until_gone(h, STATUS_LINE, b"X-Filler: " + b"f" * 1000 + b"\r\n"),
    "/endless-header-value": lambda h: _write_until_gone(h, STATUS_LINE + b"X-Filler: ", b"f" * 65536),
    "/many-headers": lambda h: _raw(
        h, _head(*(f"X-Header-{i}: {i}" for i in range(1000)), "Content-Length: 2") + b"ok"
    ),
    "/endless-trailer": lambda h: _write_until_gone(
        h, _head("Transfer-Encoding: chunked") + b"2\r\nok\r\n0\r\nX-Trailer: ", b"t" * 65536
    ),
}


class _AsyncServers:
    """WebSocket, TCP and UDP servers on one event loop in a background thread."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loopback-targets", daemon=True)
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.Server | Server] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(STARTUP_TIMEOUT)

    def stop(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(STARTUP_TIMEOUT)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(STARTUP_TIMEOUT)
        self.loop.close()

    async def _start(self) -> None:
        for name, tls in (("ws", None), ("wss", self.tls)):
            server = await serve(
                self._ws_echo, HOST, 0, ssl=tls, process_request=self._ws_reject, close_timeout=1, logger=_QUIET
            )
            self._add(name, server)
        for name, handler in (
            ("tcp_echo", _tcp_echo),
            ("tcp_banner", _tcp_banner),
            ("tcp_silent", _tcp_silent),
            ("tcp_resp", _tcp_resp),
        ):
            self._add(name, await asyncio.start_server(self._tracked(handler), HOST, 0))
        for name, protocol in (("udp_echo", _UdpEcho), ("udp_silent", asyncio.DatagramProtocol)):
            transport, _ = await self.loop.create_datagram_endpoint(protocol, local_addr=(HOST, 0))
            self._udp.append(transport)
            self.ports[name] = transport.get_extra_info("sockname")[1]

    def _add(self, name: str, server: asyncio.Server | Server) -> None:
        self._servers.append(server)
        self.ports[name] = next(iter(server.sockets)).getsockname()[1]

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for transport in self._udp:
            transport.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*(server.wait_closed() for server in self._servers), return_exceptions=True)
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _ws_reject(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/reject":
            return connection.respond(http.HTTPStatus.FORBIDDEN, "forbidden\n")
        return None

    @staticmethod
    async def _ws_echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    def _tracked(self, handler: _StreamHandler) -> _StreamHandler:
        """Remember open connections so stop() can drop them; a client hanging up is fine."""

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                await handler(reader, writer)
            except ConnectionError:
                pass
            finally:
                self._writers.discard(writer)
                writer.close()

        return run


_StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _tcp_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(BANNER)
    await writer.drain()
    await reader.read()  # keep the connection open until the client leaves


async def _tcp_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def _tcp_resp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Inline commands as Redis reads them: one per CRLF-terminated line."""
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return  # the client left, or sent a command without its line end and gave up
        writer.write(b"+PONG\r\n" if line.upper() == b"PING\r\n" else b"-ERR unknown command\r\n")
        await writer.drain()


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class LoopbackTargets:
    """Every kind of probe target, on 127.0.0.1, for as long as the context lasts."""

    def __init__(self, cert_days: int = 30, signed_by_ca: bool = False) -> None:
        self.cert_days = cert_days
        self.signed_by_ca = signed_by_ca
        self._state = _State()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._http: list[_HTTPServer] = []
        self._async: _AsyncServers | None = None

    def start(self) -> LoopbackTargets:
        self._tmp = tempfile.TemporaryDirectory(prefix="loopback-targets-")
        directory = Path(self._tmp.name)
        self.cert_path, key_path, self.cert_not_after = make_self_signed_cert(directory, self.cert_days, self.signed_by_ca)
        self.ca_path = directory / "ca.pem" if self.signed_by_ca else None
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.cert_path, key_path)

        self._http = [_HTTPServer(self._state, None), _HTTPServer(self._state, tls)]
        for server in self._http:
            name = f"http-target-{server.server_address[1]}"
            threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True).start()
        self.http_port = self._http[0].server_address[1]
        self.https_port = self._http[1].server_address[1]
        self.http_url = f"http://{HOST}:{self.http_port}"
        self.https_url = f"https://{HOST}:{self.https_port}"

        self._async = _AsyncServers(tls)
        self._async.start()
        ports = self._async.ports
        self.ws_url = f"ws://{HOST}:{ports['ws']}/echo"
        self.ws_reject_url = f"ws://{HOST}:{ports['ws']}/reject"
        self.wss_url = f"wss://{HOST}:{ports['wss']}/echo"
        self.tcp_echo, self.tcp_banner, self.tcp_silent, self.tcp_resp, self.udp_echo, self.udp_silent = (
            f"{HOST}:{ports[name]}"
            for name in ("tcp_echo", "tcp_banner", "tcp_silent", "tcp_resp", "udp_echo", "udp_silent")
        )
        return self

    def stop(self) -> None:
        """Stop everything; handlers blocked in /hang, /hold or /slow are released first."""
        self._state.stopping.set()
        self._state.hold_released.set()
        for server in self._http:
            server.shutdown()
            server.server_close()
        self._http = []
        if self._async is not None:
            self._async.stop()
            self._async = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def hits(self, path: str) -> int:
        """Requests received (HTTP and HTTPS together) for ``path``, query string excluded."""
        with self._state.lock:
            return self._state.hits[path]

    def release_hold(self) -> None:
        """Let every waiting and future ``/hold`` request answer, until ``reset()``."""
        self._state.hold_released.set()

    def reset(self) -> None:
        """Forget hit counts and make ``/hold`` block again."""
        with self._state.lock:
            self._state.hits.clear()
        self._state.hold_released.clear()

    def __enter__(self) -> LoopbackTargets:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
