"""Latest status per probe, in Redis, so lists and dashboards need no results query.

One hash per tenant (``admin_mit:probe-status:<tenant>``), a field per probe
holding the latest result as JSON. A probe missing from the cache is read from
the database and put back.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from sqlalchemy import func, select

from app.core.config import active_settings
from app.core.redis_client import get_redis
from app.extensions import db
from app.models import ProbeResult

KEY = "admin_mit:probe-status:{}"
_COPIED = ("probe_id", "status", "response_time_ms", "status_code", "error")


def status_entry(result: Mapping[str, Any]) -> dict[str, Any]:
    """The cached view of a stored result (given as a row mapping of ``probe_results``)."""
    entry = {name: result[name] for name in _COPIED}
    entry["result_id"] = result["id"]
    entry["checked_at"] = result["created_at"].isoformat()
    return entry


def store(tenant_id: int, results: Iterable[Mapping[str, Any]]) -> None:
    mapping = {str(result["probe_id"]): json.dumps(status_entry(result)) for result in results}
    if not mapping:
        return
    key = KEY.format(tenant_id)
    with get_redis().pipeline() as pipe:
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, active_settings().probes.status_cache_ttl_seconds)
        pipe.execute()


def forget(tenant_id: int, probe_id: int) -> None:
    get_redis().hdel(KEY.format(tenant_id), str(probe_id))


def latest(tenant_id: int, probe_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Latest status of each probe that has run at least once."""
    if not probe_ids:
        return {}
    cached = get_redis().hmget(KEY.format(tenant_id), [str(pid) for pid in probe_ids])
    found = {pid: json.loads(raw) for pid, raw in zip(probe_ids, cached) if raw}
    missing = [pid for pid in probe_ids if pid not in found]
    if missing:
        from_db = _latest_from_db(tenant_id, missing)
        store(tenant_id, from_db.values())
        found.update({pid: status_entry(row) for pid, row in from_db.items()})
    return found


def _latest_from_db(tenant_id: int, probe_ids: list[int]) -> dict[int, dict[str, Any]]:
    newest = (
        select(func.max(ProbeResult.id))
        .where(ProbeResult.tenant_id == tenant_id, ProbeResult.probe_id.in_(probe_ids))
        .group_by(ProbeResult.probe_id)
    )
    rows = db.session.execute(select(ProbeResult.__table__).where(ProbeResult.id.in_(newest))).mappings()
    return {row["probe_id"]: dict(row) for row in rows}


def forget_tenant(tenant_id: int) -> None:
    get_redis().delete(KEY.format(tenant_id))
