"""Status pages: a tenant's chosen probes and groups, shown publicly once the page is made public.

The public view (``public_view``) shows each probe's name, latest status, 90 days of daily uptime
from the rollups and the page's incident notes, never a target, an error, or any other id.
Its ``overall_status`` is:

- ``unknown`` when no shown probe has run yet;
- ``down`` when a shown probe's latest run did not succeed;
- ``degraded`` when every latest run succeeded but one of a probe's last ``RECENT_RUNS`` runs did
  not (it has just recovered, or flaps);
- ``operational`` otherwise.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Probe, ProbeGroup, StatusPage, StatusPageIncident, utcnow
from app.models.base import MAX_ID
from app.services import rollups, status_cache
from app.services.errors import ConflictError, NotFoundError, broken_rule, validated
from app.services.tenant_rows import owned

DAYS = 90
RECENT_RUNS = 5
MAX_TARGETS = 1000
SLUG_PATTERN = r"^[a-z0-9-]{3,63}$"
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
IncidentStatus = Literal["investigating", "identified", "monitoring", "resolved"]
NOT_PUBLIC = "status page not found"


class PageInput(BaseModel):
    """A status page as an administrator describes it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    slug: str = Field(pattern=SLUG_PATTERN, description="Names the page in its public URL; unique across tenants.")
    title: str = Field(min_length=1, max_length=200, pattern=r"\S")
    description: str = Field("", max_length=2000)
    public: bool = Field(False, description="Shown without login at /status/<slug> (off until set).")
    probe_ids: list[int] = Field(default_factory=list, max_length=MAX_TARGETS, description="Probes it shows.")
    group_ids: list[int] = Field(default_factory=list, max_length=MAX_TARGETS,
                                 description="Probe groups whose probes it shows.")

    @model_validator(mode="after")
    def _ids(self) -> "PageInput":
        for field, ids in (("probe_ids", self.probe_ids), ("group_ids", self.group_ids)):
            if any(not 1 <= item <= MAX_ID for item in ids):
                raise broken_rule("page_rule", field, "holds an id out of range")
            if len(set(ids)) != len(ids):
                raise broken_rule("page_rule", field, "lists an id twice")
        return self


class IncidentInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200, pattern=r"\S")
    message: str = Field("", max_length=10_000)
    status: IncidentStatus = Field("investigating", description="`resolved` sets `resolved_at`.")


# --- pages ---------------------------------------------------------------------------------------


def _apply(page: StatusPage, tenant_id: int, fields: PageInput) -> None:
    page.probes = [owned(Probe, tenant_id, probe_id, "probe") for probe_id in fields.probe_ids]
    page.groups = [owned(ProbeGroup, tenant_id, group_id, "probe group") for group_id in fields.group_ids]
    for name, value in fields.model_dump(exclude={"probe_ids", "group_ids"}).items():
        setattr(page, name, value)


def _commit(slug: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"the slug {slug!r} is taken: choose another") from None


def page_fields(page: StatusPage) -> dict[str, Any]:
    """The page as ``PageInput`` fields."""
    return {"slug": page.slug, "title": page.title, "description": page.description, "public": page.public,
            "probe_ids": [probe.id for probe in page.probes], "group_ids": [group.id for group in page.groups]}


def create_page(tenant_id: int, data: dict[str, Any]) -> StatusPage:
    fields = validated(PageInput, data)
    page = StatusPage(tenant_id=tenant_id)
    _apply(page, tenant_id, fields)
    db.session.add(page)
    _commit(fields.slug)
    return page


def get_page(tenant_id: int, page_id: int) -> StatusPage:
    page: StatusPage = owned(StatusPage, tenant_id, page_id, "status page")
    return page


def list_pages(tenant_id: int) -> list[StatusPage]:
    return list(db.session.scalars(select(StatusPage).where(StatusPage.tenant_id == tenant_id).order_by(StatusPage.id)))


def update_page(tenant_id: int, page_id: int, changes: dict[str, Any]) -> StatusPage:
    page = get_page(tenant_id, page_id)
    fields = validated(PageInput, {**page_fields(page), **changes})
    _apply(page, tenant_id, fields)
    _commit(fields.slug)
    return page


def delete_page(tenant_id: int, page_id: int) -> None:
    db.session.delete(get_page(tenant_id, page_id))
    db.session.commit()


# --- incidents -----------------------------------------------------------------------------------


def _resolution(incident: StatusPageIncident, status: str) -> None:
    if status == "resolved":
        incident.resolved_at = incident.resolved_at or utcnow()
    else:
        incident.resolved_at = None
    incident.status = status


def create_incident(tenant_id: int, page_id: int, data: dict[str, Any]) -> StatusPageIncident:
    page = get_page(tenant_id, page_id)
    fields = validated(IncidentInput, data)
    incident = StatusPageIncident(page_id=page.id, title=fields.title, message=fields.message)
    _resolution(incident, fields.status)
    db.session.add(incident)
    db.session.commit()
    return incident


def list_incidents(tenant_id: int, page_id: int) -> list[StatusPageIncident]:
    page = get_page(tenant_id, page_id)
    return list(db.session.scalars(select(StatusPageIncident).where(StatusPageIncident.page_id == page.id)
                                   .order_by(StatusPageIncident.created_at.desc(), StatusPageIncident.id.desc())))


def get_incident(tenant_id: int, page_id: int, incident_id: int) -> StatusPageIncident:
    page = get_page(tenant_id, page_id)
    incident = db.session.get(StatusPageIncident, incident_id)
    if incident is None or incident.page_id != page.id:
        raise NotFoundError(f"incident {incident_id} not found")
    return incident


def update_incident(tenant_id: int, page_id: int, incident_id: int, changes: dict[str, Any]) -> StatusPageIncident:
    incident = get_incident(tenant_id, page_id, incident_id)
    current = {"title": incident.title, "message": incident.message, "status": incident.status}
    fields = validated(IncidentInput, {**current, **changes})
    incident.title, incident.message = fields.title, fields.message
    _resolution(incident, fields.status)
    db.session.commit()
    return incident


def delete_incident(tenant_id: int, page_id: int, incident_id: int) -> None:
    db.session.delete(get_incident(tenant_id, page_id, incident_id))
    db.session.commit()


# --- the public view -----------------------------------------------------------------------------


def public_page(slug: str) -> StatusPage:
    """A public page by slug; a private or unknown one is the same "not found"."""
    page = db.session.scalar(select(StatusPage).where(StatusPage.slug == slug))
    if page is None or not page.public:
        raise NotFoundError(NOT_PUBLIC)
    return page


def shown_probes(page: StatusPage) -> list[tuple[int, str]]:
    """(id, name) of the probes the page shows: named ones and those of its groups, by name."""
    group_ids = [group.id for group in page.groups]
    named = [probe.id for probe in page.probes]
    if not group_ids and not named:
        return []
    rows = db.session.execute(
        select(Probe.id, Probe.name).where(Probe.tenant_id == page.tenant_id,
                                           or_(Probe.id.in_(named), Probe.group_id.in_(group_ids)))
        .order_by(Probe.name, Probe.id))
    return [(row.id, row.name) for row in rows]


def shown_probe(slug: str, probe_id: int) -> tuple[StatusPage, str]:
    """The public page and the name of ``probe_id`` if the page shows it, else "not found"."""
    page = public_page(slug)
    names = dict(shown_probes(page))
    if probe_id not in names:
        raise NotFoundError(NOT_PUBLIC)
    return page, names[probe_id]


def overall_status(latest: dict[int, dict[str, Any]], recent: dict[int, list[str]]) -> str:
    """See the module's docstring; ``recent``: each probe's last runs' statuses."""
    if not latest:
        return "unknown"
    if any(entry["status"] != "success" for entry in latest.values()):
        return "down"
    if any(status != "success" for statuses in recent.values() for status in statuses[-RECENT_RUNS:]):
        return "degraded"
    return "operational"


def _recent_statuses(tenant_id: int, probe_ids: list[int]) -> dict[int, list[str]]:
    bodies = status_cache.beats(tenant_id, probe_ids, RECENT_RUNS)
    return {pid: [beat["status"] for beat in json.loads(f"[{body}]")] for pid, body in bodies.items()}


def public_view(slug: str) -> dict[str, Any]:
    page = public_page(slug)
    shown = shown_probes(page)
    ids = [pid for pid, _ in shown]
    latest = status_cache.latest(page.tenant_id, ids)
    now = utcnow()
    daily = rollups.daily_many(page.tenant_id, ids, DAYS) if ids else {}
    totals = rollups.uptime_by_probe(page.tenant_id, ids, now - timedelta(days=DAYS)) if ids else {}
    probes = []
    for pid, name in shown:
        entry = latest.get(pid) or {}
        total = totals.get(pid)
        probes.append({
            "id": pid, "name": name, "status": entry.get("status"), "checked_at": entry.get("checked_at"),
            "uptime_90d": None if total is None or total.uptime_percent is None else round(total.uptime_percent, 3),
            "days": [{"day": day.day.isoformat(), "count": day.count, "failures": day.failures,
                      "uptime_percent": None if day.uptime_percent is None else round(day.uptime_percent, 3)}
                     for day in daily.get(pid, [])],
        })
    since = now - timedelta(days=DAYS)
    incidents = db.session.scalars(
        select(StatusPageIncident).where(StatusPageIncident.page_id == page.id,
                                         or_(StatusPageIncident.created_at >= since,
                                             StatusPageIncident.resolved_at.is_(None)))
        .order_by(StatusPageIncident.created_at.desc(), StatusPageIncident.id.desc()))
    return {
        "slug": page.slug, "title": page.title, "description": page.description, "generated_at": now,
        "overall_status": overall_status(latest, _recent_statuses(page.tenant_id, list(latest))),
        "probes": probes,
        "incidents": [incident_fields(incident) for incident in incidents],
    }


def incident_fields(incident: StatusPageIncident) -> dict[str, Any]:
    return {"id": incident.id, "title": incident.title, "message": incident.message, "status": incident.status,
            "created_at": incident.created_at, "updated_at": incident.updated_at,
            "resolved_at": incident.resolved_at}


def uptime_percent(page: StatusPage, probe_id: int, days: int) -> float | None:
    totals = rollups.uptime_by_probe(page.tenant_id, [probe_id], utcnow() - timedelta(days=days)).get(probe_id)
    return None if totals is None else totals.uptime_percent


def latest_of(page: StatusPage, probe_id: int) -> dict[str, Any] | None:
    return status_cache.latest(page.tenant_id, [probe_id]).get(probe_id)
