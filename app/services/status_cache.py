"""Latest status per probe, its recent runs and what changed, in Redis, so lists and the
console need no results query.

Per tenant:

- ``admin_mit:probe-status:<tenant>``: a hash, a field per probe holding the latest result as JSON;
- ``admin_mit:probe-beats:<tenant>:<probe>``: a list of the probe's last runs (newest first, at
  least ``BEATS``, trimmed back once it holds ``TRIM_SLACK`` more), each a JSON object
  ``{status, at, response_time_ms}`` kept as text, so the console's overview splices them into
  its answer without decoding them;
- ``admin_mit:probe-changes:<tenant>``: a sorted set, probe id -> sequence number of its latest
  change (a stored result, or the probe created or edited: ``touched``), and ``admin_mit:probe-removed:<tenant>``, the same for deleted probes
  (the newest ``REMOVED_KEPT``);
- ``admin_mit:probe-changes-meta:<tenant>``: the sequence counter, the *epoch* (when the set began:
  a flushed or restarted Redis starts a new one, so an old cursor is told apart) and the *floor*
  (older removals were trimmed: a cursor below it cannot be answered).

Each write is one Lua script, so the hash, the list and the change index move together, with any
number of writers; every key lives ``probes.status_cache_ttl_seconds`` after the tenant's last
write. A probe missing from the cache is read from the database and put back (its runs too, in
one query, when the overview asks for them).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from redis.exceptions import RedisError
from sqlalchemy import ARRAY, Integer, bindparam, func, select, true

from app.core.config import active_settings
from app.core.redis_client import get_redis
from app.extensions import db
from app.models import Probe, ProbeResult

log = logging.getLogger(__name__)

KEY = "admin_mit:probe-status:{}"
BEATS_KEY = "admin_mit:probe-beats:{}:{}"
CHANGES_KEY = "admin_mit:probe-changes:{}"
REMOVED_KEY = "admin_mit:probe-removed:{}"
META_KEY = "admin_mit:probe-changes-meta:{}"
BEATS = 50
TRIM_SLACK = 10
REMOVED_KEPT = 10_000
CHUNK = 1000  # probes per Redis command when reading many, results per write script
_COPIED = ("probe_id", "status", "response_time_ms", "status_code", "error", "probe_type",
           "dns_ms", "connect_ms", "tls_ms", "processing_ms", "transfer_ms")

_ENSURE_META = """
local function ensure_meta(meta, ttl)
  if redis.call('EXISTS', meta) == 0 then
    local now = redis.call('TIME')
    redis.call('HSET', meta, 'epoch', now[1] .. string.format('%06d', tonumber(now[2])), 'seq', 0, 'floor', 0)
  end
  redis.call('EXPIRE', meta, ttl)
end
"""

# KEYS: status, changes, removed, meta, beats of each probe; ARGV: ttl, cap, then (probe, entry, beat) each.
# A list is trimmed (and its expiry renewed) once it holds TRIM_SLACK runs more than it keeps,
# not on every push; reads take the newest ``cap`` only.
_STORE = _ENSURE_META + """
local ttl, cap, slack = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
ensure_meta(KEYS[4], ttl)
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
local fields, scores, probes = {}, {}, {}
for i = 0, (#ARGV - 3) / 3 - 1 do
  local probe, beats = ARGV[4 + 3 * i], KEYS[5 + i]
  fields[#fields + 1] = probe
  fields[#fields + 1] = ARGV[5 + 3 * i]
  scores[#scores + 1] = seq
  scores[#scores + 1] = probe
  probes[#probes + 1] = probe
  local length = redis.call('LPUSH', beats, ARGV[6 + 3 * i])
  if length == 1 or length > cap + slack then
    redis.call('LTRIM', beats, 0, cap - 1)
    redis.call('EXPIRE', beats, ttl)
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], unpack(scores))
if redis.call('ZCARD', KEYS[3]) > 0 then redis.call('ZREM', KEYS[3], unpack(probes)) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
return seq
"""

# KEYS: status, changes, removed, meta, beats of each probe; ARGV: ttl, kept, then the probe ids.
_FORGET = _ENSURE_META + """
local ttl, kept = tonumber(ARGV[1]), tonumber(ARGV[2])
ensure_meta(KEYS[4], ttl)
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
for i = 3, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('DEL', KEYS[2 + i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZADD', KEYS[3], seq, ARGV[i])
end
local count = redis.call('ZCARD', KEYS[3])
if count > kept then
  local cut = redis.call('ZRANGE', KEYS[3], count - kept - 1, count - kept - 1, 'WITHSCORES')
  redis.call('HSET', KEYS[4], 'floor', cut[2])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, count - kept - 1)
end
redis.call('EXPIRE', KEYS[3], ttl)
return seq
"""

# KEYS: changes, removed, meta; ARGV: ttl, then the probe ids.
_TOUCH = _ENSURE_META + """
local ttl = tonumber(ARGV[1])
ensure_meta(KEYS[3], ttl)
local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], seq, ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ttl)
return seq
"""

# KEYS: meta; ARGV: ttl. The cursor of "now": {epoch, seq}.
_CURSOR = _ENSURE_META + """
ensure_meta(KEYS[1], tonumber(ARGV[1]))
return {redis.call('HGET', KEYS[1], 'epoch'), redis.call('HGET', KEYS[1], 'seq')}
"""

# KEYS: meta, changes, removed; ARGV: epoch, seq. {0} for a cursor that cannot be answered,
# else {1, seq now, changed probe ids, removed probe ids}.
_CHANGES = """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'floor')
if not meta[1] or meta[1] ~= ARGV[1] then return {0} end
local since, now, floor = tonumber(ARGV[2]), tonumber(meta[2]), tonumber(meta[3])
if since > now or since < floor then return {0} end
return {1, meta[2], redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '+inf'),
        redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[2], '+inf')}
"""

# KEYS: beats lists; ARGV: how many. Each probe's newest runs as one JSON array body, oldest
# first, or false (nil) when the list does not exist.
_READ_BEATS = """
local n, out = tonumber(ARGV[1]), {}
for i, key in ipairs(KEYS) do
  local items = redis.call('LRANGE', key, 0, n - 1)
  if #items == 0 then out[i] = false else
    local ordered = {}
    for j = #items, 1, -1 do ordered[#ordered + 1] = items[j] end
    out[i] = table.concat(ordered, ',')
  end
end
return out
"""

# KEYS: beats lists; ARGV: ttl, then for each list its count and its beats (newest first).
# Fills only lists that do not exist: a run stored meanwhile is newer than the database's.
_REBUILD_BEATS = """
local ttl, at = tonumber(ARGV[1]), 2
for _, key in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  if count > 0 and redis.call('EXISTS', key) == 0 then
    redis.call('RPUSH', key, unpack(ARGV, at + 1, at + count))
    redis.call('EXPIRE', key, ttl)
  end
  at = at + count + 1
end
return 0
"""


def _script(source: str) -> Any:
    return get_redis().register_script(source)


def _ttl() -> int:
    return active_settings().probes.status_cache_ttl_seconds


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def status_entry(result: Mapping[str, Any]) -> dict[str, Any]:
    """The cached view of a stored result (given as a row mapping of ``probe_results``)."""
    entry = {name: result.get(name) for name in _COPIED}
    entry["result_id"] = result["id"]
    entry["checked_at"] = result["created_at"].isoformat()
    entry["cert_expires_at"] = _iso(result.get("cert_expires_at"))
    return entry


_STATUSES = frozenset(("success", "failed", "timeout", "error"))


def beat_json(result: Mapping[str, Any]) -> str:
    """One run as the heartbeat strip shows it: ``{"status", "at", "response_time_ms"}`` (JSON text)."""
    created = result["created_at"]
    if created.utcoffset():
        created = created.astimezone(timezone.utc)
    at = created.replace(tzinfo=None).isoformat(timespec="milliseconds")
    response_time = result.get("response_time_ms")
    shown = "null" if response_time is None else repr(round(float(response_time), 3))
    status = result["status"]
    status_json = f'"{status}"' if status in _STATUSES else json.dumps(status)
    return f'{{"status":{status_json},"at":"{at}Z","response_time_ms":{shown}}}'


def _keys(tenant_id: int) -> list[str]:
    return [KEY.format(tenant_id), CHANGES_KEY.format(tenant_id), REMOVED_KEY.format(tenant_id),
            META_KEY.format(tenant_id)]


def store(tenant_id: int, results: Iterable[Mapping[str, Any]]) -> None:
    """Record newly stored results: latest status, recent runs and the change index, in one script."""
    rows = sorted(results, key=lambda row: row["created_at"])
    script, ttl = _script(_STORE), _ttl()
    for first in range(0, len(rows), CHUNK):
        keys = _keys(tenant_id)
        args: list[Any] = [ttl, BEATS, TRIM_SLACK]
        for row in rows[first:first + CHUNK]:
            probe_id = row["probe_id"]
            keys.append(BEATS_KEY.format(tenant_id, probe_id))
            args += (probe_id, json.dumps(status_entry(row)), beat_json(row))
        script(keys=keys, args=args)


def touched(tenant_id: int, probe_ids: list[int]) -> None:
    """Probes created or edited (name, target, group, enabled…): change readers get their tiles again.
    Redis being down loses only that: the console's next full load shows the edit."""
    if not probe_ids:
        return
    keys = [CHANGES_KEY.format(tenant_id), REMOVED_KEY.format(tenant_id), META_KEY.format(tenant_id)]
    try:
        _script(_TOUCH)(keys=keys, args=[_ttl(), *probe_ids])
    except RedisError as exc:
        log.warning("could not mark probes %s as changed for the console: %s", probe_ids, exc)


def forget(tenant_id: int, probe_id: int) -> None:
    """A deleted probe: drop its status and runs, and tell change readers it is gone."""
    forget_many(tenant_id, [probe_id])


def forget_many(tenant_id: int, probe_ids: list[int]) -> None:
    if not probe_ids:
        return
    keys = _keys(tenant_id) + [BEATS_KEY.format(tenant_id, probe_id) for probe_id in probe_ids]
    _script(_FORGET)(keys=keys, args=[_ttl(), REMOVED_KEPT, *probe_ids])


def forget_tenant(tenant_id: int) -> None:
    client = get_redis()
    beats = list(client.scan_iter(match=BEATS_KEY.format(tenant_id, "*"), count=1000))
    for first in range(0, len(beats), CHUNK):
        client.delete(*beats[first:first + CHUNK])
    client.delete(*_keys(tenant_id))


def latest(tenant_id: int, probe_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Latest status of each probe that has run at least once."""
    return latest_with_misses(tenant_id, probe_ids)[0]


def latest_with_misses(tenant_id: int, probe_ids: list[int]) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """``latest``, and which of the probes that ran were not in the cache (read from the database)."""
    if not probe_ids:
        return {}, set()
    key = KEY.format(tenant_id)
    with get_redis().pipeline(transaction=False) as pipe:
        for first in range(0, len(probe_ids), CHUNK):
            pipe.hmget(key, [str(pid) for pid in probe_ids[first:first + CHUNK]])
        cached = [raw for chunk in pipe.execute() for raw in chunk]
    found = {pid: json.loads(raw) for pid, raw in zip(probe_ids, cached) if raw}
    missing = [pid for pid in probe_ids if pid not in found]
    refilled: set[int] = set()
    if missing:
        from_db = {pid: status_entry(row) for pid, row in _latest_from_db(tenant_id, missing).items()}
        _refill(tenant_id, from_db)
        found.update(from_db)
        refilled = set(from_db)
    return found, refilled


def _refill(tenant_id: int, entries: dict[int, dict[str, Any]]) -> None:
    """Put statuses read from the database back, without overwriting one a writer stored meanwhile."""
    if not entries:
        return
    key = KEY.format(tenant_id)
    with get_redis().pipeline(transaction=False) as pipe:
        for pid, entry in entries.items():
            pipe.hsetnx(key, str(pid), json.dumps(entry))
        pipe.expire(key, _ttl())
        pipe.execute()


def _latest_from_db(tenant_id: int, probe_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each probe's newest result: one lookup per probe on the (probe_id, created_at) index, on
    both databases (a ``max(id) … GROUP BY probe_id`` reads every result the probes ever stored)."""
    results, probes = ProbeResult.__table__, Probe.__table__
    newest_id = (select(results.c.id).where(results.c.probe_id == probes.c.id)
                 .order_by(results.c.created_at.desc(), results.c.id.desc()).limit(1).scalar_subquery())
    found: dict[int, dict[str, Any]] = {}
    for first in range(0, len(probe_ids), 5000):
        newest = select(newest_id).where(probes.c.tenant_id == tenant_id,
                                         probes.c.id.in_(probe_ids[first:first + 5000]))
        rows = db.session.execute(select(results).where(results.c.id.in_(newest))).mappings()
        found.update({row["probe_id"]: dict(row) for row in rows})
    return found


# --- recent runs -----------------------------------------------------------------------------------


def beats(tenant_id: int, probe_ids: list[int], count: int = BEATS, rebuild: Iterable[int] = ()) -> dict[int, str]:
    """Each probe's last ``count`` runs, oldest first, as the body of a JSON array (``""``: none).

    Probes whose list is missing (a flushed or restarted Redis, an expired cache) and those in
    ``rebuild`` get theirs from the database's latest results, in one query, and put back.
    """
    count = max(0, min(count, BEATS))
    if not probe_ids or count == 0:
        return {pid: "" for pid in probe_ids}
    script = _script(_READ_BEATS)
    with get_redis().pipeline(transaction=False) as pipe:
        for first in range(0, len(probe_ids), CHUNK):
            chunk = probe_ids[first:first + CHUNK]
            script(keys=[BEATS_KEY.format(tenant_id, pid) for pid in chunk], args=[count], client=pipe)
        read = [body for chunk in pipe.execute() for body in chunk]
    found = {pid: body for pid, body in zip(probe_ids, read) if body is not None}
    wanted = set(rebuild)
    missing = [pid for pid in probe_ids if pid not in found or pid in wanted]
    if missing:
        rebuilt = _beats_from_db(tenant_id, missing)
        _put_back(tenant_id, rebuilt)
        for pid in missing:
            newest_first = rebuilt.get(pid, [])
            found[pid] = ",".join(reversed(newest_first[:count]))
    return found


def _beats_from_db(tenant_id: int, probe_ids: list[int]) -> dict[int, list[str]]:
    """The newest ``BEATS`` results of each probe (newest first), in one query per 5,000 probes."""
    found: dict[int, list[str]] = {}
    for first in range(0, len(probe_ids), 5000):
        for row in db.session.execute(_newest_runs(tenant_id, probe_ids[first:first + 5000])).mappings():
            found.setdefault(row["probe_id"], []).append(beat_json(row))
    return found


def _newest_runs(tenant_id: int, probe_ids: list[int]) -> Any:
    """Each probe's newest ``BEATS`` results, newest first. PostgreSQL reads only those rows through
    the (probe_id, created_at) index (a LATERAL join); SQLite ranks each probe's results."""
    table = ProbeResult.__table__
    columns = (table.c.probe_id, table.c.status, table.c.created_at, table.c.response_time_ms)
    if db.engine.dialect.name == "postgresql":
        ids = bindparam("probe_ids", probe_ids, type_=ARRAY(Integer))
        probes = func.unnest(ids).table_valued("id").render_derived(name="p")
        newest = (select(*columns).where(table.c.tenant_id == tenant_id, table.c.probe_id == probes.c.id)
                  .order_by(table.c.created_at.desc()).limit(BEATS).lateral("newest"))
        return (select(newest).select_from(probes).join(newest, true())
                .order_by(newest.c.probe_id, newest.c.created_at.desc()))
    rank = func.row_number().over(partition_by=table.c.probe_id, order_by=table.c.created_at.desc()).label("rank")
    ranked = (select(*columns, rank).where(table.c.tenant_id == tenant_id, table.c.probe_id.in_(probe_ids))
              .subquery())
    return select(ranked).where(ranked.c.rank <= BEATS).order_by(ranked.c.probe_id, ranked.c.rank)


def _put_back(tenant_id: int, rebuilt: dict[int, list[str]]) -> None:
    items = [(pid, runs) for pid, runs in rebuilt.items() if runs]
    script = _script(_REBUILD_BEATS)
    for first in range(0, len(items), CHUNK):
        chunk = items[first:first + CHUNK]
        args: list[Any] = [_ttl()]
        for _, runs in chunk:
            args += [len(runs), *runs]
        script(keys=[BEATS_KEY.format(tenant_id, pid) for pid, _ in chunk], args=args)


# --- what changed ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """A point in a tenant's change index: its epoch and sequence number."""

    tenant_id: int
    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"c1.{self.tenant_id}.{self.epoch}.{self.seq}"


def cursor(tenant_id: int) -> Cursor:
    """The cursor of "now": changes after it are the ones a reader has not seen."""
    epoch, seq = _script(_CURSOR)(keys=[META_KEY.format(tenant_id)], args=[_ttl()])
    return Cursor(tenant_id, epoch, int(seq))


@dataclass(frozen=True)
class Changes:
    cursor: Cursor
    changed: list[int]
    removed: list[int]


def changes_since(since: Cursor) -> Changes | None:
    """Probes with a new result and probes deleted after ``since``; None when the index cannot tell
    (a flushed or restarted Redis, an expired cache, removals trimmed since)."""
    tenant_id = since.tenant_id
    answer = _script(_CHANGES)(keys=[META_KEY.format(tenant_id), CHANGES_KEY.format(tenant_id),
                                     REMOVED_KEY.format(tenant_id)], args=[since.epoch, since.seq])
    if int(answer[0]) != 1:
        return None
    return Changes(Cursor(tenant_id, since.epoch, int(answer[1])), sorted(int(pid) for pid in answer[2]),
                   sorted(int(pid) for pid in answer[3]))
