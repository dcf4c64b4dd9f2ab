"""The dispatcher's tick: claim due slots, re-issue expired leases, count lost slots, publish.

Run about every second by beat (``app.beat_scheduler``), safe to run in several
processes at once: every step is a compare-and-set in the database.

1. **Sweep**: leases whose slot ended ``probes.loss_grace_seconds`` ago are deleted and
   their slots counted as ``expired``, ``lost`` or ``unwritten`` (``services.leases``).
2. **Claim**: probes due before the next tick (``probes.dispatch_lookahead_seconds``:
   workers start each run at its slot, not before) move to their next slot
   (``services.scheduling``); each gets a lease, and slots skipped meanwhile are
   counted as ``missed``.
3. **Re-issue**: leases that expired while their slot is current (a dead worker, a
   message lost with Redis) are handed out again as a new attempt.
4. **Commit, then publish** the claimed and re-issued slots as ``execute_batch_probes``
   messages. A worker that receives a message starts its slots on their leases, so the
   leases must be visible before the message can arrive (published first, a fast worker
   would find none and run nothing). If publishing fails after the commit, the leases
   are there without a message: the dispatcher re-issues them once they expire, while
   their slot is current, like the runs of a worker that died.

While ``network_probes`` holds ``probes.max_queue_backlog`` messages or more, steps 2–3
are skipped (the due slots stay due and are counted as missed when claimed).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from app.core.config import active_settings
from app.extensions import db
from app.services import leases, pipeline_counters, run_losses, scheduling
from app.services.leases import LeasedRun
from app.services.task_queue import EXECUTE_BATCH, PROBE_QUEUE, Message, publish_all, queue_length

log = logging.getLogger(__name__)

SWEEP_LIMIT = 10_000  # leases counted per tick; the rest wait for the next one


@dataclass(frozen=True)
class DispatchReport:
    claimed: int = 0
    reissued: int = 0
    messages: int = 0
    backlog: int = 0
    skipped_for_backlog: bool = False
    losses: int = 0


def _batches(runs: list[LeasedRun], size: int) -> list[list[LeasedRun]]:
    by_tenant: dict[int, list[LeasedRun]] = defaultdict(list)
    for run in runs:
        by_tenant[run.tenant_id].append(run)
    return [group[i:i + size] for group in by_tenant.values() for i in range(0, len(group), size)]


def _message(batch: list[LeasedRun]) -> Message:
    """A batch expires when its last slot does: staleness is judged per run by the worker."""
    kwargs: dict[str, object] = {
        "probe_ids": [run.probe_id for run in batch],
        "tenant_id": batch[0].tenant_id,
        "probe_type": "auto",
        "scheduled_for": {str(run.probe_id): run.slot_ms for run in batch},
    }
    attempts = {str(run.probe_id): run.attempt for run in batch if run.attempt}
    if attempts:
        kwargs["attempts"] = attempts
    expires = datetime.fromtimestamp(max(run.stale_ms for run in batch) / 1000, timezone.utc)
    return Message(EXECUTE_BATCH, kwargs, expires=expires, ignore_result=True)


def dispatch_due(now: int | None = None) -> DispatchReport:
    """One dispatcher tick (see the module docstring)."""
    settings = active_settings().probes
    now = now or scheduling.now_ms()
    backlog = queue_length(PROBE_QUEUE)
    held_back = backlog >= settings.max_queue_backlog
    try:
        swept = leases.sweep_stale(now, int(settings.loss_grace_seconds * 1000), SWEEP_LIMIT)
        lost = run_losses.record(swept)
        missed: list[run_losses.Loss] = []
        claimed: list[LeasedRun] = []
        reissued: list[LeasedRun] = []
        if not held_back:
            horizon = now + int(settings.dispatch_lookahead_seconds * 1000)
            due = scheduling.claim_due(horizon, settings.dispatch_max_claim)
            missed = run_losses.missed(due)
            run_losses.record(missed)
            claimed = leases.open_for(due, now, settings.lease_margin_seconds)
            reissued = leases.reissue_expired(now, settings.max_reissues, settings.dispatch_max_claim)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    pipeline_counters.count_losses(swept + missed)
    batches = _batches(claimed + reissued, settings.dispatch_batch_size)
    if batches:
        publish_all([_message(batch) for batch in batches])
        pipeline_counters.count_dispatch(claimed + reissued, reissued)
    if held_back:
        log.warning("network_probes holds %d messages (limit %d): not dispatching this tick; "
                    "the slots that pass meanwhile are counted as missed", backlog, settings.max_queue_backlog)
    if reissued:
        log.warning("re-issued %d runs whose lease expired (a worker stopped or a message was lost)", len(reissued))
    if lost:
        log.warning("%d scheduled runs ended without a result (see `admin-mit stats`)", lost)
    if claimed:
        log.info("dispatched %d due probe runs in %d messages", len(claimed) + len(reissued), len(batches))
    return DispatchReport(claimed=len(claimed), reissued=len(reissued), messages=len(batches), backlog=backlog,
                          skipped_for_backlog=held_back, losses=lost)
