"""Run probes and store their results, once per run.

Used by the Celery tasks and the CLI alike. Probes of one call run
concurrently (asyncio, bounded by ``probes.batch_concurrency``) and their
results are written in one statement. Each result carries a ``run_key``
(``auto:<slot ms>`` or ``<probe_type>:<run id>``) that is unique per probe, so
a message delivered twice stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from app.core.config import active_settings
from app.core.redis_client import get_redis
from app.extensions import db
from app.models import Probe, ProbeResult
from app.probes import run_many
from app.probes.base import ProbeOutcome, ProbeSpec
from app.probes.conditions import Conditions
from app.services import status_cache

log = logging.getLogger(__name__)

PROBE_TYPES = ("manual", "auto")
DUPLICATES_COUNTER = "admin_mit:stats:duplicate-runs"
EXPIRED_COUNTER = "admin_mit:stats:expired-runs"


@dataclass(frozen=True)
class RunRequest:
    probe_id: int
    run_key: str
    scheduled_for: datetime | None = None


def spec_for(probe: Probe) -> ProbeSpec:
    return ProbeSpec(
        protocol=probe.protocol,
        target=probe.target,
        timeout=probe.timeout_seconds,
        method=probe.method,
        headers=dict(probe.headers or {}),
        body=probe.body,
        expect=probe.expect,
        verify_tls=probe.verify_tls,
        follow_redirects=probe.follow_redirects,
    )


def run_requests(probe_ids: list[int], probe_type: str, run_id: str,
                 scheduled_for: dict[str, int] | None = None) -> list[RunRequest]:
    """One request per probe: a scheduled slot keys the run, else the probe type and run id."""
    slots = {int(pid): int(ms) for pid, ms in (scheduled_for or {}).items()}
    requests = []
    for pid in dict.fromkeys(int(p) for p in probe_ids):
        slot = slots.get(pid)
        if slot is None:
            requests.append(RunRequest(pid, f"{probe_type}:{run_id}"))
        else:
            requests.append(RunRequest(pid, f"auto:{slot}", datetime.fromtimestamp(slot / 1000, timezone.utc)))
    return requests


def _result_row(probe: Probe, request: RunRequest, probe_type: str, outcome: ProbeOutcome,
                started_at: datetime) -> dict[str, Any]:
    timings = outcome.timings
    return {
        "tenant_id": probe.tenant_id,
        "probe_id": probe.id,
        "run_key": request.run_key,
        "probe_type": probe_type,
        "status": outcome.status.value,
        "response_time_ms": outcome.response_time_ms,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "dns_ms": timings.dns_ms,
        "connect_ms": timings.connect_ms,
        "tls_ms": timings.tls_ms,
        "processing_ms": timings.processing_ms,
        "transfer_ms": timings.transfer_ms,
        "cert_expires_at": outcome.cert_expires_at,
        "bytes_read": outcome.bytes_read,
        "scheduled_for": request.scheduled_for,
        "started_at": started_at,
        "created_at": datetime.now(timezone.utc),
    }


def _insert_new(rows: list[dict[str, Any]]) -> dict[int, int]:
    """Insert rows, skipping runs already stored. Returns probe id -> new result id."""
    if not rows:
        return {}
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise RuntimeError(f"unsupported database {dialect}")
    statement = (
        dialect_insert(ProbeResult)
        .on_conflict_do_nothing(index_elements=["probe_id", "run_key"])
        .returning(ProbeResult.id, ProbeResult.probe_id)
    )
    inserted = db.session.execute(statement, rows).all()
    return {row.probe_id: row.id for row in inserted}


def execute_runs(tenant_id: int, requests: list[RunRequest], probe_type: str) -> list[dict[str, Any]]:
    """Run the requested probes of one tenant and store each new result.

    Returns one entry per request, in order: ``success`` is False only when the
    probe does not exist in this tenant. A probe that is down is a stored
    ``failed``/``timeout``/``error`` result, not a failure of the run.
    """
    probes = {
        probe.id: probe
        for probe in db.session.scalars(
            select(Probe).where(Probe.tenant_id == tenant_id, Probe.id.in_([r.probe_id for r in requests]))
        )
    }
    runnable: list[tuple[Probe, RunRequest]] = []
    report: dict[int, dict[str, Any]] = {}
    for request in requests:
        probe = probes.get(request.probe_id)
        if probe is None:
            report[request.probe_id] = {"success": False, "probe_id": request.probe_id,
                                        "error": f"probe {request.probe_id} not found"}
        elif request.scheduled_for is not None and not (probe.enabled and probe.auto_probe):
            report[request.probe_id] = {"success": True, "probe_id": probe.id, "skipped": "probe disabled"}
        else:
            runnable.append((probe, request))

    started_at = datetime.now(timezone.utc)
    specs = [(spec_for(probe), Conditions.parse(probe.conditions)) for probe, _ in runnable]
    outcomes = asyncio.run(run_many(specs, active_settings().probes.batch_concurrency)) if specs else []
    rows = [_result_row(probe, request, probe_type, outcome, started_at)
            for (probe, request), outcome in zip(runnable, outcomes)]
    new_ids = _insert_new(rows)
    db.session.commit()  # expires the loaded probes: below, read only the rows and outcomes

    fresh = []
    for row, outcome in zip(rows, outcomes):
        result_id = new_ids.get(row["probe_id"])
        report[row["probe_id"]] = {
            "success": True,
            "probe_id": row["probe_id"],
            "tenant_id": tenant_id,
            "status": outcome.status.value,
            "response_time_ms": outcome.response_time_ms,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "result_id": result_id,
            "duplicate": result_id is None,
        }
        if result_id is not None:
            fresh.append({**row, "id": result_id})
    _after_store(tenant_id, fresh, duplicates=len(rows) - len(fresh))
    return [report[request.probe_id] for request in requests]


def _after_store(tenant_id: int, rows: list[dict[str, Any]], duplicates: int) -> None:
    status_cache.store(tenant_id, rows)
    if duplicates:
        log.warning("skipped %d probe runs already stored (redelivered message)", duplicates)
        get_redis().incrby(DUPLICATES_COUNTER, duplicates)


def count_expired_runs(runs: int) -> None:
    log.warning("dropped %d scheduled probe runs that waited past their next slot", runs)
    get_redis().incrby(EXPIRED_COUNTER, runs)
