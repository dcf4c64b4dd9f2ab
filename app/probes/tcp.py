"""TCP probe: connect, optionally send ``body``, and if ``expect`` is set read until it appears."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Literal

from pydantic import Field

from app.probes.base import ProbeError, ProbeOutcome, ProbeRun, ProbeSpec, ProbeStatus, Protocol
from app.probes.fields import Expect, Payload
from app.probes.net import connect, connection_error, elapsed_ms, host_port_target, resolve, target_host_port
from app.probes.text import expect_missing

READ_CHUNK = 65536


class TcpSpec(ProbeSpec):
    """A TCP connection; then, if set, send ``body`` and read until ``expect`` arrives."""

    TARGET_HELP = "host:port (IPv6 in brackets: [::1]:6379)"

    protocol: Literal["tcp"]
    body: Payload = Field(None, description="Bytes sent once connected, as given (e.g. \"PING\\r\\n\").")
    expect: Expect = Field(None, description="Text the reply must contain; unset: connecting is enough.")

    @classmethod
    def normalise_target(cls, protocol: str, target: str) -> str:
        return host_port_target(target)


async def _read_until(reader: asyncio.StreamReader, spec: TcpSpec, received: bytearray) -> None:
    """Read into ``received`` until it contains ``spec.expect``, at most ``spec.max_body_bytes``."""
    assert spec.expect is not None
    expect = spec.expect.encode()
    searched = 0
    while received.find(expect, searched) < 0:
        if len(received) >= spec.max_body_bytes:
            raise ProbeError(ProbeStatus.FAILED, expect_missing(spec.expect, received.decode(errors="replace")))
        chunk = await reader.read(min(READ_CHUNK, spec.max_body_bytes - len(received)))
        if not chunk:
            text = received.decode(errors="replace")
            raise ProbeError(ProbeStatus.FAILED, expect_missing(spec.expect, text, "the connection closed"))
        searched = max(0, len(received) - len(expect) + 1)  # only look again where a match may now end
        received += chunk


async def probe(spec: TcpSpec, run: ProbeRun) -> ProbeOutcome:
    host, port = target_host_port(spec.target)
    reader = asyncio.StreamReader(limit=READ_CHUNK)
    transport, protocol = await connect(
        await resolve(host, port, run.timings, socket.SOCK_STREAM), run.timings, lambda: asyncio.StreamReaderProtocol(reader)
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, asyncio.get_running_loop())
    try:
        started = time.perf_counter()
        if spec.body is not None:
            writer.write(spec.body.encode())
            await writer.drain()
        if spec.expect is not None:
            run.awaiting_reply = True
            await _read_until(reader, spec, run.received)
            run.timings.processing_ms = elapsed_ms(started)
    except OSError as exc:  # reset by the peer while talking
        raise connection_error(exc) from exc
    finally:
        writer.close()
    body = run.received.decode(errors="replace") if spec.expect is not None else None
    return ProbeOutcome(ProbeStatus.SUCCESS, body=body, bytes_read=len(run.received))


PROTOCOL = Protocol(TcpSpec, probe)
