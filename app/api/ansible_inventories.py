"""Inventories of the caller's tenant: built from groups and hosts, or INI/YAML text."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.ansible_hosts import AnsibleCursorQuery, optional_fields, page
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import AnsibleInventory
from app.services import ansible_inventories

blueprint = api_blueprint("ansible-inventories", "Inventories: `built` from the tenant's groups and hosts, or "
                                                 "`text` (INI or YAML, checked by ansible when saved).")

InventoryCreate = ansible_inventories.InventoryInput
InventoryUpdate = optional_fields("InventoryUpdate", ansible_inventories.InventoryInput,
                                  "Fields to change; a new kind drops the old kind's fields.")


class InventoryPath(BaseModel):
    inventory_id: RowId


class InventoryHost(BaseModel):
    name: str
    vars: dict[str, Any]


class InventoryGroup(BaseModel):
    name: str
    hosts: list[str]
    children: list[str]
    vars: dict[str, Any]


class InventorySummary(BaseModel):
    id: int
    name: str
    description: str
    kind: Literal["built", "text"]
    group_ids: list[int] = Field(description="built: its groups.")
    host_ids: list[int] = Field(description="built: its hosts outside those groups.")
    format: Literal["ini", "yaml"] | None
    content: str | None
    created_at: datetime
    updated_at: datetime


class InventoryOut(InventorySummary):
    hosts: list[InventoryHost] = Field(description="Every host a run gets, with its variables.")
    groups: list[InventoryGroup] = Field(description="Every group a run gets (nested ones too).")
    vars: dict[str, Any] = Field(description="text: the variables of the group `all`.")


class InventoryList(BaseModel):
    items: list[InventorySummary]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class InventoryRendered(BaseModel):
    format: Literal["ini", "yaml"]
    content: str = Field(description="The inventory as a run gets it.")


def _summary(inventory: AnsibleInventory) -> dict[str, Any]:
    return {**ansible_inventories.inventory_fields(inventory), "id": inventory.id,
            "created_at": inventory.created_at, "updated_at": inventory.updated_at}


def _out(inventory: AnsibleInventory) -> dict[str, Any]:
    found = ansible_inventories.resolved(inventory)
    return InventoryOut(
        **_summary(inventory),
        hosts=[InventoryHost(name=name, vars=found.hosts[name]) for name in sorted(found.hosts)],
        groups=[InventoryGroup(name=name, hosts=list(group.hosts), children=list(group.children), vars=group.vars)
                for name, group in sorted(found.groups.items())],
        vars=found.vars,
    ).model_dump(mode="json")


@blueprint.get("/ansible/inventories", summary="List inventories, newest first", responses={200: InventoryList})
@role("viewer")
def list_inventories(query: AnsibleCursorQuery) -> Any:
    rows, cursor = page(ansible_inventories.list_inventories(tenant_id(), query.limit + 1, query.cursor),
                        query.limit)
    return {"items": [InventorySummary(**_summary(row)).model_dump(mode="json") for row in rows],
            "next_cursor": cursor}


@blueprint.post("/ansible/inventories", summary="Create an inventory",
                responses={201: InventoryOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def create_inventory(body: InventoryCreate) -> Any:
    return _out(ansible_inventories.create_inventory(tenant_id(), body.model_dump(exclude_unset=True))), 201


@blueprint.get("/ansible/inventories/<int:inventory_id>", summary="Get an inventory with its hosts and groups",
               responses={200: InventoryOut, **NOT_FOUND})
@role("viewer")
def get_inventory(path: InventoryPath) -> Any:
    return _out(ansible_inventories.get_inventory(tenant_id(), path.inventory_id))


@blueprint.get("/ansible/inventories/<int:inventory_id>/rendered", summary="The inventory text a run gets",
               responses={200: InventoryRendered, **NOT_FOUND})
@role("viewer")
def rendered_inventory(path: InventoryPath) -> Any:
    text, fmt = ansible_inventories.inventory_text(ansible_inventories.get_inventory(tenant_id(), path.inventory_id))
    return InventoryRendered(format=fmt, content=text).model_dump(mode="json")  # type: ignore[arg-type]


@blueprint.patch("/ansible/inventories/<int:inventory_id>", summary="Change an inventory",
                 responses={200: InventoryOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_inventory(path: InventoryPath, body: InventoryUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _out(ansible_inventories.update_inventory(tenant_id(), path.inventory_id, changes))


@blueprint.delete("/ansible/inventories/<int:inventory_id>",
                  summary="Delete an inventory (refused while an execution template uses it)",
                  responses={204: None, **NOT_FOUND, **CONFLICT})
@role("operator")
def delete_inventory(path: InventoryPath) -> Any:
    ansible_inventories.delete_inventory(tenant_id(), path.inventory_id)
    return "", 204
