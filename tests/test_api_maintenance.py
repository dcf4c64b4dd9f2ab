"""The maintenance-window API: roles, what a window shows, refusals with the field, and stats."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.models import utcnow
from tests.api import Api, Caller, assert_error
from tests.conftest import make_tenant
from tests.test_alerting import stored

pytestmark = pytest.mark.timeout(60)

WINDOWS = "/api/v1/maintenance-windows"


@pytest.fixture
def team(api: Api) -> dict[str, Caller]:
    tenant_id = make_tenant().id
    return {role: api.as_role(tenant_id, role) for role in ("viewer", "operator")}


def test_an_operator_plans_a_recurring_window_and_a_viewer_reads_it(team: dict[str, Caller]) -> None:
    probe = team["operator"].post("/api/v1/probes", json={"name": "db", "protocol": "tcp",
                                                           "target": "127.0.0.1:9"}).json
    body = {"name": "sunday patching", "comment": "OS updates", "starts_at": "2026-01-01T00:00:00Z",
            "cron": "0 2 * * 0", "duration_seconds": 7200, "timezone": "Europe/Berlin", "probe_ids": [probe["id"]]}
    assert_error(team["viewer"].post(WINDOWS, json=body), 403)

    created = team["operator"].post(WINDOWS, json=body)
    assert created.status_code == 201, created.json
    window = team["viewer"].get(f"{WINDOWS}/{created.json['id']}").json
    assert {k: window[k] for k in ("name", "cron", "duration_seconds", "timezone", "probe_ids", "group_ids",
                                   "all_probes", "ends_at")} == {
        "name": "sunday patching", "cron": "0 2 * * 0", "duration_seconds": 7200, "timezone": "Europe/Berlin",
        "probe_ids": [probe["id"]], "group_ids": [], "all_probes": False, "ends_at": None}
    upcoming = window["next_occurrence"]
    assert upcoming is not None
    opens = datetime.fromisoformat(upcoming["starts_at"])
    assert window["open_now"] is (opens <= utcnow())  # the one open now, else the next
    assert opens.weekday() == 6 and opens.strftime("%H:%M") in ("00:00", "01:00")  # Sunday 02:00 in Berlin
    assert datetime.fromisoformat(upcoming["ends_at"]) - opens == timedelta(hours=2)

    changed = team["operator"].patch(f"{WINDOWS}/{window['id']}", json={"comment": "kernel updates"})
    assert changed.status_code == 200 and changed.json["comment"] == "kernel updates"
    assert changed.json["cron"] == "0 2 * * 0"
    assert team["operator"].delete(f"{WINDOWS}/{window['id']}").status_code == 204
    assert team["viewer"].get(WINDOWS).json["items"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"cron": "0 2 * *", "duration_seconds": 600}, "cron"),
    ({"ends_at": "2026-01-01T00:00:00Z"}, "ends_at"),
    ({"starts_at": "next tuesday"}, "starts_at"),
    ({"timezone": "Nowhere/City", "cron": "0 2 * * 0", "duration_seconds": 600}, "timezone"),
    ({"probe_ids": [], "all_probes": False}, "probe_ids"),
    ({"colour": "red"}, "colour"),
])
def test_a_malformed_window_is_refused_with_its_field_and_nothing_is_written(
        team: dict[str, Caller], body: dict[str, object], field: str) -> None:
    data = {"name": "w", "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-02-01T01:00:00Z",
            "all_probes": True, **body}
    if "probe_ids" in body:
        data["all_probes"] = False
    assert_error(team["operator"].post(WINDOWS, json=data), 422, field=field)
    assert team["operator"].get(WINDOWS).json["items"] == []


def test_two_windows_of_one_name_conflict(team: dict[str, Caller]) -> None:
    data = {"name": "w", "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-02-01T01:00:00Z", "all_probes": True}
    assert team["operator"].post(WINDOWS, json=data).status_code == 201
    assert_error(team["operator"].post(WINDOWS, json=data), 409, "conflict")


def test_stats_read_uptime_with_and_without_the_window(team: dict[str, Caller]) -> None:
    operator = team["operator"]
    probe_id = operator.post("/api/v1/probes", json={"name": "web", "protocol": "tcp",
                                                      "target": "127.0.0.1:9"}).json["id"]
    from app.extensions import db
    from app.models import Probe

    probe = db.session.get(Probe, probe_id)
    stored(probe, "success")
    now = utcnow()
    window = operator.post(WINDOWS, json={"name": "now", "starts_at": now.isoformat(),
                                           "ends_at": (now + timedelta(hours=1)).isoformat(),
                                           "probe_ids": [probe_id]})
    assert window.json["open_now"] is True
    stored(probe, "failed")
    stored(probe, "failed")

    stats = operator.get(f"/api/v1/probes/{probe_id}/stats").json
    assert (stats["count"], stats["uptime_percent"], stats["maintenance_count"],
            stats["uptime_outside_maintenance_percent"]) == (3, 33.333, 2, 100.0)
    results = operator.get(f"/api/v1/probes/{probe_id}/results").json["items"]
    assert [item["in_maintenance"] for item in results] == [True, True, False]  # newest first
