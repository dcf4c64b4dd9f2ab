"""Alert reports, on SQLite and PostgreSQL: every number against a count made by hand.

The rows are written through the models with chosen times (the report only reads them).
The window is one day, [T0, T0 + 24 h), long past unless a test says what "now" is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from app.extensions import db
from app.models import Alert, Probe, ProbeResult
from app.services import alert_reports, alert_rules
from app.services.alert_reports import Figures, ProbeFigures
from app.services.errors import InvalidInputError, NotFoundError
from tests.api import Api, assert_error
from tests.conftest import make_probe, make_tenant

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
START, END = T0, T0 + timedelta(days=1)
AFTERWARDS = T0 + timedelta(days=2)
REPORTS = "/api/v1/reports/alerts"


def at(**offset: float) -> datetime:
    return T0 + timedelta(**offset)


@dataclass
class Seeded:
    tenant_id: int
    api: Probe  # alerts, and results on both edges of the window and in maintenance
    db: Probe  # a suppressed alert and one acknowledged after a fraction of a second; no result in the window
    legacy: Probe  # failed three days before the window, and has not run since
    stale: Probe  # succeeded the day before, and has not run since
    idle: Probe  # nothing at all
    other_tenant_id: int
    other: Probe  # another tenant's, down and alerting in the same window


def _alert(rule_id: int, probe: Probe, opened: datetime, acknowledged: datetime | None = None,
           resolved: datetime | None = None, status: str | None = None, suppressed_by: int | None = None) -> None:
    status = status or ("resolved" if resolved else "acknowledged" if acknowledged else "firing")
    db.session.add(Alert(tenant_id=probe.tenant_id, rule_id=rule_id, probe_id=probe.id, status=status,
                         reason="down", opened_at=opened, since=opened, acknowledged_at=acknowledged,
                         resolved_at=resolved, suppressed_by=suppressed_by))


def _result(probe: Probe, created: datetime, status: str, in_maintenance: bool = False) -> None:
    db.session.add(ProbeResult(tenant_id=probe.tenant_id, probe_id=probe.id, run_key=f"auto:{created.timestamp()}",
                               probe_type="auto", status=status, started_at=created, created_at=created,
                               in_maintenance=in_maintenance))


def _probe(tenant_id: int, name: str) -> Probe:
    return make_probe(tenant_id, "127.0.0.1:9", protocol="tcp", name=name)


@pytest.fixture
def seeded(app: Any) -> Seeded:
    return seed()


def seed() -> Seeded:
    """Tenant acme's probes, alerts and results around the window, and tenant globex's."""
    tenant_id, other_tenant_id = make_tenant("acme").id, make_tenant("globex").id
    api, dbp, legacy, stale, idle = (_probe(tenant_id, name) for name in ("api", "db", "legacy", "stale", "idle"))
    other = _probe(other_tenant_id, "api")
    rule = alert_rules.create_rule(tenant_id, {"name": "down", "kind": "down"}).id
    other_rule = alert_rules.create_rule(other_tenant_id, {"name": "down", "kind": "down"}).id

    # api: acknowledged after 60, 120 and 300 s (odd count); resolved after 600, 300, 1200 and 900 s (even).
    _alert(rule, api, START, acknowledged=at(seconds=60), resolved=at(seconds=600))  # opened at the start: counted
    _alert(rule, api, at(hours=2), acknowledged=at(hours=2, seconds=120), resolved=at(hours=2, seconds=300))
    _alert(rule, api, at(hours=3), acknowledged=at(hours=3, seconds=300), resolved=at(hours=3, seconds=1200))
    _alert(rule, api, at(hours=4), resolved=at(hours=4, seconds=900))  # never acknowledged
    _alert(rule, api, at(hours=5))  # still open
    _alert(rule, api, at(hours=-1), acknowledged=at(minutes=-50), resolved=at(minutes=-40))  # before the window
    _alert(rule, api, END, acknowledged=at(days=1, seconds=5), resolved=at(days=1, seconds=9))  # at its end: after
    # db: one suppressed by api (open), one acknowledged after 30.25 s and resolved after 45 s.
    _alert(rule, dbp, at(hours=6), status="suppressed", suppressed_by=api.id)
    _alert(rule, dbp, at(hours=7), acknowledged=at(hours=7, seconds=30.25), resolved=at(hours=7, seconds=45))
    _alert(other_rule, other, at(hours=1), acknowledged=at(hours=1, seconds=1), resolved=at(hours=1, seconds=2))

    _result(api, at(minutes=-30), "failed")  # down from before the window: counts from its start, 10 min
    _result(api, at(minutes=10), "success")
    _result(api, at(hours=1), "failed")  # 20 min
    _result(api, at(hours=1, minutes=20), "timeout")  # 10 min
    _result(api, at(hours=1, minutes=30), "success")
    _result(api, at(hours=2), "failed", in_maintenance=True)  # 15 min down, in maintenance
    _result(api, at(hours=2, minutes=15), "success", in_maintenance=True)  # 30 min in maintenance
    _result(api, at(hours=2, minutes=45), "success")
    _result(api, at(hours=23, minutes=50), "error")  # the last in the window: down until its end, 10 min
    _result(api, at(hours=25), "success")  # after the window
    _result(dbp, at(hours=-2), "success")
    _result(legacy, at(days=-3), "failed")  # down all day
    _result(stale, at(days=-1), "success")
    _result(other, at(hours=1), "failed")
    db.session.commit()
    return Seeded(tenant_id, api, dbp, legacy, stale, idle, other_tenant_id, other)


NOTHING = dict(alerts=0, suppressed=0, acknowledged=0, resolved=0, time_to_acknowledge_median_seconds=None,
               time_to_acknowledge_p90_seconds=None, time_to_resolve_median_seconds=None,
               time_to_resolve_p90_seconds=None, results=0, minutes_down=0.0, minutes_in_maintenance=0.0,
               minutes_down_outside_maintenance=0.0)


def figures(**changes: Any) -> Figures:
    return Figures(**{**NOTHING, **changes})


def row(probe: Probe, **changes: Any) -> ProbeFigures:
    return ProbeFigures(**{**NOTHING, **changes}, probe_id=probe.id, probe_name=probe.name)


def api_row(seeded: Seeded) -> ProbeFigures:
    """By hand: acknowledged after 60, 120, 300 s: median 120, p90 at position 0.9 × 2 = 1.8,
    120 + 0.8 × 180 = 264. Resolved after 300, 600, 900, 1200 s: median (600 + 900) / 2 = 750,
    p90 at 0.9 × 3 = 2.7, 900 + 0.7 × 300 = 1110. Down 10 + 20 + 10 + 15 + 10 = 65 min, of which
    15 in maintenance; in maintenance 15 + 30 = 45 min."""
    return row(seeded.api, alerts=5, acknowledged=3, resolved=4,
               time_to_acknowledge_median_seconds=120.0, time_to_acknowledge_p90_seconds=264.0,
               time_to_resolve_median_seconds=750.0, time_to_resolve_p90_seconds=1110.0,
               results=8, minutes_down=65.0, minutes_in_maintenance=45.0, minutes_down_outside_maintenance=50.0)


def tenant_total() -> Figures:
    """By hand: acknowledged after 30.25, 60, 120, 300 s: median 90, p90 at 0.9 × 3 = 2.7,
    120 + 0.7 × 180 = 246. Resolved after 45, 300, 600, 900, 1200 s: median 600, p90 at 0.9 × 4 = 3.6,
    900 + 0.6 × 300 = 1080. Down: api's 65 min and legacy's whole day."""
    return figures(alerts=7, suppressed=1, acknowledged=4, resolved=5,
                   time_to_acknowledge_median_seconds=90.0, time_to_acknowledge_p90_seconds=246.0,
                   time_to_resolve_median_seconds=600.0, time_to_resolve_p90_seconds=1080.0,
                   results=8, minutes_down=1505.0, minutes_in_maintenance=45.0, minutes_down_outside_maintenance=1490.0)


def test_every_number_of_every_probe_and_of_the_tenant_matches_a_count_by_hand(seeded: Seeded) -> None:
    made = alert_reports.report(seeded.tenant_id, START, END, now=AFTERWARDS)

    assert made.until == END
    assert made.probes == [
        api_row(seeded),
        row(seeded.db, alerts=2, suppressed=1, acknowledged=1, resolved=1,
            time_to_acknowledge_median_seconds=30.25, time_to_acknowledge_p90_seconds=30.25,
            time_to_resolve_median_seconds=45.0, time_to_resolve_p90_seconds=45.0),
        row(seeded.legacy, minutes_down=1440.0, minutes_down_outside_maintenance=1440.0),
    ]  # by name; stale (up since the day before) and idle had nothing in the window
    assert made.total == tenant_total()


def test_while_the_window_is_open_time_is_counted_up_to_now(seeded: Seeded) -> None:
    made = alert_reports.report(seeded.tenant_id, START, END, now=at(hours=12))

    assert made.until == at(hours=12)
    by_name = {item.probe_name: item for item in made.probes}
    # api: the success at 2:45 is its last result by then; the error at 23:50 is not counted.
    assert (by_name["api"].results, by_name["api"].minutes_down, by_name["api"].minutes_in_maintenance,
            by_name["api"].minutes_down_outside_maintenance) == (7, 55.0, 45.0, 40.0)
    assert by_name["legacy"].minutes_down == 720.0
    assert made.total.minutes_down == 775.0


def test_a_probe_filter_reports_that_probe_alone(seeded: Seeded) -> None:
    made = alert_reports.report(seeded.tenant_id, START, END, probe_id=seeded.api.id, now=AFTERWARDS)
    assert made.probes == [api_row(seeded)]
    expected = asdict(api_row(seeded))
    del expected["probe_id"], expected["probe_name"]
    assert made.total == Figures(**expected)

    quiet = alert_reports.report(seeded.tenant_id, START, END, probe_id=seeded.idle.id, now=AFTERWARDS)
    assert quiet.probes == [row(seeded.idle)] and quiet.total == figures()


def test_another_tenants_rows_are_never_counted(seeded: Seeded) -> None:
    for probe_id in (seeded.other.id, 987654):
        with pytest.raises(NotFoundError, match=f"probe {probe_id} not found"):
            alert_reports.report(seeded.tenant_id, START, END, probe_id=probe_id, now=AFTERWARDS)
    theirs = alert_reports.report(seeded.other_tenant_id, START, END, now=AFTERWARDS)
    assert theirs.probes == [row(seeded.other, alerts=1, acknowledged=1, resolved=1,
                                 time_to_acknowledge_median_seconds=1.0, time_to_acknowledge_p90_seconds=1.0,
                                 time_to_resolve_median_seconds=2.0, time_to_resolve_p90_seconds=2.0, results=1,
                                 minutes_down=1380.0, minutes_down_outside_maintenance=1380.0)]
    assert theirs.total.alerts == 1 and theirs.total.minutes_down == 1380.0


def test_an_empty_window_reports_zeros_and_no_durations(seeded: Seeded) -> None:
    made = alert_reports.report(seeded.tenant_id, at(days=-20), at(days=-19), now=AFTERWARDS)
    assert made.probes == [] and made.total == figures()


def test_a_window_in_the_future_counts_no_time(seeded: Seeded) -> None:
    made = alert_reports.report(seeded.tenant_id, at(days=5), at(days=6), now=AFTERWARDS)
    assert made.until == AFTERWARDS and made.probes == [] and made.total == figures()


def test_the_window_defaults_to_the_last_seven_days() -> None:
    assert alert_reports.window(None, None, now=END) == (END - timedelta(days=7), END)
    assert alert_reports.window(None, START) == (START - timedelta(days=7), START)


@pytest.mark.parametrize(("start", "end", "field", "message"), [
    (END, START, "to", "must be later than from"),
    (END, END, "to", "must be later than from"),
    (START.replace(tzinfo=None), END, "from", "must include a timezone"),
    (START - timedelta(days=401), START, "from", "at most 400 days"),
    (datetime(1999, 12, 31, tzinfo=timezone.utc), None, "from", "between 2000 and 2100"),
    (None, datetime(9999, 1, 1, tzinfo=timezone.utc), "to", "between 2000 and 2100"),
    (AFTERWARDS + timedelta(days=1), None, "from", "must be in the past"),
])
def test_a_bad_window_is_refused_naming_its_field(start: datetime | None, end: datetime | None, field: str,
                                                  message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as refused:
        alert_reports.window(start, end, now=AFTERWARDS)
    assert refused.value.field == field


# --- the API ---------------------------------------------------------------------------------

def test_a_viewer_reads_the_report(api: Api, seeded: Seeded) -> None:
    viewer = api.as_role(seeded.tenant_id, "viewer")

    answer = viewer.get(REPORTS, query_string={"from": "2026-03-02T01:00:00+01:00", "to": "2026-03-03T00:00:00Z"})

    assert answer.status_code == 200, answer.json
    body = answer.json
    assert (body["from"], body["to"], body["until"]) == (
        "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z", "2026-03-03T00:00:00Z")
    assert body["total"] == asdict(tenant_total())
    assert [item["probe_name"] for item in body["probes"]] == ["api", "db", "legacy"]
    assert body["probes"][0] == asdict(api_row(seeded))

    one = viewer.get(REPORTS, query_string={"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z",
                                            "probe_id": seeded.db.id}).json
    assert [item["probe_name"] for item in one["probes"]] == ["db"] and one["total"]["suppressed"] == 1


def test_the_default_window_is_the_last_seven_days(api: Api, seeded: Seeded) -> None:
    body = api.as_role(seeded.tenant_id, "viewer").get(REPORTS).json
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=7) and body["until"] == body["to"]
    # The seeded day is months ago; legacy's failure then is still its last result, so it is down all week.
    assert body["total"]["alerts"] == 0
    assert [(item["probe_name"], item["minutes_down"]) for item in body["probes"]] == [("legacy", 7 * 1440.0)]


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),
    ({"from": "yesterday"}, "from"),
    ({"to": "1764000000"}, "to"),
    ({"from": "2025-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
    ({"from": "1999-01-01T00:00:00Z"}, "from"),
    ({"probe_id": "0"}, "probe_id"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_query_is_refused_naming_its_field(api: Api, seeded: Seeded, query: dict[str, str],
                                                 field: str) -> None:
    viewer = api.as_role(seeded.tenant_id, "viewer")
    assert_error(viewer.get(REPORTS, query_string=query), 422, "invalid_input", field=field)


def test_another_tenants_probe_is_not_found_and_a_login_is_required(api: Api, seeded: Seeded) -> None:
    viewer = api.as_role(seeded.tenant_id, "viewer")
    assert_error(viewer.get(REPORTS, query_string={"probe_id": seeded.other.id}), 404, "not_found")
    assert_error(viewer.get(REPORTS, query_string={"probe_id": 987654}), 404, "not_found")
    assert_error(api.client.get(REPORTS), 401, "unauthenticated")
