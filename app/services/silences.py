"""Silences: an operator's ad-hoc mute of the alerts of some probes, groups or rules, until an end time.

A silence names probes, probe groups and/or alert rules by id. It matches an alert when
every kind it names matches (the alert's probe among ``probe_ids`` *and* its probe's group
among ``group_ids`` *and* its rule among ``rule_ids``); within a kind any listed id will
do, and a kind left empty matches anything. It is ``pending`` before ``starts_at``,
``active`` from then until ``ends_at`` and ``expired`` after; expiring one ends it now and
keeps it for the history.

Ids stay on a silence as they were given: a probe, group or rule deleted later just stops
matching, so a silence never widens by losing a matcher.

The evaluator asks ``active`` for every batch: which silences exist is read at most every
``SILENCES_TTL_SECONDS`` per process (one statement for the tenants not read lately), so a
silence created, changed or expired in another process applies within that long;
changes made in this process apply at once (``forget``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Collection, Iterable, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import case, literal, select, update

from app.extensions import db
from app.models import Alert, AlertRule, Probe, ProbeGroup, Silence, utcnow
from app.models.alerts import ALERT_STATUSES
from app.models.base import MAX_ID
from app.services.errors import ConflictError, broken_rule, validated
from app.services.tenant_rows import owned

SILENCES_TTL_SECONDS = 5.0
# The cache holds the silences open at some time this far either side of when it was read, so
# an evaluator asking about a result that started a while ago is answered from it too.
LOOK_AROUND = timedelta(hours=6)
_CACHED_SPAN = LOOK_AROUND - timedelta(minutes=1)
MAX_LENGTH = timedelta(days=365)
MAX_IDS = 100
# Times a silence may name: far from datetime's limits, which the arithmetic would cross.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
OPEN_STATUSES = tuple(status for status in ALERT_STATUSES if status != "resolved")
STATES = ("active", "pending", "expired")
Filter = Literal["active", "pending", "expired", "current", "all"]


def _iso_time(value: Any) -> Any:
    """Only an ISO 8601 text (or a datetime): pydantic alone would read a number as a Unix time."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or value.strip().lstrip("+-").replace(".", "", 1).isdecimal():
        raise ValueError("expected an ISO 8601 time with a time zone, e.g. 2026-12-01T08:00:00Z")
    return value


Time = Annotated[AwareDatetime, BeforeValidator(_iso_time), Field(strict=False)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class SilenceChanges(BaseModel):
    """What may change on a silence; the whole silence is validated again."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    comment: str | None = Field(None, min_length=1, max_length=2000, pattern=r"\S")
    ends_at: Time | None = Field(None, description="ISO 8601 with a time zone; after now and after starts_at.")
    probe_ids: list[Id] | None = Field(None, max_length=MAX_IDS)
    group_ids: list[Id] | None = Field(None, max_length=MAX_IDS)
    rule_ids: list[Id] | None = Field(None, max_length=MAX_IDS)


class SilenceInput(BaseModel):
    """A silence as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    comment: str = Field(min_length=1, max_length=2000, pattern=r"\S", description="Why, for the people on call.")
    starts_at: Time | None = Field(None, description="ISO 8601 with a time zone; omitted: now.")
    ends_at: Time = Field(description="ISO 8601 with a time zone; after now, and at most 365 days after starts_at.")
    probe_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                                description="Matches alerts of these probes (empty: of any probe).")
    group_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                                description="Matches alerts of probes in these groups (empty: in any group or none).")
    rule_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                               description="Matches alerts of these rules (empty: of any rule).")

    @model_validator(mode="after")
    def _consistent(self) -> "SilenceInput":
        now = utcnow()
        for field, value in (("starts_at", self.starts_at), ("ends_at", self.ends_at)):
            if value is not None and not EARLIEST <= value < LATEST:
                raise _broken(field, f"must lie between {EARLIEST:%Y} and {LATEST:%Y}")
        starts_at = self.starts_at or now
        if self.ends_at <= now:
            raise _broken("ends_at", "must be in the future")
        if self.ends_at <= starts_at:
            raise _broken("ends_at", "must be after starts_at")
        if self.ends_at - starts_at > MAX_LENGTH:
            raise _broken("ends_at", f"a silence lasts at most {MAX_LENGTH.days} days")
        if not (self.probe_ids or self.group_ids or self.rule_ids):
            raise _broken("probe_ids", "name at least one probe, group or rule (probe_ids, group_ids, rule_ids)")
        for field, ids in (("probe_ids", self.probe_ids), ("group_ids", self.group_ids),
                           ("rule_ids", self.rule_ids)):
            if len(set(ids)) != len(ids):
                raise _broken(field, "lists an id twice")
        return self


def _broken(field: str, message: str) -> PydanticCustomError:
    return broken_rule("silence_rule", field, message)


# --- matching ------------------------------------------------------------------------------------


class Matchers(Protocol):
    """What matching reads of a silence: a ``Silence`` row or an ``ActiveSilence``."""

    @property
    def probe_ids(self) -> Collection[int]: ...

    @property
    def group_ids(self) -> Collection[int]: ...

    @property
    def rule_ids(self) -> Collection[int]: ...


@dataclass(frozen=True)
class ActiveSilence:
    """A silence as the cache keeps it: readable outside any session, ids as sets."""

    id: int
    tenant_id: int
    probe_ids: frozenset[int]
    group_ids: frozenset[int]
    rule_ids: frozenset[int]
    starts_at: datetime
    ends_at: datetime


def matches(silence: Matchers, probe_id: int, group_id: int | None, rule_id: int) -> bool:
    """The silence covers an alert of ``rule_id`` for ``probe_id``, whose group is ``group_id``.

    Whether it is open is not asked here (``active`` gives the open ones). A silence naming
    nothing matches nothing: such a row cannot be written, and must never mute everything.
    """
    if not (silence.probe_ids or silence.group_ids or silence.rule_ids):
        return False
    return ((not silence.probe_ids or probe_id in silence.probe_ids)
            and (not silence.group_ids or (group_id is not None and group_id in silence.group_ids))
            and (not silence.rule_ids or rule_id in silence.rule_ids))


def state_of(silence: Silence | ActiveSilence, at: datetime | None = None) -> str:
    """``pending``, ``active`` or ``expired`` at ``at`` (default now)."""
    at = at or utcnow()
    if at < silence.starts_at:
        return "pending"
    return "active" if at < silence.ends_at else "expired"


_lock = threading.Lock()
# tenant id -> (when read, monotonic; the tenant's silences open at some time within LOOK_AROUND of then)
_cache: dict[int, tuple[float, tuple[ActiveSilence, ...]]] = {}
_generation = 0  # moved on by forget: a read that started before must not be kept


def _read(tenant_ids: Collection[int], start: datetime, end: datetime) -> dict[int, list[ActiveSilence]]:
    """The tenants' silences open at some time in ``[start, end]``, by tenant: one statement, on a
    connection of its own (no session transaction is left open in the caller)."""
    table = Silence.__table__
    query = (select(table.c.id, table.c.tenant_id, table.c.probe_ids, table.c.group_ids, table.c.rule_ids,
                    table.c.starts_at, table.c.ends_at)
             .where(table.c.tenant_id.in_(sorted(tenant_ids)), table.c.ends_at > start, table.c.starts_at <= end)
             .order_by(table.c.id))
    found: dict[int, list[ActiveSilence]] = {tenant_id: [] for tenant_id in tenant_ids}
    with db.engine.connect() as connection:
        for row in connection.execute(query):
            found[row.tenant_id].append(ActiveSilence(
                row.id, row.tenant_id, frozenset(row.probe_ids or ()), frozenset(row.group_ids or ()),
                frozenset(row.rule_ids or ()), row.starts_at, row.ends_at))
    return found


def _near_now(tenant_ids: frozenset[int], now: datetime) -> list[ActiveSilence]:
    """The tenants' silences from the cache, reading (in one statement) those not read lately."""
    entries = {tenant_id: _cache.get(tenant_id) for tenant_id in tenant_ids}
    stale = {tenant_id for tenant_id, entry in entries.items()
             if entry is None or time.monotonic() - entry[0] >= SILENCES_TTL_SECONDS}
    if stale:
        with _lock:
            generation, read_at = _generation, time.monotonic()
            for tenant_id, rows in _read(stale, now - LOOK_AROUND, now + LOOK_AROUND).items():
                entries[tenant_id] = (read_at, tuple(rows))
                if generation == _generation:
                    _cache[tenant_id] = entries[tenant_id]
    return [silence for entry in entries.values() if entry is not None for silence in entry[1]]


def active(tenant_ids: Iterable[int], at: datetime | None = None) -> list[ActiveSilence]:
    """The silences of ``tenant_ids`` open at ``at`` (default now): ``starts_at <= at < ends_at``.

    At most one statement, none when every tenant was read in the last
    ``SILENCES_TTL_SECONDS``; a time more than ``LOOK_AROUND`` from now is read directly.
    Sorted by id.
    """
    wanted = frozenset(tenant_ids)
    if not wanted:
        return []
    now = utcnow()
    at = at or now
    if abs(at - now) <= _CACHED_SPAN:
        candidates = _near_now(wanted, now)
    else:
        candidates = [silence for rows in _read(wanted, at, at).values() for silence in rows]
    return sorted((silence for silence in candidates if silence.starts_at <= at < silence.ends_at),
                  key=lambda silence: silence.id)


def forget() -> None:
    """Read the silences again on the next question (they were just changed in this process)."""
    global _generation
    _generation += 1
    _cache.clear()


def _groups_of(probe_ids: set[int]) -> dict[int, int | None]:
    if not probe_ids:
        return {}
    return dict(db.session.execute(select(Probe.id, Probe.group_id).where(Probe.id.in_(probe_ids))).tuples().all())


def covering(tenant_id: int, alerts: Iterable[Alert], *, fresh: bool = False) -> dict[int, list[int]]:
    """For each of the tenant's ``alerts``: the ids of the silences open now that match it.

    One statement for the probes' groups (none if no open silence names a group), plus the
    silences themselves: from the cache, or read now with ``fresh`` (what the API shows).
    """
    rows = [alert for alert in alerts if alert.tenant_id == tenant_id]
    if not rows:
        return {}
    now = utcnow()
    silences = (_read([tenant_id], now, now)[tenant_id] if fresh else active([tenant_id], now))
    silences = [silence for silence in silences if silence.starts_at <= now < silence.ends_at]
    covered: dict[int, list[int]] = {alert.id: [] for alert in rows}
    if not silences:
        return covered
    groups = _groups_of({alert.probe_id for alert in rows}) if any(s.group_ids for s in silences) else {}
    for alert in rows:
        covered[alert.id] = [silence.id for silence in silences
                             if matches(silence, alert.probe_id, groups.get(alert.probe_id), alert.rule_id)]
    return covered


def covered_alerts(tenant_id: int, silences: Iterable[Silence]) -> dict[int, list[int]]:
    """For each of the tenant's ``silences``: the open alerts (firing, acknowledged, suppressed) it
    covers now, by id; empty for a silence that is not active. One statement."""
    rows = list(silences)
    now = utcnow()
    live = [silence for silence in rows if silence.tenant_id == tenant_id and state_of(silence, now) == "active"]
    covered: dict[int, list[int]] = {silence.id: [] for silence in rows}
    if not live:
        return covered
    open_alerts = db.session.execute(
        select(Alert.id, Alert.probe_id, Alert.rule_id, Probe.group_id).join(Probe, Probe.id == Alert.probe_id)
        .where(Alert.tenant_id == tenant_id, Alert.status.in_(OPEN_STATUSES)).order_by(Alert.id)).all()
    for silence in live:
        covered[silence.id] = [alert.id for alert in open_alerts
                               if matches(silence, alert.probe_id, alert.group_id, alert.rule_id)]
    return covered


# --- the tenant's silences -------------------------------------------------------------------------

_KINDS = (("probe_ids", Probe, "probe"), ("group_ids", ProbeGroup, "probe group"), ("rule_ids", AlertRule,
                                                                                     "alert rule"))


def _check_owned(tenant_id: int, fields: SilenceInput, already: Silence | None = None) -> None:
    """Every id the silence names is the tenant's (``<what> <id> not found`` otherwise).

    Ids it held already are not asked again: one deleted since just stops matching, and
    changing the comment of such a silence is still allowed.
    """
    for field, model, what in _KINDS:
        kept = set(getattr(already, field)) if already is not None else set()
        for item_id in getattr(fields, field):
            if item_id not in kept:
                owned(model, tenant_id, item_id, what)


def create_silence(tenant_id: int, data: dict[str, Any], created_by: int | None = None,
                   created_by_name: str = "") -> Silence:
    """A new silence; ``created_by``/``created_by_name``: the user who asked for it (the CLI: a name only)."""
    fields = validated(SilenceInput, data)
    _check_owned(tenant_id, fields)
    silence = Silence(tenant_id=tenant_id, comment=fields.comment, probe_ids=fields.probe_ids,
                      group_ids=fields.group_ids, rule_ids=fields.rule_ids, starts_at=fields.starts_at or utcnow(),
                      ends_at=fields.ends_at, created_by=created_by, created_by_name=created_by_name[:100])
    db.session.add(silence)
    db.session.commit()
    forget()
    return silence


def get_silence(tenant_id: int, silence_id: int) -> Silence:
    silence: Silence = owned(Silence, tenant_id, silence_id, "silence")
    return silence


def list_silences(tenant_id: int, state: Filter = "all", limit: int = 100,
                  before_id: int | None = None) -> list[Silence]:
    """The tenant's silences, newest first; ``state`` ``current`` means active or pending."""
    now = utcnow()
    query = select(Silence).where(Silence.tenant_id == tenant_id)
    if state == "active":
        query = query.where(Silence.starts_at <= now, Silence.ends_at > now)
    elif state == "pending":
        query = query.where(Silence.starts_at > now)
    elif state == "expired":
        query = query.where(Silence.ends_at <= now)
    elif state == "current":
        query = query.where(Silence.ends_at > now)
    if before_id is not None:
        query = query.where(Silence.id < before_id)
    return list(db.session.scalars(query.order_by(Silence.id.desc()).limit(limit)))


def silence_fields(silence: Silence) -> dict[str, Any]:
    """The silence as ``SilenceInput`` fields (what an update starts from)."""
    return {name: getattr(silence, name) for name in SilenceInput.model_fields}


def _ended(silence_id: int) -> ConflictError:
    return ConflictError(f"silence {silence_id} has expired; create a new one")


def update_silence(tenant_id: int, silence_id: int, changes: dict[str, Any]) -> Silence:
    """Change the comment, the end or the matchers of a silence that has not expired."""
    silence = get_silence(tenant_id, silence_id)
    given = validated(SilenceChanges, changes).model_dump(exclude_unset=True)
    now = utcnow()
    if silence.ends_at <= now:
        raise _ended(silence_id)
    fields = validated(SilenceInput, {**silence_fields(silence), **given})
    _check_owned(tenant_id, fields, already=silence)
    values = fields.model_dump(include=set(SilenceChanges.model_fields))
    # Compare-and-set on the end: an expiry that came in meanwhile is not undone.
    changed = db.session.execute(update(Silence).where(Silence.id == silence.id, Silence.ends_at > now)
                                 .values(**values).execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise _ended(silence_id)
    db.session.commit()
    forget()
    return silence


def expire_silence(tenant_id: int, silence_id: int) -> Silence:
    """End the silence now (kept, for the history); a pending one never starts. An expired one is a conflict."""
    silence = get_silence(tenant_id, silence_id)
    now = utcnow()
    changed = db.session.execute(
        update(Silence).where(Silence.id == silence.id, Silence.ends_at > now)
        .values(ends_at=now, starts_at=case((Silence.starts_at > now, literal(now, Silence.starts_at.type)),
                                            else_=Silence.starts_at))
        .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise ConflictError(f"silence {silence_id} has already expired")
    db.session.commit()
    forget()
    return silence


def delete_silence(tenant_id: int, silence_id: int) -> None:
    db.session.delete(get_silence(tenant_id, silence_id))
    db.session.commit()
    forget()
