"""Reading a probe's results: pages of them, newest first, and statistics over a time window.

Pages use keyset pagination on (created_at, id) rather than offsets, so a page costs the
same however deep it is and results written while a client pages through do not shift
rows between pages. Statistics are aggregated in the database, in SQL that runs the same
on PostgreSQL and SQLite, so a window of a million results never reaches Python.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select

from app.core.config import active_settings
from app.extensions import db
from app.models import ProbeResult, ProbeRollup
from app.models.rollups import PHASES
from app.probes.base import ProbeStatus
from app.services import latency_sketch, rollups
from app.services.errors import InvalidInputError
from app.services.probes import get_probe

MAX_LIMIT = 500
PERCENTILES = (50, 95, 99)
# Windows holding at most this many results (all of them still stored) are computed from the results.
RAW_EXACT_LIMIT = 10_000

_results = ProbeResult.__table__
# Everything a user reads about a result; tenant_id is implied by the probe.
_COLUMNS = [column for column in _results.c if column.name != "tenant_id"]
_FAILURE_COLUMNS = (_results.c.id, _results.c.created_at, _results.c.status, _results.c.status_code, _results.c.error)


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

    ``until`` None leaves the window open at the end. When the window holds at most
    ``RAW_EXACT_LIMIT`` stored results and they are all its rollups know of, everything is
    computed from the results, and percentiles use the nearest-rank method over those with a
    response time: with those n values sorted ascending, the p-th percentile is the value at
    1-based rank ceil(p/100 * n), always a measured value (``percentile_method`` "nearest_rank").
    Otherwise the window is read from the rollups — whole days, hours and minutes — plus the
    results of its sub-minute edges: counts, uptime, average, minimum and maximum are the
    same, and percentiles come from the merged sketch, within ``latency_sketch.RELATIVE_ERROR``
    of the nearest-rank value ("sketch"). Averages and percentiles are None when no result has
    a response time, uptime is None when there are no results at all.
    ``uptime_outside_maintenance_percent`` leaves out the runs made in a maintenance window
    (``maintenance_count`` of them). ``last_failure`` is the newest failure whose result is
    still stored (raw results are kept ``retention.raw_days``).
    """
    get_probe(tenant_id, probe_id)
    if since is None:
        raise InvalidInputError("is required", field="since")
    window = _in_window(probe_id, since, until)
    plan = _plan(since, until)
    rolled, sketch = rollups.window_summary(probe_id, plan.pieces)
    edges = _edge_rows(probe_id, plan)
    known = len(edges) + rolled["count"]
    if known <= RAW_EXACT_LIMIT:  # else the window holds more than the limit: no need to count them
        stored = db.session.execute(select(func.count()).select_from(
            select(_results.c.id).where(*window).limit(RAW_EXACT_LIMIT + 1).subquery())).scalar_one()
        if known <= stored <= RAW_EXACT_LIMIT:
            return _raw_stats(window, since, until)
    totals = _combined(rolled, edges)
    for row in edges:
        if row.response_time_ms is not None:
            index = latency_sketch.bin_of(row.response_time_ms)
            sketch[index] = sketch.get(index, 0) + 1
    percentiles = latency_sketch.quantiles(sketch, PERCENTILES)
    return _stats_out(since, until, totals, {f"p{p}_response_time_ms": value for p, value in percentiles.items()},
                      "sketch", _last_failure_in_pieces(probe_id, window, plan))


def _raw_stats(window: list[ColumnElement[bool]], since: datetime, until: datetime | None) -> dict[str, Any]:
    totals = db.session.execute(
        select(
            func.count().label("count"),
            func.coalesce(func.sum(case((_results.c.status != ProbeStatus.SUCCESS.value, 1), else_=0)), 0)
            .label("failures"),
            func.coalesce(func.sum(case((_results.c.in_maintenance, 1), else_=0)), 0).label("maintenance_count"),
            func.coalesce(func.sum(case((and_(_results.c.in_maintenance,
                                              _results.c.status != ProbeStatus.SUCCESS.value), 1), else_=0)), 0)
            .label("maintenance_failures"),
            func.count(_results.c.response_time_ms).label("timed_count"),
            func.coalesce(func.sum(_results.c.response_time_ms), 0).label("rt_sum"),
            func.min(_results.c.response_time_ms).label("rt_min"),
            func.max(_results.c.response_time_ms).label("rt_max"),
        ).where(*window)
    ).mappings().one()
    last_failure = db.session.execute(
        select(*_FAILURE_COLUMNS).where(*window, _results.c.status != ProbeStatus.SUCCESS.value)
        .order_by(_results.c.created_at.desc(), _results.c.id.desc()).limit(1)
    ).first()
    return _stats_out(since, until, dict(totals), _percentiles(window), "nearest_rank", last_failure)


def _stats_out(since: datetime, until: datetime | None, totals: dict[str, Any], percentiles: dict[str, Any],
               method: str, last_failure: Any) -> dict[str, Any]:
    count, failures, maintenance = totals["count"], totals["failures"], totals["maintenance_count"]
    outside = count - maintenance
    outside_success = outside - (failures - totals["maintenance_failures"])
    timed = totals["timed_count"]
    return {
        "since": since,
        "until": until,
        "count": count,
        "success_count": count - failures,
        "uptime_percent": round((count - failures) / count * 100, 3) if count else None,
        "maintenance_count": maintenance,
        "uptime_outside_maintenance_percent": round(outside_success / outside * 100, 3) if outside else None,
        "avg_response_time_ms": round(totals["rt_sum"] / timed, 3) if timed else None,
        "min_response_time_ms": totals["rt_min"] if timed else None,
        "max_response_time_ms": totals["rt_max"] if timed else None,
        **percentiles,
        "percentile_method": method,
        "last_failure": None if last_failure is None else {
            "result_id": last_failure.id,
            "at": last_failure.created_at,
            "status": last_failure.status,
            "status_code": last_failure.status_code,
            "error": last_failure.error,
        },
    }


@dataclass(frozen=True)
class _Plan:
    """A window as rollup pieces plus raw edges: each edge is a (from, to) of datetimes, None = open."""

    pieces: list[rollups.Piece]
    edges: list[tuple[datetime | None, datetime | None]]


def _plan(since: datetime, until: datetime | None) -> _Plan:
    """Whole minutes (hours, days) from the rollups, the sub-minute edges from raw results.

    An edge older than the minute rollups' retention is rounded outward to the hour (the
    day past the hours'), and has no raw part: its results are gone with the minutes.
    """
    cutoffs = rollups.retention_cutoffs()
    end_moment = until or datetime.now(UTC)
    start_s, end_s = since.timestamp(), end_moment.timestamp()
    edges: list[tuple[datetime | None, datetime | None]] = []
    head_level = rollups.edge_level(math.floor(start_s), cutoffs)
    first = math.ceil(start_s / 60) * 60 if head_level == rollups.MINUTE else math.floor(start_s / head_level) * head_level
    tail_level = rollups.edge_level(math.floor(end_s), cutoffs)
    last = math.floor(end_s / 60) * 60 if tail_level == rollups.MINUTE else math.ceil(end_s / tail_level) * tail_level
    if first >= last:
        return _Plan([], [(since, until)])
    if head_level == rollups.MINUTE and first > start_s:
        edges.append((since, datetime.fromtimestamp(first, UTC)))
    if tail_level == rollups.MINUTE and (until is None or last < end_s):
        edges.append((datetime.fromtimestamp(last, UTC), until))
    return _Plan(rollups.pieces(first, last), edges)


def _edge_condition(edge: tuple[datetime | None, datetime | None]) -> list[ColumnElement[bool]]:
    start, end = edge
    conditions = []
    if start is not None:
        conditions.append(_results.c.created_at >= start)
    if end is not None:
        conditions.append(_results.c.created_at < end)
    return conditions


def _edge_rows(probe_id: int, plan: _Plan) -> list[Any]:
    if not plan.edges:
        return []
    return list(db.session.execute(
        select(_results.c.status, _results.c.in_maintenance, _results.c.response_time_ms)
        .where(_results.c.probe_id == probe_id, or_(*(and_(*_edge_condition(edge)) for edge in plan.edges)))))


def _combined(rolled: dict[str, Any], edges: list[Any]) -> dict[str, Any]:
    totals = dict(rolled)
    for row in edges:
        failed = row.status != ProbeStatus.SUCCESS.value
        totals["count"] += 1
        totals["failures"] += failed
        totals["maintenance_count"] += bool(row.in_maintenance)
        totals["maintenance_failures"] += failed and bool(row.in_maintenance)
        value = row.response_time_ms
        if value is not None:
            totals["timed_count"] += 1
            totals["rt_sum"] += value
            totals["rt_min"] = value if totals["rt_min"] is None else min(totals["rt_min"], value)
            totals["rt_max"] = value if totals["rt_max"] is None else max(totals["rt_max"], value)
    return totals


def _latest_failure(conditions: list[ColumnElement[bool]]) -> Any:
    return db.session.execute(
        select(*_FAILURE_COLUMNS).where(*conditions, _results.c.status != ProbeStatus.SUCCESS.value)
        .order_by(_results.c.created_at.desc(), _results.c.id.desc()).limit(1)).first()


def _last_failure_in_pieces(probe_id: int, window: list[ColumnElement[bool]], plan: _Plan) -> Any:
    """The newest failure, found through the rollups: the newest bucket with a failure, narrowed
    level by level to its minute, then that minute's results; never a scan of the window."""
    by_end = sorted(plan.pieces, key=lambda piece: piece[2], reverse=True)
    pieces_end = by_end[0][2] if by_end else None
    tail = [edge for edge in plan.edges
            if pieces_end is None or (edge[0] is not None and edge[0].timestamp() >= pieces_end)]
    head = [edge for edge in plan.edges if edge not in tail]
    for edge in tail:
        found = _latest_failure([_results.c.probe_id == probe_id, *_edge_condition(edge)])
        if found is not None:
            return found
    r = rollups.ProbeRollup.__table__.c
    for level, first, end in by_end:
        bucket = db.session.execute(select(func.max(r.bucket)).where(
            r.probe_id == probe_id, r.level == level, r.bucket >= first, r.bucket < end, r.failures > 0)).scalar()
        if bucket is None:
            continue
        while level > rollups.MINUTE:
            finer = rollups.LEVELS[rollups.LEVELS.index(level) - 1]
            narrowed = db.session.execute(select(func.max(r.bucket)).where(
                r.probe_id == probe_id, r.level == finer, r.bucket >= bucket, r.bucket < bucket + level,
                r.failures > 0)).scalar()
            if narrowed is None:
                break
            level, bucket = finer, narrowed
        return _latest_failure([*window, _results.c.created_at >= datetime.fromtimestamp(bucket, UTC),
                                _results.c.created_at < datetime.fromtimestamp(bucket + level, UTC)])
    for edge in head:
        found = _latest_failure([_results.c.probe_id == probe_id, *_edge_condition(edge)])
        if found is not None:
            return found
    return None


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


CHART_MAX_POINTS = 1500


def chart(tenant_id: int, probe_id: int, *, since: datetime, until: datetime) -> dict[str, Any]:
    """Response-time points over [since, until): the finest level giving at most ``CHART_MAX_POINTS``.

    Raw results when the window holds at most that many and starts within their retention;
    else minute, hour or day rollups (a level is skipped when the window starts before its
    retention). A rollup point is a bucket with runs (buckets without any are left out):
    averages are over the bucket's results with the value, p95 comes from its sketch.
    """
    get_probe(tenant_id, probe_id)
    window = _in_window(probe_id, since, until)
    if until is None or since is None:
        raise InvalidInputError("is required", field="since" if since is None else "until")
    now = datetime.now(UTC)
    raw_cutoff = now.timestamp() - active_settings().retention.raw_days * rollups.DAY
    if since.timestamp() >= raw_cutoff and _rolled_up_count(probe_id, since, until) <= CHART_MAX_POINTS:
        rows = list(db.session.execute(select(*_CHART_RAW).where(*window)
                                       .order_by(_results.c.created_at, _results.c.id).limit(CHART_MAX_POINTS + 1)))
        if len(rows) <= CHART_MAX_POINTS:
            return {"level": "raw", "step_seconds": None, "since": since, "until": until,
                    "points": [_raw_point(row) for row in rows]}
    span = until.timestamp() - since.timestamp()
    cutoffs = rollups.retention_cutoffs(now)
    level = next((level for level in rollups.LEVELS
                  if span / level <= CHART_MAX_POINTS and (cutoffs[level] is None or since.timestamp() >= cutoffs[level])),
                 rollups.DAY)
    first = math.floor(since.timestamp() / level) * level
    end = math.ceil(until.timestamp())
    r = ProbeRollup.__table__.c
    rows = db.session.execute(select(*_CHART_ROLLUP).where(
        r.probe_id == probe_id, r.level == level, r.bucket >= first, r.bucket < end).order_by(r.bucket)).mappings()
    return {"level": rollups.LEVEL_NAMES[level], "step_seconds": level, "since": since, "until": until,
            "points": [_rollup_point(row) for row in rows]}


def _rolled_up_count(probe_id: int, since: datetime, until: datetime) -> int:
    """Results the rollups hold for the window's whole hours (days): a cheap bound that spares
    reading raw rows for a window that holds too many to chart them one by one."""
    start, end = math.ceil(since.timestamp() / rollups.HOUR) * rollups.HOUR, math.floor(until.timestamp())
    end -= end % rollups.HOUR
    if start >= end:
        return 0
    r = ProbeRollup.__table__.c
    return int(db.session.execute(select(func.coalesce(func.sum(r.count), 0)).where(
        r.probe_id == probe_id, rollups.in_pieces(ProbeRollup.__table__, rollups.pieces(start, end)))).scalar_one())


_CHART_RAW = (_results.c.created_at, _results.c.status, _results.c.in_maintenance, _results.c.response_time_ms,
              *(_results.c[f"{phase}_ms"] for phase in PHASES))
_CHART_ROLLUP = tuple(ProbeRollup.__table__.c[name] for name in (
    "bucket", "count", "failures", "maintenance_count", "timed_count", "rt_sum", "rt_min", "rt_max", "rt_sketch",
    *(f"{phase}_{part}" for phase in PHASES for part in ("sum", "count"))))


def _raw_point(row: Any) -> dict[str, Any]:
    value = row.response_time_ms
    return {"at": row.created_at, "count": 1, "failures": int(row.status != ProbeStatus.SUCCESS.value),
            "maintenance_count": int(bool(row.in_maintenance)), "avg_ms": value, "min_ms": value,
            "max_ms": value, "p95_ms": value, **{f"{phase}_ms": getattr(row, f"{phase}_ms") for phase in PHASES}}


def _rollup_point(row: Any) -> dict[str, Any]:
    timed = row["timed_count"]
    return {"at": datetime.fromtimestamp(row["bucket"], UTC), "count": row["count"], "failures": row["failures"],
            "maintenance_count": row["maintenance_count"],
            "avg_ms": round(row["rt_sum"] / timed, 3) if timed else None,
            "min_ms": row["rt_min"], "max_ms": row["rt_max"],
            "p95_ms": latency_sketch.quantiles(latency_sketch.decode(row["rt_sketch"]), (95,))[95],
            **{f"{phase}_ms": round(row[f"{phase}_sum"] / row[f"{phase}_count"], 3) if row[f"{phase}_count"] else None
               for phase in PHASES}}
