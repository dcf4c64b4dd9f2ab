"""Alert reports: per tenant and per probe over a window, how many alerts opened, how soon they
were acknowledged and resolved, and how long each probe was down or in maintenance.

Everything is computed by one statement that PostgreSQL and SQLite both run and answer
alike. Times are read as whole microseconds since 1970 (``epoch_us``: exact on both), sums
and percentile picks are integer arithmetic, and the only inexact step is the last one,
one floating-point division into seconds or minutes, which both databases round the same.

- Alerts are those *opened* in [from, to) (the ``(tenant_id, opened_at)`` index), with
  their acknowledgement and resolution whenever those came.
- Percentiles interpolate linearly between the two closest ranks, as PostgreSQL's
  ``percentile_cont``: with the n values sorted, v[0] … v[n-1], the p-th percentile is at
  position i = p/100 × (n - 1), and is v[⌊i⌋] + (i - ⌊i⌋) × (v[⌊i⌋+1] - v[⌊i⌋]). The median of
  an even count is the mean of the middle two. Spelled with window functions, not
  ``percentile_cont``, which SQLite lacks.
- Time down: each stored result that did not succeed counts from its ``created_at`` until
  the probe's next result, or until min(to, now) for the probe's last one, clipped to
  [from, min(to, now)). The probe's last result before the window takes part (one index
  seek per probe on ``(probe_id, created_at)``): a failure stored before the window that
  lasted into it counts from the window's start. Time in maintenance counts the same way
  the results marked ``in_maintenance``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (CTE, BigInteger, ColumnElement, CompoundSelect, Float, Subquery, and_, case, cast, func,
                        literal_column, not_, null, or_, select, true, union_all)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.extensions import db
from app.models import Alert, Probe, ProbeResult, utcnow
from app.probes.base import ProbeStatus
from app.services.errors import InvalidInputError
from app.services.tenant_rows import owned

DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=400)
# Times a report may name: far from datetime's limits, which the window arithmetic would cross.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND

_results = ProbeResult.__table__
_probes = Probe.__table__
_alerts = Alert.__table__


@dataclass(frozen=True)
class Figures:
    """The numbers of one probe, or of the whole tenant (durations in seconds, times in minutes)."""

    alerts: int
    suppressed: int
    acknowledged: int
    resolved: int
    time_to_acknowledge_median_seconds: float | None
    time_to_acknowledge_p90_seconds: float | None
    time_to_resolve_median_seconds: float | None
    time_to_resolve_p90_seconds: float | None
    results: int
    minutes_down: float
    minutes_in_maintenance: float
    minutes_down_outside_maintenance: float


_FIGURES = tuple(Figures.__dataclass_fields__)


@dataclass(frozen=True)
class ProbeFigures(Figures):
    probe_id: int
    probe_name: str


@dataclass(frozen=True)
class AlertReport:
    """``until`` is min(end, now): time down and in maintenance is counted up to it."""

    start: datetime
    end: datetime
    until: datetime
    total: Figures
    probes: list[ProbeFigures]

    def as_dict(self) -> dict[str, Any]:
        """The report as the API and ``--json`` show it."""
        return {"from": self.start, "to": self.end, "until": self.until, "total": asdict(self.total),
                "probes": [asdict(row) for row in self.probes]}


class epoch_us(FunctionElement[int]):
    """Whole microseconds since 1970 of a timestamp column, exactly, on both databases."""

    type = BigInteger()
    name = "epoch_us"
    inherit_cache = True


@compiles(epoch_us, "postgresql")
def _epoch_us_postgresql(element: epoch_us, compiler: SQLCompiler, **kw: Any) -> str:
    # EXTRACT gives a numeric with the microseconds: exact.
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) * 1000000 AS BIGINT)"


@compiles(epoch_us, "sqlite")
def _epoch_us_sqlite(element: epoch_us, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC: the seconds from strftime, the microseconds
    # from the text (julianday's floating point would lose them).
    value = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {value}) AS INTEGER) * 1000000 + CAST(substr({value} || '000000', 21, 6) AS INTEGER))"


# --- the window ------------------------------------------------------------------------------

def window(start: datetime | None, end: datetime | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The window a caller means: ``end`` defaults to now, ``start`` to ``DEFAULT_WINDOW`` before ``end``."""
    _check_time(start, "from")
    _check_time(end, "to")
    resolved_end = end if end is not None else (now or utcnow())
    resolved_start = start if start is not None else resolved_end - DEFAULT_WINDOW
    _check_span(resolved_start, resolved_end, end_given=end is not None)
    return resolved_start.astimezone(timezone.utc), resolved_end.astimezone(timezone.utc)


def _check_time(value: datetime | None, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise InvalidInputError("must be a date and time", field=field)
    if value.utcoffset() is None:
        raise InvalidInputError("must include a timezone", field=field)
    if not EARLIEST <= value < LATEST:
        raise InvalidInputError(f"must lie between {EARLIEST:%Y} and {LATEST:%Y}", field=field)


def _check_span(start: datetime, end: datetime, end_given: bool) -> None:
    if start >= end:
        if end_given:
            raise InvalidInputError("must be later than from", field="to")
        raise InvalidInputError("must be in the past (to defaults to now)", field="from")
    if end - start > MAX_WINDOW:
        raise InvalidInputError(f"the window from it to 'to' is at most {MAX_WINDOW.days} days", field="from")


# --- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scope:
    tenant_id: int
    probe_id: int | None
    start: datetime
    end: datetime
    until: datetime

    @property
    def start_us(self) -> int:
        return _micros(self.start)

    @property
    def until_us(self) -> int:
        return _micros(self.until)


def _micros(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def report(tenant_id: int, start: datetime, end: datetime, probe_id: int | None = None,
           now: datetime | None = None) -> AlertReport:
    """The tenant's report over [start, end): a total, and a row for each probe with a result
    or an alert in the window or time down or in maintenance in it (with ``probe_id``: that
    probe's row, whatever it holds). Probes are listed by name."""
    _check_time(start, "from")
    _check_time(end, "to")
    _check_span(start, end, end_given=True)
    owned(Probe, tenant_id, probe_id, "probe")
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    scope = _Scope(tenant_id, probe_id, start, end, min(end, now or utcnow()))
    rows = db.session.execute(_statement(scope)).mappings().all()
    total, probes = None, []
    for row in rows:
        figures = {name: row[name] for name in _FIGURES}
        if row["probe_id"] is None:
            total = Figures(**figures)
        else:
            probes.append(ProbeFigures(**figures, probe_id=row["probe_id"], probe_name=row["probe_name"]))
    assert total is not None  # the total's aggregates always give one row
    # By name in code point order: the databases' collations could order names differently.
    probes.sort(key=lambda item: (item.probe_name, item.probe_id))
    return AlertReport(start, end, scope.until, total, probes)



def _statement(scope: _Scope) -> CompoundSelect:
    """Per-probe rows and the total row (``probe_id`` NULL)."""
    opened = _opened(scope)
    ranked = _ranked_durations(opened)
    measured = _measured_spans(scope)
    counts, totals_counts = _alert_counts(opened, grouped=True), _alert_counts(opened, grouped=False)
    picks, totals_picks = _percentiles(ranked, grouped=True), _percentiles(ranked, grouped=False)
    downtime, totals_downtime = _downtime(measured, grouped=True), _downtime(measured, grouped=False)

    listed: ColumnElement[bool] = true() if scope.probe_id is not None else or_(
        counts.c.probe_id.is_not(None), downtime.c.results > 0, downtime.c.down_us > 0, downtime.c.maintenance_us > 0)
    per_probe = (
        select(_probes.c.id.label("probe_id"),
               _probes.c.name.label("probe_name"), *_figures(counts, picks, downtime))
        .select_from(_probes.outerjoin(counts, counts.c.probe_id == _probes.c.id)
                     .outerjoin(picks, picks.c.probe_id == _probes.c.id)
                     .outerjoin(downtime, downtime.c.probe_id == _probes.c.id))
        .where(*_probe_scope(scope), listed)
    )
    total = (
        select(null().label("probe_id"), null().label("probe_name"),
               *_figures(totals_counts, totals_picks, totals_downtime))
        .select_from(totals_counts.join(totals_picks, true()).join(totals_downtime, true()))
    )
    return union_all(per_probe, total)


def _probe_scope(scope: _Scope) -> list[ColumnElement[bool]]:
    conditions = [_probes.c.tenant_id == scope.tenant_id]
    if scope.probe_id is not None:
        conditions.append(_probes.c.id == scope.probe_id)
    return conditions


def _figures(counts: Subquery, picks: Subquery, downtime: Subquery) -> list[ColumnElement[Any]]:
    def whole(column: ColumnElement[Any], name: str) -> ColumnElement[Any]:
        return func.coalesce(column, 0).label(name)

    def seconds(column: ColumnElement[Any], name: str) -> ColumnElement[Any]:
        return (cast(column, Float) / float(100 * US_PER_SECOND)).label(name)  # picks are 100 × µs

    def minutes(column: ColumnElement[Any], name: str) -> ColumnElement[Any]:
        return (cast(func.coalesce(column, 0), Float) / float(US_PER_MINUTE)).label(name)

    return [
        whole(counts.c.alerts, "alerts"), whole(counts.c.suppressed, "suppressed"),
        whole(counts.c.acknowledged, "acknowledged"), whole(counts.c.resolved, "resolved"),
        seconds(picks.c.ack_p50, "time_to_acknowledge_median_seconds"),
        seconds(picks.c.ack_p90, "time_to_acknowledge_p90_seconds"),
        seconds(picks.c.resolve_p50, "time_to_resolve_median_seconds"),
        seconds(picks.c.resolve_p90, "time_to_resolve_p90_seconds"),
        whole(downtime.c.results, "results"),
        minutes(downtime.c.down_us, "minutes_down"),
        minutes(downtime.c.maintenance_us, "minutes_in_maintenance"),
        minutes(downtime.c.down_outside_us, "minutes_down_outside_maintenance"),
    ]


# --- alerts ----------------------------------------------------------------------------------

def _opened(scope: _Scope) -> CTE:
    """The alerts opened in the window, their times in microseconds."""
    conditions = [_alerts.c.tenant_id == scope.tenant_id, _alerts.c.opened_at >= scope.start,
                  _alerts.c.opened_at < scope.end]
    if scope.probe_id is not None:
        conditions.append(_alerts.c.probe_id == scope.probe_id)
    suppressed = or_(_alerts.c.status == "suppressed", _alerts.c.suppressed_by.is_not(None))
    return select(
        _alerts.c.probe_id,
        case((suppressed, 1), else_=0).label("suppressed"),
        epoch_us(_alerts.c.opened_at).label("opened_us"),
        epoch_us(_alerts.c.acknowledged_at).label("acknowledged_us"),
        epoch_us(_alerts.c.resolved_at).label("resolved_us"),
    ).where(*conditions).cte("opened")


def _alert_counts(opened: CTE, grouped: bool) -> Subquery:
    columns = [func.count().label("alerts"), func.sum(opened.c.suppressed).label("suppressed"),
               func.count(opened.c.acknowledged_us).label("acknowledged"),
               func.count(opened.c.resolved_us).label("resolved")]
    if not grouped:
        return select(*columns).subquery("total_counts")
    return select(opened.c.probe_id, *columns).group_by(opened.c.probe_id).subquery("counts")


def _ranked_durations(opened: CTE) -> CTE:
    """Time to acknowledge (kind ``ack``) and to resolve (``resolve``) in µs, ranked per probe
    (``r`` of ``n``) and over the tenant (``tr`` of ``tn``)."""
    durations = union_all(
        select(opened.c.probe_id, literal_column("'ack'").label("kind"),
               (opened.c.acknowledged_us - opened.c.opened_us).label("v"))
        .where(opened.c.acknowledged_us.is_not(None)),
        select(opened.c.probe_id, literal_column("'resolve'").label("kind"),
               (opened.c.resolved_us - opened.c.opened_us).label("v"))
        .where(opened.c.resolved_us.is_not(None)),
    ).subquery("durations")
    per_probe = (durations.c.kind, durations.c.probe_id)
    return select(
        durations.c.probe_id, durations.c.kind, durations.c.v,
        func.row_number().over(partition_by=per_probe, order_by=durations.c.v).label("r"),
        func.count().over(partition_by=per_probe).label("n"),
        func.row_number().over(partition_by=durations.c.kind, order_by=durations.c.v).label("tr"),
        func.count().over(partition_by=durations.c.kind).label("tn"),
    ).cte("ranked")


def _percentiles(ranked: CTE, grouped: bool) -> Subquery:
    rank, count = (ranked.c.r, ranked.c.n) if grouped else (ranked.c.tr, ranked.c.tn)
    columns = [_percentile(ranked, kind, p, rank, count).label(f"{kind}_p{p}")
               for kind in ("ack", "resolve") for p in (50, 90)]
    if not grouped:
        return select(*columns).subquery("total_picks")
    return select(ranked.c.probe_id, *columns).group_by(ranked.c.probe_id).subquery("picks")


def _percentile(ranked: CTE, kind: str, p: int, rank: ColumnElement[int], count: ColumnElement[int]
                ) -> ColumnElement[Any]:
    """100 × the p-th percentile (linear interpolation) of ``kind``, in integers: NULL without values.

    ``position`` = p × (n - 1) is 100 × the 0-based position i. The value below it is the one
    of 1-based rank r with (r - 1) × 100 ≤ position < r × 100, weighted 100 - (position -
    (r - 1) × 100); the value above it, one rank later, takes the rest of the 100.
    """
    position = p * (count - 1)
    below = and_(ranked.c.kind == kind, (rank - 1) * 100 <= position, position < rank * 100)
    above = and_(ranked.c.kind == kind, (rank - 2) * 100 <= position, position < (rank - 1) * 100)
    return func.sum(case((below, ranked.c.v * (100 - (position - (rank - 1) * 100))),
                         (above, ranked.c.v * (position - (rank - 2) * 100))))


# --- time down and in maintenance ------------------------------------------------------------

def _measured_spans(scope: _Scope) -> CTE:
    """Each result taking part with the µs it stands for inside [start, until)."""
    columns = (_results.c.probe_id, _results.c.id, _results.c.created_at, _results.c.status,
               _results.c.in_maintenance)
    # One index range: (probe_id, created_at) for one probe, (tenant_id, created_at) for the tenant.
    owner = (_results.c.probe_id == scope.probe_id if scope.probe_id is not None
             else _results.c.tenant_id == scope.tenant_id)
    inside = select(*columns).where(owner, _results.c.created_at >= scope.start, _results.c.created_at < scope.until)
    latest_before = (select(_results.c.id)
                     .where(_results.c.probe_id == _probes.c.id, _results.c.created_at < scope.start)
                     .order_by(_results.c.created_at.desc(), _results.c.id.desc()).limit(1)
                     .scalar_subquery())
    carried = select(latest_before.label("result_id")).where(*_probe_scope(scope)).subquery("carried")
    before = select(*columns).select_from(_results.join(carried, carried.c.result_id == _results.c.id))
    base = union_all(inside, before).subquery("base")

    at = epoch_us(base.c.created_at)
    spans = select(
        base.c.probe_id, base.c.status, base.c.in_maintenance,
        case((base.c.created_at >= scope.start, 1), else_=0).label("counted"),
        at.label("at_us"),
        func.lead(at).over(partition_by=base.c.probe_id, order_by=(base.c.created_at, base.c.id)).label("next_us"),
    ).subquery("spans")
    begin = case((spans.c.at_us > scope.start_us, spans.c.at_us), else_=scope.start_us)
    finish = func.coalesce(spans.c.next_us, scope.until_us)
    return select(
        spans.c.probe_id, spans.c.status, spans.c.in_maintenance, spans.c.counted,
        case((finish > begin, finish - begin), else_=0).label("us"),
    ).cte("measured")


def _downtime(measured: CTE, grouped: bool) -> Subquery:
    down = measured.c.status != ProbeStatus.SUCCESS.value
    columns = [
        func.sum(measured.c.counted).label("results"),
        func.sum(case((down, measured.c.us), else_=0)).label("down_us"),
        func.sum(case((measured.c.in_maintenance, measured.c.us), else_=0)).label("maintenance_us"),
        func.sum(case((and_(down, not_(measured.c.in_maintenance)), measured.c.us), else_=0)).label("down_outside_us"),
    ]
    if not grouped:
        return select(*columns).subquery("total_downtime")
    return select(measured.c.probe_id, *columns).group_by(measured.c.probe_id).subquery("downtime")
