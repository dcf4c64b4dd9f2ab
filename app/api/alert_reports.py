"""Alert reports of the caller's tenant: per probe and in total over a window, alerts opened, time to
acknowledge and to resolve, and minutes down and in maintenance (``services.alert_reports``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api import NOT_FOUND, api_blueprint
from app.api.schemas import IsoTime, RowId
from app.api.security import role, tenant_id
from app.services import alert_reports

blueprint = api_blueprint("reports", "Reports over a window: alerts and their handling, time down and in "
                                     "maintenance, per probe and for the tenant.")


class AlertReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_: IsoTime | None = Field(None, alias="from", description="Inclusive, ISO 8601 (UTC when no zone is "
                                                                  "given); default: 7 days before `to`.")
    to: IsoTime | None = Field(None, description="Exclusive, ISO 8601; default: now. At most 400 days after `from`.")
    probe_id: RowId | None = Field(None, description="Only this probe.")


class Figures(BaseModel):
    alerts: int = Field(description="Alerts opened in the window.")
    suppressed: int = Field(description="Of those, suppressed because a probe they depend on was down "
                                        "(status `suppressed`, or a `suppressed_by` probe recorded).")
    acknowledged: int = Field(description="Of those, acknowledged (by now).")
    resolved: int = Field(description="Of those, resolved (by now).")
    time_to_acknowledge_median_seconds: float | None = Field(
        description="acknowledged_at - opened_at over the acknowledged ones; null when none. Percentiles "
                    "interpolate linearly between the closest ranks (PostgreSQL's percentile_cont).")
    time_to_acknowledge_p90_seconds: float | None
    time_to_resolve_median_seconds: float | None = Field(
        description="resolved_at - opened_at over the resolved ones; null when none.")
    time_to_resolve_p90_seconds: float | None
    results: int = Field(description="Results stored in the window.")
    minutes_down: float = Field(description="Each result that did not succeed counts until the probe's next "
                                            "result (the last one until `until`), clipped to [from, until).")
    minutes_in_maintenance: float = Field(description="The same for the results made in a maintenance window.")
    minutes_down_outside_maintenance: float


class ProbeFigures(Figures):
    probe_id: int
    probe_name: str


class AlertReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    until: datetime = Field(description="min(to, now): time down and in maintenance is counted up to it.")
    total: Figures = Field(description="The whole tenant: minutes are summed over its probes.")
    probes: list[ProbeFigures] = Field(description="By name: every probe with a result or an alert in the window, "
                                                   "or time down or in maintenance in it (with `probe_id`: that one).")


@blueprint.get("/reports/alerts",
               summary="Alerts, time to acknowledge and resolve, minutes down and in maintenance, per probe "
                       "(default: the last 7 days)",
               responses={200: AlertReportOut, **NOT_FOUND})
@role("viewer")
def alert_report(query: AlertReportQuery) -> Any:
    start, end = alert_reports.window(query.from_, query.to)
    made = alert_reports.report(tenant_id(), start, end, probe_id=query.probe_id)
    return AlertReportOut.model_validate(made.as_dict()).model_dump(mode="json", by_alias=True)
