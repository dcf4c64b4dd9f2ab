"""Store measured runs: one transaction per micro-batch, then the latest-status cache.

Each result carries a ``run_key`` unique per probe (``auto:<slot ms>`` for a scheduled
slot, ``<probe type>:<run id>`` for a run on demand), so storing the same run twice —
a redelivered message, a slot re-issued to a second worker while the first one was
only slow — writes one row. The transaction that stores a scheduled slot also closes
its lease, so the dispatcher never re-issues or counts as lost a slot that is stored,
and adds the rows it inserted (never a duplicate) to their minute, hour and day rollups.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from app.core.redis_client import get_redis
from app.extensions import db
from app.models import ProbeResult, utcnow
from app.services import alert_triggers, leases, maintenance, pipeline_counters, rollups, run_losses, status_cache
from app.services.bulk import insert_new

log = logging.getLogger(__name__)

DUPLICATES_COUNTER = "admin_mit:stats:duplicate-runs"
RunKey = tuple[int, str]  # (probe_id, run_key)
_TIMESTAMPS = ("cert_expires_at", "scheduled_for", "started_at", "created_at")


@dataclass(frozen=True)
class MeasuredRun:
    """A run's ``probe_results`` row (without its id), and the slot it fills if it was scheduled."""

    row: dict[str, Any]
    slot_ms: int | None = None

    @property
    def key(self) -> RunKey:
        return self.row["probe_id"], self.row["run_key"]

    def to_message(self) -> dict[str, Any]:
        """JSON-safe form, for a task retry that must store this run without probing again."""
        row = {name: value.isoformat() if isinstance(value, datetime) else value for name, value in self.row.items()}
        return {"row": row, "slot_ms": self.slot_ms}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> MeasuredRun:
        row = dict(data["row"])
        for name in _TIMESTAMPS:
            if row.get(name) is not None:
                row[name] = datetime.fromisoformat(row[name])
        return cls(row=row, slot_ms=data.get("slot_ms"))


def store(runs: list[MeasuredRun]) -> dict[RunKey, int]:
    """Write the runs not stored yet, close their leases, commit; then refresh the status cache.

    Returns the new result id of every run this call stored (a run stored before is left
    out). Raises the database's error, with nothing written, if the transaction fails.
    """
    if not runs:
        return {}
    try:
        maintenance.mark(run.row for run in runs)
        for run in runs:  # the rollups bucket a run by it
            run.row.setdefault("created_at", utcnow())
        inserted = insert_new(
            ProbeResult.__table__, [run.row for run in runs], unique=("probe_id", "run_key"),
            returning=(ProbeResult.id, ProbeResult.probe_id, ProbeResult.run_key),
        )
        new_ids = {(row.probe_id, row.run_key): row.id for row in inserted}
        # Only the rows inserted now: a run stored before is in its rollups already.
        rollups.record({run.key: run.row for run in reversed(runs) if run.key in new_ids}.values())
        scheduled = [run for run in runs if run.slot_ms is not None]
        slots = [(run.row["probe_id"], run.slot_ms) for run in scheduled]
        closed = leases.close(slots)
        # Stored now but no lease left: the sweep counted the slot as a loss meanwhile.
        run_losses.forget([slot for run, slot in zip(scheduled, slots) if slot not in closed and run.key in new_ids])
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    _after_store([{**run.row, "id": new_ids[run.key]} for run in runs if run.key in new_ids],
                 duplicates=len(runs) - len(new_ids))
    pipeline_counters.count_stored([run.row for run in runs if run.key in new_ids],
                                   [run.row for run in runs if run.key not in new_ids])
    return new_ids


def _after_store(rows: list[dict[str, Any]], duplicates: int) -> None:
    """The cache is a convenience: if Redis is down the results are stored all the same.
    The stored rows go to alert evaluation, one message for the batch."""
    by_tenant: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_tenant[row["tenant_id"]].append(row)
    try:
        for tenant_id, tenant_rows in by_tenant.items():
            status_cache.store(tenant_id, tenant_rows)
        if duplicates:
            get_redis().incrby(DUPLICATES_COUNTER, duplicates)
    except RedisError as exc:
        log.warning("stored %d probe results but could not update the status cache: %s", len(rows), exc)
    alert_triggers.hand_over(rows)
    if duplicates:
        log.info("skipped %d probe runs stored before (a redelivered or re-issued run)", duplicates)
