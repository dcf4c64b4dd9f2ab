#!/usr/bin/env python
"""CPU per probe run of the probe engine alone, against HTTP clients it could be built on.

Every run opens its own connection (no keep-alive reuse), as scheduled probes do,
and times the same phases. What is measured is the *client* process's CPU time
(``time.process_time()``: user + system, all threads) per run while N runs go
``--concurrency`` at a time; the loopback target runs in a separate process
(``--serve``, a tiny asyncio server) so its CPU is not counted. Every candidate
and loop is measured in a fresh child process, ``--repeat`` times; the table
shows the median and the range.

Candidates (``--only`` picks some):

- ``engine``: ``app.probes.run_probe`` as the pipeline calls it (its own HTTP/1.1
  client on asyncio transports with the llhttp parser ``httptools``; conditions
  evaluated). Protocols http, https and tcp (a RESP ``PING`` → ``+PONG``).
- ``httpx``: the engine's previous prober: an ``AsyncClient`` per run, phases
  from httpx's ``trace`` extension.
- ``httpx-shared``: one ``AsyncClient`` for all runs, keep-alive off.
- ``aiohttp``: one ``ClientSession`` with ``force_close`` (a new connection per
  request), phases from a ``TraceConfig`` (aiohttp reports TCP connect and TLS as
  one phase).

Each on the stock asyncio loop and on uvloop. Candidates whose library is not
installed are skipped (``pip install aiohttp httpx`` to include them)::

    .venv/bin/python bench/probe_engine.py                      # 5-10 minutes on 2 busy cores
    .venv/bin/python bench/probe_engine.py --runs 500 --repeat 1 --only engine

Measured on the development machine (2 cores, busy with other work: load
average about 4 during the run, so absolute numbers are high and relative ones are
what to read; Python 3.11, OpenSSL 3.0, httptools 0.9, uvloop 0.23, httpx 0.28,
aiohttp 3.14), ``.venv/bin/python bench/probe_engine.py --runs 1000 --concurrency 100
--repeat 3``; "CPU per run" is the client process's CPU time divided by the runs::

    | protocol | client | loop | CPU per run (median) | range | runs/s (wall) | ok |
    |---|---|---|---:|---:|---:|---:|
    | http | engine | asyncio | 659 µs | 553–736 µs | 969 | 1000/1000 |
    | http | engine | uvloop | 395 µs | 387–399 µs | 1155 | 1000/1000 |
    | http | httpx | asyncio | 3331 µs | 3248–3376 µs | 193 | 1000/1000 |
    | http | httpx | uvloop | 2573 µs | 2359–2848 µs | 304 | 1000/1000 |
    | http | httpx-shared | asyncio | 2648 µs | 2605–2885 µs | 318 | 1000/1000 |
    | http | httpx-shared | uvloop | 2563 µs | 2460–2784 µs | 238 | 1000/1000 |
    | http | aiohttp | asyncio | 1023 µs | 1021–1082 µs | 573 | 1000/1000 |
    | http | aiohttp | uvloop | 888 µs | 783–1001 µs | 870 | 1000/1000 |
    | https | engine | asyncio | 2450 µs | 2381–2667 µs | 271 | 1000/1000 |
    | https | engine | uvloop | 1965 µs | 1909–2081 µs | 324 | 1000/1000 |
    | https | httpx | asyncio | 5750 µs | 5743–6132 µs | 106 | 1000/1000 |
    | https | httpx | uvloop | 4560 µs | 4481–4856 µs | 171 | 1000/1000 |
    | https | httpx-shared | asyncio | 5135 µs | 5133–5495 µs | 151 | 1000/1000 |
    | https | httpx-shared | uvloop | 5440 µs | 4961–5788 µs | 108 | 1000/1000 |
    | https | aiohttp | asyncio | 4074 µs | 3520–4136 µs | 131 | 1000/1000 |
    | https | aiohttp | uvloop | 3450 µs | 3182–3785 µs | 152 | 1000/1000 |
    | tcp | engine | asyncio | 610 µs | 538–622 µs | 889 | 1000/1000 |
    | tcp | engine | uvloop | 323 µs | 323–341 µs | 1556 | 1000/1000 |

Read: per plain-HTTP run the engine on uvloop costs less than half of aiohttp's
CPU and about a seventh of httpx's (the previous prober); on the stock loop it
costs about 1.7 times as much as on uvloop. HTTPS is dominated by the TLS handshake
(a new connection per run, by design), where the engine still costs least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from bench_env import ROOT  # bench/ is on sys.path when run as a script; puts the project on it too

PROTOCOLS = ("http", "https", "tcp")
CANDIDATES = {"engine": PROTOCOLS, "httpx": ("http", "https"), "httpx-shared": ("http", "https"),
              "aiohttp": ("http", "https")}
LOOPS = ("asyncio", "uvloop")
WARMUP_RUNS = 100
TIMEOUT = 10.0
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nok")


# --- the target (its own process) --------------------------------------------------------

class _HttpTarget(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.head = b""

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


class _RespTarget(asyncio.Protocol):
    """Answers ``PING\\r\\n`` with ``+PONG\\r\\n``, like Redis."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"PING\r\n" in data:
            self.transport.write(b"+PONG\r\n")  # type: ignore[attr-defined]


async def _serve() -> None:
    from tests.targets import make_self_signed_cert

    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as directory:
        cert, key, _ = make_self_signed_cert(Path(directory), 30)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
    servers = {
        "http": await loop.create_server(_HttpTarget, "127.0.0.1", 0, backlog=4096),
        "https": await loop.create_server(_HttpTarget, "127.0.0.1", 0, ssl=tls, backlog=4096),
        "tcp": await loop.create_server(_RespTarget, "127.0.0.1", 0, backlog=4096),
    }
    print(json.dumps({name: s.sockets[0].getsockname()[1] for name, s in servers.items()}), flush=True)
    await asyncio.Event().wait()


# --- the candidates (one child process per measurement) ----------------------------------

Run = Callable[[], Awaitable[bool]]


async def _timed(exchange: Awaitable[bool]) -> bool:
    """The wrapper every candidate shares with run_probe: a deadline and a clock."""
    started = time.perf_counter()
    async with asyncio.timeout(TIMEOUT):
        ok = await exchange
    response_time_ms = (time.perf_counter() - started) * 1000
    return ok and response_time_ms >= 0


def _engine(protocol: str, target: str) -> Run:
    from app.probes import build_spec, run_probe

    if protocol == "tcp":
        spec = build_spec("tcp", target, timeout=TIMEOUT, body="PING\r\n", expect="+PONG")
    else:
        spec = build_spec(protocol, target + "/ok", timeout=TIMEOUT, verify_tls=False)
    phases = ("connect_ms", "processing_ms") + (("transfer_ms",) if protocol != "tcp" else ())
    phases += ("tls_ms",) if protocol == "https" else ()

    async def run() -> bool:
        outcome = await run_probe(spec)
        return outcome.ok and all(getattr(outcome.timings, phase) is not None for phase in phases)

    return run


def _httpx(protocol: str, target: str, shared: bool) -> Run:
    import httpx

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    phases = {"connection.connect_tcp": "connect", "connection.start_tls": "tls",
              "http11.receive_response_headers": "processing"}
    client = httpx.AsyncClient(verify=context, trust_env=False, timeout=TIMEOUT,
                               limits=httpx.Limits(max_keepalive_connections=0)) if shared else None

    async def exchange() -> bool:
        timings: dict[str, float] = {}
        started: dict[str, float] = {}

        async def trace(event: str, info: dict[str, Any]) -> None:
            name, _, stage = event.rpartition(".")
            if stage == "started":
                started[name] = time.perf_counter()
            elif stage == "complete" and name in phases:
                begin = started["http11.send_request_headers" if phases[name] == "processing" else name]
                timings[phases[name]] = time.perf_counter() - begin

        async def send(http: httpx.AsyncClient) -> bool:
            request = http.build_request("GET", target + "/ok", extensions={"trace": trace})
            response = await http.send(request, stream=True)
            try:
                read_from = time.perf_counter()
                body = b"".join([chunk async for chunk in response.aiter_bytes()])
                timings["transfer"] = time.perf_counter() - read_from
            finally:
                await response.aclose()
            return response.status_code == 200 and body == b"ok" and "processing" in timings

        if client is not None:
            return await send(client)
        async with httpx.AsyncClient(verify=context, trust_env=False, timeout=TIMEOUT) as own:
            return await send(own)

    return lambda: _timed(exchange())


def _aiohttp(protocol: str, target: str) -> Run:
    import aiohttp

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    trace = aiohttp.TraceConfig()

    def mark(name: str) -> Callable[..., Awaitable[None]]:
        async def note(session: Any, ctx: Any, params: Any) -> None:
            ctx.trace_request_ctx[name] = time.perf_counter()
        return note

    for hook, name in (("on_connection_create_start", "connecting"), ("on_connection_create_end", "connected"),
                       ("on_request_headers_sent", "sent"), ("on_request_end", "headers")):
        getattr(trace, hook).append(mark(name))
    session: aiohttp.ClientSession | None = None

    async def exchange() -> bool:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, ssl=context, limit=0, use_dns_cache=False),
                trace_configs=[trace])
        marks: dict[str, float] = {}
        async with session.get(target + "/ok", trace_request_ctx=marks) as response:
            body = await response.read()
            marks["done"] = time.perf_counter()
        return response.status == 200 and body == b"ok" and {"connected", "sent", "headers"} <= set(marks)

    return lambda: _timed(exchange())


def _candidate(name: str, protocol: str, target: str) -> Run:
    if name == "engine":
        return _engine(protocol, target)
    if name in ("httpx", "httpx-shared"):
        return _httpx(protocol, target, shared=name == "httpx-shared")
    return _aiohttp(protocol, target)


async def _drive(run: Run, runs: int, concurrency: int) -> tuple[int, float, float]:
    """Runs ``runs`` probes ``concurrency`` at a time: (successes, CPU seconds, wall seconds)."""
    remaining = runs
    ok = 0

    async def worker() -> None:
        nonlocal remaining, ok
        while remaining > 0:
            remaining -= 1
            succeeded = await run()
            ok += succeeded

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, runs))))
    return ok, time.process_time() - cpu, time.perf_counter() - wall


def _measure(args: argparse.Namespace) -> None:
    loop_factory = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    target = (f"{args.protocol}://127.0.0.1:{args.port}" if args.protocol != "tcp"
              else f"127.0.0.1:{args.port}")
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        run = _candidate(args.measure, args.protocol, target)
        runner.run(_drive(run, WARMUP_RUNS, args.concurrency))
        ok, cpu, wall = runner.run(_drive(run, args.runs, args.concurrency))
    print(json.dumps({"ok": ok, "cpu": cpu, "wall": wall}))


# --- the parent: target, children, table --------------------------------------------------

def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _table(rows: list[dict[str, Any]], runs: int) -> str:
    lines = ["| protocol | client | loop | CPU per run (median) | range | runs/s (wall) | ok |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        per_run = [cpu / runs * 1e6 for cpu in row["cpu"]]
        lines.append(
            f"| {row['protocol']} | {row['client']} | {row['loop']} | {statistics.median(per_run):.0f} µs "
            f"| {min(per_run):.0f}–{max(per_run):.0f} µs | {runs / statistics.median(row['wall']):.0f} "
            f"| {min(row['ok'])}/{runs} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU per probe run of the engine and of candidate HTTP clients.")
    parser.add_argument("--runs", type=int, default=1000, help="measured runs per candidate (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=100, help="runs in flight (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per candidate (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=sorted(CANDIDATES), help="candidates to measure")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=list(LOOPS))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=sorted(CANDIDATES), help=argparse.SUPPRESS)
    parser.add_argument("--protocol", choices=PROTOCOLS, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    if args.measure:
        _measure(args)
        return 0

    needs = {"httpx": "httpx", "httpx-shared": "httpx", "aiohttp": "aiohttp", "engine": "httptools"}
    loops = [loop for loop in args.loops if loop == "asyncio" or _installed("uvloop")]
    script = str(Path(__file__).resolve())
    server = subprocess.Popen([sys.executable, script, "--serve"], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, start_new_session=True)
    try:
        ports = json.loads(server.stdout.readline())  # type: ignore[union-attr]
        rows = []
        for protocol in args.protocols:
            for name in args.only or CANDIDATES:
                if protocol not in CANDIDATES[name] or not _installed(needs[name]):
                    continue
                for loop in loops:
                    row: dict[str, Any] = {"protocol": protocol, "client": name, "loop": loop,
                                           "cpu": [], "wall": [], "ok": []}
                    for _ in range(args.repeat):
                        child = subprocess.run(
                            [sys.executable, script, "--measure", name, "--protocol", protocol, "--loop", loop,
                             "--port", str(ports[protocol]), "--runs", str(args.runs),
                             "--concurrency", str(args.concurrency)],
                            capture_output=True, text=True, cwd=ROOT, check=True)
                        result = json.loads(child.stdout.strip().splitlines()[-1])
                        for key in ("cpu", "wall", "ok"):
                            row[key].append(result[key])
                    rows.append(row)
                    print(_table([row], args.runs).splitlines()[-1], file=sys.stderr, flush=True)
        print(_table(rows, args.runs))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
