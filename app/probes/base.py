"""The probe engine's contract: one spec in, one outcome out.

Every protocol module exposes ``async def probe(spec: ProbeSpec) -> ProbeOutcome``.
A prober never raises for a target that is down, slow or wrong: that is an
outcome. It raises only for a programming error (a spec it cannot understand),
which ``run_probe`` turns into an ``error`` outcome as well.

This package imports nothing from Flask, Celery or the database, so it can be
used and tested on its own.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable


class ProbeStatus(str, enum.Enum):
    """How a probe run ended, as a user reads it."""

    SUCCESS = "success"  # reached, answered, every condition held
    FAILED = "failed"  # reached (or refused), but a check did not hold
    TIMEOUT = "timeout"  # no answer within the probe's timeout
    ERROR = "error"  # the probe could not be carried out (bad spec, DNS failure, TLS error)


@dataclass(frozen=True)
class ProbeSpec:
    """Everything a prober needs, independent of how it was stored.

    ``target`` is a URL for http/https/ws/wss (``https://host:port/path``) and
    ``host:port`` for tcp/udp. ``body`` is the HTTP request body, or the payload
    a TCP/UDP/WebSocket probe sends. ``expect`` is what a TCP/WebSocket/UDP
    reply must contain for the run to succeed (substring match on the decoded
    reply); ``None`` means any reply (UDP) or no read at all (TCP).
    """

    protocol: str
    target: str
    timeout: float = 10.0
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    expect: str | None = None
    verify_tls: bool = True
    follow_redirects: bool = True
    max_body_bytes: int = 1_048_576


@dataclass
class PhaseTimings:
    """Milliseconds spent in each phase, ``None`` where the protocol has no such phase."""

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    processing_ms: float | None = None
    transfer_ms: float | None = None


@dataclass
class ProbeOutcome:
    """The one result type every prober returns.

    ``body`` holds the (possibly truncated) response text for condition checks; it
    is not persisted. ``status`` is the prober's own verdict on reachability
    (``success`` means "got an answer"); conditions may turn it into ``failed``.
    """

    status: ProbeStatus
    response_time_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    timings: PhaseTimings = field(default_factory=PhaseTimings)
    cert_expires_at: datetime | None = None
    bytes_read: int = 0
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is ProbeStatus.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["cert_expires_at"] = self.cert_expires_at.isoformat() if self.cert_expires_at else None
        data.pop("body", None)
        return data


Prober = Callable[[ProbeSpec], Awaitable[ProbeOutcome]]
