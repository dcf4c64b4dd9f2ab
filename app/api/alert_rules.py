"""Alert rules of the caller's tenant: when an alert opens and resolves, and whom it tells."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import AlertRule
from app.services import alert_rules

blueprint = api_blueprint("alert-rules", "Rules that open alerts on probe results: down, slow, certificate.")

RuleCreate = alert_rules.RuleInput
RuleUpdate = create_model(  # type: ignore[call-overload]
    "RuleUpdate",
    __config__=ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True),
    **{name: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
       for name, info in alert_rules.RuleInput.model_fields.items()},
)
RuleUpdate.__doc__ = "Fields to change; the whole rule is validated again."


class RulePath(BaseModel):
    rule_id: RowId


class RuleOut(BaseModel):
    id: int
    name: str
    description: str
    kind: str
    probe_id: int | None
    group_id: int | None
    protocol: str | None
    threshold: int
    window: int
    recovery: int
    slow_ms: float | None
    cert_days: int | None
    reminder_seconds: int
    send_resolved: bool
    enabled: bool
    channel_ids: list[int]
    group_by: str
    group_wait_seconds: int
    group_interval_seconds: int
    flap_changes: int
    flap_window_seconds: int
    flap_settle_seconds: int
    escalation: list[alert_rules.EscalationStep]
    created_at: datetime
    updated_at: datetime


class RuleList(BaseModel):
    items: list[RuleOut]


def _out(rule: AlertRule) -> dict[str, Any]:
    return RuleOut(**alert_rules.rule_fields(rule), id=rule.id, created_at=rule.created_at,
                   updated_at=rule.updated_at).model_dump(mode="json")


@blueprint.get("/alert-rules", summary="List alert rules", responses={200: RuleList})
@role("viewer")
def list_rules() -> Any:
    return {"items": [_out(rule) for rule in alert_rules.list_rules(tenant_id())]}


@blueprint.post("/alert-rules", summary="Create an alert rule", responses={201: RuleOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def create_rule(body: RuleCreate) -> Any:  # type: ignore[valid-type]
    return _out(alert_rules.create_rule(tenant_id(), body.model_dump(exclude_unset=True))), 201  # type: ignore[attr-defined]


@blueprint.get("/alert-rules/<int:rule_id>", summary="Get an alert rule", responses={200: RuleOut, **NOT_FOUND})
@role("viewer")
def get_rule(path: RulePath) -> Any:
    return _out(alert_rules.get_rule(tenant_id(), path.rule_id))


@blueprint.patch("/alert-rules/<int:rule_id>", summary="Change an alert rule",
                 responses={200: RuleOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_rule(path: RulePath, body: RuleUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _out(alert_rules.update_rule(tenant_id(), path.rule_id, changes))


@blueprint.delete("/alert-rules/<int:rule_id>", summary="Delete an alert rule with its alerts",
                  responses={204: None, **NOT_FOUND})
@role("operator")
def delete_rule(path: RulePath) -> Any:
    alert_rules.delete_rule(tenant_id(), path.rule_id)
    return "", 204
