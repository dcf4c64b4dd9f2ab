"""Deleting old probe results and rollups without holding the tables for the whole run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select, tuple_

from app.core.config import active_settings
from app.extensions import db
from app.models import ProbeResult, ProbeRollup
from app.services import rollups
from app.services.errors import InvalidInputError


def cleanup_old_results(days: int, batch_size: int | None = None) -> dict[str, Any]:
    """Delete results older than ``days`` days, ``batch_size`` rows per committed statement.

    Each batch is its own short transaction, so inserts from workers are never
    blocked for more than one batch.
    """
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise InvalidInputError("must be a whole number of days, at least 1", field="days")
    batch_size = batch_size or active_settings().probes.cleanup_batch_size
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    deleted = batches = 0
    while True:
        oldest = (
            select(ProbeResult.id)
            .where(ProbeResult.created_at < cutoff)
            .order_by(ProbeResult.id)
            .limit(batch_size)
        )
        count = db.session.execute(
            delete(ProbeResult)
            .where(ProbeResult.id.in_(oldest.scalar_subquery()))
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        if not count:
            break
        deleted += count
        batches += 1
    return {"success": True, "days": days, "cutoff": cutoff.isoformat(), "deleted": deleted, "batches": batches}


def prune_rollups(batch_size: int | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Delete the rollups of each level that ended before its ``retention.*_days``.

    Raw results are not looked at: their own retention (``cleanup_old_results``) never
    changes a rollup, so history outlives the raw results. Returns rollup rows deleted per level.
    """
    batch_size = batch_size or active_settings().probes.cleanup_batch_size
    deleted: dict[str, int] = {}
    for level, cutoff in rollups.retention_cutoffs(now).items():
        deleted[rollups.LEVEL_NAMES[level]] = 0
        if cutoff is None:
            continue
        before = cutoff - level + 1  # buckets that end at or before the cutoff
        deleted[rollups.LEVEL_NAMES[level]] = _delete_in_batches(ProbeRollup.__table__, level, before, batch_size)
    return {"success": True, "deleted": deleted}


def _delete_in_batches(table: Any, level: int, before: int, batch_size: int) -> int:
    """Delete the rows of ``level`` whose bucket starts before ``before``, one committed batch at a time."""
    total = 0
    keys = [table.c[name] for name in table.primary_key.columns.keys()]
    while True:
        oldest = (select(*keys).where(table.c.level == level, table.c.bucket < before)
                  .order_by(table.c.bucket).limit(batch_size))
        removed = db.session.execute(delete(table).where(tuple_(*keys).in_(oldest))
                                     .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if not removed:
            return total
        total += removed
