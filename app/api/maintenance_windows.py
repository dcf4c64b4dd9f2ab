"""Maintenance windows of the caller's tenant: when probes run but no alert opens or is sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import MaintenanceWindow
from app.services import maintenance

blueprint = api_blueprint("maintenance-windows",
                          "One-off and recurring windows in which probes run but alerts stay quiet.")

WindowCreate = maintenance.WindowInput
WindowUpdate = create_model(  # type: ignore[call-overload]
    "WindowUpdate",
    __config__=ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True),
    **{name: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
       for name, info in maintenance.WindowInput.model_fields.items()},
)
WindowUpdate.__doc__ = "Fields to change; the whole window is validated again."


class WindowPath(BaseModel):
    window_id: RowId


class Occurrence(BaseModel):
    starts_at: datetime
    ends_at: datetime


class WindowOut(BaseModel):
    id: int
    name: str
    comment: str
    starts_at: datetime
    ends_at: datetime | None
    cron: str | None
    duration_seconds: int | None
    timezone: str
    all_probes: bool
    probe_ids: list[int]
    group_ids: list[int]
    open_now: bool = Field(description="An occurrence is open at this moment.")
    next_occurrence: Occurrence | None = Field(
        description="The occurrence open now, or else the next one; null when none is to come.")
    created_at: datetime


class WindowList(BaseModel):
    items: list[WindowOut]


def _out(window: MaintenanceWindow) -> dict[str, Any]:
    status = maintenance.status(window)
    upcoming = status.next_occurrence
    return WindowOut(**maintenance.window_fields(window), id=window.id, created_at=window.created_at,
                     open_now=status.open_now,
                     next_occurrence=None if upcoming is None else Occurrence(starts_at=upcoming[0],
                                                                              ends_at=upcoming[1]),
                     ).model_dump(mode="json")


@blueprint.get("/maintenance-windows", summary="List maintenance windows", responses={200: WindowList})
@role("viewer")
def list_windows() -> Any:
    return {"items": [_out(window) for window in maintenance.list_windows(tenant_id())]}


@blueprint.post("/maintenance-windows", summary="Create a maintenance window",
                responses={201: WindowOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def create_window(body: WindowCreate) -> Any:  # type: ignore[valid-type]
    return _out(maintenance.create_window(tenant_id(), body.model_dump(exclude_unset=True))), 201  # type: ignore[attr-defined]


@blueprint.get("/maintenance-windows/<int:window_id>", summary="Get a maintenance window",
               responses={200: WindowOut, **NOT_FOUND})
@role("viewer")
def get_window(path: WindowPath) -> Any:
    return _out(maintenance.get_window(tenant_id(), path.window_id))


@blueprint.patch("/maintenance-windows/<int:window_id>", summary="Change a maintenance window",
                 responses={200: WindowOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_window(path: WindowPath, body: WindowUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _out(maintenance.update_window(tenant_id(), path.window_id, changes))


@blueprint.delete("/maintenance-windows/<int:window_id>", summary="Delete a maintenance window",
                  responses={204: None, **NOT_FOUND})
@role("operator")
def delete_window(path: WindowPath) -> Any:
    maintenance.delete_window(tenant_id(), path.window_id)
    return "", 204
