"""Turn claimed probe slots into ``execute_batch_probes`` messages on ``network_probes``."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from app.celery_app import celery
from app.core.config import active_settings
from app.extensions import db
from app.services import scheduling
from app.services.scheduling import ClaimedRun

log = logging.getLogger(__name__)

BATCH_TASK = "app.tasks.network_probe_tasks.execute_batch_probes"
PROBE_QUEUE = "network_probes"


@dataclass(frozen=True)
class DispatchReport:
    claimed: int = 0
    messages: int = 0
    backlog: int = 0
    skipped_for_backlog: bool = False


def queue_length(queue: str) -> int:
    """Messages waiting in ``queue`` (all priority buckets)."""
    with celery.connection_for_read() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except conn.channel_errors:
            return 0  # Redis keeps no trace of an empty queue: "not found" means nothing waits


def _batches(runs: list[ClaimedRun], size: int) -> list[list[ClaimedRun]]:
    by_tenant: dict[int, list[ClaimedRun]] = defaultdict(list)
    for run in runs:
        by_tenant[run.tenant_id].append(run)
    return [group[i:i + size] for group in by_tenant.values() for i in range(0, len(group), size)]


def _stale_after(batch: list[ClaimedRun]) -> datetime:
    """A run that has not started by its probe's next slot is stale: the worker drops the batch then."""
    next_slot_ms = min(run.slot_ms + run.interval_seconds * 1000 for run in batch)
    return datetime.fromtimestamp(next_slot_ms / 1000, timezone.utc)


def _publish(batches: list[list[ClaimedRun]]) -> None:
    with celery.producer_or_acquire() as producer:
        for batch in batches:
            celery.send_task(
                BATCH_TASK,
                kwargs={
                    "probe_ids": [run.probe_id for run in batch],
                    "tenant_id": batch[0].tenant_id,
                    "probe_type": "auto",
                    "scheduled_for": {str(run.probe_id): run.slot_ms for run in batch},
                },
                ignore_result=True,
                expires=_stale_after(batch),
                producer=producer,
            )


def dispatch_due(now: int | None = None) -> DispatchReport:
    """Claim every due probe and publish its run. Safe to run in several processes at once.

    Messages are published before the claim commits: if publishing fails the
    claim rolls back and the next tick tries again; if the commit fails after
    publishing, the run is idempotent (keyed by its slot), so nothing is stored twice.
    """
    settings = active_settings().probes
    backlog = queue_length(PROBE_QUEUE)
    if backlog >= settings.max_queue_backlog:
        log.warning("network_probes holds %d messages (limit %d): not dispatching this tick; "
                    "slots skipped meanwhile are counted in probes.missed_runs", backlog, settings.max_queue_backlog)
        return DispatchReport(backlog=backlog, skipped_for_backlog=True)
    try:
        runs = scheduling.claim_due(now or scheduling.now_ms(), settings.dispatch_max_claim)
        batches = _batches(runs, settings.dispatch_batch_size)
        if batches:
            _publish(batches)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    if runs:
        log.info("dispatched %d due probe runs in %d messages", len(runs), len(batches))
    return DispatchReport(claimed=len(runs), messages=len(batches), backlog=backlog)
