"""Probe groups of the caller's tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import Name, RowId
from app.api.security import role, tenant_id
from app.models import ProbeGroup
from app.services import probe_groups

blueprint = api_blueprint("probe-groups", "Named sets of probes.")


class GroupPath(BaseModel):
    group_id: RowId


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = Field("", max_length=2000)


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = None  # type: ignore[assignment]
    description: str = Field(None, max_length=2000)


class GroupOut(BaseModel):
    id: int
    name: str
    description: str
    probe_count: int
    created_at: datetime


class GroupList(BaseModel):
    items: list[GroupOut]


def _out(group: ProbeGroup, probe_count: int) -> dict[str, Any]:
    return GroupOut(id=group.id, name=group.name, description=group.description, probe_count=probe_count,
                    created_at=group.created_at).model_dump(mode="json")


@blueprint.get("/probe-groups", summary="List probe groups", responses={200: GroupList})
@role("viewer")
def list_groups() -> Any:
    return {"items": [_out(group, count) for group, count in probe_groups.list_groups(tenant_id())]}


@blueprint.post("/probe-groups", summary="Create a probe group", responses={201: GroupOut, **CONFLICT})
@role("operator")
def create_group(body: GroupCreate) -> Any:
    return _out(probe_groups.create_group(tenant_id(), body.name, body.description), 0), 201


@blueprint.get("/probe-groups/<int:group_id>", summary="Get a probe group", responses={200: GroupOut, **NOT_FOUND})
@role("viewer")
def get_group(path: GroupPath) -> Any:
    group = probe_groups.get_group(tenant_id(), path.group_id)
    return _out(group, probe_groups.probe_count(tenant_id(), group.id))


@blueprint.patch("/probe-groups/<int:group_id>", summary="Rename or describe a probe group",
                 responses={200: GroupOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_group(path: GroupPath, body: GroupUpdate) -> Any:
    group = probe_groups.update_group(tenant_id(), path.group_id, body.name, body.description)
    return _out(group, probe_groups.probe_count(tenant_id(), group.id))


@blueprint.delete("/probe-groups/<int:group_id>", summary="Delete a probe group (its probes stay, ungrouped)",
                  responses={204: None, **NOT_FOUND})
@role("operator")
def delete_group(path: GroupPath) -> Any:
    probe_groups.delete_group(tenant_id(), path.group_id)
    return "", 204
