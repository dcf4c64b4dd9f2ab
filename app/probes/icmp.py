"""ICMP probe: echo requests (ping) at an interval, judged by how many go unanswered.

The socket is an unprivileged ICMP datagram socket where the kernel admits one of
the process's groups (``net.ipv4.ping_group_range``, which covers IPv6 as well),
else a raw socket (root, or ``CAP_NET_RAW``). A raw socket sees every ICMP message
the host receives, so replies are matched by identifier and sequence number, both
random per run: concurrent runs, in this process or another, do not take each
other's replies.

A run sends ``count`` requests ``send_interval_seconds`` apart and waits ``REPLY_WAIT``
after the last for replies still out, so it takes up to
``(count - 1) × send_interval_seconds + REPLY_WAIT``. A host that answers none is
``timeout`` (unless routers reported an error for the requests: ``failed``),
like a TCP or UDP peer that never answers; some unanswered beyond
``max_packet_loss_percent`` is ``failed``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import (
    ICMPSocketError,
    SocketBroadcastError,
    SocketPermissionError,
)
from icmplib.sockets import ICMPSocket
from pydantic import Field

from app.probes.base import (
    ProbeError,
    ProbeOutcome,
    ProbeRun,
    ProbeSpec,
    ProbeStatus,
    Protocol,
)
from app.probes.dns import domain_name
from app.probes.net import is_ip, resolve
from app.probes.text import check_plain, os_error, quote, seconds

REPLY_WAIT = 1.0  # seconds a reply to the last request may take
PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
RECEIVE_BUFFER = 4096  # a reply to the largest request (1472 bytes of payload), or an error quoting one
NO_PERMISSION = ("ICMP needs permission: allow the probe's group in net.ipv4.ping_group_range, "
                 "or run it as root or with CAP_NET_RAW")

_ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
_ERRORS = {  # ICMP messages that quote a request the network could not deliver
    socket.AF_INET: {3: "destination unreachable", 11: "time to live exceeded in transit"},
    socket.AF_INET6: {1: "destination unreachable", 3: "hop limit exceeded in transit"},
}
_IPV6_HEADER = 40


class IcmpSpec(ProbeSpec):
    """Echo requests to a host: it passes if at most ``max_packet_loss_percent`` of them go unanswered."""

    TARGET_HELP = "a host name or IP address, without a port (e.g. 127.0.0.1, ::1, router.example.com)"

    protocol: Literal["icmp"]
    count: int = Field(3, ge=1, le=20, description="Echo requests sent.")
    send_interval_seconds: float = Field(0.2, ge=0.05, le=5, description="Seconds between two requests.")
    payload_size: int = Field(56, ge=0, le=1472,
                              description="Bytes of data in each request (56, as ping sends; 1472 fills a 1500-byte MTU).")
    max_packet_loss_percent: float = Field(
        0, ge=0, le=100,
        description="The share of requests that may go unanswered, in percent; 0: every request must be answered. "
                    "A host that answers none never passes.")

    @classmethod
    def normalise_target(cls, protocol: str, target: str) -> str:
        check_plain(target)
        bare = target[1:-1] if target.startswith("[") and target.endswith("]") else target
        if is_ip(bare):
            return ipaddress.ip_address(bare).compressed
        if "/" in target or ":" in target:
            raise ValueError(f"expected a host name or IP address without a port or scheme, got {quote(target)}")
        return domain_name(target, "host name")


def ping_groups_admit(range_text: str, groups: Iterable[int]) -> bool:
    """Whether ``ping_group_range`` (``"low high"``; ``"1 0"``, the default, admits none) admits one of ``groups``."""
    try:
        low, high = (int(part) for part in range_text.split())
    except ValueError:
        return False
    return any(low <= group <= high for group in groups)


def socket_modes(range_text: str | None, groups: Iterable[int]) -> tuple[bool, ...]:
    """The sockets to try, as icmplib's ``privileged`` flag, best first.

    An unprivileged datagram socket needs no capability; a raw socket is the fallback.
    ``range_text`` is ``None`` where there is no ``ping_group_range`` to read (not Linux):
    try the datagram socket, which such systems may allow, then raw.
    """
    if range_text is None or ping_groups_admit(range_text, groups):
        return (False, True)
    return (True,)


def _own_modes() -> tuple[bool, ...]:
    try:
        range_text: str | None = PING_GROUP_RANGE.read_text()
    except OSError:
        range_text = None
    return socket_modes(range_text, {os.getegid(), *os.getgroups()})


def _open(family: int) -> ICMPSocket:
    kind = ICMPv6Socket if family == socket.AF_INET6 else ICMPv4Socket
    for privileged in _own_modes():
        try:
            sock = kind(None, privileged)
        except SocketPermissionError:
            continue
        except ICMPSocketError as exc:
            raise ProbeError(ProbeStatus.ERROR, f"could not open an ICMP socket: {_reason(exc)}") from exc
        sock.blocking = False
        return sock
    raise ProbeError(ProbeStatus.ERROR, NO_PERMISSION)


def _reason(exc: ICMPSocketError) -> str:
    """The OS error behind an icmplib error (icmplib words it with Python's ``[Errno …]``)."""
    cause = exc.__context__
    return os_error(cause) if isinstance(cause, OSError) else "network error"


class Icmp(NamedTuple):
    """An ICMP message about one of our echo requests: the reply, or an error quoting the request."""

    kind: int
    code: int
    ident: int
    sequence: int
    size: int
    """Bytes of the ICMP message (without the IP header a raw IPv4 socket delivers)."""


def parse(packet: bytes, family: int) -> Icmp | None:
    """The echo reply in ``packet``, or the error that quotes an echo request; else ``None``.

    A raw IPv4 socket delivers the IP header too, a datagram socket (on Linux) and IPv6
    do not; an error message quotes the request's IP header and its first 8 bytes.
    """
    if family == socket.AF_INET and packet and packet[0] >> 4 == 4:  # an IPv4 header, not an ICMP type
        packet = packet[(packet[0] & 0x0F) * 4:]
    if len(packet) < 8:
        return None
    kind, code, _, ident, sequence = struct.unpack_from("!BBHHH", packet)
    if kind == _ECHO_REPLY[family]:
        return Icmp(kind, code, ident, sequence, len(packet))
    if kind not in _ERRORS[family]:
        return None  # someone's echo request (ours, seen on loopback), neighbour discovery, …
    quoted = packet[8:]
    skip = (quoted[0] & 0x0F) * 4 if family == socket.AF_INET and quoted else _IPV6_HEADER
    if len(quoted) < skip + 8:
        return None
    request_kind, _, _, ident, sequence = struct.unpack_from("!BBHHH", quoted, skip)
    if request_kind != _ECHO_REQUEST[family]:
        return None
    return Icmp(kind, code, ident, sequence, len(packet))


@dataclass
class Echoes:
    """What a run sent and what came back; the socket's reader fills it in as replies arrive."""

    count: int
    family: int = socket.AF_INET
    ident: int = 0
    sent: dict[int, float] = field(default_factory=dict)
    """Sequence number -> when it was sent (``time.perf_counter``)."""
    rtts: dict[int, float] = field(default_factory=dict)
    """Sequence number -> round-trip time in ms, for the requests answered."""
    errors: list[str] = field(default_factory=list)
    """What routers (or the kernel) reported about requests that could not be delivered."""
    bytes_read: int = 0
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)
    progress: Callable[[], None] | None = None
    """Called after each reply."""

    def take(self, packet: bytes, source: str, arrived: float) -> None:
        icmp = parse(packet, self.family)
        if icmp is None or icmp.ident != self.ident or icmp.sequence not in self.sent or icmp.sequence in self.rtts:
            return  # not about our requests (another run's), or a duplicate
        if icmp.kind != _ECHO_REPLY[self.family]:
            self.errors.append(f"{_ERRORS[self.family][icmp.kind]} (reported by {source})")
            return
        self.rtts[icmp.sequence] = round((arrived - self.sent[icmp.sequence]) * 1000, 3)
        self.bytes_read += icmp.size
        if len(self.rtts) == self.count:
            self.all_answered.set()
        if self.progress is not None:
            self.progress()


def _reader(sock: socket.socket, echoes: Echoes) -> None:
    """Reads whatever arrived, every datagram: icmplib's own receive drops replies that come late for it."""
    while True:
        try:
            packet, address = sock.recvfrom(RECEIVE_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # a datagram socket reports ICMP errors so, once each
            echoes.errors.append(os_error(exc))
            return
        echoes.take(packet, address[0], time.perf_counter())


def loss_message(sent: int, received: int) -> str:
    """``2 of 3 echo requests unanswered (67 % loss)``."""
    lost = sent - received
    return f"{lost} of {sent} echo request{'s' if sent != 1 else ''} unanswered ({round(lost * 100 / sent)} % loss)"


def _cut_off(spec: IcmpSpec, echoes: Echoes) -> ProbeError:
    """What to report if the deadline ends the run now (set as ``run.verdict`` as the run goes)."""
    answered = f"{len(echoes.rtts)} answered"
    if len(echoes.sent) < spec.count:
        needs = (spec.count - 1) * spec.send_interval_seconds + REPLY_WAIT
        message = (f"timed out after {len(echoes.sent)} of {spec.count} echo requests ({answered}); "
                   f"the run needs up to {seconds(needs)}")
    else:
        message = f"timed out waiting for replies to {spec.count} echo requests ({answered})"
    return ProbeError(ProbeStatus.TIMEOUT, message)


def outcome(spec: IcmpSpec, address: str, echoes: Echoes) -> ProbeOutcome:
    """The verdict on a finished run, with its loss and round-trip times as ``details``."""
    sent, rtts = len(echoes.sent), list(echoes.rtts.values())
    loss = (sent - len(rtts)) * 100 / sent
    details = {
        "address": address,
        "sent": sent,
        "received": len(rtts),
        "packet_loss_percent": round(loss, 2),
        "rtt_min_ms": min(rtts, default=None),
        "rtt_avg_ms": round(sum(rtts) / len(rtts), 3) if rtts else None,
        "rtt_max_ms": max(rtts, default=None),
    }
    result = ProbeOutcome(ProbeStatus.SUCCESS, bytes_read=echoes.bytes_read, details=details)
    if loss <= spec.max_packet_loss_percent and rtts:
        return result
    result.error = loss_message(sent, len(rtts))
    if echoes.errors:
        result.error += f": {echoes.errors[0]}"
    result.status = ProbeStatus.FAILED if rtts or echoes.errors else ProbeStatus.TIMEOUT
    return result


def _send(sock: ICMPSocket, request: ICMPRequest, address: str) -> None:
    try:
        sock.send(request)
    except SocketBroadcastError as exc:
        raise ProbeError(ProbeStatus.FAILED, f"sending to {address} is not permitted (a broadcast address, "
                                             "or a firewall rule)") from exc
    except ICMPSocketError as exc:
        raise ProbeError(ProbeStatus.FAILED, f"could not send an echo request to {address}: {_reason(exc)}") from exc


async def probe(spec: IcmpSpec, run: ProbeRun) -> ProbeOutcome:
    try:
        host = IcmpSpec.normalise_target(spec.protocol, spec.target)
    except ValueError as exc:
        raise ProbeError(ProbeStatus.ERROR, str(exc)) from None
    family, sockaddr = (await resolve(host, 0, run.timings, socket.SOCK_DGRAM))[0]
    address = sockaddr[0]
    loop = asyncio.get_running_loop()
    sock = _open(family)
    echoes = Echoes(spec.count, family)

    def progress() -> None:
        run.verdict = _cut_off(spec, echoes)

    echoes.progress = progress
    ident, first = random.getrandbits(16), random.getrandbits(16)
    fileno = sock.sock.fileno()
    loop.add_reader(fileno, _reader, sock.sock, echoes)
    wait_over: asyncio.TimerHandle | None = None
    try:
        started = time.perf_counter()
        for number in range(spec.count):
            delay = started + number * spec.send_interval_seconds - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sequence = (first + number) & 0xFFFF
            request = ICMPRequest(address, ident, sequence, payload_size=spec.payload_size)
            echoes.sent[sequence] = time.perf_counter()
            _send(sock, request, address)
            echoes.ident = request.id  # a datagram socket's identifier is the kernel's choice
            progress()
        wait_over = loop.call_later(REPLY_WAIT, echoes.all_answered.set)
        await echoes.all_answered.wait()
    finally:
        if wait_over is not None:
            wait_over.cancel()
        loop.remove_reader(fileno)
        sock.close()
    run.verdict = None
    if echoes.rtts:
        run.timings.processing_ms = round(sum(echoes.rtts.values()) / len(echoes.rtts), 3)
    return outcome(spec, address, echoes)


PROTOCOL = Protocol(IcmpSpec, probe)
