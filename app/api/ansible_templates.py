"""Execution templates of the caller's tenant: saved runs, by hand or on a cron schedule."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.ansible_hosts import AnsibleCursorQuery, optional_fields, page
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import AnsibleExecutionTemplate
from app.services import ansible_templates

blueprint = api_blueprint("ansible-templates", "Execution templates: a playbook, an inventory, credentials and "
                                               "run options, started by hand or on a cron schedule.")

TemplateCreate = ansible_templates.ExecutionTemplateInput
TemplateUpdate = optional_fields("ExecutionTemplateUpdate", ansible_templates.ExecutionTemplateInput,
                                 "Fields to change; `options` replaces the options as a whole.",
                                 str_strip_whitespace=True)
# The options as saved: the same fields, shown without checking them again against today's settings.
RunOptionsOut = create_model(  # type: ignore[call-overload]
    "RunOptionsOut", __config__=ConfigDict(extra="ignore"),
    **{name: (info.annotation, info) for name, info in ansible_templates.RunOptions.model_fields.items()})


class ExecutionTemplatePath(BaseModel):
    template_id: RowId


class ExecutionTemplateOut(BaseModel):
    id: int
    name: str
    description: str
    playbook_id: int
    inventory_id: int
    credential_ids: list[int]
    options: RunOptionsOut  # type: ignore[valid-type]
    cron: str | None
    timezone: str
    enabled: bool
    next_run_at: datetime | None = Field(description="The next scheduled run; null without cron or when disabled.")
    created_at: datetime
    updated_at: datetime


class ExecutionTemplateList(BaseModel):
    items: list[ExecutionTemplateOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


def _out(template: AnsibleExecutionTemplate) -> dict[str, Any]:
    next_run_at = (datetime.fromtimestamp(template.next_run_at / 1000, timezone.utc)
                   if template.next_run_at is not None else None)
    return ExecutionTemplateOut(**ansible_templates.template_fields(template), id=template.id, next_run_at=next_run_at,
                                created_at=template.created_at, updated_at=template.updated_at
                                ).model_dump(mode="json")


@blueprint.get("/ansible/templates", summary="List execution templates, newest first",
               responses={200: ExecutionTemplateList})
@role("viewer")
def list_templates(query: AnsibleCursorQuery) -> Any:
    rows, cursor = page(ansible_templates.list_templates(tenant_id(), query.limit + 1, query.cursor), query.limit)
    return {"items": [_out(row) for row in rows], "next_cursor": cursor}


@blueprint.post("/ansible/templates", summary="Create an execution template",
                responses={201: ExecutionTemplateOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def create_template(body: TemplateCreate) -> Any:
    return _out(ansible_templates.create_template(tenant_id(), body.model_dump(exclude_unset=True))), 201


@blueprint.get("/ansible/templates/<int:template_id>", summary="Get an execution template",
               responses={200: ExecutionTemplateOut, **NOT_FOUND})
@role("viewer")
def get_template(path: ExecutionTemplatePath) -> Any:
    return _out(ansible_templates.get_template(tenant_id(), path.template_id))


@blueprint.patch("/ansible/templates/<int:template_id>", summary="Change an execution template",
                 responses={200: ExecutionTemplateOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_template(path: ExecutionTemplatePath, body: TemplateUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _out(ansible_templates.update_template(tenant_id(), path.template_id, changes))


@blueprint.delete("/ansible/templates/<int:template_id>", summary="Delete an execution template (its executions stay)",
                  responses={204: None, **NOT_FOUND})
@role("operator")
def delete_template(path: ExecutionTemplatePath) -> Any:
    ansible_templates.delete_template(tenant_id(), path.template_id)
    return "", 204
