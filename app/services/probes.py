"""Create, change, list and delete probes, always within one tenant."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.config import active_settings
from app.extensions import db
from app.models import Probe, ProbeGroup
from app.probes import PROTOCOLS, validate_target
from app.probes.conditions import Conditions
from app.services import scheduling, status_cache
from app.services.errors import ConflictError, InvalidInputError, NotFoundError

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_INTERVAL_SECONDS = 86400


class ProbeInput(BaseModel):
    """A probe as a user describes it; validation here is the one place the rules live."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    protocol: str
    target: str = Field(min_length=1, max_length=2048)
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect: str | None = None
    verify_tls: bool = True
    follow_redirects: bool = True
    # Unset: probes.default_timeout_seconds, or half the interval when that is shorter.
    timeout_seconds: float | None = Field(None, gt=0, le=300)
    interval_seconds: int = Field(60, ge=1, le=MAX_INTERVAL_SECONDS)
    enabled: bool = True
    auto_probe: bool = True
    conditions: dict[str, Any] = Field(default_factory=dict)
    group_id: int | None = None

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        value = value.lower()
        if value not in PROTOCOLS:
            raise ValueError(f"unknown protocol {value!r}; expected one of {', '.join(PROTOCOLS)}")
        return value

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        value = value.upper()
        if value not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {value!r}")
        return value

    @field_validator("conditions")
    @classmethod
    def _valid_conditions(cls, value: dict[str, Any]) -> dict[str, Any]:
        return Conditions.parse(value).model_dump(exclude_none=True)

    @model_validator(mode="after")
    def _consistent(self) -> "ProbeInput":
        try:
            self.target = validate_target(self.protocol, self.target)
        except ValueError as exc:
            raise ValueError(f"target: {exc}") from None
        settings = active_settings().probes
        if self.interval_seconds < settings.min_interval_seconds:
            raise ValueError(f"interval_seconds: must be at least {settings.min_interval_seconds}")
        if self.timeout_seconds is None:
            self.timeout_seconds = min(settings.default_timeout_seconds, self.interval_seconds / 2)
        if self.timeout_seconds >= self.interval_seconds:
            raise ValueError("timeout_seconds: must be shorter than interval_seconds")
        return self


def _validated(data: dict[str, Any]) -> ProbeInput:
    try:
        return ProbeInput(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(part) for part in err["loc"]) or None
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        raise InvalidInputError(message, field=field) from None


def _check_group(tenant_id: int, group_id: int | None) -> None:
    if group_id is None:
        return
    group = db.session.get(ProbeGroup, group_id)
    if group is None or group.tenant_id != tenant_id:
        raise NotFoundError(f"probe group {group_id} not found")


@contextmanager
def _unique_name(name: str) -> Iterator[None]:
    """Turn the database's unique (tenant, name) violation into a ConflictError, leaving nothing behind."""
    try:
        yield
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"a probe named {name!r} already exists in this tenant") from None


def create_probe(tenant_id: int, data: dict[str, Any]) -> Probe:
    fields = _validated(data)
    _check_group(tenant_id, fields.group_id)
    probe = Probe(tenant_id=tenant_id, **fields.model_dump())
    with _unique_name(fields.name):
        db.session.add(probe)
        db.session.flush()  # the id spreads the first slot
        scheduling.reschedule(probe)
        db.session.commit()
    return probe


def update_probe(tenant_id: int, probe_id: int, changes: dict[str, Any]) -> Probe:
    """Apply ``changes``; a new interval or enabled flag takes effect at the next dispatch tick."""
    probe = get_probe(tenant_id, probe_id)
    current = {name: getattr(probe, name) for name in ProbeInput.model_fields}
    fields = _validated({**current, **changes})
    _check_group(tenant_id, fields.group_id)
    timing_changed = any(
        getattr(probe, name) != getattr(fields, name) for name in ("interval_seconds", "enabled", "auto_probe")
    )
    with _unique_name(fields.name):
        for name, value in fields.model_dump().items():
            setattr(probe, name, value)
        if timing_changed:
            scheduling.reschedule(probe)
        db.session.commit()
    return probe


def delete_probe(tenant_id: int, probe_id: int) -> None:
    """Delete a probe with its results, and drop its latest status from the cache."""
    db.session.delete(get_probe(tenant_id, probe_id))
    db.session.commit()
    status_cache.forget(tenant_id, probe_id)


def get_probe(tenant_id: int, probe_id: int) -> Probe:
    probe = db.session.get(Probe, probe_id)
    if probe is None or probe.tenant_id != tenant_id:
        raise NotFoundError(f"probe {probe_id} not found")
    return probe


def list_probes(tenant_id: int | None = None) -> list[Probe]:
    """Probes of one tenant, or of all tenants when ``tenant_id`` is None (operators only)."""
    query = select(Probe).order_by(Probe.id)
    if tenant_id is not None:
        query = query.where(Probe.tenant_id == tenant_id)
    return list(db.session.scalars(query))
