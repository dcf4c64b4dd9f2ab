"""Per-probe history at minute, hour and day level: written with the results, read for long windows.

``record`` adds stored results to their three buckets in the caller's transaction, in at most two
statements whatever the batch size. First an ``INSERT … ON CONFLICT DO UPDATE`` of the
additive columns (and min/max) of every touched row, sorted by key, ``RETURNING`` each row's
count and response-time sketch: the conflicting upsert of a concurrent writer waits for the
row lock (PostgreSQL) or the write lock (SQLite) until this transaction ends and then adds
to what it committed, and two batches lock shared rows in the same order so they never
deadlock. Then, for the rows that existed before (returned count above the batch's own),
the returned sketch — read under that lock — merged in Python with the batch's, written
back in one statement (an executemany ``UPDATE`` on SQLite, in process; on PostgreSQL an
upsert of those rows, one round trip, each found through the primary key). A new row got
the batch's sketch with its insert.

Windows are read in pieces: whole days from day rows, whole hours from hour rows, whole
minutes from minute rows (``pieces``); the callers add the sub-minute edges from raw results.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import String, and_, bindparam, false, func, or_, select, text
from sqlalchemy.sql.elements import ColumnElement, TextClause

from app.core.config import active_settings
from app.extensions import db
from app.models.rollups import PHASES, ProbeRollup
from app.probes.base import ProbeStatus
from app.services import latency_sketch
from app.services.bulk import dialect_name
from app.services.errors import InvalidInputError

MINUTE, HOUR, DAY = 60, 3600, 86400
LEVELS = (MINUTE, HOUR, DAY)
LEVEL_NAMES = {MINUTE: "minute", HOUR: "hour", DAY: "day"}
Piece = tuple[int, int, int]  # (level, first bucket, end): buckets start in [first, end)
Key = tuple[int, int, int]  # (probe_id, level, bucket)

_rollups = ProbeRollup.__table__
_KEY = ("probe_id", "level", "bucket")
_ADDITIVE = ("count", "failures", "maintenance_count", "maintenance_failures", "timed_count", "rt_sum",
             *(f"{phase}_{part}" for phase in PHASES for part in ("sum", "count")))
_ROLLUP_COLUMNS = (*_KEY, "tenant_id", *_ADDITIVE, "rt_min", "rt_max", "rt_sketch")
_PHASE_KEYS = tuple((phase, f"{phase}_ms") for phase in PHASES)
_EMPTY: dict[str, Any] = {**dict.fromkeys(_ADDITIVE, 0), "rt_sum": 0.0, "rt_min": None, "rt_max": None,
                          **{f"{phase}_sum": 0.0 for phase in PHASES}}


def uptime_percent(count: int, failures: int) -> float | None:
    """Successful runs in percent, to 0.001; None without runs."""
    return round((count - failures) / count * 100, 3) if count else None


@dataclass(frozen=True)
class RunTotals:
    count: int
    failures: int
    maintenance_count: int

    @property
    def uptime_percent(self) -> float | None:
        return uptime_percent(self.count, self.failures)


@dataclass(frozen=True)
class DayTotals:
    day: date
    count: int
    failures: int
    maintenance_count: int

    @property
    def uptime_percent(self) -> float | None:
        return uptime_percent(self.count, self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day, "count": self.count, "failures": self.failures,
                "maintenance_count": self.maintenance_count, "uptime_percent": self.uptime_percent}


# --- writing -------------------------------------------------------------------------------------


def epoch_seconds(moment: datetime) -> int:
    return math.floor(moment.timestamp())


def _measured(value: Any) -> bool:
    """A time that counts: a non-finite one (never measured by a probe) would poison every sum."""
    return value is not None and math.isfinite(value)


def record(rows: Iterable[dict[str, Any]]) -> None:
    """Add ``probe_results`` rows just inserted (in this transaction) to their rollups."""
    sums: dict[Key, dict[str, Any]] = {}
    sketches: dict[Key, latency_sketch.Sketch] = {}
    success = ProbeStatus.SUCCESS.value
    for row in rows:
        epoch = epoch_seconds(row["created_at"])
        probe_id = row["probe_id"]
        failed = row["status"] != success
        maintenance = bool(row.get("in_maintenance"))
        response = row.get("response_time_ms")
        timed = _measured(response)
        index = latency_sketch.bin_of(response) if timed else 0
        phases = [(name, value) for name, key in _PHASE_KEYS if _measured(value := row.get(key))]
        for level in LEVELS:
            key = (probe_id, level, epoch - epoch % level)
            entry = sums.get(key)
            if entry is None:
                entry = sums[key] = {**_EMPTY, "probe_id": probe_id, "level": level, "bucket": key[2],
                                     "tenant_id": row["tenant_id"]}
            entry["count"] += 1
            if failed:
                entry["failures"] += 1
            if maintenance:
                entry["maintenance_count"] += 1
                entry["maintenance_failures"] += failed
            if timed:
                entry["timed_count"] += 1
                entry["rt_sum"] += response
                low, high = entry["rt_min"], entry["rt_max"]
                entry["rt_min"] = response if low is None or response < low else low
                entry["rt_max"] = response if high is None or response > high else high
                sketch = sketches.setdefault(key, {})
                sketch[index] = sketch.get(index, 0) + 1
            for name, value in phases:
                entry[name + "_sum"] += value
                entry[name + "_count"] += 1
    if not sums:
        return
    ordered = sorted(sums)
    for key in ordered:
        sums[key]["rt_sketch"] = latency_sketch.encode(sketches.get(key, {}))
    dialect = dialect_name()
    payload = json.dumps([sums[key] for key in ordered] if dialect == "postgresql"
                         else [[sums[key][name] for name in _ROLLUP_COLUMNS] for key in ordered],
                         separators=(",", ":"))
    returned = db.session.execute(_upsert(dialect), {"rows": payload})
    merged = []
    for probe_id, level, bucket, count, stored in returned:
        key = (probe_id, level, bucket)
        batch = sketches.get(key)
        if batch and count != sums[key]["count"]:  # the row existed: its stored sketch plus this batch's
            merged.append({"probe_id": probe_id, "level": level, "bucket": bucket, "tenant_id": sums[key]["tenant_id"],
                           "rt_sketch": latency_sketch.encode(latency_sketch.merge(latency_sketch.decode(stored),
                                                                                   batch))})
    if not merged:
        return
    if dialect == "postgresql":  # one statement, not one round trip per row
        db.session.execute(_sketch_update_pg(), {"rows": json.dumps(merged, separators=(",", ":"))})
    else:
        db.session.execute(_SKETCH_UPDATE, merged)


_SKETCH_UPDATE = text("UPDATE probe_rollups SET rt_sketch = :rt_sketch "
                      "WHERE probe_id = :probe_id AND level = :level AND bucket = :bucket")
@functools.cache
def _sketch_update_pg() -> TextClause:
    """The write-back as an upsert whose rows all exist (and are locked by this transaction), so
    each one is found through the primary key: an ``UPDATE … FROM json_to_recordset`` is planned
    as a hash join over a scan of the whole table (the planner expects one matching row)."""
    zeros = ", ".join("0" for _ in _ADDITIVE)
    names = ", ".join(("probe_id", "level", "bucket", "tenant_id", *_ADDITIVE, "rt_sketch"))
    return text(
        f"INSERT INTO probe_rollups ({names}) SELECT probe_id, level, bucket, tenant_id, {zeros}, rt_sketch "
        "FROM json_to_recordset(CAST(:rows AS json)) AS v(probe_id integer, level integer, bucket bigint, "
        "tenant_id integer, rt_sketch text) "
        f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET rt_sketch = excluded.rt_sketch").bindparams(
            bindparam("rows", type_=String))


def _least(dialect: str, a: str, b: str, pick: str) -> str:
    if dialect == "postgresql":
        return f"{'LEAST' if pick == 'min' else 'GREATEST'}({a}, {b})"
    return f"{pick}(coalesce({a}, {b}), coalesce({b}, {a}))"  # SQLite's min() is NULL with a NULL


@functools.cache
def _upsert(dialect: str) -> TextClause:
    """One statement for a batch of any size: the rows travel as one JSON parameter
    (``json_populate_recordset`` on PostgreSQL, ``json_each`` over arrays on SQLite), in key order."""
    names = ", ".join(_ROLLUP_COLUMNS)
    if dialect == "postgresql":
        source = (f"SELECT {names} FROM json_populate_recordset(NULL::probe_rollups, CAST(:rows AS json)) "
                  "ORDER BY probe_id, level, bucket")
    else:  # "WHERE true" keeps SQLite's parser from reading ON CONFLICT as a join's
        picks = ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(_ROLLUP_COLUMNS)))
        source = f"SELECT {picks} FROM json_each(:rows) WHERE true"
    updates = [f"{name} = probe_rollups.{name} + excluded.{name}" for name in _ADDITIVE]
    updates += [f"rt_min = {_least(dialect, 'probe_rollups.rt_min', 'excluded.rt_min', 'min')}",
                f"rt_max = {_least(dialect, 'probe_rollups.rt_max', 'excluded.rt_max', 'max')}"]
    sql = (f"INSERT INTO probe_rollups ({names}) {source} ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
           f"{', '.join(updates)} RETURNING probe_id, level, bucket, count, rt_sketch")
    return text(sql).bindparams(bindparam("rows", type_=String))


# --- windows -------------------------------------------------------------------------------------


def _floor(value: int, step: int) -> int:
    return value - value % step


def _ceil(value: int, step: int) -> int:
    return -(-value // step) * step


def pieces(start: int, end: int) -> list[Piece]:
    """[start, end) (epoch seconds, whole minutes) as the fewest buckets: days, then hours, then minutes."""
    out: list[Piece] = []

    def cover(a: int, b: int, levels: tuple[int, ...]) -> None:
        if a >= b:
            return
        level, finer = levels[0], levels[1:]
        if not finer:
            out.append((level, _floor(a, level), _ceil(b, level)))
            return
        first, last = _ceil(a, level), _floor(b, level)
        if first < last:
            cover(a, first, finer)
            out.append((level, first, last))
            cover(last, b, finer)
        else:
            cover(a, b, finer)

    cover(start, end, (DAY, HOUR, MINUTE))
    return out


def retention_cutoffs(now: datetime | None = None) -> dict[int, int | None]:
    """Per level, the bucket start before which pruning may have removed rows (None: kept forever)."""
    settings = active_settings().retention
    now_s = epoch_seconds(now or datetime.now(UTC))
    days = {MINUTE: settings.minute_days, HOUR: settings.hour_days, DAY: settings.day_days}
    return {level: None if kept is None else now_s - kept * DAY for level, kept in days.items()}


def edge_level(moment: int, cutoffs: dict[int, int | None]) -> int:
    """The finest level still kept at ``moment``: a window edge older than a level's retention
    is rounded (outward) to the next level's buckets."""
    for level in LEVELS:
        cutoff = cutoffs[level]
        if cutoff is None or moment >= cutoff:
            return level
    return DAY


def in_pieces(table: Any, parts: Sequence[Piece]) -> ColumnElement[bool]:
    if not parts:
        return false()
    return or_(*(and_(table.c.level == level, table.c.bucket >= first, table.c.bucket < end)
                 for level, first, end in parts))


# --- reading totals ------------------------------------------------------------------------------


_SUMMARY_COLUMNS = tuple(_rollups.c[name] for name in (*_ADDITIVE, "rt_min", "rt_max", "rt_sketch"))


def window_summary(probe_id: int, parts: Sequence[Piece]) -> tuple[dict[str, Any], latency_sketch.Sketch]:
    """The summed rollups of one probe over ``parts`` and their merged sketch, in one query
    reading one row per bucket (a 30-day window is at most about 30 day, 46 hour and 118 minute rows)."""
    totals: dict[str, Any] = dict(_EMPTY)
    sketch: latency_sketch.Sketch = {}
    if not parts:
        return totals, sketch
    rows = db.session.execute(select(*_SUMMARY_COLUMNS).where(_rollups.c.probe_id == probe_id,
                                                               in_pieces(_rollups, parts))).mappings()
    for row in rows:
        for name in _ADDITIVE:
            totals[name] += row[name]
        low, high = row["rt_min"], row["rt_max"]
        if low is not None and (totals["rt_min"] is None or low < totals["rt_min"]):
            totals["rt_min"] = low
        if high is not None and (totals["rt_max"] is None or high > totals["rt_max"]):
            totals["rt_max"] = high
        if row["rt_sketch"]:
            latency_sketch.merge(sketch, latency_sketch.decode(row["rt_sketch"]))
    return totals, sketch


def uptime_by_probe(tenant_id: int, probe_ids: list[int] | None, since: datetime,
                    until: datetime | None = None) -> dict[int, RunTotals]:
    """Runs, failures and runs in maintenance per probe over [since, until) from the rollups.

    Edges are rounded outward to the minute; for windows of a day or more, to the hour (one
    bucket in 24 at most), so a 30-day window of 10,000 probes reads about 30 day rows and
    48 hour rows per probe, and a window ending now takes in the runs of the current hour.
    Probes without runs in the window are left out.
    """
    until = until or datetime.now(UTC)
    start, end = epoch_seconds(since), epoch_seconds(until)
    if start >= end:
        return {}
    step = HOUR if end - start >= DAY else MINUTE
    cutoffs = retention_cutoffs()
    step = max(step, edge_level(start, cutoffs))
    r = _rollups.c
    query = (select(r.probe_id, func.sum(r.count), func.sum(r.failures), func.sum(r.maintenance_count))
             .where(r.tenant_id == tenant_id, in_pieces(_rollups, pieces(_floor(start, step), _ceil(end, step))))
             .group_by(r.probe_id))
    if probe_ids is not None:
        if not probe_ids:
            return {}
        query = query.where(r.probe_id.in_(probe_ids))
    return {probe_id: RunTotals(int(count), int(failures), int(maintenance))
            for probe_id, count, failures, maintenance in db.session.execute(query)}


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 400:
        raise InvalidInputError("must be a whole number from 1 to 400", field="days")


def daily_many(tenant_id: int, probe_ids: list[int], days: int, *,
               today: date | None = None) -> dict[int, list[DayTotals]]:
    """Per probe, one DayTotals per UTC day (oldest first, ``days`` of them, today last), in one query."""
    _check_days(days)
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    first_s = epoch_seconds(datetime(first.year, first.month, first.day, tzinfo=UTC))
    found: dict[tuple[int, int], tuple[int, int, int]] = {}
    if probe_ids:
        r = _rollups.c
        rows = db.session.execute(
            select(r.probe_id, r.bucket, r.count, r.failures, r.maintenance_count)
            .where(r.tenant_id == tenant_id, r.probe_id.in_(probe_ids), r.level == DAY,
                   r.bucket >= first_s, r.bucket < first_s + days * DAY))
        found = {(probe_id, bucket): (count, failures, maintenance)
                 for probe_id, bucket, count, failures, maintenance in rows}
    return {probe_id: [DayTotals(first + timedelta(days=n), *found.get((probe_id, first_s + n * DAY), (0, 0, 0)))
                       for n in range(days)]
            for probe_id in probe_ids}


def daily(tenant_id: int, probe_id: int, days: int, *, today: date | None = None) -> list[DayTotals]:
    return daily_many(tenant_id, [probe_id], days, today=today)[probe_id]


# --- rebuilding ----------------------------------------------------------------------------------

_RAW_FIELDS = ("tenant_id", "probe_id", "status", "in_maintenance", "response_time_ms", "created_at",
               *(f"{phase}_ms" for phase in PHASES))


def rebuild(probe_id: int | None = None, since: date | None = None, chunk: int = 5000) -> dict[str, Any]:
    """Roll up the stored results again, from the UTC day ``since`` (default: the day of the oldest one).

    Replaces the rollups of every bucket from that day on with what the results say, in one
    transaction, so running it twice gives the same rows; buckets before it are left as
    they are. Writers wait on PostgreSQL's table lock meanwhile (their results count once).
    A day that raw retention has already thinned is rebuilt from what is left of it.
    """
    from app.models import ProbeResult

    results = ProbeResult.__table__
    if dialect_name() == "postgresql":
        db.session.execute(text("LOCK TABLE probe_rollups IN SHARE ROW EXCLUSIVE MODE"))
    selection = [results.c.probe_id == probe_id] if probe_id is not None else []
    if since is None:
        oldest = db.session.execute(select(func.min(results.c.created_at)).where(*selection)).scalar()
        if oldest is None:
            db.session.commit()
            return {"success": True, "since": None, "results": 0}
        since = oldest.astimezone(UTC).date()
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    start_s = epoch_seconds(start)
    statement = _rollups.delete().where(_rollups.c.bucket >= start_s)
    if probe_id is not None:
        statement = statement.where(_rollups.c.probe_id == probe_id)
    db.session.execute(statement)
    counted = 0
    batch: list[dict[str, Any]] = []
    rows = db.session.execute(select(*(results.c[name] for name in _RAW_FIELDS))
                              .where(*selection, results.c.created_at >= start)
                              .execution_options(yield_per=chunk)).mappings()
    for item in rows:
        batch.append(dict(item))
        if len(batch) >= chunk:
            record(batch)
            counted += len(batch)
            batch = []
    record(batch)
    counted += len(batch)
    db.session.commit()
    return {"success": True, "since": since.isoformat(), "results": counted}
