"""Status pages: administrators choose what a page shows; anyone may read a public one and its badges."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.errors import ErrorBody
from app.api.schemas import RowId
from app.api.security import public, role, tenant_id
from app.models import StatusPage, StatusPageIncident
from app.services import badges, status_pages

blueprint = api_blueprint("status-pages", "Status pages of the tenant and their incident notes.")
public_blueprint = api_blueprint("public-status", "Public status pages and badges (no login).", secured=False)

BADGE_MAX_AGE = 30


def _partial(name: str, model: type[BaseModel], doc: str) -> type[BaseModel]:
    partial = create_model(  # type: ignore[call-overload]
        name, __config__=ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True),
        **{field: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
           for field, info in model.model_fields.items()})
    partial.__doc__ = doc
    return partial  # type: ignore[no-any-return]


PageCreate = status_pages.PageInput
PageUpdate = _partial("PageUpdate", status_pages.PageInput, "Fields to change; the whole page is validated again.")
IncidentCreate = status_pages.IncidentInput
IncidentUpdate = _partial("IncidentUpdate", status_pages.IncidentInput, "Fields to change.")


class PagePath(BaseModel):
    page_id: RowId


class IncidentPath(BaseModel):
    page_id: RowId
    incident_id: RowId


class PageOut(BaseModel):
    id: int
    slug: str
    title: str
    description: str
    public: bool
    probe_ids: list[int]
    group_ids: list[int]
    created_at: datetime
    updated_at: datetime


class PageList(BaseModel):
    items: list[PageOut]


class IncidentOut(BaseModel):
    id: int
    title: str
    message: str
    status: str = Field(description="`investigating`, `identified`, `monitoring` or `resolved`.")
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


class IncidentList(BaseModel):
    items: list[IncidentOut]


def _page(page: StatusPage) -> dict[str, Any]:
    return PageOut(id=page.id, created_at=page.created_at, updated_at=page.updated_at,
                   **status_pages.page_fields(page)).model_dump(mode="json")


def _incident(incident: StatusPageIncident) -> dict[str, Any]:
    return IncidentOut(**status_pages.incident_fields(incident)).model_dump(mode="json")


@blueprint.get("/status-pages", summary="List status pages", responses={200: PageList})
@role("viewer")
def list_pages() -> Any:
    return {"items": [_page(page) for page in status_pages.list_pages(tenant_id())]}


@blueprint.post("/status-pages", summary="Create a status page (private until `public` is set)",
                responses={201: PageOut, **NOT_FOUND, **CONFLICT})
@role("admin")
def create_page(body: PageCreate) -> Any:
    return _page(status_pages.create_page(tenant_id(), body.model_dump())), 201


@blueprint.get("/status-pages/<int:page_id>", summary="Get a status page", responses={200: PageOut, **NOT_FOUND})
@role("viewer")
def get_page(path: PagePath) -> Any:
    return _page(status_pages.get_page(tenant_id(), path.page_id))


@blueprint.patch("/status-pages/<int:page_id>", summary="Change a status page",
                 responses={200: PageOut, **NOT_FOUND, **CONFLICT})
@role("admin")
def update_page(path: PagePath, body: PageUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _page(status_pages.update_page(tenant_id(), path.page_id, changes))


@blueprint.delete("/status-pages/<int:page_id>", summary="Delete a status page and its incidents",
                  responses={204: None, **NOT_FOUND})
@role("admin")
def delete_page(path: PagePath) -> Any:
    status_pages.delete_page(tenant_id(), path.page_id)
    return "", 204


@blueprint.get("/status-pages/<int:page_id>/incidents", summary="A status page's incidents, newest first",
               responses={200: IncidentList, **NOT_FOUND})
@role("viewer")
def list_incidents(path: PagePath) -> Any:
    return {"items": [_incident(item) for item in status_pages.list_incidents(tenant_id(), path.page_id)]}


@blueprint.post("/status-pages/<int:page_id>/incidents", summary="Post an incident on a status page",
                responses={201: IncidentOut, **NOT_FOUND})
@role("admin")
def create_incident(path: PagePath, body: IncidentCreate) -> Any:
    return _incident(status_pages.create_incident(tenant_id(), path.page_id, body.model_dump())), 201


@blueprint.get("/status-pages/<int:page_id>/incidents/<int:incident_id>", summary="Get an incident",
               responses={200: IncidentOut, **NOT_FOUND})
@role("viewer")
def get_incident(path: IncidentPath) -> Any:
    return _incident(status_pages.get_incident(tenant_id(), path.page_id, path.incident_id))


@blueprint.patch("/status-pages/<int:page_id>/incidents/<int:incident_id>",
                 summary="Update an incident (status `resolved` sets `resolved_at`)",
                 responses={200: IncidentOut, **NOT_FOUND})
@role("admin")
def update_incident(path: IncidentPath, body: IncidentUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _incident(status_pages.update_incident(tenant_id(), path.page_id, path.incident_id, changes))


@blueprint.delete("/status-pages/<int:page_id>/incidents/<int:incident_id>", summary="Delete an incident",
                  responses={204: None, **NOT_FOUND})
@role("admin")
def delete_incident(path: IncidentPath) -> Any:
    status_pages.delete_incident(tenant_id(), path.page_id, path.incident_id)
    return "", 204


# --- public --------------------------------------------------------------------------------------


class SlugPath(BaseModel):
    slug: str = Field(max_length=200)


class BadgePath(BaseModel):
    slug: str = Field(max_length=200)
    probe_id: RowId


class UptimeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(30, ge=1, le=90, description="Days the uptime covers, up to now.")


class PublicDay(BaseModel):
    day: date
    count: int
    failures: int
    uptime_percent: float | None


class PublicProbe(BaseModel):
    id: int
    name: str
    status: str | None = Field(description="Latest run's status; null if it never ran.")
    checked_at: datetime | None
    uptime_90d: float | None
    days: list[PublicDay] = Field(description="The last 90 UTC days, oldest first, today last.")


class PublicIncident(IncidentOut):
    pass


class PublicPage(BaseModel):
    slug: str
    title: str
    description: str
    generated_at: datetime
    overall_status: str = Field(description="`operational`, `degraded` (every probe's latest run succeeded, but one "
                                            "of a probe's last 5 did not), `down` (a probe's latest run did not "
                                            "succeed) or `unknown` (no probe has run).")
    probes: list[PublicProbe]
    incidents: list[PublicIncident] = Field(description="Newest first: those of the last 90 days and any unresolved.")


SVG = {200: {"description": "The badge (SVG).", "content": {"image/svg+xml": {"schema": {"type": "string"}}}},
       404: ErrorBody}


@public_blueprint.get("/public/status/<slug>", summary="A public status page (404 if it is not public)",
                      responses={200: PublicPage, **NOT_FOUND})
@public
def public_page(path: SlugPath) -> Any:
    view = status_pages.public_view(path.slug)
    response = Response(PublicPage.model_validate(view).model_dump_json(), mimetype="application/json")
    response.headers["Cache-Control"] = f"public, max-age={BADGE_MAX_AGE}"
    return response


def _svg(text: str) -> Response:
    return Response(text, mimetype="image/svg+xml",
                    headers={"Cache-Control": f"public, max-age={BADGE_MAX_AGE}"})


@public_blueprint.get("/public/status/<slug>/badges/<int:probe_id>/status.svg",
                      summary="Status badge of a probe shown on a public page", responses=SVG)
@public
def status_badge(path: BadgePath) -> Any:
    page, name = status_pages.shown_probe(path.slug, path.probe_id)
    latest = status_pages.latest_of(page, path.probe_id)
    return _svg(badges.status_badge(name, None if latest is None else latest["status"]))


@public_blueprint.get("/public/status/<slug>/badges/<int:probe_id>/uptime.svg",
                      summary="Uptime badge of a probe shown on a public page", responses=SVG)
@public
def uptime_badge(path: BadgePath, query: UptimeQuery) -> Any:
    page, _ = status_pages.shown_probe(path.slug, path.probe_id)
    percent = status_pages.uptime_percent(page, path.probe_id, query.days)
    return _svg(badges.uptime_badge(f"uptime {query.days}d", percent))


@public_blueprint.get("/public/status/<slug>/badges/<int:probe_id>/response-time.svg",
                      summary="Latest response time badge of a probe shown on a public page", responses=SVG)
@public
def response_time_badge(path: BadgePath) -> Any:
    page, _ = status_pages.shown_probe(path.slug, path.probe_id)
    latest = status_pages.latest_of(page, path.probe_id)
    return _svg(badges.response_time_badge("response time", None if latest is None else latest["response_time_ms"]))
