"""Alert noise control end to end: dependencies, grouping, flapping and silences.

Results are stored through the result store as workers store them; a real worker
consumes ``alerts`` (evaluations, group flushes at their time) and delivers to real
webhook receivers on loopback. Beat's housekeeping pass is run as the task it is.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import timedelta
from typing import Any, Iterator

import pytest
from flask import Flask
from sqlalchemy import select, update

from app.extensions import db
from app.models import Alert, AlertEvent, utcnow
from app.services import alert_rules, notification_channels, probe_dependencies, silences
from app.services.result_store import MeasuredRun, store
from tests.conftest import make_probe, make_tenant, wait_for
from tests.receivers import WebhookReceiver
from tests.test_alerting import evaluated_up_to, quick_delivery, stored  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def second_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


def channel_for(tenant_id: int, receiver: WebhookReceiver, name: str) -> Any:
    return notification_channels.create_channel(tenant_id, {
        "name": name, "kind": "webhook", "settings": {"url": f"{receiver.url}/hook"},
        "secrets": {"signing_key": secrets.token_urlsafe(24)}})


def events(receiver: WebhookReceiver) -> list[str]:
    return [request.json["event"] for request in receiver.requests]


def housekeeping() -> dict[str, Any]:
    from app.tasks.alert_tasks import alert_housekeeping

    return alert_housekeeping.apply_async(ignore_result=False).get(timeout=60)  # type: ignore[no-any-return]


def alert_of(probe: Any) -> Alert:
    db.session.expire_all()
    alert = db.session.scalars(select(Alert).where(Alert.probe_id == probe.id).order_by(Alert.id.desc())).first()
    db.session.rollback()
    assert alert is not None, f"no alert for {probe.name}"
    return alert


def notes(alert: Alert) -> list[str]:
    rows = db.session.scalars(select(AlertEvent.note).where(AlertEvent.alert_id == alert.id)
                              .order_by(AlertEvent.id)).all()
    db.session.rollback()
    return list(rows)


def settled(rule: Any, *probes_and_results: tuple[Any, int]) -> None:
    """Wait until the rule has seen these results (its evaluation committed)."""
    for probe, result_id in probes_and_results:
        wait_for(lambda: evaluated_up_to(rule.id, probe.id, result_id), what=f"evaluation of {probe.name}")


def store_many(probes: list[Any], status: str) -> list[int]:
    """One stored batch with a result for every probe, as one worker write."""
    now = utcnow()
    rows = [{"tenant_id": probe.tenant_id, "probe_id": probe.id, "run_key": f"manual:{uuid.uuid4().hex}",
             "probe_type": "manual", "status": status, "response_time_ms": 10.0,
             "status_code": 200 if status == "success" else None,
             "error": None if status == "success" else "connection refused", "dns_ms": None, "connect_ms": None,
             "tls_ms": None, "processing_ms": None, "transfer_ms": None, "cert_expires_at": None, "bytes_read": 0,
             "details": None, "scheduled_for": None, "started_at": now, "created_at": now} for probe in probes]
    return list(store([MeasuredRun(row=row) for row in rows]).values())


# --- dependencies ----------------------------------------------------------------------------


@pytest.fixture
def family(app: Flask, receiver: WebhookReceiver) -> tuple[Any, Any, Any]:
    """A router (parent) and a web server behind it (child), one down rule over both. The
    child is created first: its id sorts before its parent's."""
    tenant = make_tenant()
    web = make_probe(tenant.id, "http://127.0.0.1:9/web", name="web")
    router = make_probe(tenant.id, "http://127.0.0.1:9/router", name="router")
    probe_dependencies.set_parents(tenant.id, web.id, [router.id])
    channel = channel_for(tenant.id, receiver, "ops")
    rule = alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1,
                                               "channel_ids": [channel.id],
                                               "escalation": [{"after_seconds": 3600, "channel_ids": [channel.id]}]})
    return router, web, rule


def test_child_of_a_down_parent_is_suppressed_and_notifies_when_the_parent_recovers_first(
        worker: object, receiver: WebhookReceiver, quick_delivery: None, family: tuple[Any, Any, Any]) -> None:
    router, web, rule = family
    stored(router, "failed", error="no route to host")
    assert receiver.wait_for(1, timeout=30)[0].json["data"]["probe"]["name"] == "router"
    settled(rule, (web, stored(web, "failed", error="connection refused")))
    child = alert_of(web)
    assert child.status == "suppressed" and child.suppressed_by == router.id and not child.notified
    assert 'suppressed by "router"' in notes(child)[0]
    housekeeping()  # the parent is still down: nothing is released
    time.sleep(0.5)
    assert events(receiver) == ["firing"]
    # an hour passes while it is suppressed: its escalation is due by the time it was opened
    db.session.execute(update(Alert).where(Alert.id == child.id).values(next_escalation_at=utcnow()))
    db.session.commit()

    settled(rule, (router, stored(router, "success")))  # the parent recovers
    assert receiver.wait_for(2, timeout=30)[1].json["event"] == "resolved"
    housekeeping()  # the child has not run since: it may be back too, so nothing is told yet
    assert alert_of(web).status == "suppressed"
    stored(web, "failed")  # its next run still fails: the child notifies now
    received = receiver.wait_for(3, timeout=30)
    assert (received[2].json["event"], received[2].json["data"]["probe"]["name"]) == ("firing", "web")
    released = alert_of(web)
    assert released.status == "firing" and 'its parent "router" recovered' in notes(released)[-1]
    # told only now: its escalation counts from now
    assert released.next_escalation_at is not None and released.next_escalation_at > utcnow() + timedelta(minutes=55)
    stored(web, "success")
    assert [r.json["event"] for r in receiver.wait_for(4, timeout=30)][3] == "resolved"


def test_child_that_recovers_before_its_parent_never_sends_anything(
        worker: object, receiver: WebhookReceiver, quick_delivery: None, family: tuple[Any, Any, Any]) -> None:
    router, web, rule = family
    stored(router, "failed")
    receiver.wait_for(1, timeout=30)
    settled(rule, (web, stored(web, "failed")))
    assert alert_of(web).status == "suppressed"
    settled(rule, (web, stored(web, "success")))
    child = alert_of(web)
    assert child.status == "resolved" and "never told" in notes(child)[-1]
    stored(router, "success")
    receiver.wait_for(2, timeout=30)
    housekeeping()
    time.sleep(0.5)
    assert [(r.json["event"], r.json["data"]["probe"]["name"]) for r in receiver.requests] == [
        ("firing", "router"), ("resolved", "router")]


def test_parent_and_child_failing_in_one_batch_suppress_the_child(
        worker: object, receiver: WebhookReceiver, quick_delivery: None, family: tuple[Any, Any, Any]) -> None:
    """The child's probe id sorts before its parent's: the parent is still decided first."""
    router, web, rule = family
    web_result, router_result = store_many([web, router], "failed")
    settled(rule, (web, web_result), (router, router_result))
    receiver.wait_for(1, timeout=30)
    assert alert_of(web).status == "suppressed"
    time.sleep(0.5)
    assert [r.json["data"]["probe"]["name"] for r in receiver.requests] == ["router"]


# --- grouping --------------------------------------------------------------------------------


def test_two_hundred_probes_down_at_once_are_one_message_per_channel_and_one_for_the_recovery(
        app: Flask, worker: object, receiver: WebhookReceiver, second_receiver: WebhookReceiver,
        quick_delivery: None) -> None:
    from app.services import probe_groups

    tenant = make_tenant()
    group = probe_groups.create_group(tenant.id, "web servers")
    probes = [make_probe(tenant.id, f"http://127.0.0.1:9/{n}", name=f"web-{n:03d}", group_id=group.id)
              for n in range(201)]
    channels = [channel_for(tenant.id, receiver, "ops").id, channel_for(tenant.id, second_receiver, "pager").id]
    alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1,
                                               "group_id": group.id, "channel_ids": channels, "group_by": "group",
                                               "group_wait_seconds": 3, "group_interval_seconds": 3})
    for part in (probes[:100], probes[100:200]):  # two worker writes, a moment apart
        store_many(part, "failed")
    for hook in (receiver, second_receiver):
        (message,) = hook.wait_for(1, timeout=30)
        body = message.json
        assert body["event"] == "group" and body["data"]["counts"]["firing"] == 200
        assert body["data"]["group"] == {"key": f"group:{group.id}", "label": "web servers"}
        assert len(body["data"]["alerts"]) == 50 and body["data"]["more"] == 150
        assert message.json["subject"].startswith("[FIRING:200] web servers")

    store_many(probes[200:], "failed")  # one more joins the running group: one update after the interval
    for hook in (receiver, second_receiver):
        update = hook.wait_for(2, timeout=30)[1].json
        assert update["data"]["counts"]["firing"] == 1
        assert [a["probe"]["name"] for a in update["data"]["alerts"]] == ["web-200"]

    store_many(probes, "success")  # everything recovers: one grouped recovery per channel
    for hook in (receiver, second_receiver):
        recovery = hook.wait_for(3, timeout=30)[2].json
        assert recovery["data"]["counts"] == {"firing": 0, "acknowledged": 0, "resolved": 201}
    time.sleep(4)  # a group interval later: nothing more
    assert len(receiver.requests) == 3 and len(second_receiver.requests) == 3


def switch_with_hosts(receiver: WebhookReceiver, group_wait: int) -> tuple[Any, list[Any], Any]:
    """A switch and five hosts behind it (``depends_on``), one tenant-wide down rule grouping
    its alerts with this wait and interval."""
    tenant = make_tenant()
    switch = make_probe(tenant.id, "http://127.0.0.1:9/switch", name="switch")
    hosts = [make_probe(tenant.id, f"http://127.0.0.1:9/host-{n}", name=f"host-{n}", depends_on=[switch.id])
             for n in range(5)]
    channel = channel_for(tenant.id, receiver, "ops")
    rule = alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1,
                                               "channel_ids": [channel.id], "group_by": "tenant",
                                               "group_wait_seconds": group_wait,
                                               "group_interval_seconds": group_wait})
    return switch, hosts, rule


def test_children_that_cross_their_threshold_before_their_parent_are_left_out_of_the_group_message(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    switch, hosts, rule = switch_with_hosts(receiver, group_wait=3)
    settled(rule, *zip(hosts, store_many(hosts, "failed")))  # the children first: nothing is known of the switch
    assert {alert_of(host).status for host in hosts} == {"firing"}
    stored(switch, "failed")
    (message,) = receiver.wait_for(1, timeout=30)
    assert [a["probe"]["name"] for a in message.json["data"]["alerts"]] == ["switch"]
    assert {alert_of(host).status for host in hosts} == {"suppressed"}
    assert all(alert_of(host).suppressed_by == switch.id for host in hosts)

    settled(rule, (switch, stored(switch, "success")))  # the switch is back
    settled(rule, *zip(hosts, store_many(hosts, "failed")))  # the hosts' next runs still fail: told in one update
    update = receiver.wait_for(2, timeout=30)[1].json
    assert sorted((a["state"], a["probe"]["name"]) for a in update["data"]["alerts"]) == sorted(
        [("resolved", "switch")] + [("firing", host.name) for host in hosts])


def test_children_back_with_their_parent_send_nothing_when_it_recovers(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    switch, hosts, rule = switch_with_hosts(receiver, group_wait=2)
    stored(switch, "failed")
    settled(rule, *zip(hosts, store_many(hosts, "failed")))
    assert receiver.wait_for(1, timeout=30)[0].json["data"]["counts"]["firing"] == 1
    settled(rule, (switch, stored(switch, "success")))
    housekeeping()  # the switch is up; the hosts have not run since: still suppressed
    settled(rule, *zip(hosts, store_many(hosts, "success")))  # their next runs succeed
    recovery = receiver.wait_for(2, timeout=30)[1].json
    assert [(a["state"], a["probe"]["name"]) for a in recovery["data"]["alerts"]] == [("resolved", "switch")]
    housekeeping()
    time.sleep(3)  # a group interval later: nothing more
    assert len(receiver.requests) == 2
    assert {alert_of(host).status for host in hosts} == {"resolved"}


def test_an_outage_shorter_than_the_group_wait_sends_nothing(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    tenant = make_tenant()
    probes = [make_probe(tenant.id, f"http://127.0.0.1:9/{n}", name=f"api-{n}") for n in range(3)]
    channel = channel_for(tenant.id, receiver, "ops")
    rule = alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1,
                                               "channel_ids": [channel.id], "group_by": "rule",
                                               "group_wait_seconds": 3})
    store_many(probes, "failed")
    up = store_many(probes[:2], "success")  # two recover inside the wait; one stays down
    settled(rule, *zip(probes[:2], up))
    (message,) = receiver.wait_for(1, timeout=30)
    assert message.json["data"]["counts"]["firing"] == 1
    assert [a["probe"]["name"] for a in message.json["data"]["alerts"]] == ["api-2"]
    housekeeping()
    time.sleep(1)
    assert len(receiver.requests) == 1


# --- flapping --------------------------------------------------------------------------------


def test_a_flapping_target_sends_one_flapping_notice_then_its_settled_state(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/flappy", name="flappy")
    channel = channel_for(tenant.id, receiver, "ops")
    rule = alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1,
                                               "channel_ids": [channel.id], "flap_changes": 2,
                                               "flap_window_seconds": 60, "flap_settle_seconds": 3})
    last = 0
    for status in ("failed", "success", "failed", "success", "failed", "success", "failed"):
        last = stored(probe, status)
        settled(rule, (probe, last))
    receiver.wait_for(3, timeout=30)
    time.sleep(0.5)  # the later changes, already evaluated, sent nothing
    assert events(receiver) == ["firing", "resolved", "flapping"]
    flapping = alert_of(probe)
    assert flapping.flapping and flapping.status == "firing"
    assert receiver.requests[2].json["data"]["flapping"]["changes"] == 3

    time.sleep(3.2)  # stable (down) for the settle time: the next result tells the settled state
    stored(probe, "failed")
    settled_notice = receiver.wait_for(4, timeout=30)[3].json
    assert settled_notice["event"] == "firing" and settled_notice["data"]["flapping"]["settled"] is True
    assert alert_of(probe).id == flapping.id and not alert_of(probe).flapping
    stored(probe, "success")
    assert receiver.wait_for(5, timeout=30)[4].json["event"] == "resolved"


# --- silences --------------------------------------------------------------------------------


@pytest.fixture
def watched(app: Flask, receiver: WebhookReceiver) -> tuple[Any, Any, Any]:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/db", name="db")
    channel = channel_for(tenant.id, receiver, "ops")
    rule = alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1,
                                               "channel_ids": [channel.id]})
    return tenant, probe, rule


def silence(tenant: Any, probe: Any, minutes: int = 30) -> Any:
    return silences.create_silence(tenant.id, {"probe_ids": [probe.id], "comment": "disk swap",
                                               "ends_at": (utcnow() + timedelta(minutes=minutes)).isoformat()})


def test_an_alert_that_fires_and_resolves_under_a_silence_sends_nothing(
        worker: object, receiver: WebhookReceiver, quick_delivery: None, watched: tuple[Any, Any, Any]) -> None:
    tenant, probe, rule = watched
    silence(tenant, probe)
    settled(rule, (probe, stored(probe, "failed")))
    alert = alert_of(probe)
    assert alert.status == "firing" and alert.silenced and not alert.notified
    settled(rule, (probe, stored(probe, "success")))
    assert alert_of(probe).status == "resolved"
    housekeeping()
    time.sleep(0.5)
    assert receiver.requests == []


def test_an_alert_told_before_the_silence_is_told_when_it_resolves_under_it(
        worker: object, receiver: WebhookReceiver, quick_delivery: None, watched: tuple[Any, Any, Any]) -> None:
    tenant, probe, rule = watched
    stored(probe, "failed")
    receiver.wait_for(1, timeout=30)
    silence(tenant, probe)
    stored(probe, "success")
    assert [r.json["event"] for r in receiver.wait_for(2, timeout=30)] == ["firing", "resolved"]


def test_a_withheld_alert_still_firing_when_its_silence_ends_notifies_once(
        worker: object, receiver: WebhookReceiver, quick_delivery: None, watched: tuple[Any, Any, Any]) -> None:
    tenant, probe, rule = watched
    muted = silence(tenant, probe)
    settled(rule, (probe, stored(probe, "failed")))
    assert alert_of(probe).silenced
    housekeeping()
    assert receiver.requests == []
    silences.expire_silence(tenant.id, muted.id)
    housekeeping()
    (message,) = receiver.wait_for(1, timeout=30)
    assert message.json["event"] == "firing" and message.json["data"]["probe"]["name"] == "db"
    housekeeping()
    time.sleep(0.5)
    assert len(receiver.requests) == 1 and alert_of(probe).notified
    stored(probe, "success")
    assert [r.json["event"] for r in receiver.wait_for(2, timeout=30)] == ["firing", "resolved"]


def test_an_alert_one_channel_was_told_is_told_on_every_channel_even_once_its_parent_is_down(
        app: Flask, receiver: WebhookReceiver, second_receiver: WebhookReceiver) -> None:
    """No worker: the test flushes one channel's group, then the parent goes down, then the other's."""
    from app.models import AlertGroup, Notification
    from app.services import alert_evaluation, alert_groups

    tenant = make_tenant()
    switch = make_probe(tenant.id, "http://127.0.0.1:9/switch", name="switch")
    host = make_probe(tenant.id, "http://127.0.0.1:9/host", name="host", depends_on=[switch.id])
    first, second = (channel_for(tenant.id, hook, name).id for hook, name in ((receiver, "a"), (second_receiver, "b")))
    alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1,
                                        "channel_ids": [first, second], "group_by": "tenant",
                                        "group_wait_seconds": 0})

    def flush(channel_id: int) -> Any:
        group = db.session.scalars(select(AlertGroup).where(AlertGroup.channel_id == channel_id)).one()
        notification_id = alert_groups.flush(group.id, group.version, utcnow())
        assert notification_id is not None
        names = [a["probe"]["name"] for a in db.session.get(Notification, notification_id).context["alerts"]]
        db.session.rollback()
        return names

    alert_evaluation.evaluate([(host.id, stored(host, "failed"))])
    assert flush(first) == ["host"]  # channel a is told the host is down
    alert_evaluation.evaluate([(switch.id, stored(switch, "failed"))])
    assert flush(second) == ["host", "switch"]  # so channel b is too, though its parent is down now
    assert alert_of(host).status == "firing" and alert_of(host).notified


def test_a_silence_stops_the_reminders_of_an_alert_told_before_it(
        app: Flask, worker: object, receiver: WebhookReceiver, quick_delivery: None) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/db", name="db")
    channel = channel_for(tenant.id, receiver, "ops")
    alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1, "reminder_seconds": 600,
                                        "channel_ids": [channel.id]})
    stored(probe, "failed")
    receiver.wait_for(1, timeout=30)
    alert = alert_of(probe)

    def reminder_due_now() -> None:  # the reminder interval passing, without waiting ten minutes
        db.session.execute(update(Alert).where(Alert.id == alert.id).values(next_reminder_at=utcnow()))
        db.session.commit()

    muted = silence(tenant, probe)
    reminder_due_now()
    assert housekeeping()["reminders"] == 0
    silences.expire_silence(tenant.id, muted.id)
    reminder_due_now()
    assert housekeeping()["reminders"] == 1
    assert [r.json["event"] for r in receiver.wait_for(2, timeout=30)] == ["firing", "reminder"]


def test_a_due_group_whose_flush_message_never_came_is_flushed_by_housekeeping(
        app: Flask, receiver: WebhookReceiver, quick_delivery: None) -> None:
    """No worker: the evaluation runs here, not as the task that schedules the flush (as if
    that message was lost), and beat's housekeeping pass runs in this process."""
    from app.services import alert_evaluation
    from app.tasks.alert_tasks import alert_housekeeping

    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/api", name="api")
    channel = channel_for(tenant.id, receiver, "ops")
    alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1, "channel_ids": [channel.id],
                                        "group_by": "rule", "group_wait_seconds": 0})
    report = alert_evaluation.evaluate([(probe.id, stored(probe, "failed"))])
    assert report.flush_at and report.notifications == []
    time.sleep(0.5)
    assert receiver.requests == []  # nobody asked for the flush
    assert alert_housekeeping.apply().get()["groups"] == 1
    (message,) = receiver.wait_for(1, timeout=30)
    assert message.json["event"] == "group" and message.json["data"]["alerts"][0]["probe"]["name"] == "api"


def test_a_flush_whose_worker_died_before_writing_its_message_is_taken_again_after_the_lease(
        app: Flask, receiver: WebhookReceiver) -> None:
    """No worker: the test claims a group as a flush does and stops there, as a SIGKILL would."""
    from app.models import AlertGroup, Notification
    from app.services import alert_evaluation, alert_groups

    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/api", name="api")
    channel = channel_for(tenant.id, receiver, "ops")
    alert_rules.create_rule(tenant.id, {"name": "down", "kind": "down", "threshold": 1, "channel_ids": [channel.id],
                                        "group_by": "rule", "group_wait_seconds": 0})
    alert_evaluation.evaluate([(probe.id, stored(probe, "failed"))])
    group = db.session.scalars(select(AlertGroup)).one()
    claimed_at = utcnow()
    assert alert_groups._take(group.id, group.version, claimed_at)  # taken, then the worker is gone
    assert alert_groups.flush_due(claimed_at + timedelta(seconds=1)) == []  # still leased: nobody else takes it
    (written,) = alert_groups.flush_due(claimed_at + timedelta(seconds=alert_groups.FLUSH_LEASE_SECONDS + 1))
    names = [a["probe"]["name"] for a in db.session.get(Notification, written).context["alerts"]]
    assert names == ["api"]
    db.session.expire_all()
    assert db.session.get(AlertGroup, group.id).flush_at is None  # nothing waits any more
