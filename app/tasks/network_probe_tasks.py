"""Network probe tasks (queue ``network_probes``), with the names and arguments of the guide."""

from __future__ import annotations

import uuid
from typing import Any

from celery import signals
from celery.utils.time import get_exponential_backoff_interval

from app.celery_app import celery
from app.services import probe_runs, retention, scheduling
from app.services.dispatch import dispatch_due
from app.services.errors import InvalidInputError
from app.services.probe_runs import ResultsNotStored
from app.services.result_store import MeasuredRun
from app.tasks.base import NetworkProbeTask

# A worker stopping (warm shutdown, a pool child recycled) waits this long for its probes
# in flight and their writes.
SHUTDOWN_GRACE_SECONDS = 60.0


def _probe_type(value: str) -> str:
    if value not in probe_runs.PROBE_TYPES:
        raise InvalidInputError(f"must be one of {', '.join(probe_runs.PROBE_TYPES)}", field="probe_type")
    return value


def _run_on_demand(task: NetworkProbeTask, probe_ids: list[int], tenant_id: int, probe_type: str,
                   measured: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Run and store; if storing fails, retry the write only: the retry carries the measured results."""
    requests = probe_runs.run_requests(probe_ids, _probe_type(probe_type), task.request.id or uuid.uuid4().hex)
    earlier = [MeasuredRun.from_message(item) for item in measured] if measured is not None else None
    try:
        return probe_runs.execute_runs(tenant_id, requests, probe_type, already_measured=earlier)
    except ResultsNotStored as exc:
        countdown = get_exponential_backoff_interval(task.retry_backoff, task.request.retries,
                                                     task.retry_backoff_max, task.retry_jitter)
        kwargs = {**task.request.kwargs, "measured": [run.to_message() for run in exc.runs]}
        raise task.retry(exc=exc, kwargs=kwargs, countdown=countdown) from exc


@celery.task(bind=True, base=NetworkProbeTask, time_limit=360, soft_time_limit=330)
def execute_probe(self: NetworkProbeTask, probe_id: int, tenant_id: int, probe_type: str = "manual",
                  measured: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run one probe now, store its result and return it."""
    return _run_on_demand(self, [probe_id], tenant_id, probe_type, measured)[0]


@celery.task(bind=True, base=NetworkProbeTask, time_limit=600, soft_time_limit=570)
def execute_batch_probes(self: NetworkProbeTask, probe_ids: list[int], tenant_id: int, probe_type: str = "manual",
                         scheduled_for: dict[str, int] | None = None, attempts: dict[str, int] | None = None,
                         measured: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run several probes of one tenant concurrently.

    With ``scheduled_for`` (the dispatcher's messages: slot per probe id, epoch ms) it
    starts the slots on their leases and returns at once; the results are written as the
    probes complete. Without, it waits and returns every result.
    """
    if scheduled_for:
        return probe_runs.start_scheduled(tenant_id, probe_ids, scheduled_for, attempts)
    results = _run_on_demand(self, probe_ids, tenant_id, probe_type, measured)
    return {
        "success": all(entry["success"] for entry in results),
        "tenant_id": tenant_id,
        "total": len(results),
        "results": results,
    }


@celery.task(bind=True, base=NetworkProbeTask, time_limit=120, soft_time_limit=100)
def schedule_auto_probes(self: NetworkProbeTask) -> dict[str, Any]:
    """Reconcile the schedule (new, re-enabled, disabled probes) and dispatch what is due."""
    reconciled = scheduling.reconcile()
    report = dispatch_due()
    return {"success": True, **reconciled, "dispatched": report.claimed + report.reissued,
            "messages": report.messages}


@celery.task(bind=True, base=NetworkProbeTask, time_limit=3600, soft_time_limit=3500)
def cleanup_old_results(self: NetworkProbeTask, days: int = 30) -> dict[str, Any]:
    """Delete probe results older than ``days`` days, in bounded batches."""
    return retention.cleanup_old_results(days)


@celery.task(bind=True, base=NetworkProbeTask, time_limit=3600, soft_time_limit=3500)
def prune_rollups(self: NetworkProbeTask) -> dict[str, Any]:
    """Delete minute, hour and day rollups older than their level's retention (``retention.*_days``)."""
    return retention.prune_rollups()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _finish_runs_in_flight(**_: Any) -> None:
    """A stopping worker process lets its probes finish and writes their results first."""
    probe_runs.shutdown(SHUTDOWN_GRACE_SECONDS)
