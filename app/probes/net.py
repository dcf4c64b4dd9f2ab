"""Helpers shared by the probers: target parsing, timed DNS and TCP connect, TLS contexts."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
import time

import httpx

from app.probes.base import PhaseTimings, ProbeOutcome, ProbeSpec, ProbeStatus

_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]+")
_PORT = re.compile(r"[0-9]{1,5}")

Address = tuple[socket.AddressFamily, tuple]  # (family, sockaddr) as getaddrinfo returns them


class ProbeError(Exception):
    """Ends a probe early with a verdict; the prober turns it into its outcome."""

    def __init__(self, status: ProbeStatus, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.status_code = status_code

    def outcome(self) -> ProbeOutcome:
        return ProbeOutcome(self.status, error=str(self), status_code=self.status_code)


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def split_host_port(target: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``[v6addr]:port``; ``ValueError`` with a user-readable message."""
    if "/" in target:
        raise ValueError(f"expected host:port without a scheme or path, got {target!r}")
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6 address]:port, got {target!r}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = target.rpartition(":")
        if not colon:
            raise ValueError(f"expected host:port, got {target!r}")
        if ":" in host:
            raise ValueError("write IPv6 addresses in brackets, e.g. [::1]:53")
        if not host:
            raise ValueError("host is empty")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{host!r} is not a valid host name")
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got {port_text!r}")
    return host.lower(), int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve(host: str, port: int, timings: PhaseTimings, socktype: int) -> list[Address]:
    """Resolve ``host``, adding the time taken to ``timings.dns_ms`` (left alone for IP literals)."""
    if is_ip(host):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return [(family, (host, port))]
    started = time.perf_counter()
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socktype)
    except socket.gaierror as exc:
        raise ProbeError(ProbeStatus.ERROR, f"could not resolve host {host!r}: {exc.strerror}") from exc
    finally:
        timings.dns_ms = round((timings.dns_ms or 0.0) + elapsed_ms(started), 3)
    return list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in infos))


def describe_connect_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"could not connect: {exc.strerror or exc}"


async def open_socket(addresses: list[Address], timings: PhaseTimings) -> socket.socket:
    """TCP-connect to the first address that accepts, timing it as ``timings.connect_ms``."""
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
        timings.connect_ms = elapsed_ms(started)
        return sock
    assert error is not None
    raise ProbeError(ProbeStatus.FAILED, describe_connect_error(error)) from error


def tls_error(exc: ssl.SSLError) -> ProbeError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProbeError(ProbeStatus.ERROR, f"certificate not trusted: {exc.verify_message}")
    return ProbeError(ProbeStatus.ERROR, f"TLS handshake failed: {exc.reason or exc}")


@functools.cache
def ssl_context(verify: bool) -> ssl.SSLContext:
    """One verifying and one non-verifying context per process: loading the CA bundle is slow."""
    return httpx.create_ssl_context(verify=verify)


def preview(data: str, limit: int = 60) -> str:
    return data if len(data) <= limit else data[:limit] + "…"


def expect_missing(expect: str, received: str, reason: str) -> ProbeError:
    """A reply came (or the peer closed) but never contained ``expect``."""
    detail = f"got {preview(received)!r}" if received else reason
    return ProbeError(ProbeStatus.FAILED, f"expected {expect!r} not received ({detail})")


def timed_out(spec: ProbeSpec, received: str, connected: bool) -> ProbeError:
    """A timeout is a failed check if the peer answered something else, else no answer at all."""
    if spec.expect is not None and received:
        return expect_missing(spec.expect, received, "")
    if spec.expect is not None and connected:
        return ProbeError(ProbeStatus.TIMEOUT, f"expected {spec.expect!r} not received within {spec.timeout:g}s")
    return ProbeError(ProbeStatus.TIMEOUT, f"no response within {spec.timeout:g}s")
