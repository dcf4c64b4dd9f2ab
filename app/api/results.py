"""A probe's results (newest first, cursor-paginated) and its statistics over a window."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from app.api import NOT_FOUND, api_blueprint
from app.api.probes import ProbePath, StatusName
from app.api.schemas import IsoTime
from app.api.security import role, tenant_id
from app.services import results, rollups, run_losses
from app.services.probes import get_probe
from app.services.errors import InvalidInputError

blueprint = api_blueprint("results", "Stored probe results and statistics.")

DEFAULT_STATS_WINDOW = timedelta(hours=24)


class WindowQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: IsoTime | None = Field(None, description="Inclusive, ISO 8601 (UTC when no zone is given).")
    until: IsoTime | None = Field(None, description="Exclusive, ISO 8601 (UTC when no zone is given).")


class ResultsQuery(WindowQuery):
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=200, description="`next_cursor` of the previous page.")


class ResultOut(BaseModel):
    id: int
    probe_id: int
    run_key: str = Field(description="`auto:<slot ms>` for a scheduled run, `manual:<task id>` for a manual one.")
    probe_type: str
    status: StatusName
    response_time_ms: float | None
    status_code: int | None
    error: str | None
    dns_ms: float | None
    connect_ms: float | None
    tls_ms: float | None
    processing_ms: float | None
    transfer_ms: float | None
    cert_expires_at: datetime | None
    bytes_read: int
    details: dict[str, Any] | None = Field(
        None, description="What the protocol measured beyond these fields: DNS answers, ICMP loss and round trips.")
    scheduled_for: datetime | None
    started_at: datetime
    created_at: datetime
    in_maintenance: bool = Field(description="The run started in a maintenance window covering its probe.")


class ResultPageOut(BaseModel):
    items: list[ResultOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last.")


class LastFailure(BaseModel):
    result_id: int
    at: datetime
    status: StatusName
    status_code: int | None
    error: str | None


class StatsOut(BaseModel):
    since: datetime
    until: datetime
    count: int
    success_count: int
    uptime_percent: float | None
    maintenance_count: int = Field(description="Runs made in a maintenance window.")
    uptime_outside_maintenance_percent: float | None = Field(
        description="Uptime of the runs made outside maintenance windows; null when there are none.")
    avg_response_time_ms: float | None
    min_response_time_ms: float | None
    max_response_time_ms: float | None
    p50_response_time_ms: float | None
    p95_response_time_ms: float | None
    p99_response_time_ms: float | None
    percentile_method: Literal["nearest_rank", "sketch"] = Field(
        description="`nearest_rank`: exact, from the stored results (windows of at most 10,000 results, all "
                    "still stored); `sketch`: from the rollups' merged sketch, within 2 % of the exact value.")
    last_failure: LastFailure | None = Field(description="The newest failure in the window whose result is still stored.")


@blueprint.get("/probes/<int:probe_id>/results", summary="A probe's results, newest first",
               responses={200: ResultPageOut, **NOT_FOUND})
@role("viewer")
def list_results(path: ProbePath, query: ResultsQuery) -> Any:
    page = results.list_results(tenant_id(), path.probe_id, limit=query.limit, cursor=query.cursor,
                                since=query.since, until=query.until)
    return ResultPageOut(items=page.items, next_cursor=page.next_cursor).model_dump(mode="json")


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The asked window; ``until`` defaults to now, ``since`` to ``DEFAULT_STATS_WINDOW`` before it."""
    end = until or datetime.now(timezone.utc)
    start = since or end - DEFAULT_STATS_WINDOW
    if start >= end:
        if until is not None:
            raise InvalidInputError("must be later than since", field="until")
        raise InvalidInputError("must be in the past (until defaults to now)", field="since")
    return start, end


@blueprint.get("/probes/<int:probe_id>/stats",
               summary="Uptime, count and response-time percentiles over a window (default: the last 24 h)",
               responses={200: StatsOut, **NOT_FOUND})
@role("viewer")
def probe_stats(path: ProbePath, query: WindowQuery) -> Any:
    since, until = _window(query.since, query.until)
    stats = results.probe_stats(tenant_id(), path.probe_id, since=since, until=until)
    return StatsOut.model_validate(stats).model_dump(mode="json")


class ChartPoint(BaseModel):
    at: datetime = Field(description="The result's time (raw) or its bucket's start.")
    count: int
    failures: int
    maintenance_count: int
    avg_ms: float | None
    min_ms: float | None
    max_ms: float | None
    p95_ms: float | None = Field(description="From the bucket's sketch (within 2 %); the value itself for raw.")
    dns_ms: float | None = Field(description="Average of the phase over the results that measured it.")
    connect_ms: float | None
    tls_ms: float | None
    processing_ms: float | None
    transfer_ms: float | None


class ChartOut(BaseModel):
    level: Literal["raw", "minute", "hour", "day"]
    step_seconds: int | None = Field(description="The bucket length; null for raw results.")
    since: datetime
    until: datetime
    points: list[ChartPoint] = Field(description="Oldest first, at most about 1,500; buckets without runs are left out.")


class DailyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(90, ge=1, le=400)


class DayOut(BaseModel):
    day: date = Field(description="A UTC day.")
    count: int
    failures: int
    maintenance_count: int
    uptime_percent: float | None


class DaysOut(RootModel[list[DayOut]]):
    """One entry per UTC day, oldest first, today last."""


@blueprint.get("/probes/<int:probe_id>/chart",
               summary="Response-time points over a window (default: the last 24 h), at most about 1,500",
               responses={200: ChartOut, **NOT_FOUND})
@role("viewer")
def probe_chart(path: ProbePath, query: WindowQuery) -> Any:
    since, until = _window(query.since, query.until)
    points = results.chart(tenant_id(), path.probe_id, since=since, until=until)
    return ChartOut.model_validate(points).model_dump(mode="json")


@blueprint.get("/probes/<int:probe_id>/uptime/daily", summary="Runs, failures and uptime per UTC day",
               responses={200: DaysOut, **NOT_FOUND})
@role("viewer")
def probe_daily(path: ProbePath, query: DailyQuery) -> Any:
    probe = get_probe(tenant_id(), path.probe_id)
    days = rollups.daily(probe.tenant_id, probe.id, query.days)
    return DaysOut.model_validate([day.as_dict() for day in days]).model_dump(mode="json")


class RunStatsOut(BaseModel):
    since: datetime
    until: datetime
    stored: int = Field(description="Results stored in the window (scheduled and on demand).")
    missed: int = Field(description="Scheduled slots nothing dispatched: no dispatcher ran, or the "
                                    "network_probes queue was over probes.max_queue_backlog.")
    expired: int = Field(description="Slots claimed but started by no worker before the probe's next slot.")
    lost: int = Field(description="Slots started by a worker that died, and not run again while current.")
    unwritten: int = Field(description="Measured results a worker dropped: the database was down longer "
                                       "than its buffer held.")
    in_flight: int = Field(description="Claimed slots not stored yet (now, not over the window).")


@blueprint.get("/runs/stats",
               summary="Scheduled runs stored and lost, by reason, over a window (default: the last 24 h)",
               responses={200: RunStatsOut})
@role("viewer")
def run_stats(query: WindowQuery) -> Any:
    until = query.until or datetime.now(timezone.utc)
    since = query.since or until - DEFAULT_STATS_WINDOW
    if since >= until:
        raise InvalidInputError("must be earlier than until", field="since")
    return RunStatsOut.model_validate(run_losses.totals(since, until, tenant_id()).as_dict()).model_dump(mode="json")
