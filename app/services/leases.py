"""Leases: the database's record of scheduled slots that were claimed and are not stored yet.

A lease row lives from the claim of a slot until its result is stored. Every change to
it is a compare-and-set, so several dispatchers and workers may act at once:

- the dispatcher *opens* it with the claim (``expires_ms`` = now + lease);
- a worker *starts* it (``started_ms`` set only if still unset for this attempt), so a
  slot handed out twice still runs once;
- the result writer *closes* it in the transaction that stores the result;
- the dispatcher *re-issues* a lease that expired while the slot is still current (the
  worker died, or the message was lost with Redis) — a new attempt, published again;
- the dispatcher *sweeps* leases whose slot passed ``probes.loss_grace_seconds`` ago,
  counting each as ``expired`` (never started), ``unwritten`` (its worker dropped the
  measured result) or ``lost`` (started, never stored).

Times are epoch milliseconds. A lease is the probe's timeout plus ``probes.lease_margin_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import BigInteger, Delete, Update, bindparam, case, delete, literal, select, tuple_, update

from app.extensions import db
from app.models import ProbeLease
from app.services import run_losses
from app.services.bulk import KeyList, dialect_name, insert_new, per_dialect
from app.services.run_losses import Loss
from app.services.scheduling import ClaimedRun

SlotKey = tuple[int, int]  # (probe_id, slot_ms)


@dataclass(frozen=True)
class LeasedRun:
    """A slot to publish: its first issue (attempt 0) or a re-issue."""

    probe_id: int
    tenant_id: int
    slot_ms: int
    attempt: int
    stale_ms: int


def lease_ms(timeout_seconds: float, margin_seconds: float) -> int:
    return int((timeout_seconds + margin_seconds) * 1000)


def open_for(runs: list[ClaimedRun], now: int, margin_seconds: float) -> list[LeasedRun]:
    """Write a lease for each claimed slot, in the claim's transaction.

    A slot claimed ahead of time (the dispatcher's lookahead) starts at the slot, so its
    lease runs from there.
    """
    rows = []
    for run in runs:
        duration = lease_ms(run.timeout_seconds, margin_seconds)
        rows.append({"probe_id": run.probe_id, "slot_ms": run.slot_ms, "tenant_id": run.tenant_id, "attempt": 0,
                     "lease_ms": duration, "started_ms": None, "expires_ms": max(now, run.slot_ms) + duration,
                     "stale_ms": run.next_slot_ms})
    insert_new(ProbeLease.__table__, rows, unique=("probe_id", "slot_ms"))
    return [LeasedRun(run.probe_id, run.tenant_id, run.slot_ms, 0, run.next_slot_ms) for run in runs]


def _now(now: int) -> object:
    return literal(now, BigInteger)


def _locked(query, limit: int):  # type: ignore[no-untyped-def]
    query = query.limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query


def reissue_expired(now: int, max_reissues: int, limit: int) -> list[LeasedRun]:
    """Hand out again the leases that expired while their slot is still current."""
    now_value = _now(now)
    expired = _locked(
        select(ProbeLease.probe_id, ProbeLease.slot_ms)
        .where(ProbeLease.expires_ms <= now_value, ProbeLease.stale_ms > now_value,
               ProbeLease.attempt < max_reissues)
        .order_by(ProbeLease.expires_ms),
        limit,
    )
    rows = db.session.execute(
        update(ProbeLease)
        .where(tuple_(ProbeLease.probe_id, ProbeLease.slot_ms).in_(expired),
               ProbeLease.expires_ms <= now_value)
        .values(attempt=ProbeLease.attempt + 1, started_ms=None, expires_ms=now_value + ProbeLease.lease_ms)
        .returning(ProbeLease.probe_id, ProbeLease.tenant_id, ProbeLease.slot_ms, ProbeLease.attempt,
                   ProbeLease.stale_ms)
        .execution_options(synchronize_session=False)
    ).all()
    return [LeasedRun(row.probe_id, row.tenant_id, row.slot_ms, row.attempt, row.stale_ms) for row in rows]


_LEASES = ProbeLease.__table__
_RUNS = KeyList("runs", _LEASES.c.probe_id, _LEASES.c.slot_ms, _LEASES.c.attempt)
_SLOTS = KeyList("slots", _LEASES.c.probe_id, _LEASES.c.slot_ms)


@per_dialect
def _start_statement(dialect: str) -> Update:
    now = bindparam("now", type_=BigInteger)
    return (
        update(_LEASES)
        .where(_LEASES.c.tenant_id == bindparam("for_tenant"), _RUNS.condition(dialect),
               _LEASES.c.started_ms.is_(None), _LEASES.c.stale_ms > now)
        # A run handed over ahead of its slot waits for it: the lease runs from the later of the two.
        .values(started_ms=now,
                expires_ms=case((_LEASES.c.slot_ms > now, _LEASES.c.slot_ms), else_=now) + _LEASES.c.lease_ms)
        .returning(_LEASES.c.probe_id, _LEASES.c.slot_ms)
    )


def start(tenant_id: int, runs: Iterable[tuple[int, int, int]], now: int) -> set[SlotKey]:
    """Mark ``(probe_id, slot_ms, attempt)`` runs started by the caller; returns those it now owns.

    A run is not owned when another worker started this attempt, a newer attempt was
    issued, its result is stored already (the lease is gone) or its slot has passed.
    """
    keys = list(runs)
    if not keys:
        return set()
    rows = db.session.execute(_start_statement(), {"for_tenant": tenant_id, "now": now,
                                                   **_RUNS.bind(dialect_name(), keys)}).all()
    return {(probe_id, slot_ms) for probe_id, slot_ms in rows}


@per_dialect
def _close_statement(dialect: str) -> Delete:
    return delete(_LEASES).where(_SLOTS.condition(dialect)).returning(_LEASES.c.probe_id, _LEASES.c.slot_ms)


def close(keys: list[SlotKey]) -> set[SlotKey]:
    """Delete the leases of stored slots; returns the keys that still had one."""
    if not keys:
        return set()
    rows = db.session.execute(_close_statement(), _SLOTS.bind(dialect_name(), keys)).all()
    return {(probe_id, slot_ms) for probe_id, slot_ms in rows}


def sweep_stale(now: int, grace_ms: int, limit: int) -> list[Loss]:
    """Delete leases whose slot ended, and whose lease expired, ``grace_ms`` ago; name each one's loss.

    A run started just before its next slot may still be running (up to its timeout), so
    a lease is counted only once both its slot and its own lease have passed.
    """
    cutoff = _now(now - grace_ms)
    ended = (ProbeLease.stale_ms <= cutoff) & (ProbeLease.expires_ms <= cutoff)
    stale = _locked(select(ProbeLease.probe_id, ProbeLease.slot_ms).where(ended), limit)
    rows = db.session.execute(
        delete(ProbeLease)
        .where(tuple_(ProbeLease.probe_id, ProbeLease.slot_ms).in_(stale), ended)
        .returning(ProbeLease.probe_id, ProbeLease.tenant_id, ProbeLease.slot_ms, ProbeLease.started_ms)
        .execution_options(synchronize_session=False)
    ).all()
    started = [(row.probe_id, row.slot_ms) for row in rows if row.started_ms is not None]
    dropped = run_losses.take_unwritten_marks(started)
    losses = []
    for row in rows:
        key = (row.probe_id, row.slot_ms)
        reason = "expired" if row.started_ms is None else "unwritten" if key in dropped else "lost"
        losses.append(Loss(row.tenant_id, row.probe_id, reason, row.slot_ms))
    return losses
