"""Deleting old probe results without holding the table for the whole run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select

from app.core.config import active_settings
from app.extensions import db
from app.models import ProbeResult
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
