"""Ansible hosts of the caller's tenant: the machines built inventories are made of."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.probes import LatestStatus
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import AnsibleHost
from app.services import ansible_hosts, status_cache

blueprint = api_blueprint("ansible-hosts", "Ansible hosts: name, address, port and variables, linked to probes. "
                                           "Secrets belong in credentials, never in variables.")


def optional_fields(name: str, model: type[BaseModel], doc: str, **config: Any) -> type[BaseModel]:
    """``model`` with every field optional and the same constraints: what a PATCH body sends."""
    changes = create_model(  # type: ignore[call-overload]
        name,
        __config__=ConfigDict(extra="forbid", strict=True, **config),
        **{field: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
           for field, info in model.model_fields.items()},
    )
    changes.__doc__ = doc
    return changes  # type: ignore[no-any-return]


class AnsibleCursorQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=500)
    cursor: RowId | None = Field(None, description="`next_cursor` of the previous page.")


def page(rows: Sequence[Any], limit: int, key: str = "id") -> tuple[list[Any], int | None]:
    """The first ``limit`` rows (``limit + 1`` were read) and the cursor of the next page."""
    shown = list(rows[:limit])
    return shown, getattr(shown[-1], key) if len(rows) > limit else None


HostCreate = ansible_hosts.HostInput
HostUpdate = optional_fields("AnsibleHostUpdate", ansible_hosts.HostInput,
                             "Fields to change; the whole host is validated again.", str_strip_whitespace=True)


class AnsibleHostPath(BaseModel):
    host_id: RowId


class AnsibleLinkedProbe(BaseModel):
    id: int
    name: str
    latest: LatestStatus | None = Field(description="Its latest result (null: never ran).")


class AnsibleHostOut(BaseModel):
    id: int
    name: str
    address: str | None
    port: int | None
    variables: dict[str, Any]
    description: str
    probe_ids: list[int]
    group_ids: list[int] = Field(description="The groups it belongs to.")
    probes: list[AnsibleLinkedProbe] = Field(description="The linked probes with their latest status.")
    created_at: datetime
    updated_at: datetime


class AnsibleHostList(BaseModel):
    items: list[AnsibleHostOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


def _out(hosts: list[AnsibleHost]) -> list[dict[str, Any]]:
    ids = [host.id for host in hosts]
    probes = ansible_hosts.host_probes(ids)
    groups = ansible_hosts.host_groups(ids)
    latest = status_cache.latest(tenant_id(), sorted({probe_id for linked in probes.values()
                                                       for probe_id, _ in linked}))
    return [AnsibleHostOut(id=host.id, name=host.name, address=host.address, port=host.port,
                           variables=host.variables or {}, description=host.description,
                           probe_ids=[probe_id for probe_id, _ in probes[host.id]], group_ids=groups[host.id],
                           probes=[AnsibleLinkedProbe(id=probe_id, name=name, latest=latest.get(probe_id))
                                   for probe_id, name in probes[host.id]],
                           created_at=host.created_at, updated_at=host.updated_at).model_dump(mode="json")
            for host in hosts]


def _one(host: AnsibleHost) -> dict[str, Any]:
    return _out([host])[0]


@blueprint.get("/ansible/hosts", summary="List Ansible hosts, newest first", responses={200: AnsibleHostList})
@role("viewer")
def list_hosts(query: AnsibleCursorQuery) -> Any:
    rows, cursor = page(ansible_hosts.list_hosts(tenant_id(), query.limit + 1, query.cursor), query.limit)
    return {"items": _out(rows), "next_cursor": cursor}


@blueprint.post("/ansible/hosts", summary="Create an Ansible host",
                responses={201: AnsibleHostOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def create_host(body: HostCreate) -> Any:
    return _one(ansible_hosts.create_host(tenant_id(), body.model_dump(exclude_unset=True))), 201


@blueprint.get("/ansible/hosts/<int:host_id>", summary="Get an Ansible host with its probes' latest status",
               responses={200: AnsibleHostOut, **NOT_FOUND})
@role("viewer")
def get_host(path: AnsibleHostPath) -> Any:
    return _one(ansible_hosts.get_host(tenant_id(), path.host_id))


@blueprint.patch("/ansible/hosts/<int:host_id>", summary="Change an Ansible host",
                 responses={200: AnsibleHostOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_host(path: AnsibleHostPath, body: HostUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _one(ansible_hosts.update_host(tenant_id(), path.host_id, changes))


@blueprint.delete("/ansible/hosts/<int:host_id>",
                  summary="Delete an Ansible host (refused while an execution template runs on it)",
                  responses={204: None, **NOT_FOUND, **CONFLICT})
@role("operator")
def delete_host(path: AnsibleHostPath) -> Any:
    ansible_hosts.delete_host(tenant_id(), path.host_id)
    return "", 204
