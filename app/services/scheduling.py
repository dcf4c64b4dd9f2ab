"""When scheduled probes are due, and claiming them exactly once.

A probe's next slot lives in ``probes.next_run_at`` (epoch ms). A dispatcher
claims due probes with one compare-and-set ``UPDATE … WHERE next_run_at <= now
RETURNING``: the row moves to its next slot in the same statement that reads
it, so two dispatchers (two beats) can never both claim a slot. The schedule is
fixed-rate — slots stay ``interval`` apart, whatever the lag — and slots missed
while nothing dispatched are skipped and counted in ``missed_runs`` instead of
being replayed in a burst.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, literal, select, true, update

from app.extensions import db
from app.models import Probe

# Spreads the slots of probes with the same interval over that interval, so a
# thousand probes created at once do not all fall due in the same second.
_SPREAD_FACTOR = 7919


@dataclass(frozen=True)
class ClaimedRun:
    """One claimed slot: the probe runs once for ``slot_ms``; ``missed`` slots before it were skipped."""

    probe_id: int
    tenant_id: int
    slot_ms: int
    interval_seconds: int
    timeout_seconds: float
    missed: int = 0

    @property
    def next_slot_ms(self) -> int:
        """When this slot stops being current: the probe's next slot."""
        return self.slot_ms + self.interval_seconds * 1000

    @property
    def first_missed_ms(self) -> int:
        return self.slot_ms - self.missed * self.interval_seconds * 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def first_slot(probe_id: int, interval_seconds: int, now: int) -> int:
    return now + (probe_id * _SPREAD_FACTOR) % (interval_seconds * 1000)


def reschedule(probe: Probe, now: int | None = None) -> None:
    """Put a probe on its schedule from now, or take it off. The probe must have an id."""
    if probe.enabled and probe.auto_probe:
        probe.next_run_at = first_slot(probe.id, probe.interval_seconds, now or now_ms())
    else:
        probe.next_run_at = None


def restart(probe_ids: list[int], now: int | None = None, first_in_ms: int | None = None) -> None:
    """Start the probes' schedules afresh from ``now`` (spread over their interval, or all
    ``first_in_ms`` from now), e.g. once the workers are up. Commits."""
    now = now or now_ms()
    first = (literal(now + first_in_ms, BigInteger) if first_in_ms is not None
             else literal(now, BigInteger) + (Probe.id * _SPREAD_FACTOR) % (Probe.interval_seconds * 1000))
    db.session.execute(
        update(Probe).where(Probe.id.in_(probe_ids), _schedulable())
        .values(next_run_at=first, **_KEEP_UPDATED_AT)
        .execution_options(synchronize_session=False))
    db.session.commit()


# Moving a probe along its schedule is not a change to the probe: without this, the column's
# ``onupdate`` would stamp ``updated_at`` on every claim (what users read as "last changed",
# and what workers key their prepared specs on).
_KEEP_UPDATED_AT = {"updated_at": Probe.updated_at}


def _schedulable():  # type: ignore[no-untyped-def]
    return (Probe.enabled == true()) & (Probe.auto_probe == true())


def reconcile(now: int | None = None) -> dict[str, int]:
    """Give every schedulable probe without a slot its first one; clear the slots of the rest.

    Covers probes written by other means than the services (imports, SQL) and is
    what beat's ``schedule-auto-probes`` entry runs every minute.
    """
    now = now or now_ms()
    interval_ms = Probe.interval_seconds * 1000
    scheduled = db.session.execute(
        update(Probe)
        .where(_schedulable(), Probe.next_run_at.is_(None))
        .values(next_run_at=literal(now, BigInteger) + (Probe.id * _SPREAD_FACTOR) % interval_ms,
                **_KEEP_UPDATED_AT)
        .execution_options(synchronize_session=False)
    ).rowcount
    unscheduled = db.session.execute(
        update(Probe)
        .where(~_schedulable(), Probe.next_run_at.is_not(None))
        .values(next_run_at=None, **_KEEP_UPDATED_AT)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return {"scheduled": scheduled, "unscheduled": unscheduled}


def claim_due(now: int, limit: int) -> list[ClaimedRun]:
    """Atomically move up to ``limit`` due probes to their next slot and return the claimed slots.

    The caller commits. Until then (PostgreSQL) the rows stay locked and other
    dispatchers skip them.
    """
    now_literal = literal(now, BigInteger)
    interval_ms = Probe.interval_seconds * 1000
    elapsed_slots = (now_literal - Probe.next_run_at) // interval_ms
    due = (
        select(Probe.id)
        .where(_schedulable(), Probe.next_run_at <= now_literal)
        .order_by(Probe.next_run_at)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = db.session.execute(
        update(Probe)
        .where(Probe.id.in_(due.scalar_subquery()), Probe.next_run_at <= now_literal)
        .values(
            next_run_at=Probe.next_run_at + interval_ms * (elapsed_slots + 1),
            missed_runs=Probe.missed_runs + elapsed_slots,
            last_missed_slots=elapsed_slots,
            **_KEEP_UPDATED_AT,
        )
        .returning(Probe.id, Probe.tenant_id, Probe.next_run_at, Probe.interval_seconds, Probe.timeout_seconds,
                   Probe.last_missed_slots)
        .execution_options(synchronize_session=False)
    ).all()
    return [
        ClaimedRun(
            probe_id=row.id,
            tenant_id=row.tenant_id,
            slot_ms=row.next_run_at - row.interval_seconds * 1000,
            interval_seconds=row.interval_seconds,
            timeout_seconds=row.timeout_seconds,
            missed=row.last_missed_slots,
        )
        for row in rows
    ]
