"""Silences of the caller's tenant: mute the alerts of some probes, groups or rules until an end time."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import RowId
from app.api.security import current_principal, role, tenant_id
from app.models import Silence
from app.services import silences

blueprint = api_blueprint("silences", "Ad-hoc silences: the alerts they match stay open but send no firing, "
                                      "reminder or escalation notices until the silence ends.")

SilenceCreate = silences.SilenceInput
SilenceUpdate = silences.SilenceChanges


class SilencePath(BaseModel):
    silence_id: RowId


class SilenceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["active", "pending", "expired", "current", "all"] = Field(
        "all", description="`current`: active or pending.")
    limit: int = Field(100, ge=1, le=500)
    cursor: RowId | None = Field(None, description="`next_cursor` of the previous page.")


class SilenceOut(BaseModel):
    id: int
    comment: str
    probe_ids: list[int]
    group_ids: list[int]
    rule_ids: list[int]
    starts_at: datetime
    ends_at: datetime
    state: Literal["active", "pending", "expired"] = Field(
        description="pending before starts_at, active until ends_at, expired after.")
    created_by: int | None = Field(description="The user who created it (null: the CLI, or a deleted user).")
    created_by_name: str
    created_at: datetime
    alert_ids: list[int] = Field(description="The open alerts (firing, acknowledged, suppressed) it covers now.")


class SilenceList(BaseModel):
    items: list[SilenceOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


def _out(rows: list[Silence]) -> list[dict[str, Any]]:
    covered = silences.covered_alerts(tenant_id(), rows)
    return [SilenceOut(**silences.silence_fields(row), id=row.id, state=silences.state_of(row),
                       created_by=row.created_by, created_by_name=row.created_by_name, created_at=row.created_at,
                       alert_ids=covered[row.id]).model_dump(mode="json") for row in rows]


def _one(row: Silence) -> dict[str, Any]:
    return _out([row])[0]


@blueprint.get("/silences", summary="List silences, newest first", responses={200: SilenceList})
@role("viewer")
def list_silences(query: SilenceQuery) -> Any:
    rows = silences.list_silences(tenant_id(), query.state, limit=query.limit + 1, before_id=query.cursor)
    page, more = rows[:query.limit], len(rows) > query.limit
    return {"items": _out(page), "next_cursor": page[-1].id if more else None}


@blueprint.post("/silences", summary="Create a silence", responses={201: SilenceOut, **NOT_FOUND})
@role("operator")
def create_silence(body: SilenceCreate) -> Any:
    principal = current_principal()
    created = silences.create_silence(tenant_id(), body.model_dump(exclude_unset=True), principal.user_id,
                                      principal.username)
    return _one(created), 201


@blueprint.get("/silences/<int:silence_id>", summary="Get a silence", responses={200: SilenceOut, **NOT_FOUND})
@role("viewer")
def get_silence(path: SilencePath) -> Any:
    return _one(silences.get_silence(tenant_id(), path.silence_id))


@blueprint.patch("/silences/<int:silence_id>", summary="Change a silence's comment, end or matchers",
                 responses={200: SilenceOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_silence(path: SilencePath, body: SilenceUpdate) -> Any:
    changes = body.model_dump(exclude_unset=True)
    return _one(silences.update_silence(tenant_id(), path.silence_id, changes))


@blueprint.post("/silences/<int:silence_id>/expire", summary="End a silence now (it is kept, expired)",
                responses={200: SilenceOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def expire_silence(path: SilencePath) -> Any:
    return _one(silences.expire_silence(tenant_id(), path.silence_id))


@blueprint.delete("/silences/<int:silence_id>", summary="Delete a silence",
                  responses={204: None, **NOT_FOUND})
@role("operator")
def delete_silence(path: SilencePath) -> Any:
    silences.delete_silence(tenant_id(), path.silence_id)
    return "", 204
