"""Shared by the probers: ``host:port`` targets, timed DNS and timed TCP connect."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from typing import Callable, TypeVar

from app.probes.base import PhaseTimings, ProbeError, ProbeStatus
from app.probes.text import check_plain, os_error

_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]+")
_PORT = re.compile(r"[0-9]{1,5}")

Address = tuple[socket.AddressFamily, tuple]  # (family, sockaddr) as getaddrinfo returns them
P = TypeVar("P", bound=asyncio.BaseProtocol)


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def is_ip(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.inet_pton(family, host)  # much cheaper than ipaddress, and called on every run
    except (OSError, ValueError):
        return False
    return True


def split_host_port(target: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``[v6addr]:port``; ``ValueError`` with a user-readable message."""
    if "/" in target:
        raise ValueError(f"expected host:port without a scheme or path, got “{target}”")
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6 address]:port, got “{target}”")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"“{host}” is not an IPv6 address") from None
    else:
        host, colon, port_text = target.rpartition(":")
        if not colon:
            raise ValueError(f"expected host:port, got “{target}”")
        if ":" in host:
            raise ValueError("write IPv6 addresses in brackets, e.g. [::1]:53")
        if not host:
            raise ValueError("host is empty")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"“{host}” is not a valid host name")
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got “{port_text}”")
    return host.lower(), int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_port_target(target: str) -> str:
    """A ``host:port`` target as stored, or ``ValueError`` with a message for the user."""
    check_plain(target)
    return join_host_port(*split_host_port(target))


async def resolve(host: str, port: int, timings: PhaseTimings, socktype: int) -> list[Address]:
    """Resolve ``host``, adding the time taken to ``timings.dns_ms`` (left alone for IP literals)."""
    if is_ip(host):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return [(family, (host, port))]
    started = time.perf_counter()
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socktype)
    except socket.gaierror as exc:
        raise ProbeError(ProbeStatus.ERROR, f"could not resolve host {host}: {exc.strerror}") from exc
    finally:
        timings.add("dns_ms", elapsed_ms(started))
    return list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in infos))


def _connect_failed(error: OSError | None) -> ProbeError:
    message = os_error(error) if error is not None else "no address to connect to"
    return ProbeError(ProbeStatus.FAILED, message if message == "connection refused" else f"could not connect: {message}")


async def connect(
    addresses: list[Address], timings: PhaseTimings, protocol_factory: Callable[[], P]
) -> tuple[asyncio.Transport, P]:
    """TCP-connect a protocol to the first address that accepts, timing it as ``timings.connect_ms``."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    error: OSError | None = None
    for family, sockaddr in addresses:
        try:
            transport, protocol = await loop.create_connection(protocol_factory, sockaddr[0], sockaddr[1], family=family)
        except OSError as exc:
            error = exc
            continue
        timings.add("connect_ms", elapsed_ms(started))
        return transport, protocol  # type: ignore[return-value]
    raise _connect_failed(error)


async def open_socket(addresses: list[Address], timings: PhaseTimings) -> socket.socket:
    """Like ``connect``, for libraries that take a connected socket (websockets)."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        timings.add("connect_ms", elapsed_ms(started))
        return sock
    raise _connect_failed(error)


def connection_error(exc: OSError) -> ProbeError:
    """The peer dropped an established connection, or broke its TLS."""
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").replace("_", " ").lower() or "protocol error"
        return ProbeError(ProbeStatus.FAILED, f"TLS error: {reason}")
    return ProbeError(ProbeStatus.FAILED, f"connection error: {os_error(exc)}")


def target_host_port(target: str) -> tuple[str, int]:
    """``split_host_port`` for a prober: a bad target is an ``error`` outcome."""
    try:
        return split_host_port(target)
    except ValueError as exc:
        raise ProbeError(ProbeStatus.ERROR, str(exc)) from None
