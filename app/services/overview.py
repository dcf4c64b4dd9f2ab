"""The console's overview: one tile per probe of the tenant, and what changed since a cursor.

Built for 10,000 probes: one query per table (probes, groups), the status cache and the
heartbeat lists read in chunks from Redis, the uptime block from the rollups cached per tenant
for ``UPTIME_TTL_SECONDS``. The heartbeats stay JSON text from Redis to the answer: the
answer is assembled as text (``render``), each tile dumped once and its runs spliced in.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.core.redis_client import get_redis
from app.extensions import db
from app.models import Probe, ProbeGroup, utcnow
from app.probes.urls import mask_credentials
from app.services import maintenance, rollups, status_cache
from app.services.errors import InvalidInputError

UPTIME_KEY = "admin_mit:console-uptime:{}"
UPTIME_TTL_SECONDS = 60
UPTIME_WINDOWS = (("uptime_24h", timedelta(hours=24)), ("uptime_7d", timedelta(days=7)),
                  ("uptime_30d", timedelta(days=30)))
_CURSOR = re.compile(r"c1\.(\d{1,12})\.(\d{1,20})\.(\d{1,18})")
EXPIRED_CURSOR = "the cursor has expired or is not this tenant's: load GET /console/overview again"


def _probes(tenant_id: int, ids: list[int] | None = None) -> list[Any]:
    columns = select(Probe.id, Probe.name, Probe.protocol, Probe.target, Probe.group_id, Probe.enabled)
    if ids is None:
        return list(db.session.execute(columns.where(Probe.tenant_id == tenant_id).order_by(Probe.id)))
    rows: list[Any] = []
    for first in range(0, len(ids), 5000):
        rows += db.session.execute(columns.where(Probe.tenant_id == tenant_id,
                                                 Probe.id.in_(ids[first:first + 5000])).order_by(Probe.id))
    return rows


def _groups(tenant_id: int) -> dict[int, str]:
    rows = db.session.execute(select(ProbeGroup.id, ProbeGroup.name).where(ProbeGroup.tenant_id == tenant_id))
    return {group_id: name for group_id, name in rows}


def _shown_target(target: str) -> str:
    """``mask_credentials``, skipped for targets with no userinfo or query (most; 10,000 URL parses add up)."""
    return mask_credentials(target) if "@" in target or "?" in target else target


def _cert_days_left(expires: str | None, now: datetime) -> int | None:
    if not expires:
        return None
    return math.floor((datetime.fromisoformat(expires) - now).total_seconds() / 86400)


def uptime(tenant_id: int) -> dict[int, tuple[float | None, float | None, float | None]]:
    """Uptime percent over 24 h, 7 d and 30 d of every probe that ran, from the rollups; cached."""
    client = get_redis()
    key = UPTIME_KEY.format(tenant_id)
    cached = client.get(key)
    if cached is not None:
        return {int(pid): tuple(values) for pid, values in json.loads(cached).items()}  # type: ignore[misc]
    now = utcnow()
    windows = [rollups.uptime_by_probe(tenant_id, None, now - span) for _, span in UPTIME_WINDOWS]
    ids = set().union(*windows)
    found = {pid: tuple(_percent(window.get(pid)) for window in windows) for pid in ids}
    client.set(key, json.dumps(found), ex=UPTIME_TTL_SECONDS)
    return found  # type: ignore[return-value]


def _percent(totals: Any) -> float | None:
    if totals is None or totals.uptime_percent is None:
        return None
    return round(totals.uptime_percent, 3)


def _tiles(tenant_id: int, rows: list[Any], beats: int, with_uptime: bool) -> list[tuple[dict[str, Any], str]]:
    ids = [row.id for row in rows]
    groups = _groups(tenant_id)
    latest, refilled = status_cache.latest_with_misses(tenant_id, ids)
    runs = status_cache.beats(tenant_id, [pid for pid in ids if pid in latest], beats, rebuild=refilled)
    uptimes = uptime(tenant_id) if with_uptime else {}
    now = utcnow()
    tiles = []
    for row in rows:
        entry = latest.get(row.id) or {}
        tile: dict[str, Any] = {
            "id": row.id, "name": row.name, "protocol": row.protocol, "target": _shown_target(row.target),
            "group_id": row.group_id, "group_name": groups.get(row.group_id) if row.group_id else None,
            "enabled": row.enabled, "status": entry.get("status"), "checked_at": entry.get("checked_at"),
            "response_time_ms": entry.get("response_time_ms"), "status_code": entry.get("status_code"),
            "error": entry.get("error"), "cert_expires_at": entry.get("cert_expires_at"),
            "cert_days_left": _cert_days_left(entry.get("cert_expires_at"), now),
            "in_maintenance": maintenance.covers_now(tenant_id, row.id),
        }
        if with_uptime:
            tile["uptime_24h"], tile["uptime_7d"], tile["uptime_30d"] = uptimes.get(row.id, (None, None, None))
        tiles.append((tile, runs.get(row.id, "")))
    return tiles


def overview(tenant_id: int, beats: int = status_cache.BEATS) -> str:
    """``{"cursor", "generated_at", "probes": [tile]}`` as JSON text."""
    position = status_cache.cursor(tenant_id)  # first: a change while the tiles are read comes again next time
    rows = _probes(tenant_id)
    head = {"cursor": str(position), "generated_at": utcnow().isoformat()}
    return render(head, _tiles(tenant_id, rows, beats, with_uptime=True))


def parse_cursor(tenant_id: int, text: str) -> status_cache.Cursor:
    match = _CURSOR.fullmatch(text or "")
    if match is None or int(match.group(1)) != tenant_id:
        raise InvalidInputError(EXPIRED_CURSOR, field="cursor")
    return status_cache.Cursor(tenant_id, match.group(2), int(match.group(3)))


def changes(tenant_id: int, cursor_text: str, beats: int = status_cache.BEATS) -> str:
    """``{"cursor", "probes": [tile without uptime], "removed": [id]}`` as JSON text."""
    found = status_cache.changes_since(parse_cursor(tenant_id, cursor_text))
    if found is None:
        raise InvalidInputError(EXPIRED_CURSOR, field="cursor")
    rows = _probes(tenant_id, found.changed) if found.changed else []
    present = {row.id for row in rows}
    removed = sorted(set(found.removed) | (set(found.changed) - present))
    head = {"cursor": str(found.cursor), "removed": removed}
    return render(head, _tiles(tenant_id, rows, beats, with_uptime=False))


def render(head: dict[str, Any], tiles: list[tuple[dict[str, Any], str]]) -> str:
    """``head`` with ``"probes"``: the tiles, each with its runs (JSON array body text) as ``beats``."""
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    body = ",".join(f'{dumps(tile)[:-1]},"beats":[{runs}]}}' for tile, runs in tiles)
    return f'{dumps(head)[:-1]},"probes":[{body}]}}'
