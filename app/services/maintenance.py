"""Maintenance windows: define them, and tell whether a probe's run fell inside one.

A run is in maintenance when its start lies in an occurrence of a window that covers its
probe. The result store marks each result so when it is written (``mark``), and alert
evaluation and reminders read that mark or ask ``covers_now``: which windows exist is read
at most every ``WINDOWS_TTL_SECONDS`` per process, so a window created or changed elsewhere
takes effect within that long (start windows at least that far ahead).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import or_, select

from app.extensions import db
from app.models import MaintenanceWindow, Probe, ProbeGroup, utcnow
from app.models.base import MAX_ID
from app.services.errors import broken_rule, validated
from app.services.tenant_rows import owned
from app.services.unique_names import commit_unique

WINDOWS_TTL_SECONDS = 5.0
# Occurrences are computed this far around the time asked about: a run stored late (the
# database was down) is still judged by the window it started in.
LOOK_AROUND = timedelta(hours=6)
MAX_DURATION_SECONDS = 31 * 86400
# Times a window may name: far from datetime's limits, which the occurrence arithmetic would cross.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
MAX_TARGETS = 1000


class WindowInput(BaseModel):
    """A maintenance window as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"\S", description="Unique within the tenant.")
    comment: str = Field("", max_length=2000)
    starts_at: AwareDatetime = Field(strict=False, description="One-off: the start. Recurring: no occurrence starts before it.")
    ends_at: AwareDatetime | None = Field(None, strict=False, description="One-off: the end (required). Recurring: no occurrence "
                                                            "starts after it; omitted: for good.")
    cron: str | None = Field(None, max_length=100, description="Recurring: when each occurrence starts, a "
                                                               "five-field cron expression in `timezone`.")
    duration_seconds: int | None = Field(None, ge=60, le=MAX_DURATION_SECONDS,
                                         description="Recurring: how long each occurrence lasts.")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone of the cron expression.")
    all_probes: bool = Field(False, description="Covers every probe of the tenant.")
    probe_ids: list[int] = Field(default_factory=list, max_length=MAX_TARGETS, description="Probes it covers.")
    group_ids: list[int] = Field(default_factory=list, max_length=MAX_TARGETS,
                                 description="Probe groups whose probes it covers.")

    @model_validator(mode="after")
    def _consistent(self) -> "WindowInput":
        for field, value in (("starts_at", self.starts_at), ("ends_at", self.ends_at)):
            if value is not None and not EARLIEST <= value < LATEST:
                raise _broken(field, f"must lie between {EARLIEST:%Y} and {LATEST:%Y}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _broken("timezone", f"unknown time zone {self.timezone!r}") from None
        if self.cron is None:
            if self.duration_seconds is not None:
                raise _broken("duration_seconds", "only for a recurring window (with cron)")
            if self.ends_at is None:
                raise _broken("ends_at", "required for a one-off window")
            if self.ends_at <= self.starts_at:
                raise _broken("ends_at", "must be after starts_at")
            if (self.ends_at - self.starts_at).total_seconds() > MAX_DURATION_SECONDS:
                raise _broken("ends_at", "a window lasts at most 31 days")
        else:
            if len(self.cron.split()) != 5 or not croniter.is_valid(self.cron):
                raise _broken("cron", "not a five-field cron expression (minute hour day month weekday)")
            if self.duration_seconds is None:
                raise _broken("duration_seconds", "required for a recurring window")
            if self.ends_at is not None and self.ends_at < self.starts_at:
                raise _broken("ends_at", "must not be before starts_at")
        if not (self.all_probes or self.probe_ids or self.group_ids):
            raise _broken("probe_ids", "name probes or groups, or set all_probes")
        if self.all_probes and (self.probe_ids or self.group_ids):
            raise _broken("all_probes", "covers every probe: leave probe_ids and group_ids empty")
        for field, ids in (("probe_ids", self.probe_ids), ("group_ids", self.group_ids)):
            if any(not 1 <= item <= MAX_ID for item in ids):
                raise _broken(field, "holds an id out of range")
            if len(set(ids)) != len(ids):
                raise _broken(field, "lists an id twice")
        return self


def _broken(field: str, message: str) -> PydanticCustomError:
    return broken_rule("window_rule", field, message)


def _validated(data: dict[str, Any]) -> WindowInput:
    return validated(WindowInput, data)


# --- when a window is open ---------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """What decides when a window is open (a ``MaintenanceWindow`` without its scope)."""

    starts_at: datetime
    ends_at: datetime | None
    cron: str | None = None
    duration_seconds: int | None = None
    timezone: str = "UTC"

    @classmethod
    def of(cls, window: MaintenanceWindow) -> Schedule:
        return cls(window.starts_at, window.ends_at, window.cron, window.duration_seconds, window.timezone)


def occurrences(schedule: Schedule, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The schedule's open intervals ``[from, to)`` that overlap ``[start, end)``, in UTC."""
    if schedule.cron is None:
        assert schedule.ends_at is not None
        if schedule.starts_at < end and schedule.ends_at > start:
            return [(schedule.starts_at, schedule.ends_at)]
        return []
    assert schedule.duration_seconds is not None
    duration = timedelta(seconds=schedule.duration_seconds)
    zone = ZoneInfo(schedule.timezone)
    last_start = schedule.ends_at

    def allowed(opens: datetime) -> bool:
        return opens >= schedule.starts_at and (last_start is None or opens <= last_start)

    found = []
    # Of the occurrences that began by ``start`` (at it included: croniter's previous is strictly
    # earlier), the latest is the one that lasts longest past it.
    before = croniter(schedule.cron, (start + timedelta(microseconds=1)).astimezone(zone),
                      ret_type=datetime).get_prev(datetime)
    before = before.astimezone(timezone.utc)
    if allowed(before) and before + duration > start:
        found.append((before, before + duration))
    times = croniter(schedule.cron, start.astimezone(zone), ret_type=datetime)
    while True:
        opens = times.get_next(datetime).astimezone(timezone.utc)
        if opens >= end or (last_start is not None and opens > last_start):
            return found
        if allowed(opens) and opens > before:
            found.append((opens, opens + duration))


def open_at(schedule: Schedule, at: datetime) -> tuple[datetime, datetime] | None:
    """The occurrence open at ``at``, if any."""
    for opens, closes in occurrences(schedule, at, at + timedelta(microseconds=1)):
        if opens <= at < closes:
            return opens, closes
    return None


# --- which runs are in maintenance -------------------------------------------------------------


@dataclass(frozen=True)
class _Coverage:
    """One window as the marking needs it: its open intervals near now, and its probes."""

    intervals: tuple[tuple[datetime, datetime], ...]
    probe_ids: frozenset[int] | None  # None: every probe of the tenant


_lock = threading.Lock()
_coverage: tuple[float, dict[int, list[_Coverage]]] = (float("-inf"), {})


def _read_coverage() -> dict[int, list[_Coverage]]:
    """Every tenant's windows with an occurrence near now: three statements, however many windows."""
    from app.models import maintenance_window_groups as groups, maintenance_window_probes as probes

    now = utcnow()
    start, end = now - LOOK_AROUND, now + LOOK_AROUND
    with db.engine.connect() as connection:
        windows = connection.execute(
            select(MaintenanceWindow.__table__).where(
                MaintenanceWindow.starts_at < end,
                # A recurring window's ends_at is its last start: that occurrence may still be open.
                or_(MaintenanceWindow.ends_at.is_(None),
                    MaintenanceWindow.ends_at > start - timedelta(seconds=MAX_DURATION_SECONDS)))).all()
        intervals = {window.id: occurrences(Schedule(window.starts_at, window.ends_at, window.cron,
                                                     window.duration_seconds, window.timezone), start, end)
                     for window in windows}
        scoped = [window.id for window in windows if intervals[window.id] and not window.all_probes]
        covered: dict[int, set[int]] = {window_id: set() for window_id in scoped}
        if scoped:
            named = select(probes.c.window_id, probes.c.probe_id).where(probes.c.window_id.in_(scoped))
            grouped = (select(groups.c.window_id, Probe.id).join(Probe, Probe.group_id == groups.c.group_id)
                       .where(groups.c.window_id.in_(scoped)))
            for window_id, probe_id in connection.execute(named.union(grouped)):
                covered[window_id].add(probe_id)
    by_tenant: dict[int, list[_Coverage]] = {}
    for window in windows:
        if intervals[window.id]:
            probe_ids = None if window.all_probes else frozenset(covered[window.id])
            by_tenant.setdefault(window.tenant_id, []).append(_Coverage(tuple(intervals[window.id]), probe_ids))
    return by_tenant


def _windows() -> dict[int, list[_Coverage]]:
    global _coverage
    if time.monotonic() - _coverage[0] < WINDOWS_TTL_SECONDS:
        return _coverage[1]
    with _lock:
        if time.monotonic() - _coverage[0] >= WINDOWS_TTL_SECONDS:
            _coverage = (time.monotonic(), _read_coverage())
        return _coverage[1]


def forget() -> None:
    """Read the windows again on the next question (they were just changed in this process)."""
    global _coverage
    _coverage = (float("-inf"), {})


def _covered(windows: dict[int, list[_Coverage]], tenant_id: int, probe_id: int, at: datetime) -> bool:
    return any((coverage.probe_ids is None or probe_id in coverage.probe_ids)
               and any(opens <= at < closes for opens, closes in coverage.intervals)
               for coverage in windows.get(tenant_id, ()))


def covers_now(tenant_id: int, probe_id: int) -> bool:
    """A window covering ``probe_id`` is open now."""
    return _covered(_windows(), tenant_id, probe_id, utcnow())


def mark(rows: Iterable[dict[str, Any]]) -> None:
    """Set ``in_maintenance`` on probe_results rows about to be written (by their start)."""
    windows = _windows()
    for row in rows:
        row["in_maintenance"] = _covered(windows, row["tenant_id"], row["probe_id"], row["started_at"])


# --- the tenant's windows -----------------------------------------------------------------------


def _apply(window: MaintenanceWindow, tenant_id: int, fields: WindowInput) -> None:
    window.probes = [owned(Probe, tenant_id, probe_id, "probe") for probe_id in fields.probe_ids]
    window.groups = [owned(ProbeGroup, tenant_id, group_id, "probe group") for group_id in fields.group_ids]
    for name, value in fields.model_dump(exclude={"probe_ids", "group_ids"}).items():
        setattr(window, name, value)


def _commit(name: str) -> None:
    commit_unique("a maintenance window", name)
    forget()


def create_window(tenant_id: int, data: dict[str, Any]) -> MaintenanceWindow:
    fields = _validated(data)
    window = MaintenanceWindow(tenant_id=tenant_id)
    _apply(window, tenant_id, fields)
    db.session.add(window)
    _commit(fields.name)
    return window


def get_window(tenant_id: int, window_id: int) -> MaintenanceWindow:
    window: MaintenanceWindow = owned(MaintenanceWindow, tenant_id, window_id, "maintenance window")
    return window


def list_windows(tenant_id: int | None) -> list[MaintenanceWindow]:
    """The tenant's windows (``None``: every tenant's, for the platform's CLI)."""
    query = select(MaintenanceWindow).order_by(MaintenanceWindow.id)
    if tenant_id is not None:
        query = query.where(MaintenanceWindow.tenant_id == tenant_id)
    return list(db.session.scalars(query))


def window_fields(window: MaintenanceWindow) -> dict[str, Any]:
    """The window as ``WindowInput`` fields (what an update starts from)."""
    fields = {name: getattr(window, name) for name in WindowInput.model_fields if name not in ("probe_ids", "group_ids")}
    return fields | {"probe_ids": [probe.id for probe in window.probes],
                     "group_ids": [group.id for group in window.groups]}


def update_window(tenant_id: int, window_id: int, changes: dict[str, Any]) -> MaintenanceWindow:
    window = get_window(tenant_id, window_id)
    fields = _validated({**window_fields(window), **changes})
    _apply(window, tenant_id, fields)
    _commit(fields.name)
    return window


def delete_window(tenant_id: int, window_id: int) -> None:
    db.session.delete(get_window(tenant_id, window_id))
    db.session.commit()
    forget()


@dataclass(frozen=True)
class WindowStatus:
    open_now: bool
    next_occurrence: tuple[datetime, datetime] | None  # the one open now, or else the next to come


def status(window: MaintenanceWindow, now: datetime | None = None) -> WindowStatus:
    """Whether the window is open, and its current or next occurrence (for listings)."""
    now = now or utcnow()
    schedule = Schedule.of(window)
    current = open_at(schedule, now)
    if current is not None:
        return WindowStatus(True, current)
    if schedule.cron is None:
        upcoming = (schedule.starts_at, schedule.ends_at) if schedule.starts_at > now else None
        return WindowStatus(False, upcoming)  # type: ignore[arg-type]
    assert schedule.duration_seconds is not None
    after = max(now, schedule.starts_at - timedelta(microseconds=1))  # croniter's next is strictly later
    opens = croniter(schedule.cron, after.astimezone(ZoneInfo(schedule.timezone)),
                     ret_type=datetime).get_next(datetime).astimezone(timezone.utc)
    if schedule.ends_at is not None and opens > schedule.ends_at:
        return WindowStatus(False, None)
    return WindowStatus(False, (opens, opens + timedelta(seconds=schedule.duration_seconds)))
