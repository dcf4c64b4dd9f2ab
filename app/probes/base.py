"""The probe engine's contract: one spec in, one outcome out.

Every protocol module exposes one function of one shape, and the spec it takes::

    async def probe(spec: HttpSpec, run: ProbeRun) -> ProbeOutcome
    PROTOCOL = Protocol(HttpSpec, probe)

It only speaks its protocol. ``run_probe`` owns the rest: the deadline
(``spec.timeout``), the response time, and turning every exception into an
outcome. A prober ends early by raising ``ProbeError`` with a verdict, and
records what it learns as it goes in ``run`` (phase timings, what arrived so
far), so that when the deadline cuts it off the outcome can still say what
partially happened.

The registry finds every module of this package that defines ``PROTOCOL``, so a
new protocol is its module (spec and prober) and its tests. This package imports
nothing from Flask, Celery or the database, so it can be used and tested on its own.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field

from app.probes.urls import redact

DEFAULT_MAX_BODY_BYTES = 1_048_576


class ProbeStatus(str, enum.Enum):
    """How a probe run ended, as a user reads it."""

    SUCCESS = "success"  # reached, answered, every condition held
    FAILED = "failed"  # reached (or refused), but a check did not hold
    TIMEOUT = "timeout"  # no answer within the probe's timeout
    ERROR = "error"  # the probe could not be carried out (bad spec, DNS failure, TLS error)


class ProbeSpec(BaseModel):
    """What a probe checks: the fields every protocol shares; each prober module subclasses it.

    A protocol's subclass narrows ``protocol`` to its names (a ``Literal``, the
    discriminator) and adds its own fields, with their defaults and validation, unknown
    keys refused. What a subclass adds is what the ``probes.spec`` column stores
    (``stored()``); the common fields live in their own columns. ``max_body_bytes`` caps
    what is kept of a reply (for HTTP after decompression); it is the engine's bound, not
    something a user sets.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    COMMON: ClassVar[frozenset[str]] = frozenset({"protocol", "target", "timeout", "max_body_bytes"})
    TARGET_HELP: ClassVar[str] = ""
    """What a target looks like, for the user (API docs, error messages)."""

    protocol: str
    target: str
    timeout: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1)

    @classmethod
    def protocols(cls) -> tuple[str, ...]:
        """The protocol names this spec serves (the arguments of its ``protocol`` Literal)."""
        return tuple(get_args(cls.model_fields["protocol"].annotation))

    @classmethod
    def normalise_target(cls, protocol: str, target: str) -> str:
        """The target as stored, or ``ValueError`` with a one-line message for the user."""
        raise NotImplementedError

    def stored(self) -> dict[str, Any]:
        """The protocol's own fields, as the ``probes.spec`` JSON column holds them."""
        return self.model_dump(mode="json", exclude=set(self.COMMON))

    def secret_values(self) -> list[str]:
        """Values that must never appear in a message or a log line (credentials for the target)."""
        return []

    def shown(self) -> dict[str, Any]:
        """``stored()`` as it may be shown to a user: credentials masked."""
        return self.stored()

    def sealed(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """``stored()`` split in two: the spec with every credential replaced by a mask, and the
        credentials (``{field: {name: value}}``, ``None`` if there are none), kept apart
        (encrypted) so that reading a spec never reads a credential. ``with_secrets`` joins them."""
        return self.stored(), None

    def __repr__(self) -> str:
        # Specs end up in logs; a URL's password, its query and credential headers must not.
        target = redact(self.target) if "://" in self.target else self.target
        fields = "".join(f", {name}={value!r}" for name, value in self.shown().items())
        return f"{type(self).__name__}(protocol={self.protocol!r}, target={target!r}, timeout={self.timeout!r}{fields})"

    __str__ = __repr__


def with_secrets(stored: dict[str, Any] | None, secrets: dict[str, Any] | None) -> dict[str, Any]:
    """A sealed spec (``ProbeSpec.sealed``) with its credentials put back, as the prober needs it.

    Only entries the spec still names are filled in: the spec says which credentials
    exist (and in which order), the secrets only what they are.
    """
    spec = dict(stored or {})
    for field_name, values in (secrets or {}).items():
        current = spec.get(field_name)
        if isinstance(current, dict) and isinstance(values, dict):
            spec[field_name] = {name: values.get(name, value) for name, value in current.items()}
    return spec


@dataclass
class PhaseTimings:
    """Milliseconds spent in each phase, ``None`` where the protocol has no such phase."""

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    processing_ms: float | None = None
    transfer_ms: float | None = None

    def add(self, phase: str, ms: float) -> None:
        """Add to a phase (redirect hops and retried addresses add up)."""
        setattr(self, phase, round((getattr(self, phase) or 0.0) + ms, 3))


@dataclass
class ProbeOutcome:
    """The one result type of every probe run.

    ``body`` holds the (possibly truncated) response text for condition checks; it
    is not persisted. ``body_truncated`` says why the body was cut, if it was.
    ``status`` is the prober's own verdict on reachability (``success`` means
    "got an answer"); conditions may turn it into ``failed``.
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
    body_truncated: str | None = None
    details: dict[str, Any] | None = None
    """What a protocol measures beyond the common fields (DNS answers, ICMP loss and RTTs), stored as JSON."""

    @property
    def ok(self) -> bool:
        return self.status is ProbeStatus.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["cert_expires_at"] = self.cert_expires_at.isoformat() if self.cert_expires_at else None
        data.pop("body", None)
        return data


class ProbeError(Exception):
    """Ends a probe early with a verdict; ``run_probe`` turns it into the outcome."""

    def __init__(self, status: ProbeStatus, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.status_code = status_code


@dataclass
class ProbeRun:
    """One run's scratch state, shared by ``run_probe`` and the prober.

    The prober fills it in as it goes; ``run_probe`` reads it when the deadline
    cuts the prober off (what arrived, how far it got) and when it builds the
    outcome (timings, certificate expiry).
    """

    spec: ProbeSpec
    timings: PhaseTimings = field(default_factory=PhaseTimings)
    awaiting_reply: bool = False
    """Connected, and waiting for a reply that must contain ``spec.expect``."""
    received: bytearray = field(default_factory=bytearray)
    """What the peer sent so far (TCP, WebSocket), for "expected … (got …)"."""
    status_code: int | None = None
    """HTTP: the response headers arrived, the body may still be coming."""
    cert_expires_at: datetime | None = None
    verdict: ProbeError | None = None
    """Already decided; reported as is if the deadline cuts off the details still being gathered."""
    closers: contextlib.AsyncExitStack | None = None

    @property
    def cleanup(self) -> contextlib.AsyncExitStack:
        """Closed by ``run_probe`` after the clock has stopped (e.g. a WebSocket closing handshake)."""
        if self.closers is None:
            self.closers = contextlib.AsyncExitStack()
        return self.closers


Prober = Callable[[ProbeSpec, ProbeRun], Awaitable[ProbeOutcome]]


@dataclass(frozen=True)
class Protocol:
    """A protocol module's entry in the registry: its spec model and its prober."""

    spec: type[ProbeSpec]
    probe: Callable[[Any, ProbeRun], Awaitable[ProbeOutcome]]

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.protocols()
