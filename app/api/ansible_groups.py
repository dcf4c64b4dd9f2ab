"""Ansible groups of the caller's tenant: hosts and nested groups with variables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.ansible_hosts import AnsibleCursorQuery, optional_fields, page
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import AnsibleGroup
from app.services import ansible_hosts

blueprint = api_blueprint("ansible-groups", "Ansible groups: hosts and child groups (never in a cycle), "
                                            "with group variables.")

GroupCreate = ansible_hosts.GroupInput
GroupUpdate = optional_fields("AnsibleGroupUpdate", ansible_hosts.GroupInput,
                              "Fields to change; `host_ids` and `child_ids` replace the lists.",
                              str_strip_whitespace=True)


class AnsibleGroupPath(BaseModel):
    ansible_group_id: RowId


class AnsibleGroupOut(BaseModel):
    id: int
    name: str
    variables: dict[str, Any]
    description: str
    host_ids: list[int]
    child_ids: list[int]
    created_at: datetime
    updated_at: datetime


class AnsibleGroupList(BaseModel):
    items: list[AnsibleGroupOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


def _out(group: AnsibleGroup) -> dict[str, Any]:
    return AnsibleGroupOut(**ansible_hosts.group_fields(group), id=group.id, created_at=group.created_at,
                    updated_at=group.updated_at).model_dump(mode="json")


@blueprint.get("/ansible/groups", summary="List Ansible groups, newest first", responses={200: AnsibleGroupList})
@role("viewer")
def list_groups(query: AnsibleCursorQuery) -> Any:
    rows, cursor = page(ansible_hosts.list_groups(tenant_id(), query.limit + 1, query.cursor), query.limit)
    return {"items": [_out(group) for group in rows], "next_cursor": cursor}


@blueprint.post("/ansible/groups", summary="Create an Ansible group",
                responses={201: AnsibleGroupOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def create_group(body: GroupCreate) -> Any:
    return _out(ansible_hosts.create_group(tenant_id(), body.model_dump(exclude_unset=True))), 201


@blueprint.get("/ansible/groups/<int:ansible_group_id>", summary="Get an Ansible group",
               responses={200: AnsibleGroupOut, **NOT_FOUND})
@role("viewer")
def get_group(path: AnsibleGroupPath) -> Any:
    return _out(ansible_hosts.get_group(tenant_id(), path.ansible_group_id))


@blueprint.patch("/ansible/groups/<int:ansible_group_id>", summary="Change an Ansible group",
                 responses={200: AnsibleGroupOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_group(path: AnsibleGroupPath, body: GroupUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _out(ansible_hosts.update_group(tenant_id(), path.ansible_group_id, changes))


@blueprint.delete("/ansible/groups/<int:ansible_group_id>",
                  summary="Delete an Ansible group (refused while an execution template runs on it)",
                  responses={204: None, **NOT_FOUND, **CONFLICT})
@role("operator")
def delete_group(path: AnsibleGroupPath) -> Any:
    ansible_hosts.delete_group(tenant_id(), path.ansible_group_id)
    return "", 204
