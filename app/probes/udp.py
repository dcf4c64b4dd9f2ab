"""UDP probe: send one datagram (``body`` or empty) and wait for one reply."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Literal

from pydantic import Field

from app.probes.base import ProbeError, ProbeOutcome, ProbeRun, ProbeSpec, ProbeStatus, Protocol
from app.probes.fields import Expect, Payload
from app.probes.net import elapsed_ms, host_port_target, resolve, target_host_port
from app.probes.text import expect_missing, os_error


class UdpSpec(ProbeSpec):
    """One datagram out (``body``, or empty), one reply back, containing ``expect`` if set."""

    TARGET_HELP = "host:port (IPv6 in brackets: [::1]:53)"

    protocol: Literal["udp"]
    body: Payload = Field(None, description="The datagram sent, as given; unset: an empty datagram.")
    expect: Expect = Field(None, description="Text the reply must contain; unset: any reply.")

    @classmethod
    def normalise_target(cls, protocol: str, target: str) -> str:
        return host_port_target(target)


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


async def probe(spec: UdpSpec, run: ProbeRun) -> ProbeOutcome:
    host, port = target_host_port(spec.target)
    family, sockaddr = (await resolve(host, port, run.timings, socket.SOCK_DGRAM))[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(sockaddr)  # local only for UDP; makes the kernel report ICMP errors to us
        started = time.perf_counter()
        # Sent on the socket itself: asyncio's datagram transport silently drops empty datagrams.
        sock.send((spec.body or "").encode())
    except OSError as exc:
        sock.close()
        raise ProbeError(ProbeStatus.FAILED, f"could not send: {os_error(exc)}") from exc
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(_FirstReply, sock=sock)
    try:
        reply = await protocol.reply
        run.timings.processing_ms = elapsed_ms(started)
    except ConnectionRefusedError as exc:
        raise ProbeError(ProbeStatus.FAILED, "port unreachable") from exc
    except OSError as exc:
        raise ProbeError(ProbeStatus.FAILED, f"no reply: {os_error(exc)}") from exc
    finally:
        transport.close()
    text = reply[: spec.max_body_bytes].decode("utf-8", errors="replace")
    if spec.expect is not None and spec.expect not in text:
        raise ProbeError(ProbeStatus.FAILED, expect_missing(spec.expect, text, None if text else "an empty reply came"))
    return ProbeOutcome(ProbeStatus.SUCCESS, body=text, bytes_read=len(reply))


PROTOCOL = Protocol(UdpSpec, probe)
