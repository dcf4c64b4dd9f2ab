"""Acknowledge and escalation: an alert nobody acknowledged tells further channels, each step once.

A real worker evaluates the stored results and runs beat's housekeeping pass when the test
asks for it (as beat does every 5 s); two loopback webhook receivers are two channels: the
rule's own (``ops``) and the one its escalation steps name (``oncall``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

import pytest
from flask import Flask
from sqlalchemy import select, update

from app.extensions import db
from app.models import Alert, AlertEvent, Notification, Probe, utcnow
from app.services import alert_evaluation, alert_rules, alerts, escalation, maintenance, notification_channels, silences
from tests.api import Api, Caller, assert_error
from tests.conftest import make_probe, make_tenant, wait_for
from tests.receivers import WebhookReceiver
from tests import test_alerting
from tests.test_alerting import make_user, stored

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("quick_delivery")]
quick_delivery = test_alerting.quick_delivery  # retries within a fraction of a second, a public_url

RULES = "/api/v1/alert-rules"
ALERTS = "/api/v1/alerts"


@pytest.fixture
def pager() -> Iterator[WebhookReceiver]:
    """The second channel's receiver: the person the escalation steps call."""
    with WebhookReceiver() as running:
        yield running


@dataclass
class Escalating:
    tenant: Any
    probe: Any
    rule: Any
    oncall: Any  # the channel the steps name


def _hook(tenant_id: int, name: str, receiver: WebhookReceiver) -> Any:
    return notification_channels.create_channel(tenant_id, {
        "name": name, "kind": "webhook", "settings": {"url": f"{receiver.url}/{name}"}})


def escalating_rule(receiver: WebhookReceiver, pager: WebhookReceiver, after: list[int], **rule: Any) -> Escalating:
    """A tenant with probe ``web-1`` and a ``down`` rule (threshold 1) telling ``ops`` (``receiver``),
    with one escalation step to ``oncall`` (``pager``) after each of ``after`` seconds."""
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/health", name="web-1")
    ops, oncall = _hook(tenant.id, "ops", receiver), _hook(tenant.id, "oncall", pager)
    created = alert_rules.create_rule(tenant.id, {
        "name": "web down", "kind": "down", "probe_id": probe.id, "threshold": 1, "channel_ids": [ops.id],
        "escalation": [{"after_seconds": seconds, "channel_ids": [oncall.id]} for seconds in after], **rule})
    return Escalating(tenant, probe, created, oncall)


def housekeeping() -> dict[str, Any]:
    """One pass of beat's housekeeping, run by the worker."""
    from app.tasks.alert_tasks import alert_housekeeping

    return alert_housekeeping.apply_async(ignore_result=False).get(timeout=30)


def latest_alert() -> Alert:
    db.session.expire_all()
    alert = db.session.scalars(select(Alert).order_by(Alert.id.desc()).limit(1)).one()
    db.session.rollback()
    return alert


def wait_until(moment: datetime, what: str) -> None:
    wait_for(lambda: utcnow() >= moment, timeout=30, what=what)


def events(receiver: WebhookReceiver) -> list[str]:
    return [request.json["event"] for request in receiver.requests]


def notes(alert_id: int) -> list[str]:
    db.session.expire_all()
    found = list(db.session.scalars(select(AlertEvent.note).where(AlertEvent.alert_id == alert_id)
                                    .order_by(AlertEvent.id)))
    db.session.rollback()
    return found


def escalation_steps_written() -> list[int]:
    """The step of every escalation notification, oldest first."""
    db.session.expire_all()
    contexts = db.session.scalars(select(Notification.context).where(Notification.event == "escalation")
                                  .order_by(Notification.created_at)).all()
    db.session.rollback()
    return [context["escalation"]["step"] for context in contexts]


def due_now(alert_id: int, opened_ago: timedelta = timedelta(0)) -> None:
    """The alert's next step is due now (its time passing, without waiting for it)."""
    now = utcnow()
    db.session.execute(update(Alert).where(Alert.id == alert_id)
                       .values(next_escalation_at=now, opened_at=now - opened_ago))
    db.session.commit()


# --- with a worker --------------------------------------------------------------------------------


def test_a_step_not_acknowledged_in_time_tells_its_channel_once(
        app: Flask, worker: object, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [2])
    stored(setup.probe, "failed", error="connection refused")
    assert receiver.wait_for(1, timeout=20)[0].json["event"] == "firing"
    alert = latest_alert()
    assert alert.next_escalation_at == alert.opened_at + timedelta(seconds=2)
    assert pager.requests == []

    wait_until(alert.next_escalation_at, "the step to be due")
    assert housekeeping()["escalations"] == 1
    (escalated,) = pager.wait_for(1, timeout=20)
    assert escalated.json["event"] == "escalation"
    assert escalated.json["subject"].startswith("[ESCALATION] web-1")
    assert escalated.json["data"]["escalation"] == {"step": 1, "after_seconds": 2}
    assert escalated.json["data"]["alert"]["id"] == alert.id

    for _ in range(3):  # later passes: the step was taken
        assert housekeeping()["escalations"] == 0
    assert len(pager.requests) == 1 and events(receiver) == ["firing"]
    alert = latest_alert()
    assert (alert.status, alert.escalation_step, alert.next_escalation_at) == ("firing", 1, None)
    assert any(note.startswith("escalation step 1") and "notified oncall" in note for note in notes(alert.id))


def test_acknowledging_after_the_first_step_stops_the_second_and_the_reminders(
        app: Flask, worker: object, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [2, 4], reminder_seconds=60)
    stored(setup.probe, "failed")
    receiver.wait_for(1, timeout=20)
    alert = latest_alert()
    wait_until(alert.opened_at + timedelta(seconds=2), "step 1 to be due")
    assert housekeeping()["escalations"] == 1
    assert pager.wait_for(1, timeout=20)[0].json["data"]["escalation"]["step"] == 1

    alerts.acknowledge(setup.tenant.id, alert.id, alerts.Actor.of(make_user(setup.tenant.id)), note="on it")
    assert receiver.wait_for(2, timeout=20)[1].json["event"] == "acknowledged"
    acknowledged = latest_alert()
    assert (acknowledged.next_escalation_at, acknowledged.next_reminder_at) == (None, None)

    wait_until(alert.opened_at + timedelta(seconds=4), "step 2's time to pass")
    db.session.execute(update(Alert).where(Alert.id == alert.id).values(next_reminder_at=utcnow()))
    db.session.commit()  # the reminder interval passing too, without waiting a minute
    report = housekeeping()
    assert (report["escalations"], report["reminders"]) == (0, 0)
    assert len(pager.requests) == 1 and events(receiver) == ["firing", "acknowledged"]
    assert latest_alert().escalation_step == 1


def test_a_new_outage_after_recovery_is_a_new_alert_that_escalates_from_step_one(
        app: Flask, worker: object, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [1])
    stored(setup.probe, "failed")
    receiver.wait_for(1, timeout=20)
    first = latest_alert()
    wait_until(first.next_escalation_at, "the first alert's step")
    assert housekeeping()["escalations"] == 1
    pager.wait_for(1, timeout=20)

    stored(setup.probe, "success")
    assert receiver.wait_for(2, timeout=20)[1].json["event"] == "resolved"
    stored(setup.probe, "failed")
    assert receiver.wait_for(3, timeout=20)[2].json["event"] == "firing"
    second = latest_alert()
    assert second.id != first.id and second.escalation_step == 0

    wait_until(second.next_escalation_at, "the second alert's step")
    assert housekeeping()["escalations"] == 1
    again = pager.wait_for(2, timeout=20)[1].json
    assert again["data"]["escalation"]["step"] == 1 and again["data"]["alert"]["id"] == second.id
    assert [latest_alert().escalation_step, db.session.get(Alert, first.id).escalation_step] == [1, 1]


def test_a_step_whose_channel_was_disabled_sends_nothing_and_the_pass_goes_on(
        app: Flask, worker: object, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [1])
    other = make_probe(setup.tenant.id, "http://127.0.0.1:9/", name="db-1")
    gone = _hook(setup.tenant.id, "gone", pager)
    orphaned = alert_rules.create_rule(setup.tenant.id, {
        "name": "db down", "kind": "down", "probe_id": other.id, "threshold": 1,
        "channel_ids": [setup.rule.channels[0].id], "escalation": [{"after_seconds": 1, "channel_ids": [gone.id]}]})
    notification_channels.update_channel(setup.tenant.id, gone.id, {"enabled": False})
    stored(other, "failed")
    stored(setup.probe, "failed")
    receiver.wait_for(2, timeout=20)
    wait_until(latest_alert().opened_at + timedelta(seconds=1), "both steps to be due")

    assert housekeeping()["escalations"] == 1
    (escalated,) = pager.wait_for(1, timeout=20)
    assert escalated.json["data"]["probe"]["name"] == "web-1"
    assert housekeeping()["escalations"] == 0
    db.session.expire_all()
    stranded = db.session.scalars(select(Alert).where(Alert.rule_id == orphaned.id)).one()
    assert (stranded.escalation_step, stranded.next_escalation_at) == (1, None)
    assert any("none of its channels is enabled" in note for note in notes(stranded.id))
    assert len(pager.requests) == 1


# --- the service alone ----------------------------------------------------------------------------


def test_two_beats_escalating_at_once_take_each_step_once(
        pg_app: Flask, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [60, 120])
    alert_evaluation.evaluate([(setup.probe.id, stored(setup.probe, "failed"))])
    alert_id = latest_alert().id
    due_now(alert_id, opened_ago=timedelta(minutes=10))  # both steps are due, one per pass
    created: list[list[str]] = []
    errors: list[BaseException] = []

    def beat(start: threading.Barrier) -> None:
        with pg_app.app_context():
            try:
                start.wait()
                created.append(escalation.escalate())
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
            finally:
                db.session.remove()

    for _ in range(3):
        start = threading.Barrier(2)
        threads = [threading.Thread(target=beat, args=(start,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == [] and len(created) == 6
    assert sum(len(ids) for ids in created) == 2
    assert escalation_steps_written() == [1, 2]
    alert = latest_alert()
    assert (alert.escalation_step, alert.next_escalation_at) == (2, None)


def test_an_alert_in_maintenance_takes_its_step_without_a_notice(
        app: Flask, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [60, 120])
    alert_evaluation.evaluate([(setup.probe.id, stored(setup.probe, "failed"))])
    alert = latest_alert()
    now = utcnow()
    maintenance.create_window(setup.tenant.id, {"name": "patching", "starts_at": now - timedelta(minutes=1),
                                                "ends_at": now + timedelta(hours=1), "probe_ids": [setup.probe.id]})
    due_now(alert.id, opened_ago=timedelta(seconds=90))

    assert escalation.escalate() == []
    moved = latest_alert()
    assert moved.escalation_step == 1
    assert moved.next_escalation_at == moved.opened_at + timedelta(seconds=120)  # step 2 stays on schedule
    assert any("in maintenance: no notice sent" in note for note in notes(alert.id))
    assert escalation_steps_written() == []


def test_a_silenced_alert_takes_its_step_without_a_notice(
        app: Flask, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [60])
    alert_evaluation.evaluate([(setup.probe.id, stored(setup.probe, "failed"))])
    alert = latest_alert()
    silence = silences.create_silence(setup.tenant.id, {"comment": "deploying",
                                                        "ends_at": utcnow() + timedelta(hours=1),
                                                        "probe_ids": [setup.probe.id]})
    due_now(alert.id, opened_ago=timedelta(seconds=60))

    assert escalation.escalate() == []
    assert latest_alert().escalation_step == 1
    assert any(f"silenced by silence {silence.id}" in note for note in notes(alert.id))
    assert escalation_steps_written() == []


def test_a_disabled_rule_or_a_flapping_alert_does_not_escalate(
        app: Flask, receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    setup = escalating_rule(receiver, pager, [60])
    alert_evaluation.evaluate([(setup.probe.id, stored(setup.probe, "failed"))])
    alert_id = latest_alert().id
    due_now(alert_id, opened_ago=timedelta(seconds=60))
    db.session.execute(update(Alert).where(Alert.id == alert_id).values(flapping=True))
    db.session.commit()
    assert escalation.escalate() == []

    db.session.execute(update(Alert).where(Alert.id == alert_id).values(flapping=False))
    db.session.commit()
    alert_rules.update_rule(setup.tenant.id, setup.rule.id, {"enabled": False})
    assert escalation.escalate() == []
    assert latest_alert().escalation_step == 0

    alert_rules.update_rule(setup.tenant.id, setup.rule.id, {"enabled": True})
    assert len(escalation.escalate()) == 1
    assert escalation_steps_written() == [1]


# --- the API --------------------------------------------------------------------------------------


@pytest.fixture
def team(api: Api) -> dict[str, Caller]:
    tenant_id = make_tenant().id
    return {role: api.as_role(tenant_id, role) for role in ("operator", "admin")}


def _api_hook(admin: Caller, name: str, receiver: WebhookReceiver) -> int:
    created = admin.post("/api/v1/notification-channels", json={
        "name": name, "kind": "webhook", "settings": {"url": f"{receiver.url}/{name}"}})
    assert created.status_code == 201, created.json
    return int(created.json["id"])


def test_api_checks_steps_shows_them_and_reschedules_open_alerts(
        team: dict[str, Caller], receiver: WebhookReceiver, pager: WebhookReceiver) -> None:
    operator = team["operator"]
    ops, oncall = _api_hook(team["admin"], "ops", receiver), _api_hook(team["admin"], "oncall", pager)
    foreign = _hook(make_tenant().id, "theirs", receiver)
    probe = operator.post("/api/v1/probes", json={"name": "web", "protocol": "tcp", "target": "127.0.0.1:9"}).json
    body = {"name": "web down", "kind": "down", "probe_id": probe["id"], "threshold": 1, "channel_ids": [ops]}

    theirs = operator.post(RULES, json={**body, "escalation": [{"after_seconds": 60, "channel_ids": [foreign.id]}]})
    assert_error(theirs, 404, "not_found")
    backwards = [{"after_seconds": 600, "channel_ids": [oncall]}, {"after_seconds": 300, "channel_ids": [ops]}]
    assert_error(operator.post(RULES, json={**body, "escalation": backwards}), 422, field="escalation")
    assert operator.get(RULES).json["items"] == []

    steps = [{"after_seconds": 300, "channel_ids": [oncall]}, {"after_seconds": 900, "channel_ids": [oncall, ops]}]
    created = operator.post(RULES, json={**body, "escalation": steps})
    assert created.status_code == 201, created.json
    assert operator.get(f"{RULES}/{created.json['id']}").json["escalation"] == steps

    probe_row = db.session.get(Probe, probe["id"])
    alert_evaluation.evaluate([(probe["id"], stored(probe_row, "failed"))])
    alert = operator.get(ALERTS).json["items"][0]
    opened = datetime.fromisoformat(alert["opened_at"])
    assert datetime.fromisoformat(alert["next_escalation_at"]) == opened + timedelta(seconds=300)

    changed = operator.patch(f"{RULES}/{created.json['id']}",
                             json={"escalation": [{"after_seconds": 120, "channel_ids": [oncall]}]})
    assert changed.status_code == 200, changed.json
    shown = operator.get(f"{ALERTS}/{alert['id']}").json
    assert datetime.fromisoformat(shown["next_escalation_at"]) == opened + timedelta(seconds=120)

    acknowledged = operator.post(f"{ALERTS}/{alert['id']}/acknowledge", json={"note": "mine"})
    assert acknowledged.status_code == 200, acknowledged.json
    assert acknowledged.json["status"] == "acknowledged" and acknowledged.json["next_escalation_at"] is None


def test_deleting_a_channel_takes_it_out_of_the_escalation_steps(app: Flask) -> None:
    tenant = make_tenant()
    kept, gone = (notification_channels.create_channel(tenant.id, {
        "name": name, "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}}) for name in ("kept", "gone"))
    rule = alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "channel_ids": [kept.id],
                                               "escalation": [{"after_seconds": 60, "channel_ids": [kept.id, gone.id]},
                                                              {"after_seconds": 120, "channel_ids": [gone.id]}]})
    notification_channels.delete_channel(tenant.id, gone.id)
    assert alert_rules.get_rule(tenant.id, rule.id).escalation == [{"after_seconds": 60, "channel_ids": [kept.id]}]
    alert_rules.update_rule(tenant.id, rule.id, {"enabled": False})  # the rule stays editable
