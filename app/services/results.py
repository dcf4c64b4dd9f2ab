"""Reading a probe's results: pages of them, newest first, and statistics over a time window.

Pages use keyset pagination on (created_at, id) rather than offsets, so a page costs the
same however deep it is and results written while a client pages through do not shift
rows between pages. Statistics are aggregated in the database, in SQL that runs the same
on PostgreSQL and SQLite, so a window of a million results never reaches Python.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select

from app.extensions import db
from app.models import ProbeResult
from app.probes.base import ProbeStatus
from app.services.errors import InvalidInputError
from app.services.probes import get_probe

MAX_LIMIT = 500
PERCENTILES = (50, 95, 99)

_results = ProbeResult.__table__
# Everything a user reads about a result; tenant_id is implied by the probe.
_COLUMNS = [column for column in _results.c if column.name != "tenant_id"]


@dataclass
class ResultPage:
    """``next_cursor`` is None on the last page."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def list_results(
    tenant_id: int,
    probe_id: int,
    *,
    limit: int = 50,
    cursor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ResultPage:
    """Results of one probe, newest first; pass ``next_cursor`` back (with the same window) for the next page."""
    get_probe(tenant_id, probe_id)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    query = select(*_COLUMNS).where(*_in_window(probe_id, since, until))
    if cursor is not None:
        created_at, result_id = _decode_cursor(cursor)
        # The first condition alone is a range on the (probe_id, created_at) index.
        query = query.where(
            _results.c.created_at <= created_at,
            or_(_results.c.created_at < created_at, _results.c.id < result_id),
        )
    query = query.order_by(_results.c.created_at.desc(), _results.c.id.desc()).limit(limit + 1)
    items = [dict(row) for row in db.session.execute(query).mappings()]
    if len(items) <= limit:
        return ResultPage(items)
    items = items[:limit]
    return ResultPage(items, _encode_cursor(items[-1]["created_at"], items[-1]["id"]))


def probe_stats(tenant_id: int, probe_id: int, *, since: datetime, until: datetime | None = None) -> dict[str, Any]:
    """Uptime, response times and the latest failure of one probe over [since, until).

    ``until`` None leaves the window open at the end. Percentiles use the nearest-rank
    method over the results that have a response time: with those n values sorted
    ascending, the p-th percentile is the value at 1-based rank ceil(p/100 * n). It is
    always a measured value, never an interpolation; for n = 100 the p95 is the 95th
    smallest. Averages and percentiles are None when no result has a response time,
    uptime is None when there are no results at all. ``uptime_outside_maintenance_percent``
    leaves out the runs made in a maintenance window (``maintenance_count`` of them).
    """
    get_probe(tenant_id, probe_id)
    if since is None:
        raise InvalidInputError("is required", field="since")
    window = _in_window(probe_id, since, until)

    totals = db.session.execute(
        select(
            func.count().label("count"),
            func.coalesce(func.sum(case((_results.c.status == ProbeStatus.SUCCESS.value, 1), else_=0)), 0)
            .label("success_count"),
            func.avg(_results.c.response_time_ms).label("avg"),
            func.coalesce(func.sum(case((_results.c.in_maintenance, 1), else_=0)), 0).label("maintenance_count"),
            func.coalesce(func.sum(case((_results.c.in_maintenance, 0),
                                        (_results.c.status == ProbeStatus.SUCCESS.value, 1), else_=0)), 0)
            .label("success_outside_maintenance"),
        ).where(*window)
    ).one()
    outside = totals.count - totals.maintenance_count
    last_failure = db.session.execute(
        select(_results.c.id, _results.c.created_at, _results.c.status, _results.c.status_code, _results.c.error)
        .where(*window, _results.c.status != ProbeStatus.SUCCESS.value)
        .order_by(_results.c.created_at.desc(), _results.c.id.desc())
        .limit(1)
    ).first()

    return {
        "since": since,
        "until": until,
        "count": totals.count,
        "success_count": totals.success_count,
        "uptime_percent": round(totals.success_count / totals.count * 100, 3) if totals.count else None,
        "maintenance_count": totals.maintenance_count,
        "uptime_outside_maintenance_percent":
            round(totals.success_outside_maintenance / outside * 100, 3) if outside else None,
        "avg_response_time_ms": round(totals.avg, 3) if totals.avg is not None else None,
        **_percentiles(window),
        "last_failure": None if last_failure is None else {
            "result_id": last_failure.id,
            "at": last_failure.created_at,
            "status": last_failure.status,
            "status_code": last_failure.status_code,
            "error": last_failure.error,
        },
    }


def _percentiles(window: list[ColumnElement[bool]]) -> dict[str, float | None]:
    """Nearest-rank percentiles in one statement, with no division so no dialect's integer rules matter.

    rank = ceil(p * n / 100) is the one rank r with (r - 1) * 100 < p * n <= r * 100.
    """
    ranked = (
        select(
            _results.c.response_time_ms.label("value"),
            func.row_number().over(order_by=_results.c.response_time_ms).label("rank"),
            func.count().over().label("n"),
        )
        .where(*window, _results.c.response_time_ms.is_not(None))
        .subquery()
    )
    picks = [
        func.max(case(
            (and_(ranked.c.rank * 100 >= p * ranked.c.n, (ranked.c.rank - 1) * 100 < p * ranked.c.n), ranked.c.value),
        )).label(f"p{p}_response_time_ms")
        for p in PERCENTILES
    ]
    return dict(db.session.execute(select(*picks)).mappings().one())


def _in_window(probe_id: int, since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """The probe's results in the window. The probe's tenant was checked by ``get_probe``; not
    filtering on ``tenant_id`` again leaves the planner one index to use, (probe_id, created_at) —
    SQLite without statistics would otherwise pick (tenant_id, created_at) and scan the tenant."""
    _check_aware(since, "since")
    _check_aware(until, "until")
    if since is not None and until is not None and since >= until:
        raise InvalidInputError("must be later than since", field="until")
    conditions = [_results.c.probe_id == probe_id]
    if since is not None:
        conditions.append(_results.c.created_at >= since)
    if until is not None:
        conditions.append(_results.c.created_at < until)
    return conditions


def _check_aware(value: datetime | None, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise InvalidInputError("must be a date and time", field=name)
    if value.utcoffset() is None:
        raise InvalidInputError("must include a timezone", field=name)


def _encode_cursor(created_at: datetime, result_id: int) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{result_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor stands for; anything this module did not produce is refused.

    A cursor is not signed: an edited but well-formed one only moves the position within
    the same tenant's probe, which the caller could reach by paging anyway.
    """
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        stamp, _, id_text = raw.partition("|")
        created_at, result_id = datetime.fromisoformat(stamp), int(id_text)
        if result_id < 1 or _encode_cursor(created_at, result_id) != cursor:  # also refuses naive stamps
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInputError("not a cursor this service returned", field="cursor") from None
    return created_at, result_id
