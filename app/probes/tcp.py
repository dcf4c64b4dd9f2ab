"""TCP probe: connect, optionally send ``body``, and if ``expect`` is set read until it appears."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from app.probes.base import PhaseTimings, ProbeOutcome, ProbeSpec, ProbeStatus
from app.probes.net import (
    ProbeError,
    elapsed_ms,
    expect_missing,
    open_socket,
    resolve,
    split_host_port,
    timed_out,
)

READ_CHUNK = 65536


async def _read_until(reader: asyncio.StreamReader, expect: str, received: bytearray, limit: int) -> None:
    while expect not in received.decode("utf-8", errors="replace"):
        if len(received) >= limit:
            raise expect_missing(expect, received.decode("utf-8", errors="replace"), "")
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            raise expect_missing(expect, received.decode("utf-8", errors="replace"), "connection closed")
        received += chunk


async def _exchange(spec: ProbeSpec, timings: PhaseTimings, received: bytearray) -> ProbeOutcome:
    host, port = split_host_port(spec.target)
    sock = await open_socket(await resolve(host, port, timings, socket.SOCK_STREAM), timings)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        started = time.perf_counter()
        if spec.body is not None:
            writer.write(spec.body.encode())
            await writer.drain()
        if spec.expect is not None:
            await _read_until(reader, spec.expect, received, spec.max_body_bytes)
            timings.processing_ms = elapsed_ms(started)
    except OSError as exc:  # reset by the peer while talking
        raise ProbeError(ProbeStatus.FAILED, f"connection error: {exc.strerror or exc}") from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    body = received.decode("utf-8", errors="replace") if spec.expect is not None else None
    return ProbeOutcome(ProbeStatus.SUCCESS, body=body, bytes_read=len(received))


async def probe(spec: ProbeSpec) -> ProbeOutcome:
    timings = PhaseTimings()
    received = bytearray()  # kept here so a timeout can still report what did arrive
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout):
            outcome = await _exchange(spec, timings, received)
    except TimeoutError:
        text = received.decode("utf-8", errors="replace")
        outcome = timed_out(spec, text, connected=timings.connect_ms is not None).outcome()
    except ProbeError as exc:
        outcome = exc.outcome()
    outcome.timings = timings
    outcome.response_time_ms = elapsed_ms(started)
    return outcome
