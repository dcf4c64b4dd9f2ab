"""Network probe tasks (queue ``network_probes``), with the names and arguments of the guide."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task, signals

from app.celery_app import celery
from app.services import probe_runs, retention, scheduling
from app.services.dispatch import dispatch_due
from app.services.errors import InvalidInputError
from app.tasks.base import NetworkProbeTask


def _probe_type(value: str) -> str:
    if value not in probe_runs.PROBE_TYPES:
        raise InvalidInputError(f"must be one of {', '.join(probe_runs.PROBE_TYPES)}", field="probe_type")
    return value


@celery.task(bind=True, base=NetworkProbeTask, time_limit=360, soft_time_limit=330)
def execute_probe(self: NetworkProbeTask, probe_id: int, tenant_id: int, probe_type: str = "manual",
                  scheduled_for: int | None = None) -> dict[str, Any]:
    """Run one probe and store its result. ``scheduled_for`` (epoch ms) keys a scheduled slot."""
    requests = probe_runs.run_requests(
        [probe_id], _probe_type(probe_type), self.request.id or uuid.uuid4().hex,
        {str(probe_id): scheduled_for} if scheduled_for is not None else None,
    )
    return probe_runs.execute_runs(tenant_id, requests, probe_type)[0]


@celery.task(bind=True, base=NetworkProbeTask, time_limit=600, soft_time_limit=570)
def execute_batch_probes(self: NetworkProbeTask, probe_ids: list[int], tenant_id: int, probe_type: str = "manual",
                         scheduled_for: dict[str, int] | None = None) -> dict[str, Any]:
    """Run several probes of one tenant concurrently and store their results in one statement."""
    requests = probe_runs.run_requests(
        probe_ids, _probe_type(probe_type), self.request.id or uuid.uuid4().hex, scheduled_for
    )
    results = probe_runs.execute_runs(tenant_id, requests, probe_type)
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
    return {"success": True, **reconciled, "dispatched": report.claimed, "messages": report.messages}


@celery.task(bind=True, base=NetworkProbeTask, time_limit=3600, soft_time_limit=3500)
def cleanup_old_results(self: NetworkProbeTask, days: int = 30) -> dict[str, Any]:
    """Delete probe results older than ``days`` days, in bounded batches."""
    return retention.cleanup_old_results(days)


@signals.task_revoked.connect
def _count_expired_runs(sender: Task | None = None, request: Any = None, expired: bool = False,
                        **_: Any) -> None:
    """A scheduled batch that waited past its probes' next slot is dropped; count the runs lost."""
    if expired and sender is not None and sender.name == execute_batch_probes.name:
        probe_runs.count_expired_runs(len(request.kwargs.get("probe_ids") or []))
