"""Scheduled slots that ended without a stored result, recorded by name, and their totals.

Every scheduled slot ends as a stored result or as exactly one of these:

- ``missed``: nothing dispatched it (no dispatcher ran, or it held back because
  ``network_probes`` was over ``probes.max_queue_backlog``); counted when the probe is
  next claimed, which runs the latest slot once instead of replaying the others;
- ``expired``: claimed and published, but no worker started it before its probe's next slot;
- ``lost``: a worker started it and died (or never wrote it), and it could not be run
  again while the slot was current;
- ``unwritten``: measured, but the database was down for longer than the worker's
  buffer (``probes.write_buffer_max_rows``) could hold.

A result that arrives after its slot was counted (a worker's buffered write after a long
database outage) removes the count again, so a slot is never both stored and lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from redis.exceptions import RedisError
from sqlalchemy import Delete, delete, func, select

from app.core.redis_client import get_redis
from app.extensions import db
from app.models import ProbeLease, ProbeResult, ProbeRunLoss
from app.services.bulk import KeyList, dialect_name, per_dialect
from app.services.scheduling import ClaimedRun

log = logging.getLogger(__name__)

REASONS = ("missed", "expired", "lost", "unwritten")
UNWRITTEN_KEY = "admin_mit:runs:unwritten"


@dataclass(frozen=True)
class Loss:
    tenant_id: int
    probe_id: int
    reason: str
    slot_ms: int
    slots: int = 1


def record(losses: Iterable[Loss], now: datetime | None = None) -> int:
    """Add loss rows in the caller's transaction; returns the number of slots recorded."""
    recorded_at = now or datetime.now(timezone.utc)
    rows = [{"tenant_id": loss.tenant_id, "probe_id": loss.probe_id, "reason": loss.reason,
             "slot_ms": loss.slot_ms, "slots": loss.slots, "recorded_at": recorded_at} for loss in losses]
    if rows:
        db.session.execute(ProbeRunLoss.__table__.insert(), rows)
    return sum(row["slots"] for row in rows)


def missed(runs: Iterable[ClaimedRun]) -> list[Loss]:
    return [Loss(run.tenant_id, run.probe_id, "missed", run.first_missed_ms, run.missed)
            for run in runs if run.missed > 0]


_LOSSES = ProbeRunLoss.__table__
_SLOTS = KeyList("slots", _LOSSES.c.probe_id, _LOSSES.c.slot_ms)


@per_dialect
def _forget_statement(dialect: str) -> Delete:
    return delete(_LOSSES).where(_LOSSES.c.reason != "missed", _SLOTS.condition(dialect))


def forget(keys: list[tuple[int, int]]) -> None:
    """Withdraw the losses counted for slots that were stored after all."""
    if keys:
        db.session.execute(_forget_statement(), _SLOTS.bind(dialect_name(), keys))


def mark_unwritten(keys: list[tuple[int, int]]) -> None:
    """Note, for the dispatcher's sweep, slots whose measured results a worker had to drop.

    Kept in Redis: the worker drops results precisely because the database is unreachable.
    The sweep then counts these slots as ``unwritten`` rather than ``lost``.
    """
    if not keys:
        return
    try:
        get_redis().hset(UNWRITTEN_KEY, mapping={f"{probe_id}:{slot_ms}": 1 for probe_id, slot_ms in keys})
    except RedisError as exc:
        log.error("could not note %d unwritten results in Redis (%s): they will be counted as lost",
                  len(keys), exc)


def take_unwritten_marks(keys: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of ``keys`` a worker marked as dropped; the marks are removed."""
    if not keys:
        return set()
    fields = [f"{probe_id}:{slot_ms}" for probe_id, slot_ms in keys]
    try:
        marked = get_redis().hmget(UNWRITTEN_KEY, fields)
        found = [field for field, value in zip(fields, marked) if value is not None]
        if found:
            get_redis().hdel(UNWRITTEN_KEY, *found)
    except RedisError as exc:
        log.warning("could not read unwritten-result marks from Redis (%s)", exc)
        return set()
    return {key for key, value in zip(keys, marked) if value is not None}


@dataclass(frozen=True)
class RunTotals:
    """What happened to scheduled and manual runs in a window, for ``admin-mit stats`` and the API."""

    since: datetime
    until: datetime
    stored: int
    lost_by_reason: dict[str, int]
    in_flight: int

    def as_dict(self) -> dict[str, object]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "stored": self.stored,
                **{reason: self.lost_by_reason.get(reason, 0) for reason in REASONS}, "in_flight": self.in_flight}


def totals(since: datetime, until: datetime, tenant_id: int | None = None) -> RunTotals:
    """Stored results and losses by reason recorded in ``[since, until)``, and leases open now."""
    stored = select(func.count(ProbeResult.id)).where(ProbeResult.created_at >= since,
                                                     ProbeResult.created_at < until)
    losses = (select(ProbeRunLoss.reason, func.coalesce(func.sum(ProbeRunLoss.slots), 0))
              .where(ProbeRunLoss.recorded_at >= since, ProbeRunLoss.recorded_at < until)
              .group_by(ProbeRunLoss.reason))
    in_flight = select(func.count()).select_from(ProbeLease)
    if tenant_id is not None:
        stored = stored.where(ProbeResult.tenant_id == tenant_id)
        losses = losses.where(ProbeRunLoss.tenant_id == tenant_id)
        in_flight = in_flight.where(ProbeLease.tenant_id == tenant_id)
    return RunTotals(
        since=since,
        until=until,
        stored=db.session.scalar(stored) or 0,
        lost_by_reason={reason: int(count) for reason, count in db.session.execute(losses)},
        in_flight=db.session.scalar(in_flight) or 0,
    )
