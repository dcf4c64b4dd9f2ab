"""The console's overview and changes feed, over results stored as a worker stores them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from app.models import utcnow
from app.services import status_cache
from app.services.result_store import MeasuredRun, store
from tests.api import Api, Caller, assert_error
from tests.conftest import make_probe, make_tenant

pytestmark = pytest.mark.timeout(120)

API = "/api/v1"
UPTIME_FIELDS = {"uptime_24h", "uptime_7d", "uptime_30d"}


def row(probe: Any, status: str = "success", ms: float | None = 12.0, at: datetime | None = None,
        **fields: Any) -> dict[str, Any]:
    at = at or utcnow()
    return {"tenant_id": probe.tenant_id, "probe_id": probe.id, "run_key": f"manual:{uuid.uuid4().hex}",
            "probe_type": "manual", "status": status, "response_time_ms": ms,
            "status_code": 200 if status == "success" else None,
            "error": None if status == "success" else "connection refused", "dns_ms": None, "connect_ms": None,
            "tls_ms": None, "processing_ms": None, "transfer_ms": None, "cert_expires_at": None, "bytes_read": 0,
            "details": None, "scheduled_for": None, "started_at": at, "created_at": at, **fields}


def stored(*rows: dict[str, Any]) -> None:
    store([MeasuredRun(row=item) for item in rows])


def overview(caller: Caller, **query: Any) -> dict[str, Any]:
    response = caller.get(f"{API}/console/overview", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.json  # type: ignore[no-any-return]


def changes(caller: Caller, cursor: str) -> dict[str, Any]:
    response = caller.get(f"{API}/console/overview/changes", query_string={"cursor": cursor})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json  # type: ignore[no-any-return]


def tiles(answer: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {tile["id"]: tile for tile in answer["probes"]}


def test_the_overview_shows_each_probes_latest_run_right_after_it_is_stored(api: Api) -> None:
    tenant = make_tenant()
    admin = api.as_role(tenant.id, "admin")
    viewer = api.as_role(tenant.id, "viewer")
    group = admin.post(f"{API}/probe-groups", json={"name": "edge"}).json
    ran = make_probe(tenant.id, "http://user:hunter2@127.0.0.1:9/health", group_id=group["id"])
    never = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
    expires = utcnow() + timedelta(days=10, hours=1)
    earlier = utcnow() - timedelta(minutes=2)
    stored(row(ran, "success", 10.0, at=earlier))
    stored(row(ran, "failed", 250.5, status_code=503, error="expected status 200, got 503",
               cert_expires_at=expires, dns_ms=1.5, connect_ms=2.5, tls_ms=3.5, processing_ms=4.5, transfer_ms=5.5))

    answer = overview(viewer)

    assert answer["cursor"] and datetime.fromisoformat(answer["generated_at"])
    assert [tile["id"] for tile in answer["probes"]] == [ran.id, never.id]
    tile = tiles(answer)[ran.id]
    assert tile["name"] == ran.name and tile["protocol"] == "http" and tile["enabled"] is True
    assert "hunter2" not in tile["target"] and tile["target"].endswith("@127.0.0.1:9/health")
    assert (tile["group_id"], tile["group_name"]) == (group["id"], "edge")
    assert (tile["status"], tile["response_time_ms"], tile["status_code"], tile["error"]) == (
        "failed", 250.5, 503, "expected status 200, got 503")
    assert datetime.fromisoformat(tile["cert_expires_at"]) == expires and tile["cert_days_left"] == 10
    assert tile["uptime_24h"] == tile["uptime_7d"] == tile["uptime_30d"] == 50.0
    assert tile["in_maintenance"] is False
    assert [(beat["status"], beat["response_time_ms"]) for beat in tile["beats"]] == [("success", 10.0),
                                                                                    ("failed", 250.5)]
    assert datetime.fromisoformat(tile["beats"][0]["at"]) == earlier.replace(
        microsecond=earlier.microsecond // 1000 * 1000)
    quiet = tiles(answer)[never.id]
    assert (quiet["status"], quiet["checked_at"], quiet["beats"], quiet["uptime_24h"], quiet["group_name"]) == (
        None, None, [], None, None)
    # What the metrics read: the cache entry carries the phases and the certificate too.
    entry = status_cache.latest(tenant.id, [ran.id])[ran.id]
    assert (entry["dns_ms"], entry["transfer_ms"], entry["probe_type"]) == (1.5, 5.5, "manual")
    assert datetime.fromisoformat(entry["cert_expires_at"]) == expires


def test_a_probe_in_an_open_maintenance_window_says_so(api: Api) -> None:
    tenant = make_tenant()
    admin = api.as_role(tenant.id, "admin")
    covered, other = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp"), make_probe(tenant.id, "127.0.0.1:9",
                                                                                       protocol="tcp")
    now = utcnow()
    window = admin.post(f"{API}/maintenance-windows", json={
        "name": "now", "starts_at": (now - timedelta(minutes=5)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(), "probe_ids": [covered.id]})
    assert window.status_code == 201, window.json

    shown = tiles(overview(admin))

    assert (shown[covered.id]["in_maintenance"], shown[other.id]["in_maintenance"]) == (True, False)


def test_beats_are_the_latest_runs_oldest_first_at_most_fifty(api: Api, clean_redis: redis.Redis) -> None:
    tenant = make_tenant()
    viewer = api.as_role(tenant.id, "viewer")
    probe = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
    start = utcnow() - timedelta(hours=1)
    stored(*(row(probe, "success" if n % 7 else "timeout", float(n), at=start + timedelta(seconds=n))
             for n in range(30)))
    stored(*(row(probe, "success", float(n), at=start + timedelta(seconds=n)) for n in range(30, 55)))

    beats = tiles(overview(viewer))[probe.id]["beats"]

    assert [beat["response_time_ms"] for beat in beats] == [float(n) for n in range(5, 55)]
    assert [beat["status"] for beat in beats][:3] == ["success", "success", "timeout"]  # runs 5, 6, 7
    times = [datetime.fromisoformat(beat["at"]) for beat in beats]
    assert times == sorted(times) and len(set(times)) == 50
    fewer = tiles(overview(viewer, beats=3))[probe.id]["beats"]
    assert [beat["response_time_ms"] for beat in fewer] == [52.0, 53.0, 54.0]
    for n in range(55, 120):  # one by one, as a busy probe's runs arrive: the list stays bounded
        stored(row(probe, "success", float(n), at=start + timedelta(seconds=n)))
    assert clean_redis.llen(status_cache.BEATS_KEY.format(tenant.id, probe.id)) <= status_cache.BEATS + \
        status_cache.TRIM_SLACK
    assert [beat["response_time_ms"] for beat in tiles(overview(viewer))[probe.id]["beats"]] == [
        float(n) for n in range(70, 120)]


def test_changes_since_a_cursor_are_only_the_probes_that_changed(api: Api) -> None:
    tenant = make_tenant()
    operator = api.as_role(tenant.id, "operator")
    viewer = api.as_role(tenant.id, "viewer")
    busy, idle, doomed = (make_probe(tenant.id, "127.0.0.1:9", protocol="tcp") for _ in range(3))
    stored(row(busy), row(idle), row(doomed))
    first = overview(viewer)

    assert changes(viewer, first["cursor"]) == {"cursor": first["cursor"], "probes": [], "removed": []}
    stored(row(busy, "error", None))
    changed = changes(viewer, first["cursor"])

    assert [tile["id"] for tile in changed["probes"]] == [busy.id] and changed["removed"] == []
    tile = changed["probes"][0]
    assert tile["status"] == "error" and not UPTIME_FIELDS & set(tile)
    assert [beat["status"] for beat in tile["beats"]] == ["success", "error"]
    assert changes(viewer, changed["cursor"])["probes"] == []

    assert operator.delete(f"{API}/probes/{doomed.id}").status_code == 204
    gone = changes(viewer, changed["cursor"])
    assert gone["probes"] == [] and gone["removed"] == [doomed.id]
    # From the first cursor on, everything that happened since.
    since_first = changes(viewer, first["cursor"])
    assert [tile["id"] for tile in since_first["probes"]] == [busy.id] and since_first["removed"] == [doomed.id]
    assert doomed.id not in tiles(overview(viewer))


def test_a_probe_created_or_edited_is_in_the_changes(api: Api) -> None:
    """Another operator's edit reaches an open console within its next poll, not at the next full load."""
    tenant = make_tenant()
    operator = api.as_role(tenant.id, "operator")
    viewer = api.as_role(tenant.id, "viewer")
    edited = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
    stored(row(edited))
    first = overview(viewer)

    assert operator.patch(f"{API}/probes/{edited.id}", json={"name": "renamed", "enabled": False}).status_code == 200
    created = operator.post(f"{API}/probes", json={"name": "brand-new", "protocol": "tcp", "target": "127.0.0.1:9"})
    assert created.status_code == 201
    changed = tiles(changes(viewer, first["cursor"]))

    assert set(changed) == {edited.id, created.json["id"]}
    assert (changed[edited.id]["name"], changed[edited.id]["enabled"]) == ("renamed", False)
    assert changed[edited.id]["status"] == "success"  # its latest run is still shown
    assert changed[created.json["id"]]["status"] is None and changed[created.json["id"]]["beats"] == []


def test_a_bad_foreign_or_expired_cursor_is_a_422_telling_to_reload(api: Api, clean_redis: redis.Redis) -> None:
    tenant, other = make_tenant(), make_tenant()
    viewer = api.as_role(tenant.id, "viewer")
    stranger = api.as_role(other.id, "viewer")
    probe = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
    stored(row(probe))
    cursor = overview(viewer)["cursor"]

    for bad in ("nonsense", "c1.x.y.z", cursor + "0" * 30):
        assert_error(viewer.get(f"{API}/console/overview/changes", query_string={"cursor": bad}), 422,
                     "invalid_input", "cursor")
    foreign = stranger.get(f"{API}/console/overview/changes", query_string={"cursor": cursor})
    assert_error(foreign, 422, "invalid_input", "cursor")
    assert "overview" in foreign.json["message"]
    assert_error(viewer.get(f"{API}/console/overview/changes"), 422, "invalid_input", "cursor")

    clean_redis.flushdb()  # Redis restarted empty: the index cannot say what changed since
    assert_error(viewer.get(f"{API}/console/overview/changes", query_string={"cursor": cursor}), 422,
                 "invalid_input", "cursor")
    fresh = overview(viewer)["cursor"]
    stored(row(probe, "failed"))
    assert [tile["status"] for tile in changes(viewer, fresh)["probes"]] == ["failed"]


def test_after_redis_is_flushed_the_overview_is_still_right_from_the_database(
    api: Api, clean_redis: redis.Redis
) -> None:
    tenant = make_tenant()
    viewer = api.as_role(tenant.id, "viewer")
    probes = [make_probe(tenant.id, "127.0.0.1:9", protocol="tcp") for _ in range(3)]
    start = utcnow() - timedelta(minutes=30)
    stored(*(row(probe, ("success", "failed", "timeout")[(n + index) % 3], float(n + index),
                 at=start + timedelta(seconds=n))
             for n in range(60) for index, probe in enumerate(probes[:2])))
    before = overview(viewer)

    clean_redis.flushdb()
    after = overview(viewer)

    assert after["probes"] == before["probes"]
    assert len(tiles(after)[probes[0].id]["beats"]) == 50 and tiles(after)[probes[2].id]["beats"] == []
    # Put back: the next run lands on top of the rebuilt strip.
    assert clean_redis.llen(status_cache.BEATS_KEY.format(tenant.id, probes[0].id)) == 50
    stored(row(probes[0], "success", 999.0))
    beats = tiles(overview(viewer))[probes[0].id]["beats"]
    assert len(beats) == 50 and beats[-1]["response_time_ms"] == 999.0
    assert beats[:-1] == tiles(before)[probes[0].id]["beats"][1:]


def test_a_tenant_sees_only_its_own_probes_and_changes(api: Api) -> None:
    mine, theirs = make_tenant(), make_tenant()
    me = api.as_role(mine.id, "viewer")
    them = api.as_role(theirs.id, "viewer")
    my_probe = make_probe(mine.id, "127.0.0.1:9", protocol="tcp")
    their_probe = make_probe(theirs.id, "127.0.0.1:9", protocol="tcp")
    stored(row(my_probe), row(their_probe))
    my_cursor = overview(me)["cursor"]

    assert list(tiles(overview(me))) == [my_probe.id]
    assert list(tiles(overview(them))) == [their_probe.id]
    stored(row(their_probe, "failed"))
    assert changes(me, my_cursor)["probes"] == []


def test_reading_needs_a_login(api: Api) -> None:
    assert_error(api.client.get(f"{API}/console/overview"), 401, "unauthenticated")
    assert_error(api.client.get(f"{API}/console/overview/changes?cursor=x"), 401, "unauthenticated")


def test_times_are_utc_iso(api: Api) -> None:
    tenant = make_tenant()
    viewer = api.as_role(tenant.id, "viewer")
    probe = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
    stored(row(probe))
    tile = tiles(overview(viewer))[probe.id]
    for value in (tile["checked_at"], tile["beats"][0]["at"]):
        assert datetime.fromisoformat(value).utcoffset() == timezone.utc.utcoffset(None)
