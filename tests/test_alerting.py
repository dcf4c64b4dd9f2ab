"""Alerting end to end: stored results → evaluation on the ``alerts`` queue → outbox → channel.

Results are stored through the result store, as workers store them, so evaluation is
triggered the way it is in production; a real worker consumes ``alerts`` and delivers to
a real webhook receiver on loopback, which checks the HMAC signature.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, Iterator

import pytest
from flask import Flask
from sqlalchemy import select, update

from app.core.config import AlertsSection, activate, active_settings
from app.extensions import db
from app.models import Alert, AlertEvent, AlertState, Notification, NotificationAttempt, utcnow
from app.services import alert_evaluation, alert_rules, alerts, notification_channels
from app.services.result_store import MeasuredRun, store
from tests.conftest import make_probe, make_tenant, wait_for
from tests.receivers import WebhookReceiver

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def quick_delivery() -> Iterator[None]:
    """Retries within a fraction of a second, so a test sees several of them."""
    previous = active_settings()
    activate(previous.model_copy(update={"alerts": AlertsSection(
        retry_backoff_seconds=0.2, retry_backoff_max_seconds=0.5, send_timeout_seconds=2,
        delivery_lease_seconds=5, public_url="https://monitor.example.test")}))
    try:
        yield
    finally:
        activate(previous)


def stored(probe: Any, status: str = "success", ms: float = 12.0, error: str | None = None,
           started_at: datetime | None = None) -> int:
    """Store one result of ``probe`` as a worker does (started now, unless told); returns its id."""
    now = utcnow()
    row = {"tenant_id": probe.tenant_id, "probe_id": probe.id, "run_key": f"manual:{uuid.uuid4().hex}",
           "probe_type": "manual", "status": status, "response_time_ms": ms, "status_code": 200 if status == "success"
           else None, "error": error, "dns_ms": None, "connect_ms": None, "tls_ms": None, "processing_ms": None,
           "transfer_ms": None, "cert_expires_at": None, "bytes_read": 0, "details": None, "scheduled_for": None,
           "started_at": started_at or now, "created_at": now}
    (result_id,) = store([MeasuredRun(row=row)]).values()
    return result_id


def evaluated_up_to(rule_id: int, probe_id: int, result_id: int) -> bool:
    db.session.expire_all()
    state = db.session.get(AlertState, (rule_id, probe_id))
    db.session.rollback()
    return state is not None and state.last_result_id >= result_id


def setup_rule(receiver: WebhookReceiver, **rule: Any) -> tuple[Any, Any, Any, str]:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/health", name="web-1")
    key = secrets.token_urlsafe(24)
    channel = notification_channels.create_channel(tenant.id, {
        "name": "ops-hook", "kind": "webhook", "settings": {"url": f"{receiver.url}/hook"},
        "secrets": {"signing_key": key}})
    created = alert_rules.create_rule(tenant.id, {"name": "web down", "kind": "down", "probe_id": probe.id,
                                                  "channel_ids": [channel.id], **rule})
    return tenant, probe, created, key


def notifications() -> list[tuple[str, str, int]]:
    """(event, status, attempts) of every notification, oldest first."""
    db.session.expire_all()
    rows = [(n.event, n.status, n.attempts)
            for n in db.session.scalars(select(Notification).order_by(Notification.created_at))]
    db.session.rollback()
    return rows


def history(alert_id: int) -> list[tuple[str | None, str, str]]:
    db.session.expire_all()
    return [(event.from_status, event.to_status, event.actor) for event in db.session.scalars(
        select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id))]


def test_fires_exactly_at_the_threshold_and_resolves_with_signed_notifications(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    tenant, probe, rule, key = setup_rule(receiver, threshold=3)

    for _ in range(2):
        last = stored(probe, "failed", error="connection refused")
    wait_for(lambda: evaluated_up_to(rule.id, probe.id, last), what="evaluation of two failures")
    assert receiver.requests == []
    assert db.session.scalars(select(Alert)).all() == []

    stored(probe, "failed", error="connection refused")
    (firing,) = receiver.wait_for(1, timeout=20)
    assert receiver.verify(key, firing)
    assert not receiver.verify(key + "x", firing)
    assert firing.json["event"] == "firing"
    assert "web-1" in firing.json["subject"]
    assert firing.json["data"]["alert"]["reason"] == "3 runs in a row failed: connection refused"
    assert firing.header("X-Admin-Mit-Notification-Id") == firing.json["id"]
    alert = db.session.scalars(select(Alert)).one()
    assert alert.status == "firing"
    assert firing.json["data"]["link"] == f"https://monitor.example.test/api/v1/alerts/{alert.id}"
    assert f"https://monitor.example.test/api/v1/alerts/{alert.id}" in firing.json["body"]

    stored(probe, "success")
    resolved = receiver.wait_for(2, timeout=20)[1]
    assert resolved.json["event"] == "resolved"
    assert resolved.json["id"] != firing.json["id"]
    assert receiver.verify(key, resolved)
    assert history(alert.id) == [(None, "firing", "system"), ("firing", "resolved", "system")]
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).status == "resolved"
    expected = [("firing", "sent", 1), ("resolved", "sent", 1)]
    wait_for(lambda: notifications() == expected, what=f"notifications {expected} (have {notifications()})")


def test_a_redelivered_evaluation_changes_nothing(app: Flask, receiver: WebhookReceiver,
                                                  quick_delivery: None) -> None:
    """No worker: the test evaluates the same stored batch twice, as a redelivered message would."""
    _, probe, rule, _ = setup_rule(receiver, threshold=1)
    result_id = stored(probe, "failed")
    first = alert_evaluation.evaluate([(probe.id, result_id)])
    again = alert_evaluation.evaluate([(probe.id, result_id)])
    assert len(first.fired) == 1 and len(first.notifications) == 1
    assert again.fired == [] and again.notifications == [] and again.results == 0
    assert db.session.scalar(select(db.func.count()).select_from(Alert)) == 1


def test_two_evaluators_at_once_open_one_alert_and_write_one_notification(
        pg_app: Flask, receiver: WebhookReceiver, quick_delivery: None) -> None:
    _, probe, rule, _ = setup_rule(receiver, threshold=1, flap_changes=0)  # six changes in a row: not flapping here
    probe_id = probe.id
    outcomes: list[Any] = []
    errors: list[BaseException] = []
    for round_number in range(6):  # fire, resolve, fire, … each raced by two evaluators
        result_id = stored(probe, "failed" if round_number % 2 == 0 else "success")
        start = threading.Barrier(2)

        def evaluate(result_id: int = result_id) -> None:
            with pg_app.app_context():
                try:
                    start.wait()
                    outcomes.append(alert_evaluation.evaluate([(probe_id, result_id)]))
                except BaseException as exc:  # noqa: BLE001 (reported below)
                    errors.append(exc)
                finally:
                    db.session.remove()

        threads = [threading.Thread(target=evaluate) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == [] and len(outcomes) == 12
    db.session.expire_all()
    assert sum(len(report.fired) for report in outcomes) == 3
    assert sum(len(report.resolved) for report in outcomes) == 3
    assert db.session.scalar(select(db.func.count()).select_from(Alert)) == 3
    events = db.session.scalars(select(Notification.event).order_by(Notification.created_at)).all()
    assert events == ["firing", "resolved"] * 3


def test_reminders_while_firing_stop_once_acknowledged(app: Flask, worker: object, receiver: WebhookReceiver,
                                                       quick_delivery: None) -> None:
    from app.tasks.alert_tasks import alert_housekeeping

    tenant, probe, rule, _ = setup_rule(receiver, threshold=1, reminder_seconds=600)
    stored(probe, "failed")
    receiver.wait_for(1, timeout=20)
    alert = db.session.scalars(select(Alert)).one()
    assert alert.next_reminder_at is not None
    assert timedelta(seconds=590) < alert.next_reminder_at - alert.opened_at <= timedelta(seconds=600)

    def reminder_due_now() -> None:  # the interval passing, without waiting ten minutes
        db.session.execute(update(Alert).where(Alert.id == alert.id).values(next_reminder_at=utcnow()))
        db.session.commit()

    reminder_due_now()
    report = alert_housekeeping.apply_async(ignore_result=False).get(timeout=30)
    assert report["reminders"] == 1
    reminder = receiver.wait_for(2, timeout=20)[1]
    assert reminder.json["event"] == "reminder"
    assert reminder.json["data"]["alert"]["id"] == alert.id

    user = make_user(tenant.id)
    alerts.acknowledge(tenant.id, alert.id, alerts.Actor.of(user), note="looking into it")
    ack = receiver.wait_for(3, timeout=20)[2]  # the acknowledgement itself is told, once
    assert ack.json["event"] == "acknowledged"
    assert ack.json["data"]["alert"]["note"] == "looking into it"
    reminder_due_now()
    assert alert_housekeeping.apply_async(ignore_result=False).get(timeout=30)["reminders"] == 0
    assert history(alert.id) == [(None, "firing", "system"), ("firing", "acknowledged", user.username)]

    stored(probe, "success")
    assert receiver.wait_for(4, timeout=20)[3].json["event"] == "resolved"
    assert len(receiver.requests) == 4


def test_a_channel_down_for_a_while_gets_the_notification_once_when_back(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    from app.tasks.alert_tasks import alert_housekeeping

    _, probe, rule, _ = setup_rule(receiver, threshold=1)
    receiver.respond_next(3, 503, "maintenance")
    stored(probe, "failed")

    def delivered() -> bool:
        alert_housekeeping.apply_async(ignore_result=False).get(timeout=30)  # what beat sends every 5 s
        db.session.expire_all()
        notification = db.session.scalars(select(Notification)).one()
        db.session.rollback()
        return notification.status == "sent"

    wait_for(delivered, timeout=60, what="delivery after the channel came back")
    ids = {request.json["id"] for request in receiver.requests}
    assert len(receiver.requests) == 4 and len(ids) == 1  # three refused, then delivered once
    attempts = db.session.scalars(select(NotificationAttempt).order_by(NotificationAttempt.id)).all()
    assert [attempt.ok for attempt in attempts] == [False, False, False, True]
    assert "503" in (attempts[0].error or "")
    channel = notification_channels.list_channels(probe.tenant_id)[0]
    assert channel.consecutive_failures == 0 and channel.last_success_at is not None


def make_user(tenant_id: int) -> Any:
    from app.services.users import add_member

    return add_member(tenant_id, f"oncall-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16), "operator").user


def test_a_flood_over_the_rate_limit_becomes_one_summary_within_the_window(
        app: Flask, receiver: WebhookReceiver, quick_delivery: None) -> None:
    from app.services import notification_delivery

    tenant = make_tenant()
    probes = [make_probe(tenant.id, "http://127.0.0.1:9/", name=f"web-{n}") for n in range(9)]
    channel = notification_channels.create_channel(tenant.id, {
        "name": "hook", "kind": "webhook", "settings": {"url": f"{receiver.url}/hook"}, "rate_limit": 3,
        "rate_window_seconds": 3600})
    alert_rules.create_rule(tenant.id, {"name": "all down", "kind": "down", "threshold": 1,
                                        "channel_ids": [channel.id]})

    def fail(group: list[Any]) -> None:
        alert_evaluation.evaluate([(probe.id, stored(probe, "failed")) for probe in group])

    def gathered_long_enough() -> None:  # the gathering time passing, without waiting for it
        db.session.execute(update(Notification).where(Notification.status == "pending").values(
            created_at=utcnow() - timedelta(seconds=60), next_attempt_at=utcnow()))
        db.session.commit()

    fail(probes[:2])  # fits, keeping the window's last send for a summary: sent one by one
    assert notification_delivery.deliver().sent == 2
    fail(probes[2:6])  # four more than the one send left: gathered first ...
    assert notification_delivery.deliver().waiting == 4
    fail(probes[6:8])  # ... with what arrives meanwhile ...
    assert notification_delivery.deliver().waiting == 2
    assert len(receiver.requests) == 2
    gathered_long_enough()
    report = notification_delivery.deliver()  # ... and told in one summary, within the window
    assert (report.sent, report.summarized) == (1, 6)
    summary = receiver.wait_for(3)[2].json
    assert summary["event"] == "summary" and summary["data"]["counts"]["firing"] == 6
    assert sorted(entry["probe"]["name"] for entry in summary["data"]["alerts"]) == [f"web-{n}" for n in range(2, 8)]
    assert summary["data"]["link"].endswith("/api/v1/alerts?status=open")

    fail(probes[8:])  # the window is spent: it waits for the next one
    assert notification_delivery.deliver().waiting == 1
    db.session.expire_all()
    pending = db.session.scalars(select(Notification).where(Notification.status == "pending")).one()
    assert pending.next_attempt_at > utcnow() + timedelta(minutes=59)
    assert pending.attempts == 0
    assert len(receiver.requests) == 3
    statuses = sorted(db.session.scalars(select(Notification.status)).all())
    assert statuses == ["pending"] + ["sent"] * 3 + ["summarized"] * 6


def test_an_alert_by_email_reaches_the_smtp_server(app: Flask, worker: object, quick_delivery: None) -> None:
    from tests.receivers import SmtpReceiver

    with SmtpReceiver(credentials=("alerts", "mail-pass")) as smtp:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/", name="shop")
        channel = notification_channels.create_channel(tenant.id, {
            "name": "oncall mail", "kind": "email",
            "settings": {"host": smtp.host, "port": smtp.port, "security": "none",
                         "from_address": "alerts@example.test", "to_addresses": ["oncall@example.test"]},
            "secrets": {"username": "alerts", "password": "mail-pass"}})
        alert_rules.create_rule(tenant.id, {"name": "shop down", "kind": "down", "probe_id": probe.id,
                                            "threshold": 1, "channel_ids": [channel.id]})
        stored(probe, "timeout", error="no answer within 5 s")
        (mail,) = smtp.wait_for(1, timeout=20)
        assert mail.login == "alerts" and mail.rcpt_tos == ["oncall@example.test"]
        assert mail.subject == "[FIRING] shop is down"
        assert "no answer within 5 s" in mail.text and "http://127.0.0.1:9/" in mail.text
        notification = db.session.scalars(select(Notification)).one()
        assert notification.id in mail.message["Message-ID"]


def test_results_no_message_announced_are_caught_up(app: Flask, receiver: WebhookReceiver,
                                                    quick_delivery: None) -> None:
    """The broker was down when a result was stored (its message never sent): the catch-up pass,
    which beat runs every minute, evaluates it — once."""
    from app.models import ProbeResult

    _, probe, rule, _ = setup_rule(receiver, threshold=2)
    first = stored(probe, "failed")
    alert_evaluation.evaluate([(probe.id, first)])  # the first failure was announced and evaluated
    now = utcnow()
    db.session.add(ProbeResult(tenant_id=probe.tenant_id, probe_id=probe.id, run_key="manual:unannounced",
                               probe_type="manual", status="failed", error="connection refused", bytes_read=0,
                               started_at=now, created_at=now))
    db.session.commit()

    caught = alert_evaluation.catch_up()
    assert len(caught.fired) == 1 and caught.results == 1
    assert alert_evaluation.catch_up().results == 0
    assert db.session.scalar(select(db.func.count()).select_from(Alert)) == 1


def test_two_beats_reminding_at_once_remind_once(pg_app: Flask, receiver: WebhookReceiver,
                                                  quick_delivery: None) -> None:
    _, probe, rule, _ = setup_rule(receiver, threshold=1, reminder_seconds=600)
    alert_evaluation.evaluate([(probe.id, stored(probe, "failed"))])
    alert_id = db.session.scalars(select(Alert.id)).one()
    db.session.execute(update(Alert).where(Alert.id == alert_id).values(next_reminder_at=utcnow()))
    db.session.commit()
    created: list[list[str]] = []
    start = threading.Barrier(2)

    def remind() -> None:
        with pg_app.app_context():
            start.wait()
            created.append(alerts.send_reminders())
            db.session.remove()

    threads = [threading.Thread(target=remind) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(len(ids) for ids in created) == [0, 1]
    db.session.expire_all()
    assert db.session.get(Alert, alert_id).reminders_sent == 1
