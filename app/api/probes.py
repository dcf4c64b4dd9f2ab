"""Probes of the caller's tenant: CRUD, filtered lists, latest status, run now."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from flask import url_for
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import PageMeta, PageQuery, RowId, TaskAccepted
from app.api.security import role, tenant_id
from app.models import Probe
from app.probes import PROTOCOLS
from app.services import probe_dependencies, probe_runs, probes, status_cache
from app.services.errors import NotFoundError

blueprint = api_blueprint("probes", f"Network probes: {', '.join(PROTOCOLS)} checks.")

ProbeCreate = probes.ProbeInput

# Every field optional, same constraints; omitted fields keep their value. ``spec`` names only
# the fields that change; the merged probe is validated again by the service (its protocol's
# spec, target, timeout below interval).
ProbeUpdate = create_model(  # type: ignore[call-overload]
    "ProbeUpdate",
    __config__=ConfigDict(extra="forbid", str_strip_whitespace=True),
    **{name: (info.annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
       for name, info in probes.ProbeInput.model_fields.items() if name != "spec"},
    spec=(dict[str, Any] | None, Field(None, description=(
        "The spec fields to change (the others keep their value); with a new protocol, that protocol's spec. "
        "Send a masked value (`********`) back to keep it."))),
)

StatusName = Literal["success", "failed", "timeout", "error"]


class ProbePath(BaseModel):
    probe_id: RowId


class ProbeListQuery(PageQuery):
    group_id: RowId | None = None
    protocol: Literal[PROTOCOLS] | None = None  # type: ignore[valid-type]
    enabled: bool | None = None
    status: Literal[probes.STATUS_FILTERS] | None = Field(  # type: ignore[valid-type]
        None, description="Latest result's status; `never_run` for probes without results.")


class LatestStatus(BaseModel):
    probe_id: int
    status: StatusName
    response_time_ms: float | None
    status_code: int | None
    error: str | None
    result_id: int
    checked_at: datetime


class ProbeOut(BaseModel):
    id: int
    name: str
    protocol: str
    target: str
    spec: dict[str, Any] = Field(description=(
        "The protocol's own fields. Credentials (values of headers named like Authorization, Cookie, "
        "*token*, *key* …, or listed in `secret_headers`) read `********`; send that back to keep them."))
    timeout_seconds: float
    interval_seconds: int
    enabled: bool
    auto_probe: bool
    conditions: dict[str, Any]
    group_id: int | None
    depends_on: list[int] = Field(description="The probes it depends on (its parents), in id order.")
    next_run_at: datetime | None = Field(description="Next scheduled run; null when not scheduled.")
    missed_runs: int = Field(description="Scheduled slots skipped because the system was behind.")
    created_at: datetime
    updated_at: datetime
    latest: LatestStatus | None = Field(None, description="The latest result (from the status cache).")


class ProbeList(BaseModel):
    items: list[ProbeOut]
    meta: PageMeta


class RunQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: int | None = Field(None, ge=0, le=10, description="0-10, larger runs sooner; default 5.")


class BatchRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probe_ids: list[RowId] = Field(min_length=1, max_length=500)
    priority: int | None = Field(None, ge=0, le=10, description="0-10, larger runs sooner; default 5.")


class StatusQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[RowId] = Field(min_length=1, max_length=1000, description="Probe ids (repeat the parameter).")


class StatusMap(BaseModel):
    items: list[LatestStatus] = Field(description="Probes that never ran, or are not yours, are left out.")


def _out(probe: Probe, latest: dict[str, Any] | None, parents: list[int] | None = None) -> dict[str, Any]:
    """The probe as shown; ``parents`` are read when not given (a list reads them for the page at once)."""
    data = {name: getattr(probe, name) for name in ProbeOut.model_fields
            if name not in ("next_run_at", "latest", "depends_on")}
    data["next_run_at"] = (datetime.fromtimestamp(probe.next_run_at / 1000, timezone.utc)
                           if probe.next_run_at is not None else None)
    data["latest"] = latest
    data["depends_on"] = probe_dependencies.parents_of([probe.id])[probe.id] if parents is None else parents
    data["spec"] = probes.shown_spec(probe)
    data["target"] = probes.shown_target(probe)
    return ProbeOut.model_validate(data).model_dump(mode="json")


def _latest(probe: Probe) -> dict[str, Any] | None:
    return status_cache.latest(probe.tenant_id, [probe.id]).get(probe.id)


@blueprint.get("/probes", summary="List probes (filtered, paginated) with their latest status",
               responses={200: ProbeList})
@role("viewer")
def list_probes(query: ProbeListQuery) -> Any:
    filters = probes.ProbeFilter(group_id=query.group_id, protocol=query.protocol, enabled=query.enabled,
                                 status=query.status)
    found, total = probes.search_probes(tenant_id(), filters, query.page, query.per_page)
    parents = probe_dependencies.parents_of([probe.id for probe, _ in found])
    return {"items": [_out(probe, latest, parents[probe.id]) for probe, latest in found],
            "meta": {"page": query.page, "per_page": query.per_page, "total": total}}


@blueprint.post("/probes", summary="Create a probe", responses={201: ProbeOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def create_probe(body: ProbeCreate) -> Any:  # type: ignore[valid-type]
    probe = probes.create_probe(tenant_id(), body.model_dump())  # type: ignore[attr-defined]
    return _out(probe, None), 201


@blueprint.get("/probes/status", summary="Latest status of many probes at once (from the cache)",
               responses={200: StatusMap})
@role("viewer")
def latest_status(query: StatusQuery) -> Any:
    # The cache is per tenant (and refills from this tenant's results only): another tenant's
    # ids simply have no entry.
    ids = list(dict.fromkeys(query.ids))
    latest = status_cache.latest(tenant_id(), ids)
    return StatusMap(items=[latest[pid] for pid in ids if pid in latest]).model_dump(mode="json")


@blueprint.get("/probes/<int:probe_id>", summary="Get a probe", responses={200: ProbeOut, **NOT_FOUND})
@role("viewer")
def get_probe(path: ProbePath) -> Any:
    probe = probes.get_probe(tenant_id(), path.probe_id)
    return _out(probe, _latest(probe))


@blueprint.patch("/probes/<int:probe_id>", summary="Change a probe; a new interval or enabled flag applies at once",
                 responses={200: ProbeOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_probe(path: ProbePath, body: ProbeUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    probe = probes.update_probe(tenant_id(), path.probe_id, changes)
    return _out(probe, _latest(probe))


@blueprint.delete("/probes/<int:probe_id>", summary="Delete a probe and its results",
                  responses={204: None, **NOT_FOUND})
@role("operator")
def delete_probe(path: ProbePath) -> Any:
    probes.delete_probe(tenant_id(), path.probe_id)
    return "", 204


def _accepted(task_id: str, probe_ids: list[int], priority: int | None) -> tuple[dict[str, Any], int, dict[str, str]]:
    status_url = url_for("tasks.get_task", task_id=task_id)
    body = TaskAccepted(task_id=task_id, status_url=status_url, probe_ids=probe_ids, priority=priority)
    return body.model_dump(), 202, {"Location": status_url}


@blueprint.post("/probes/<int:probe_id>/run", summary="Run a probe now (queued; poll the task)",
                responses={202: TaskAccepted, **NOT_FOUND})
@role("operator")
def run_probe(path: ProbePath, query: RunQuery) -> Any:
    probe = probes.get_probe(tenant_id(), path.probe_id)
    task_id = probe_runs.queue_run(probe.tenant_id, probe.id, query.priority)
    return _accepted(task_id, [probe.id], query.priority)


@blueprint.post("/probes/run", summary="Run several probes now, in one task",
                responses={202: TaskAccepted, **NOT_FOUND})
@role("operator")
def run_probes(body: BatchRunBody) -> Any:
    ids = list(dict.fromkeys(body.probe_ids))
    owned = probes.owned_ids(tenant_id(), ids)
    missing = [pid for pid in ids if pid not in owned]
    if missing:
        raise NotFoundError(f"probes not found: {', '.join(map(str, missing))}")
    task_id = probe_runs.queue_batch(tenant_id(), ids, body.priority)
    return _accepted(task_id, ids, body.priority)
