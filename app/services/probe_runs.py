"""Run probes and store their results: on demand, and for the dispatcher's scheduled slots.

Both paths use the process's ``ProbeExecutor`` (one event loop, many probes in flight).

- **On demand** (``execute_runs``: the ``execute_probe`` task, the API's run now, the
  CLI): the caller waits for the outcomes and stores them itself, so it can return the
  stored result. If the database refuses the write, ``ResultsNotStored`` carries the
  measured runs, so a retry writes them without probing again.
- **Scheduled** (``start_scheduled``: the dispatcher's ``execute_batch_probes``
  messages): the caller starts the slots it wins on their leases and returns at once;
  the results go to the process's ``ResultWriter`` as they complete.

Every result carries a ``run_key`` (``auto:<slot ms>`` or ``<probe type>:<run id>``)
unique per probe, so nothing is stored twice.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, NamedTuple

from pydantic import ValidationError
from sqlalchemy import DateTime, Select, Text, bindparam, select, type_coerce

from app.core.config import active_settings
from app.core.secret_box import UndecryptableSecret
from app.extensions import db
from app.models import Probe
from app.models.encrypted import decode
from app.probes import stored_spec
from app.probes.base import ProbeSpec, with_secrets
from app.probes.conditions import Conditions
from app.services import leases, result_store, run_losses, task_queue
from app.services.probe_executor import Finished, ProbeExecutor, ProbeJob
from app.services.result_store import MeasuredRun
from app.services.bulk import KeyList, dialect_name, per_dialect
from app.services.result_writer import ResultWriter
from app.services.scheduling import now_ms

log = logging.getLogger(__name__)

PROBE_TYPES = ("manual", "auto")
# How long a task waits for room in a saturated executor before giving its message back.
CAPACITY_WAIT_SECONDS = 30.0
# On top of a probe's own timeout, for an on-demand caller waiting for its outcome.
RUN_WAIT_GRACE_SECONDS = 10.0


class ResultsNotStored(Exception):
    """Probes ran, but their results could not be written; ``runs`` holds them for a retry."""

    def __init__(self, runs: list[MeasuredRun], cause: BaseException) -> None:
        detail = str(getattr(cause, "orig", None) or cause).strip().splitlines()
        super().__init__(f"results not stored: {detail[0] if detail else type(cause).__name__}")
        self.runs = runs


@dataclass(frozen=True)
class RunRequest:
    probe_id: int
    run_key: str


def run_requests(probe_ids: list[int], probe_type: str, run_id: str) -> list[RunRequest]:
    """One on-demand run per distinct probe, keyed by the probe type and the run id."""
    return [RunRequest(pid, f"{probe_type}:{run_id}") for pid in dict.fromkeys(int(p) for p in probe_ids)]


# --- probes -> jobs -> rows ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Prepared:
    spec: ProbeSpec
    conditions: Conditions
    problem: str | None  # why the saved probe cannot run (its spec or conditions no longer validate)


# Scheduled runs read the same probes every interval; their specs and conditions are built
# once per version of the row (``updated_at``), not once per run.
_PREPARED_MAX = 50_000
_prepared: dict[tuple[int, Any], _Prepared] = {}


def _prepare(probe: Mapping[str, Any]) -> _Prepared:
    """The spec the prober runs (credentials decrypted and put back) and the conditions of one row."""
    try:
        secrets = decode(probe["secrets"])
    except UndecryptableSecret as exc:
        return _Prepared(_bare_spec(probe), Conditions(), f"the probe's credentials: {exc}")
    try:
        spec = stored_spec(probe["protocol"], probe["target"], probe["timeout_seconds"],
                           with_secrets(probe["spec"], secrets))
        return _Prepared(spec, Conditions.parse(probe["conditions"]), None)
    except ValueError as exc:
        return _Prepared(_bare_spec(probe), Conditions(), f"the probe's settings are not valid: {_one_line(exc)}")


def _bare_spec(probe: Mapping[str, Any]) -> ProbeSpec:
    return ProbeSpec(protocol=probe["protocol"], target=probe["target"], timeout=probe["timeout_seconds"])


def _one_line(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        return f"{'.'.join(str(part) for part in error['loc'][1:]) or 'spec'}: {error['msg']}"
    return str(exc).splitlines()[0]


class _Probe(NamedTuple):  # a tuple: built for every run
    id: int
    tenant_id: int
    scheduled: bool  # enabled and an auto probe
    prepared: _Prepared


_PROBES = Probe.__table__
_IDS = KeyList("ids", _PROBES.c.id)


# The row's version, as the driver reads it: compared, never shown, so not converted.
_VERSION = type_coerce(_PROBES.c.updated_at, DateTime()).label("updated_at")


@per_dialect
def _states_statement(dialect: str) -> Select[Any]:
    table = _PROBES
    return (select(table.c.id, table.c.tenant_id, table.c.enabled, table.c.auto_probe, _VERSION)
            .where(table.c.tenant_id == bindparam("tenant_id"), _IDS.condition(dialect)))


# The encrypted credentials as stored: decrypted row by row in ``_prepare``, so a row no
# configured key opens fails its own runs (with a message), not the whole batch.
_SECRETS = type_coerce(_PROBES.c.secrets, Text()).label("secrets")


@per_dialect
def _settings_statement(dialect: str) -> Select[Any]:
    table = _PROBES
    return (select(table.c.id, _VERSION, table.c.protocol, table.c.target, table.c.timeout_seconds,
                   table.c.spec, _SECRETS, table.c.conditions).where(_IDS.condition(dialect)))


def _probes(tenant_id: int, probe_ids: list[int]) -> dict[int, _Probe]:
    """The tenant's probes among ``probe_ids``, with their prepared spec and conditions.

    The settings columns (JSON) are read only for rows whose version has not been
    prepared in this process yet: scheduled runs read the same probes every interval.
    """
    if not probe_ids:
        return {}
    dialect = dialect_name()
    states = [tuple(row) for row in db.session.execute(
        _states_statement(), {"tenant_id": tenant_id, **_IDS.bind(dialect, probe_ids)}).all()]
    versions = {state[0]: (state[0], state[4]) for state in states}
    unprepared = [probe_id for probe_id, version in versions.items() if version not in _prepared]
    if unprepared:
        if len(_prepared) + len(unprepared) > _PREPARED_MAX:
            _prepared.clear()
        settings = db.session.execute(_settings_statement(), _IDS.bind(dialect, unprepared)).mappings().all()
        for row in settings:  # changed since the first read? then this newer version is the one run
            versions[row["id"]] = (row["id"], row["updated_at"])
            _prepared[versions[row["id"]]] = _prepare(row)
    found = {}
    for probe_id, tenant, enabled, auto_probe, _ in states:
        prepared = _prepared.get(versions[probe_id])
        if prepared is not None:
            found[probe_id] = _Probe(probe_id, tenant, enabled and auto_probe, prepared)
    return found


def _job(probe: _Probe, run_key: str, probe_type: str, slot_ms: int | None = None) -> ProbeJob:
    prepared = probe.prepared
    return ProbeJob(spec=prepared.spec, conditions=prepared.conditions, problem=prepared.problem,
                    tenant_id=probe.tenant_id, probe_id=probe.id, run_key=run_key,
                    probe_type=probe_type, slot_ms=slot_ms)


def measured(finished: Finished) -> MeasuredRun:
    job, outcome = finished.job, finished.outcome
    timings = outcome.timings
    scheduled_for = (datetime.fromtimestamp(job.slot_ms / 1000, timezone.utc)
                     if job.slot_ms is not None else None)
    return MeasuredRun(row={
        "tenant_id": job.tenant_id,
        "probe_id": job.probe_id,
        "run_key": job.run_key,
        "probe_type": job.probe_type,
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
        "details": outcome.details,
        "scheduled_for": scheduled_for,
        "started_at": finished.started_at,
        "created_at": datetime.now(timezone.utc),
    }, slot_ms=job.slot_ms)


# --- the process's executor and writer ----------------------------------------------------------

@dataclass
class _Runtime:
    pid: int
    executor: ProbeExecutor
    writer: ResultWriter


_runtime: _Runtime | None = None


def _store_batch(runs: list[MeasuredRun]) -> None:
    from app.celery_app import get_flask_app

    with get_flask_app().app_context():
        result_store.store(runs)


def _mark_dropped(runs: list[MeasuredRun]) -> None:
    run_losses.mark_unwritten([(run.row["probe_id"], run.slot_ms) for run in runs if run.slot_ms is not None])


def runtime() -> _Runtime:
    """This process's executor and writer, created on first use (again in a forked child)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        settings = active_settings().probes
        writer = ResultWriter(_store_batch, _mark_dropped, interval_seconds=settings.write_interval_ms / 1000,
                              batch_rows=settings.write_batch_rows, max_buffered=settings.write_buffer_max_rows)
        _runtime = _Runtime(os.getpid(), ProbeExecutor(settings.max_in_flight), writer)
    return _runtime


def shutdown(timeout: float) -> None:
    """Let the probes in flight finish and write every result, within ``timeout`` seconds."""
    current = _runtime
    if current is None or current.pid != os.getpid():
        return
    started = time.monotonic()
    current.executor.drain(timeout)
    current.writer.drain(max(1.0, timeout - (time.monotonic() - started)))


# --- on demand ---------------------------------------------------------------------------------

def _report(tenant_id: int, run: MeasuredRun, result_id: int | None) -> dict[str, Any]:
    row = run.row
    expires = row["cert_expires_at"]
    return {
        "success": True,
        "probe_id": row["probe_id"],
        "tenant_id": tenant_id,
        "status": row["status"],
        "response_time_ms": row["response_time_ms"],
        "status_code": row["status_code"],
        "error": row["error"],
        "cert_expires_at": expires.isoformat() if expires else None,
        "details": row.get("details"),
        "result_id": result_id,
        "duplicate": result_id is None,
    }


def report_unstored(tenant_id: int, runs: list[MeasuredRun]) -> list[dict[str, Any]]:
    """The report of runs that were measured but not stored (``ResultsNotStored.runs``)."""
    return [{**_report(tenant_id, run, None), "duplicate": False, "stored": False} for run in runs]


def execute_runs(tenant_id: int, requests: list[RunRequest], probe_type: str,
                 already_measured: list[MeasuredRun] | None = None) -> list[dict[str, Any]]:
    """Run the requested probes of one tenant now, store each new result, report one entry per request.

    ``success`` is False only when the probe does not exist in this tenant; a probe that
    is down is a stored ``failed``/``timeout``/``error`` result. ``already_measured``
    (from ``ResultsNotStored.runs``) stores earlier measurements instead of probing again.
    """
    report: dict[int, dict[str, Any]] = {}
    if already_measured is None:
        probes = _probes(tenant_id, [request.probe_id for request in requests])
        jobs = []
        for request in requests:
            probe = probes.get(request.probe_id)
            if probe is None:
                report[request.probe_id] = {"success": False, "probe_id": request.probe_id,
                                            "error": f"probe {request.probe_id} not found"}
            else:
                jobs.append(_job(probe, request.run_key, probe_type))
        db.session.commit()  # no transaction stays open while the probes run
        wait = max((job.spec.timeout for job in jobs), default=0) + RUN_WAIT_GRACE_SECONDS
        runs = [measured(done) for done in runtime().executor.run(jobs, timeout=wait)]
    else:
        runs = already_measured
    try:
        new_ids = result_store.store(runs)
    except Exception as exc:
        raise ResultsNotStored(runs, exc) from exc
    for run in runs:
        report[run.row["probe_id"]] = _report(tenant_id, run, new_ids.get(run.key))
    return [report[request.probe_id] for request in requests if request.probe_id in report]


def queue_run(tenant_id: int, probe_id: int, priority: int | None = None) -> str:
    """Ask a worker to run one probe now (``execute_probe``); returns the task id."""
    return task_queue.publish(task_queue.Message(
        task_queue.EXECUTE_PROBE, {"probe_id": probe_id, "tenant_id": tenant_id, "probe_type": "manual"},
        priority=priority))


def queue_batch(tenant_id: int, probe_ids: list[int], priority: int | None = None) -> str:
    """Ask a worker to run several probes now, in one ``execute_batch_probes`` task; returns its id."""
    return task_queue.publish(task_queue.Message(
        task_queue.EXECUTE_BATCH, {"probe_ids": probe_ids, "tenant_id": tenant_id, "probe_type": "manual"},
        priority=priority))


# --- scheduled ---------------------------------------------------------------------------------

def start_scheduled(tenant_id: int, probe_ids: list[int], scheduled_for: dict[str, int],
                    attempts: dict[str, int] | None = None) -> dict[str, Any]:
    """Start the dispatcher's slots this worker wins, hand them to the executor, return at once.

    A slot is skipped when its lease says so: already started elsewhere, stored, re-issued
    as a newer attempt, or past its probe's next slot (the dispatcher counts those).
    """
    attempts = attempts or {}
    wanted = [(int(pid), int(scheduled_for[str(pid)]), int(attempts.get(str(pid), 0)))
              for pid in dict.fromkeys(probe_ids) if str(pid) in scheduled_for]
    current = runtime()
    if not current.executor.wait_for_capacity(len(wanted), CAPACITY_WAIT_SECONDS):
        raise RuntimeError(f"{current.executor.in_flight} probes in flight: no room for {len(wanted)} more")
    owned = leases.start(tenant_id, wanted, now_ms())
    probes = _probes(tenant_id, [pid for pid, _ in owned])
    jobs, dropped = [], []
    for probe_id, slot_ms in sorted(owned):
        probe = probes.get(probe_id)
        if probe is not None and probe.scheduled:
            jobs.append(_job(probe, f"auto:{slot_ms}", "auto", slot_ms))
        else:
            dropped.append((probe_id, slot_ms))  # disabled since it was claimed: not a loss
    leases.close(dropped)
    db.session.commit()
    current.writer.start()
    current.executor.submit(jobs, lambda done: current.writer.add(measured(done)))
    return {"success": True, "tenant_id": tenant_id, "total": len(wanted), "started": len(jobs),
            "skipped": len(wanted) - len(jobs)}
