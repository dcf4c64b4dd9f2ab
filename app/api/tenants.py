"""Tenants: created, listed and deleted by platform administrators."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import Name, Out, RowId, dump
from app.api.security import platform_admin
from app.services import tenants

blueprint = api_blueprint("tenants", "Tenants (platform administrators only).")


class TenantPath(BaseModel):
    tenant_id: RowId


class TenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class TenantOut(Out):
    id: int
    name: str
    created_at: datetime


class TenantList(BaseModel):
    items: list[TenantOut]


@blueprint.get("/tenants", summary="List tenants", responses={200: TenantList})
@platform_admin
def list_tenants() -> Any:
    return {"items": [dump(TenantOut, t) for t in tenants.list_tenants()]}


@blueprint.post("/tenants", summary="Create a tenant", responses={201: TenantOut, **CONFLICT})
@platform_admin
def create_tenant(body: TenantBody) -> Any:
    return dump(TenantOut, tenants.create_tenant(body.name)), 201


@blueprint.get("/tenants/<int:tenant_id>", summary="Get a tenant", responses={200: TenantOut, **NOT_FOUND})
@platform_admin
def get_tenant(path: TenantPath) -> Any:
    return dump(TenantOut, tenants.get_tenant(path.tenant_id))


@blueprint.delete("/tenants/<int:tenant_id>", summary="Delete a tenant and everything in it",
                  responses={204: None, **NOT_FOUND})
@platform_admin
def delete_tenant(path: TenantPath) -> Any:
    tenants.delete_tenant(path.tenant_id)
    return "", 204
