"""What the web console reads: every probe at a glance, and what changed since the last look."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response
from pydantic import BaseModel, ConfigDict, Field

from app.api import api_blueprint
from app.api.security import role, tenant_id
from app.services import overview, status_cache

blueprint = api_blueprint("console-overview", "The console's overview of every probe, and its changes feed.")

BeatCount = Field(status_cache.BEATS, ge=0, le=status_cache.BEATS,
                  description="Runs per probe in `beats` (the newest ones).")


class OverviewQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beats: int = BeatCount


class ChangesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cursor: str = Field(min_length=1, max_length=100, description="The `cursor` of the last overview or changes answer.")
    beats: int = BeatCount


class Beat(BaseModel):
    status: str = Field(description="`success`, `failed`, `timeout` or `error`.")
    at: datetime
    response_time_ms: float | None


class ChangedTile(BaseModel):
    id: int
    name: str
    protocol: str
    target: str = Field(description="Credentials in the target read `********`.")
    group_id: int | None
    group_name: str | None
    enabled: bool
    status: str | None = Field(description="Latest run's status; null if the probe never ran.")
    checked_at: datetime | None
    response_time_ms: float | None
    status_code: int | None
    error: str | None
    cert_expires_at: datetime | None
    cert_days_left: int | None = Field(description="Whole days until the certificate expires (negative: expired).")
    in_maintenance: bool = Field(description="A maintenance window covering the probe is open now.")
    beats: list[Beat] = Field(description="The latest runs, oldest first, at most 50.")


class Tile(ChangedTile):
    uptime_24h: float | None = Field(description="Percent of runs that succeeded; null without runs. "
                                                 "Refreshed at most every minute.")
    uptime_7d: float | None
    uptime_30d: float | None


class Overview(BaseModel):
    cursor: str = Field(description="Pass to `GET /console/overview/changes` for what changes after this answer.")
    generated_at: datetime
    probes: list[Tile]


class Changes(BaseModel):
    cursor: str = Field(description="The cursor for the next call.")
    probes: list[ChangedTile] = Field(description="Probes with a new result since the cursor.")
    removed: list[int] = Field(description="Probes deleted since the cursor.")


def _json(text: str) -> Response:
    return Response(text, mimetype="application/json", headers={"Cache-Control": "no-store"})


@blueprint.get("/console/overview", summary="Every probe of the tenant with its status, runs and uptime",
               responses={200: Overview})
@role("viewer")
def get_overview(query: OverviewQuery) -> Any:
    return _json(overview.overview(tenant_id(), query.beats))


@blueprint.get("/console/overview/changes",
               summary="Probes that changed since a cursor (a 422 means: load the overview again)",
               responses={200: Changes})
@role("viewer")
def get_changes(query: ChangesQuery) -> Any:
    return _json(overview.changes(tenant_id(), query.cursor, query.beats))
