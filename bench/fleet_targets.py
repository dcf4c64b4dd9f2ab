#!/usr/bin/env python
"""The targets of a benchmark fleet, served from a process of their own (so their CPU is counted apart).

One event loop (uvloop when installed) serves, on 127.0.0.1:

- an HTTP/1.1 server: ``/ok`` answers ``200 ok`` at once, ``/slow?ms=N`` after N ms,
  every response with ``Connection: close`` (probes open a connection per run);
- a *dead* port: connections are accepted and then nothing is ever read or sent —
  the target that is up at the TCP level and hangs, the kind that holds a prober longest;
- switchable targets, ``/switch/<anything>``: ``200 ok`` while the switch is up,
  ``503 Service Unavailable`` (at once) while it is down. ``GET /control/switch?down=1``
  turns every switchable target down at one moment, ``?down=0`` up again; the answer is
  ``{"down": true|false, "at": <epoch seconds of the switch>}``. A benchmark points a
  share of its probes at ``/switch/…`` to make them fail, and recover, together.

It prints one JSON line ``{"http": PORT, "dead": PORT}`` on stdout when ready and
serves until SIGTERM or SIGINT::

    python bench/fleet_targets.py
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
               b"Connection: close\r\n\r\ndown")
CONTROL = b"/control/switch?down="


class _Switch:
    """Whether the switchable targets are down (one flag for all of them: they fail together)."""

    down = False


class _Http(asyncio.Protocol):
    """Reads the request line only: every route is a GET without a body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        path = self.buffer.split(b" ", 2)[1] if self.buffer.count(b" ") >= 2 else b""
        if path == b"/ok":
            self._answer(OK)
        elif path.startswith(b"/switch/"):
            self._answer(UNAVAILABLE if _Switch.down else OK)
        elif path.startswith(CONTROL):
            _Switch.down = path.removeprefix(CONTROL) == b"1"
            state = json.dumps({"down": _Switch.down, "at": time.time()}).encode()
            self._answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(state), state))
        elif path.startswith(b"/slow?ms="):
            delay = int(path.removeprefix(b"/slow?ms=") or 0) / 1000
            asyncio.get_running_loop().call_later(delay, self._answer, OK)
        else:
            self._answer(NOT_FOUND)

    def _answer(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


class _Dead(asyncio.Protocol):
    """Accepts, then never reads and never answers, until the client gives up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # type: ignore[attr-defined]


async def serve() -> None:
    loop = asyncio.get_running_loop()
    http = await loop.create_server(_Http, "127.0.0.1", 0, backlog=4096)
    dead = await loop.create_server(_Dead, "127.0.0.1", 0, backlog=4096)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    ports = {"http": http.sockets[0].getsockname()[1], "dead": dead.sockets[0].getsockname()[1]}
    print(json.dumps(ports), flush=True)
    await stop
    http.close()
    dead.close()


def main() -> int:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
