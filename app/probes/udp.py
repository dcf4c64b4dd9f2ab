"""UDP probe: send one datagram (``body`` or empty) and wait for one reply."""

from __future__ import annotations

import asyncio
import socket
import time

from app.probes.base import PhaseTimings, ProbeOutcome, ProbeSpec, ProbeStatus
from app.probes.net import ProbeError, elapsed_ms, expect_missing, resolve, split_host_port


class _FirstReply(asyncio.DatagramProtocol):
    """Resolves ``reply`` with the first datagram, or with the error the socket reports.

    The socket is connected to the target, so an ICMP port-unreachable comes back
    as ``ConnectionRefusedError`` through ``error_received``.
    """

    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _exchange(spec: ProbeSpec, timings: PhaseTimings) -> ProbeOutcome:
    host, port = split_host_port(spec.target)
    family, sockaddr = (await resolve(host, port, timings, socket.SOCK_DGRAM))[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(sockaddr)  # local only for UDP; makes the kernel report ICMP errors to us
        started = time.perf_counter()
        # Sent on the socket itself: asyncio's datagram transport silently drops empty datagrams.
        sock.send((spec.body or "").encode())
    except OSError as exc:
        sock.close()
        raise ProbeError(ProbeStatus.FAILED, f"could not send: {exc.strerror or exc}") from exc
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(_FirstReply, sock=sock)
    try:
        reply = await protocol.reply
        timings.processing_ms = elapsed_ms(started)
    except ConnectionRefusedError as exc:
        raise ProbeError(ProbeStatus.FAILED, "port unreachable") from exc
    except OSError as exc:
        raise ProbeError(ProbeStatus.FAILED, f"no reply: {exc.strerror or exc}") from exc
    finally:
        transport.close()
    text = reply[: spec.max_body_bytes].decode("utf-8", errors="replace")
    if spec.expect is not None and spec.expect not in text:
        raise expect_missing(spec.expect, text, "empty reply")
    return ProbeOutcome(ProbeStatus.SUCCESS, body=text, bytes_read=len(reply))


async def probe(spec: ProbeSpec) -> ProbeOutcome:
    timings = PhaseTimings()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout):
            outcome = await _exchange(spec, timings)
    except TimeoutError:
        outcome = ProbeOutcome(ProbeStatus.TIMEOUT, error=f"no reply within {spec.timeout:g}s")
    except ProbeError as exc:
        outcome = exc.outcome()
    outcome.timings = timings
    outcome.response_time_ms = elapsed_ms(started)
    return outcome
