"""Create, change, list and delete probes, always within one tenant.

A probe's credentials (the values of its secret headers) are stored apart from its
spec, encrypted (``Probe.secrets``): the spec names them with the mask as their value,
so every read of a spec — listing, showing, logging — holds no credential. They are
decrypted only to change the spec and to run the probe (``probe_runs``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.core.config import active_settings
from app.extensions import db
from app.models import Probe, ProbeGroup
from app.models.base import MAX_ID
from app.probes import PROTOCOLS, SPEC_MODELS, SpecOptionsUnion, spec_model, stored_spec, validate_target
from app.probes.conditions import Conditions
from app.probes.base import with_secrets
from app.probes.urls import mask_credentials
from app.services import probe_dependencies, scheduling, status_cache
from app.services.masking import restore_masked
from app.services.errors import ConflictError, NotFoundError, broken_rule, validated

MAX_INTERVAL_SECONDS = 86400


_TARGETS = "; ".join(f"{'/'.join(model.protocols())}: {model.TARGET_HELP}" for model in SPEC_MODELS)


class ProbeInput(BaseModel):
    """A probe as a user describes it; validation here is the one place the rules live.

    ``spec`` holds the protocol's own fields (its spec model in ``app.probes``); the
    probe's ``protocol`` selects the model, so ``spec.protocol`` need not be given.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"\S", description="Unique within the tenant.")
    protocol: Literal[PROTOCOLS]  # type: ignore[valid-type]
    target: str = Field(min_length=1, max_length=2048, description=_TARGETS)
    # Never None once validated: an omitted spec is the protocol's defaults (``_spec_of_protocol``).
    spec: SpecOptionsUnion = Field(  # type: ignore[valid-type]
        None, description="The protocol's own fields (method and headers for http, the payload for tcp, …); "
                          "omitted: the protocol's defaults.")
    timeout_seconds: float | None = Field(
        None, ge=0.1, le=300,
        description="Seconds; below interval_seconds. Default: probes.default_timeout_seconds or half the interval.")
    interval_seconds: int = Field(60, ge=1, le=MAX_INTERVAL_SECONDS,
                                  description="Seconds between scheduled runs (at least probes.min_interval_seconds).")
    enabled: bool = True
    auto_probe: bool = Field(True, description="Run on the schedule; false: only when run by hand.")
    conditions: Conditions = Field(default_factory=Conditions,
                                   description="What makes a run a success, beyond reaching the target.")
    group_id: int | None = Field(None, ge=1, le=MAX_ID)
    depends_on: list[probe_dependencies.ParentId] = Field(
        default_factory=list, max_length=probe_dependencies.MAX_PARENTS,
        description="Probes of the tenant this one depends on: while one of them is down, this probe's alerts "
                    "open suppressed. No cycles. A change replaces the list.")

    @model_validator(mode="before")
    @classmethod
    def _spec_of_protocol(cls, data: Any) -> Any:
        """Give ``spec`` the probe's protocol (the union's discriminator), and point misplaced fields to it."""
        if not isinstance(data, dict):
            return data
        protocol = data.get("protocol")
        if isinstance(protocol, str):
            protocol = protocol.strip().lower()
            if protocol not in PROTOCOLS:
                raise _rule_broken("protocol", f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
            own = set(spec_model(protocol).model_fields) - set(cls.model_fields)
            if misplaced := sorted(own & set(data)):
                raise _rule_broken(misplaced[0], f"belongs in spec (spec.{misplaced[0]})")
            spec = data.get("spec")
            spec = {} if spec is None else spec
            if isinstance(spec, dict):
                data = {**data, "protocol": protocol, "spec": {**spec, "protocol": protocol}}
        return data

    @field_serializer("spec")
    def _stored_spec(self, value: Any) -> dict[str, Any]:
        return value.model_dump(mode="json", exclude={"protocol"})

    @field_serializer("conditions")
    def _stored_conditions(self, value: Conditions) -> dict[str, Any]:
        return value.model_dump(exclude_none=True)

    @model_validator(mode="after")
    def _consistent(self) -> "ProbeInput":
        try:
            self.target = validate_target(self.protocol, self.target)
        except ValueError as exc:
            raise _rule_broken("target", str(exc)) from None
        settings = active_settings().probes
        if self.interval_seconds < settings.min_interval_seconds:
            raise _rule_broken("interval_seconds", f"must be at least {settings.min_interval_seconds}")
        if self.timeout_seconds is None:
            self.timeout_seconds = min(settings.default_timeout_seconds, self.interval_seconds / 2)
        if self.timeout_seconds >= self.interval_seconds:
            raise _rule_broken("timeout_seconds", "must be shorter than interval_seconds")
        return self


def _rule_broken(field: str, message: str) -> PydanticCustomError:
    """A rule over the whole probe, blaming one field (see ``describe_validation_error``)."""
    return broken_rule("probe_rule", field, message)


# Fields of ``ProbeInput`` that are not columns of ``probes``: the parents are rows of ``probe_dependencies``.
_NOT_COLUMNS = {"depends_on"}


def _validated(data: dict[str, Any]) -> ProbeInput:
    return validated(ProbeInput, data)


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
    parents = probe_dependencies.check_parents(tenant_id, None, fields.depends_on)
    probe = Probe(tenant_id=tenant_id, **_sealed(fields))
    with _unique_name(fields.name):
        db.session.add(probe)
        db.session.flush()  # the id spreads the first slot
        scheduling.reschedule(probe)
        if parents:
            probe_dependencies.replace_parents(tenant_id, probe.id, parents)
        db.session.commit()
    status_cache.touched(tenant_id, [probe.id])
    return probe


def _sealed(fields: ProbeInput) -> dict[str, Any]:
    """The columns of a validated probe, its credentials moved from ``spec`` to ``secrets``."""
    values = fields.model_dump(exclude=_NOT_COLUMNS)
    timeout = cast(float, fields.timeout_seconds)  # never None once validated (``ProbeInput._consistent``)
    spec = stored_spec(fields.protocol, fields.target, timeout, values["spec"])
    values["spec"], values["secrets"] = spec.sealed()
    return values


def shown_target(probe: Probe) -> str:
    """The target as it may be shown: a URL's password and credential query values read ``MASK``."""
    return mask_credentials(probe.target)


def shown_spec(probe: Probe) -> dict[str, Any]:
    """The probe's spec as it may be shown: credentials (e.g. secret header values) read ``MASK``."""
    try:
        return stored_spec(probe.protocol, probe.target, probe.timeout_seconds, probe.spec).shown()
    except ValueError:  # saved by a version with other rules; shown as stored, credentials withheld
        return {name: value for name, value in (probe.spec or {}).items() if name != "headers"}


def _merged_spec(stored: dict[str, Any], protocol_changes: bool, changes: dict[str, Any]) -> Any:
    """The spec a change asks for: its fields over the stored ones, or, if the protocol changes, its own."""
    new = changes.get("spec")
    if protocol_changes:
        return new
    if not isinstance(new, dict):
        return stored if new is None else new
    return {**stored, **restore_masked(new, stored)}


def update_probe(tenant_id: int, probe_id: int, changes: dict[str, Any]) -> Probe:
    """Apply ``changes``; a new interval or enabled flag takes effect at the next dispatch tick.

    ``spec`` changes only the fields it names (the rest keep their values) unless the
    protocol changes too, when it is the new protocol's spec. A credential sent back as
    shown (``MASK``) keeps its stored value, and so does a target sent back as shown (its URL
    password masked). The credentials are decrypted only when the
    change edits the spec; other changes (enable, rename, interval) leave them as stored.
    ``depends_on``, when given, replaces the probe's parents (``probe_dependencies``).
    """
    probe = get_probe(tenant_id, probe_id)
    protocol_changes = changes.get("protocol", probe.protocol) != probe.protocol
    touches_spec = protocol_changes or changes.get("spec") is not None
    # Masks sent back are restored from the stored credentials; a new protocol starts afresh.
    merges = touches_spec and not protocol_changes
    stored = with_secrets(probe.spec, probe.secrets) if merges else dict(probe.spec or {})
    current = {name: getattr(probe, name) for name in ProbeInput.model_fields if name not in _NOT_COLUMNS}
    if changes.get("target") == shown_target(probe):  # sent back as shown: the stored credentials stay
        changes = {**changes, "target": probe.target}
    fields = _validated({**current, **changes, "spec": _merged_spec(stored, protocol_changes, changes)})
    _check_group(tenant_id, fields.group_id)
    # Omitted, the parents stay; given, the list replaces them.
    parents = (probe_dependencies.check_parents(tenant_id, probe.id, fields.depends_on)
               if "depends_on" in changes else None)
    timing_changed = any(
        getattr(probe, name) != getattr(fields, name) for name in ("interval_seconds", "enabled", "auto_probe")
    )
    # Untouched, the stored spec is still sealed (masks in place of credentials): it is
    # written back as validated and ``secrets`` keeps its value.
    values = _sealed(fields) if touches_spec else fields.model_dump(exclude=_NOT_COLUMNS)
    with _unique_name(fields.name):
        for name, value in values.items():
            setattr(probe, name, value)
        if timing_changed:
            scheduling.reschedule(probe)
        if parents is not None:
            probe_dependencies.replace_parents(tenant_id, probe.id, parents)
        db.session.commit()
    status_cache.touched(tenant_id, [probe.id])
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


STATUS_FILTERS = ("success", "failed", "timeout", "error", "never_run")


@dataclass(frozen=True)
class ProbeFilter:
    group_id: int | None = None
    protocol: str | None = None
    enabled: bool | None = None
    status: str | None = None  # latest result's status, or "never_run"


def search_probes(tenant_id: int, filters: ProbeFilter, page: int = 1,
                  per_page: int = 50) -> tuple[list[tuple[Probe, dict[str, Any] | None]], int]:
    """One page of a tenant's probes, each with its latest status, and the total that match.

    The latest status lives in the Redis cache, not in the probes table, so a status
    filter first narrows the matching ids (one id query, one cache read), then loads
    only the page's rows.
    """
    matching = [Probe.tenant_id == tenant_id]
    if filters.group_id is not None:
        matching.append(Probe.group_id == filters.group_id)
    if filters.protocol is not None:
        matching.append(Probe.protocol == filters.protocol)
    if filters.enabled is not None:
        matching.append(Probe.enabled == filters.enabled)
    offset = (page - 1) * per_page
    if filters.status is None:
        total = db.session.scalar(select(func.count(Probe.id)).where(*matching)) or 0
        rows = list(db.session.scalars(
            select(Probe).where(*matching).order_by(Probe.id).offset(offset).limit(per_page)))
        latest = status_cache.latest(tenant_id, [probe.id for probe in rows])
        return [(probe, latest.get(probe.id)) for probe in rows], total
    ids = list(db.session.scalars(select(Probe.id).where(*matching).order_by(Probe.id)))
    latest = status_cache.latest(tenant_id, ids)
    ids = [pid for pid in ids if (latest[pid]["status"] if pid in latest else "never_run") == filters.status]
    by_id = {probe.id: probe for probe in db.session.scalars(
        select(Probe).where(Probe.id.in_(ids[offset:offset + per_page])))}
    return [(by_id[pid], latest.get(pid)) for pid in ids[offset:offset + per_page] if pid in by_id], len(ids)


def owned_ids(tenant_id: int, probe_ids: list[int]) -> set[int]:
    """Which of ``probe_ids`` exist in the tenant."""
    if not probe_ids:
        return set()
    return set(db.session.scalars(select(Probe.id).where(Probe.tenant_id == tenant_id, Probe.id.in_(probe_ids))))


def list_probes(tenant_id: int | None = None) -> list[Probe]:
    """Probes of one tenant, or of all tenants when ``tenant_id`` is None (operators only)."""
    query = select(Probe).order_by(Probe.id)
    if tenant_id is not None:
        query = query.where(Probe.tenant_id == tenant_id)
    return list(db.session.scalars(query))
