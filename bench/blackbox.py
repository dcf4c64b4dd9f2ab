"""The reference run: blackbox_exporter probing the same fleet on the same schedule.

``bench/probe_throughput.py --blackbox`` calls ``compare`` after the pipeline's own
run. blackbox_exporter (Debian: ``apt-get install prometheus-blackbox-exporter``; the
project does not depend on it) is pull-based: a scraper asks ``/probe?target=…`` and
the exporter runs the probe while the request waits. Here the scraper is a small
keep-alive HTTP client in the benchmark process, asking for every probe of the fleet
at that probe's own slots (the same spread as the pipeline's first slots), so the
exporter gets the offered load the pipeline got. Only the exporter's CPU is counted
against it; the scraper's (like the pipeline's beats) is reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field

from probe_throughput import (  # bench/ is on sys.path when run as a script
    CLOCK_TICKS,
    READY_TIMEOUT,
    BenchError,
    Children,
    Fleet,
    Results,
    _cpu_ticks,
    _parents,
    _rss_kib,
    _tree,
    percentile,
)

from tests.targets import free_port

_SUCCESS = re.compile(rb"^probe_success (\d)", re.MULTILINE)
_CONFIG = """modules:
  http_2xx:
    prober: http
    timeout: {timeout}s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""
MAX_CONNECTIONS = 2000  # scraper connections to the exporter; a dead target holds one for its timeout


@dataclass
class Scrapes:
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    outcomes: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    send_lag_ms: list[float] = field(default_factory=list)
    errors: int = 0


class _Scraper:
    """Keep-alive GETs to the exporter from a loop on a thread of the benchmark process."""

    def __init__(self, port: int, fleet: Fleet, interval: int, scrapes: Scrapes) -> None:
        self.port, self.fleet, self.interval, self.scrapes = port, fleet, interval, scrapes
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.limit = asyncio.Semaphore(MAX_CONNECTIONS)

    async def _get(self, path: str) -> bytes:
        async with self.limit:
            reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: exporter\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length is not None:
                body = await reader.readexactly(int(length.group(1)))
            else:  # Transfer-Encoding: chunked
                parts = []
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    parts.append(await reader.readexactly(size))
                    await reader.readexactly(2)
                await reader.readuntil(b"\r\n")
                body = b"".join(parts)
            self.idle.append((reader, writer))
            return body

    async def _probe(self, probe_id: int, slot: float, window_start: float) -> None:
        kind = self.fleet.category[probe_id]
        if slot >= window_start:
            self.scrapes.sent[kind] += 1
            self.scrapes.send_lag_ms.append((time.time() - slot) * 1000)
        target = urllib.parse.quote(self.fleet.target[probe_id], safe="")
        try:
            body = await self._get(f"/probe?module=http_2xx&target={target}")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.scrapes.errors += 1
            return
        if slot >= window_start:
            found = _SUCCESS.search(body)
            self.scrapes.outcomes[kind]["success" if found and found.group(1) == b"1" else "failed"] += 1

    async def run(self, start: float, window_start: float, end: float) -> None:
        interval_ms = self.interval * 1000
        pending: set[asyncio.Task[None]] = set()
        slots = sorted((start + (probe_id * 7919 % interval_ms) / 1000, probe_id) for probe_id in self.fleet.category)
        cycle = 0
        while True:
            for offset, probe_id in slots:
                slot = offset + cycle * self.interval
                if slot >= end:
                    await asyncio.gather(*pending)
                    return
                delay = slot - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.get_running_loop().create_task(self._probe(probe_id, slot, window_start))
                pending.add(task)
                task.add_done_callback(pending.discard)
            cycle += 1


def _cpu_and_rss(pid: int) -> tuple[int, int]:
    tree = _tree(pid, _parents())
    return sum(_cpu_ticks(p) for p in tree), sum(_rss_kib(p) for p in tree)


def compare(args: argparse.Namespace, fleet: Fleet, children: Children, ours: Results) -> str:
    binary = shutil.which(args.blackbox)
    if binary is None:
        raise BenchError(f"{args.blackbox} not found (apt-get install prometheus-blackbox-exporter)")
    config = children.directory / "blackbox.yml"
    config.write_text(_CONFIG.format(timeout=f"{fleet.timeout:g}"))
    port = free_port()
    exporter = children.spawn("blackbox", "blackbox", [
        binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
    deadline = time.monotonic() + READY_TIMEOUT
    while not _listening(port):
        if exporter.process.poll() is not None:
            raise BenchError(f"blackbox_exporter exited with {exporter.process.returncode}")
        if time.monotonic() > deadline:
            raise BenchError("blackbox_exporter did not start listening")
        time.sleep(0.1)

    scrapes = Scrapes()
    start = time.time() + 1
    window_start, end = start + args.warmup, start + args.duration
    scraper = _Scraper(port, fleet, args.interval, scrapes)
    thread = threading.Thread(target=lambda: _run_loop(scraper.run(start, window_start, end)), daemon=True)
    thread.start()
    while time.time() < window_start:
        time.sleep(0.05)
    cpu_before, _ = _cpu_and_rss(exporter.process.pid)
    rss_peak = 0
    while time.time() < end:
        rss_peak = max(rss_peak, _cpu_and_rss(exporter.process.pid)[1])
        time.sleep(1)
    cpu_after, _ = _cpu_and_rss(exporter.process.pid)
    thread.join(fleet.timeout + 30)
    children.stop("blackbox")

    seconds = end - window_start
    exporter_cores = (cpu_after - cpu_before) / CLOCK_TICKS / seconds
    done = sum(sum(kinds.values()) for kinds in scrapes.outcomes.values())
    healthy = scrapes.outcomes["healthy"]
    our_healthy = ours.categories["healthy"]
    our_rate = ours.stored / ours.window_seconds
    our_cpu_ms = 1000 * ours.cores.get("worker", float("nan")) / our_rate if our_rate else float("nan")
    their_cpu_ms = 1000 * exporter_cores / (done / seconds) if done else float("nan")
    lag = sorted(scrapes.send_lag_ms)
    rows = [
        ("offered", f"{len(fleet.category) / args.interval:,.1f} probes/s, same targets and schedule, "
                    f"{seconds:.0f} s after a {args.warmup:g} s warm-up"),
        ("healthy probes/s: blackbox_exporter / this pipeline",
         f"{healthy.get('success', 0) / seconds:,.1f} / {our_healthy.statuses.get('success', 0) / ours.window_seconds:,.1f}"),
        ("results by kind (blackbox_exporter)",
         "; ".join(f"{kind} " + ", ".join(f"{k} {v:,}" for k, v in sorted(outcome.items()))
                   for kind, outcome in scrapes.outcomes.items())),
        ("scrapes that failed at the HTTP level", f"{scrapes.errors:,}"),
        ("scraper send lag ms: median / p99", f"{percentile(lag, .5):,.0f} / {percentile(lag, .99):,.0f}"),
        ("blackbox_exporter CPU cores / peak RSS", f"{exporter_cores:.2f} / {rss_peak / 1024:,.0f} MiB"),
        ("**CPU per probe: blackbox_exporter / this pipeline's workers**",
         f"**{their_cpu_ms:.2f} ms / {our_cpu_ms:.2f} ms** (ratio {their_cpu_ms / our_cpu_ms:.2f}×: "
         "above 1 means the pipeline needs less CPU per probe)"),
    ]
    lines = ["| blackbox_exporter, same fleet | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _run_loop(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)  # type: ignore[arg-type]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
