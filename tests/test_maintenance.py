"""Maintenance windows: when they are open, which runs they mark, and what alerting does meanwhile.

The schedules are checked as functions (cron in a named time zone, across a DST change);
the alerting edges run with a real worker consuming ``alerts`` and a real webhook
receiver: a window that ends while the target is down notifies once; a target that goes
down and recovers inside one sends nothing; an open alert gets no reminder while its probe
is in maintenance and resolves there without a notice.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.alerting.rules import BAD, Memory, ResultView, RuleSpec, advance
from app.extensions import db
from app.models import Alert, AlertEvent, ProbeResult, utcnow
from app.services import alerts, maintenance, probe_groups
from app.services.errors import InvalidInputError, NotFoundError
from app.services.maintenance import Schedule, occurrences, open_at
from tests.conftest import make_probe, make_tenant, wait_for
from tests.receivers import WebhookReceiver
from tests.test_alerting import evaluated_up_to, notifications, quick_delivery, setup_rule, stored  # noqa: F401

pytestmark = pytest.mark.timeout(120)

UTC = timezone.utc


# --- schedules -----------------------------------------------------------------------------------


def test_a_recurring_window_follows_its_time_zone_across_daylight_saving() -> None:
    """02:00 to 04:00 every Sunday in Berlin: 01:00 UTC in winter, 00:00 UTC in summer."""
    weekly = Schedule(starts_at=datetime(2026, 3, 1, tzinfo=UTC), ends_at=None, cron="0 2 * * 0",
                      duration_seconds=7200, timezone="Europe/Berlin")
    found = occurrences(weekly, datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))
    assert found == [
        (datetime(2026, 3, 22, 1, tzinfo=UTC), datetime(2026, 3, 22, 3, tzinfo=UTC)),
        # 29 March: clocks go forward at 02:00, so 02:00 local does not exist; croniter takes 03:00 CEST.
        (datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 29, 3, tzinfo=UTC)),
        (datetime(2026, 4, 5, 0, tzinfo=UTC), datetime(2026, 4, 5, 2, tzinfo=UTC)),
    ]
    assert open_at(weekly, datetime(2026, 4, 5, 0, 0, tzinfo=UTC)) == found[2]  # the start is inside
    assert open_at(weekly, datetime(2026, 4, 5, 1, 59, tzinfo=UTC)) == found[2]
    assert open_at(weekly, datetime(2026, 4, 5, 2, 0, tzinfo=UTC)) is None  # the end is not inside


def test_a_recurring_window_opens_nothing_before_its_start_or_after_its_end() -> None:
    daily = Schedule(starts_at=datetime(2026, 5, 2, 12, tzinfo=UTC), ends_at=datetime(2026, 5, 4, 0, tzinfo=UTC),
                     cron="0 6 * * *", duration_seconds=3600)
    found = occurrences(daily, datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 10, tzinfo=UTC))
    assert [opens.day for opens, _ in found] == [3]
    # An occurrence already open at the start of the range is found.
    assert open_at(daily, datetime(2026, 5, 3, 6, 30, tzinfo=UTC)) == found[0]


def test_a_listing_shows_the_open_occurrence_or_else_the_next_even_a_month_away(app: Flask) -> None:
    tenant = make_tenant()
    now = utcnow()
    every_minute = maintenance.create_window(tenant.id, {
        "name": "busy", "starts_at": now - timedelta(days=1), "cron": "* * * * *",
        "duration_seconds": 31 * 86400, "all_probes": True})
    assert maintenance.status(every_minute).open_now
    yearly = maintenance.create_window(tenant.id, {
        "name": "new year", "starts_at": now, "cron": "0 0 1 1 *", "duration_seconds": 3600, "all_probes": True})
    upcoming = maintenance.status(yearly).next_occurrence
    assert upcoming is not None and (upcoming[0].month, upcoming[0].day, upcoming[0].hour) == (1, 1, 0)
    assert upcoming[0] > now and not maintenance.status(yearly).open_now
    ended = maintenance.create_window(tenant.id, {
        "name": "past", "starts_at": now - timedelta(days=2), "ends_at": now - timedelta(days=1),
        "all_probes": True})
    assert maintenance.status(ended) == maintenance.WindowStatus(False, None)


def test_a_one_off_window_is_open_from_its_start_until_its_end() -> None:
    once = Schedule(starts_at=datetime(2026, 6, 1, 10, tzinfo=UTC), ends_at=datetime(2026, 6, 1, 11, tzinfo=UTC))
    assert open_at(once, datetime(2026, 6, 1, 10, tzinfo=UTC)) is not None
    assert open_at(once, datetime(2026, 6, 1, 10, 59, 59, tzinfo=UTC)) is not None
    assert open_at(once, datetime(2026, 6, 1, 11, tzinfo=UTC)) is None
    assert open_at(once, datetime(2026, 6, 1, 9, 59, tzinfo=UTC)) is None


# --- what a window may be --------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "message"), [
    ({"cron": "every sunday"}, "cron: not a five-field cron expression"),
    ({"cron": "0 2 * * 0 2026"}, "cron: not a five-field cron expression"),
    ({"cron": "0 2 * * 0", "duration_seconds": 3600, "timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
    ({"cron": "0 2 * * 0"}, "duration_seconds: required for a recurring window"),
    ({"ends_at": None}, "ends_at: required for a one-off window"),
    ({"ends_at": "2026-06-01T09:00:00Z"}, "ends_at: must be after starts_at"),
    ({"starts_at": "2026-06-01T10:00:00"}, "starts_at:"),  # no time zone: refused, not guessed
    ({"probe_ids": []}, "probe_ids: name probes or groups, or set all_probes"),
    ({"all_probes": True}, "all_probes: covers every probe"),
    ({"starts_at": "0001-01-01T00:00:00+14:00"}, "starts_at: must lie between 2000 and 2100"),
    ({"ends_at": "9999-12-31T23:59:59-12:00"}, "ends_at: must lie between 2000 and 2100"),
])
def test_a_window_that_cannot_be_is_refused_with_the_field(app: Flask, changes: dict[str, Any],
                                                            message: str) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/")
    data = {"name": "db upgrade", "starts_at": "2026-06-01T10:00:00Z", "ends_at": "2026-06-01T11:00:00Z",
            "probe_ids": [probe.id], **changes}
    with pytest.raises(InvalidInputError) as refused:
        maintenance.create_window(tenant.id, data)
    assert str(refused.value).startswith(message), str(refused.value)
    assert maintenance.list_windows(tenant.id) == []


def test_a_window_cannot_cover_another_tenants_probe(app: Flask) -> None:
    mine, theirs = make_tenant(), make_tenant()
    foreign = make_probe(theirs.id, "http://127.0.0.1:9/")
    with pytest.raises(NotFoundError, match=f"probe {foreign.id} not found"):
        maintenance.create_window(mine.id, {"name": "w", "starts_at": "2026-06-01T10:00:00Z",
                                            "ends_at": "2026-06-01T11:00:00Z", "probe_ids": [foreign.id]})
    assert maintenance.list_windows(None) == []


# --- which runs are marked ----------------------------------------------------------------------------


def _open_window(tenant_id: int, **scope: Any) -> Any:
    now = utcnow()
    return maintenance.create_window(tenant_id, {"name": f"w-{now.timestamp()}", "starts_at": now - timedelta(minutes=1),
                                                 "ends_at": now + timedelta(hours=1), **scope})


def _marked(result_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(ProbeResult, result_id).in_maintenance


def test_results_of_covered_probes_are_marked_and_others_are_not(app: Flask) -> None:
    tenant, other_tenant = make_tenant(), make_tenant()
    group = probe_groups.create_group(tenant.id, "edge")
    named = make_probe(tenant.id, "http://127.0.0.1:9/a")
    in_group = make_probe(tenant.id, "http://127.0.0.1:9/b", group_id=group.id)
    outside = make_probe(tenant.id, "http://127.0.0.1:9/c")
    elsewhere = make_probe(other_tenant.id, "http://127.0.0.1:9/d")
    _open_window(tenant.id, probe_ids=[named.id], group_ids=[group.id])

    assert _marked(stored(named)) and _marked(stored(in_group))
    assert not _marked(stored(outside)) and not _marked(stored(elsewhere))

    whole = _open_window(other_tenant.id, all_probes=True)
    assert _marked(stored(elsewhere))
    maintenance.delete_window(other_tenant.id, whole.id)
    assert not _marked(stored(elsewhere))


def test_a_result_written_late_is_marked_by_when_it_ran(app: Flask) -> None:
    """Written after its window ended (the database was down meanwhile): judged by its start."""
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/a")
    now = utcnow()
    maintenance.create_window(tenant.id, {"name": "last night", "starts_at": now - timedelta(hours=3),
                                          "ends_at": now - timedelta(hours=2), "probe_ids": [probe.id]})
    assert _marked(stored(probe, started_at=now - timedelta(hours=2, minutes=30)))
    assert not _marked(stored(probe, started_at=now - timedelta(hours=1)))
    assert not _marked(stored(probe))


# --- rules in maintenance -------------------------------------------------------------------------------


def _run(result_id: int, status: str, in_maintenance: bool) -> ResultView:
    return ResultView(id=result_id, status=status, created_at=datetime(2026, 6, 1, tzinfo=UTC) + timedelta(
        seconds=result_id), in_maintenance=in_maintenance)


def test_a_rule_holds_what_fires_in_maintenance_and_opens_it_on_the_first_failure_after() -> None:
    rule = RuleSpec("down", threshold=2, window=2)
    memory, transitions = advance(rule, Memory(), [_run(1, "failed", True), _run(2, "failed", True),
                                                   _run(3, "failed", True)])
    assert [t.action for t in transitions] == ["hold"] and memory.held and memory.firing
    memory, transitions = advance(rule, memory, [_run(4, "failed", False), _run(5, "failed", False)])
    assert [t.action for t in transitions] == ["fire"]  # once
    assert transitions[0].since == datetime(2026, 6, 1, 0, 0, 1, tzinfo=UTC)  # the episode's first failure
    assert transitions[0].reason.startswith("still failing after maintenance: 2 runs in a row failed")


def test_a_rule_drops_what_recovered_in_maintenance() -> None:
    rule = RuleSpec("down", threshold=2, window=2)
    memory, transitions = advance(rule, Memory(), [_run(1, "failed", True), _run(2, "failed", True),
                                                   _run(3, "success", True), _run(4, "success", False)])
    assert [t.action for t in transitions] == ["hold", "drop"]
    assert not memory.firing and not memory.held and BAD not in memory.recent


# --- alerting with a real worker -------------------------------------------------------------------------


def _alerts() -> list[Alert]:
    db.session.expire_all()
    found = list(db.session.scalars(select(Alert).order_by(Alert.id)))
    db.session.rollback()
    return found


def test_a_window_that_ends_while_the_target_is_down_notifies_once(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    tenant, probe, rule, _ = setup_rule(receiver, threshold=2)
    window = _open_window(tenant.id, probe_ids=[probe.id])
    for _ in range(4):
        last = stored(probe, "failed", error="connection refused")
    wait_for(lambda: evaluated_up_to(rule.id, probe.id, last), what="evaluation in maintenance")
    assert _alerts() == [] and receiver.requests == []

    maintenance.update_window(tenant.id, window.id, {"ends_at": utcnow()})  # the window ends
    stored(probe, "failed", error="connection refused")
    (firing,) = receiver.wait_for(1, timeout=20)
    assert firing.json["event"] == "firing"
    assert firing.json["data"]["alert"]["reason"].startswith("still failing after maintenance")
    last = stored(probe, "failed", error="connection refused")
    wait_for(lambda: evaluated_up_to(rule.id, probe.id, last), what="evaluation after the window")
    (alert,) = _alerts()
    assert alert.status == "firing"
    wait_for(lambda: notifications() == [("firing", "sent", 1)], what="exactly one notification")


def test_down_and_up_inside_a_window_sends_nothing(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    tenant, probe, rule, _ = setup_rule(receiver, threshold=2)
    window = _open_window(tenant.id, probe_ids=[probe.id])
    for status in ("failed", "failed", "failed", "success"):
        stored(probe, status)
    maintenance.update_window(tenant.id, window.id, {"ends_at": utcnow()})
    last = stored(probe, "success")
    wait_for(lambda: evaluated_up_to(rule.id, probe.id, last), what="evaluation across the window")
    assert _alerts() == [] and notifications() == [] and receiver.requests == []


def test_an_open_alert_is_not_reminded_in_maintenance_and_resolves_there_without_a_notice(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    tenant, probe, rule, _ = setup_rule(receiver, threshold=1, reminder_seconds=60)
    stored(probe, "failed")
    receiver.wait_for(1, timeout=20)
    (alert,) = _alerts()
    window = _open_window(tenant.id, probe_ids=[probe.id])

    assert alerts.send_reminders(now=utcnow() + timedelta(minutes=2)) == []  # due, but in maintenance
    db.session.expire_all()
    moved = db.session.get(Alert, alert.id)
    assert moved.next_reminder_at > utcnow() + timedelta(minutes=2) and moved.reminders_sent == 0

    last = stored(probe, "success")
    wait_for(lambda: evaluated_up_to(rule.id, probe.id, last), what="the recovery in maintenance")
    (resolved,) = _alerts()
    assert resolved.status == "resolved"
    note = db.session.scalars(select(AlertEvent.note).where(AlertEvent.alert_id == alert.id,
                                                            AlertEvent.to_status == "resolved")).one()
    assert note.endswith("(in maintenance: no notice sent)")
    maintenance.delete_window(tenant.id, window.id)
    assert [event for event, *_ in notifications()] == ["firing"]
    assert len(receiver.requests) == 1


def test_reminders_resume_when_the_window_is_gone(app: Flask, receiver: WebhookReceiver,
                                                  quick_delivery: None) -> None:
    tenant, probe, rule, _ = setup_rule(receiver, threshold=1, reminder_seconds=60)
    from app.services import alert_evaluation

    alert_evaluation.evaluate([(probe.id, stored(probe, "failed"))])
    window = _open_window(tenant.id, probe_ids=[probe.id])
    assert alerts.send_reminders(now=utcnow() + timedelta(minutes=2)) == []
    maintenance.delete_window(tenant.id, window.id)
    assert len(alerts.send_reminders(now=utcnow() + timedelta(minutes=5))) == 1
