"""The probe engine: one ``ProbeSpec`` in, one ``ProbeOutcome`` out, for every protocol.

``run_probe`` is the entry point for callers: it never raises for a target or a
spec, and applies the user's success conditions. ``run_many`` runs a batch
concurrently with a bound.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from app.probes import http, tcp, udp, websocket
from app.probes.base import PhaseTimings, ProbeOutcome, ProbeSpec, ProbeStatus, Prober
from app.probes.conditions import Conditions, evaluate
from app.probes.net import elapsed_ms, join_host_port, split_host_port

__all__ = [
    "PROBERS",
    "PROTOCOLS",
    "Conditions",
    "PhaseTimings",
    "ProbeOutcome",
    "ProbeSpec",
    "ProbeStatus",
    "Prober",
    "UnknownProtocolError",
    "evaluate",
    "get_prober",
    "run_many",
    "run_probe",
    "validate_target",
]

PROBERS: dict[str, Prober] = {
    "http": http.probe,
    "https": http.probe,
    "websocket": websocket.probe,
    "tcp": tcp.probe,
    "udp": udp.probe,
}
PROTOCOLS: tuple[str, ...] = tuple(PROBERS)

# Probers enforce spec.timeout themselves; this only catches one that hangs past it.
TIMEOUT_GRACE = 2.0

_URL_SCHEMES = {"http": ("http",), "https": ("https",), "websocket": ("ws", "wss")}


class UnknownProtocolError(ValueError):
    def __init__(self, protocol: str) -> None:
        super().__init__(f"unknown protocol {protocol!r}; expected one of: {', '.join(PROTOCOLS)}")


def get_prober(protocol: str) -> Prober:
    try:
        return PROBERS[protocol]
    except KeyError:
        raise UnknownProtocolError(protocol) from None


def _validate_url(protocol: str, target: str) -> str:
    schemes = _URL_SCHEMES[protocol]
    try:
        url = httpx.URL(target)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    if url.scheme not in schemes:
        raise ValueError(f"{protocol} targets must start with {' or '.join(s + '://' for s in schemes)}")
    if not url.host:
        raise ValueError("the URL has no host")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got '{url.port}'")
    return str(url)


def validate_target(protocol: str, target: str) -> str:
    """The normalised target, or ``ValueError`` with a one-line message for the user."""
    get_prober(protocol)
    target = target.strip()
    if not target:
        raise ValueError("target is empty")
    if any(char.isspace() for char in target):
        raise ValueError("target must not contain whitespace")
    if protocol in _URL_SCHEMES:
        return _validate_url(protocol, target)
    return join_host_port(*split_host_port(target))


async def run_probe(spec: ProbeSpec, conditions: Conditions | None = None) -> ProbeOutcome:
    """Run one probe; every failure, even a bug in a prober, comes back as an outcome."""
    started = time.perf_counter()
    try:
        prober = get_prober(spec.protocol)
        outcome = await asyncio.wait_for(prober(spec), spec.timeout + TIMEOUT_GRACE)
    except TimeoutError:
        outcome = ProbeOutcome(
            ProbeStatus.TIMEOUT, response_time_ms=elapsed_ms(started), error=f"no result within {spec.timeout:g}s"
        )
    except Exception as exc:
        outcome = ProbeOutcome(
            ProbeStatus.ERROR, response_time_ms=elapsed_ms(started), error=str(exc) or type(exc).__name__
        )
    return evaluate(outcome, conditions)


async def run_many(
    specs: list[tuple[ProbeSpec, Conditions | None]], concurrency: int
) -> list[ProbeOutcome]:
    """Run probes concurrently, at most ``concurrency`` at a time; outcomes in input order."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    limit = asyncio.Semaphore(concurrency)

    async def one(spec: ProbeSpec, conditions: Conditions | None) -> ProbeOutcome:
        async with limit:
            return await run_probe(spec, conditions)

    return list(await asyncio.gather(*(one(spec, conditions) for spec, conditions in specs)))
