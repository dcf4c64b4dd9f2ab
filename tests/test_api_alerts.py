"""The alerting API: channels, rules, alerts and notifications — roles, secrets, bad input."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy import text

from app.extensions import db
from app.services import alert_evaluation
from tests.api import Api, Caller, assert_error
from tests.conftest import make_tenant
from tests.receivers import WebhookReceiver
from tests.test_alerting import stored

pytestmark = pytest.mark.timeout(60)

CHANNELS = "/api/v1/notification-channels"
RULES = "/api/v1/alert-rules"
ALERTS = "/api/v1/alerts"


@pytest.fixture
def team(api: Api) -> dict[str, Caller]:
    tenant_id = make_tenant().id
    return {role: api.as_role(tenant_id, role) for role in ("viewer", "operator", "admin")}


def _webhook(receiver: WebhookReceiver, key: str, **fields: Any) -> dict[str, Any]:
    return {"name": "ops", "kind": "webhook", "settings": {"url": f"{receiver.url}/hook?team=ops"},
            "secrets": {"signing_key": key, "headers": {"Authorization": "Bearer s3cret-token"}}, **fields}


def test_roles_viewer_reads_operator_runs_rules_and_alerts_admin_manages_channels(
        team: dict[str, Caller], receiver: WebhookReceiver) -> None:
    key = secrets.token_urlsafe(24)
    assert_error(team["operator"].post(CHANNELS, json=_webhook(receiver, key)), 403, "forbidden")
    channel = team["admin"].post(CHANNELS, json=_webhook(receiver, key))
    assert channel.status_code == 201, channel.json
    probe = team["operator"].post("/api/v1/probes", json={"name": "web", "protocol": "tcp",
                                                          "target": "127.0.0.1:9"}).json
    rule_body = {"name": "web down", "kind": "down", "probe_id": probe["id"], "channel_ids": [channel.json["id"]]}
    assert_error(team["viewer"].post(RULES, json=rule_body), 403, "forbidden")
    rule = team["operator"].post(RULES, json=rule_body)
    assert rule.status_code == 201, rule.json
    assert rule.json["threshold"] == 3 and rule.json["window"] == 3 and rule.json["recovery"] == 1
    for path in (CHANNELS, RULES, ALERTS):
        assert team["viewer"].get(path).status_code == 200
    assert_error(team["viewer"].post(f"{CHANNELS}/{channel.json['id']}/test"), 403, "forbidden")
    assert_error(team["operator"].delete(f"{CHANNELS}/{channel.json['id']}"), 403, "forbidden")


def test_channel_secrets_are_stored_encrypted_never_shown_and_kept_when_sent_back_masked(
        team: dict[str, Caller], receiver: WebhookReceiver) -> None:
    admin = team["admin"]
    key = secrets.token_urlsafe(24)
    created = admin.post(CHANNELS, json=_webhook(receiver, key)).json
    assert created["secrets"] == {"signing_key": "********", "headers": {"Authorization": "********"}}
    assert "team=ops" not in created["settings"]["url"]  # a query string may carry a token
    raw = db.session.execute(text("SELECT settings, secrets FROM notification_channels")).one()
    assert key not in str(raw.secrets) and "s3cret-token" not in str(raw.secrets)

    # Everything sent back as it was shown: nothing stored changes, the secrets still sign.
    shown = {name: created[name] for name in ("name", "settings", "secrets")}
    changed = admin.patch(f"{CHANNELS}/{created['id']}", json={**shown, "rate_limit": 5})
    assert changed.status_code == 200, changed.json
    assert changed.json["rate_limit"] == 5
    tested = admin.post(f"{CHANNELS}/{created['id']}/test")
    assert tested.status_code == 200 and tested.json["ok"] is True, tested.json
    request = receiver.wait_for(1)[0]
    assert receiver.verify(key, request)
    assert request.header("Authorization") == "Bearer s3cret-token"
    assert request.path == "/hook?team=ops"
    assert request.json["event"] == "test"
    assert "s3cret-token" not in str(admin.get(CHANNELS).json)


def test_a_failing_channel_is_flagged_with_the_channels_answer(team: dict[str, Caller],
                                                               receiver: WebhookReceiver) -> None:
    admin = team["admin"]
    channel = admin.post(CHANNELS, json=_webhook(receiver, secrets.token_urlsafe(24))).json
    receiver.respond_next(3, 503, "down for maintenance")
    for _ in range(3):
        outcome = admin.post(f"{CHANNELS}/{channel['id']}/test").json
        assert outcome["ok"] is False and "503" in outcome["error"]
    shown = admin.get(f"{CHANNELS}/{channel['id']}").json
    assert shown["failing"] is True and shown["consecutive_failures"] == 3 and "503" in shown["last_error"]
    assert admin.post(f"{CHANNELS}/{channel['id']}/test").json["ok"] is True
    assert admin.get(f"{CHANNELS}/{channel['id']}").json["failing"] is False


@pytest.mark.parametrize("change, field", [
    ({"kind": "pager"}, "kind"),
    ({"settings": {"url": "ftp://127.0.0.1/x"}}, "settings.url"),
    ({"settings": {"url": "http://127.0.0.1:9/", "colour": "red"}}, "settings.colour"),
    ({"templates": {"firing": {"subject": "{{ probe.nmae }}"}}}, "templates.firing.subject"),
    ({"templates": {"firing": {"body": "{% if %}"}}}, "templates.firing.body"),
    ({"templates": {"paged": {"body": "x"}}}, "templates.paged"),
])
def test_a_bad_channel_is_refused_when_saved(team: dict[str, Caller], receiver: WebhookReceiver,
                                             change: dict[str, Any], field: str) -> None:
    body = {**_webhook(receiver, secrets.token_urlsafe(24)), **change}
    assert_error(team["admin"].post(CHANNELS, json=body), 422, "invalid_input", field=field)
    assert team["admin"].get(CHANNELS).json["items"] == []


@pytest.mark.parametrize("rule, field", [
    ({"kind": "slow"}, "slow_ms"),
    ({"kind": "certificate"}, "cert_days"),
    ({"kind": "down", "threshold": 3, "window": 2}, "window"),
    ({"kind": "down", "reminder_seconds": 5}, "reminder_seconds"),
    ({"kind": "down", "protocol": "gopher"}, "protocol"),
])
def test_a_bad_rule_is_refused(team: dict[str, Caller], rule: dict[str, Any], field: str) -> None:
    assert_error(team["operator"].post(RULES, json={"name": "r", **rule}), 422, field=field)


def test_a_rule_cannot_notify_another_tenants_channel(api: Api, team: dict[str, Caller],
                                                      receiver: WebhookReceiver) -> None:
    other = api.as_role(make_tenant().id, "admin")
    foreign = other.post(CHANNELS, json=_webhook(receiver, secrets.token_urlsafe(24))).json
    response = team["operator"].post(RULES, json={"name": "r", "kind": "down", "channel_ids": [foreign["id"]]})
    assert_error(response, 404, "not_found")
    assert team["operator"].get(RULES).json["items"] == []


def test_acknowledge_and_resolve_with_history_and_notifications(team: dict[str, Caller],
                                                                receiver: WebhookReceiver) -> None:
    from app.models import Probe

    operator, admin = team["operator"], team["admin"]
    channel = admin.post(CHANNELS, json=_webhook(receiver, secrets.token_urlsafe(24))).json
    probe = operator.post("/api/v1/probes", json={"name": "db", "protocol": "tcp", "target": "127.0.0.1:9"}).json
    operator.post(RULES, json={"name": "db down", "kind": "down", "probe_id": probe["id"], "threshold": 1,
                               "channel_ids": [channel["id"]]})
    result_id = stored(db.session.get(Probe, probe["id"]), "failed", error="connection refused")
    (alert_id,) = alert_evaluation.evaluate([(probe["id"], result_id)]).fired

    listed = team["viewer"].get(f"{ALERTS}?status=open").json
    assert [a["id"] for a in listed["items"]] == [alert_id] and listed["next_cursor"] is None
    assert listed["items"][0]["reason"] == "1 run failed: connection refused"
    assert listed["items"][0]["probe_name"] == "db" and listed["items"][0]["rule_name"] == "db down"

    acked = operator.post(f"{ALERTS}/{alert_id}/acknowledge", json={"note": "on it"})
    assert acked.status_code == 200, acked.json
    assert acked.json["status"] == "acknowledged" and acked.json["acknowledged_by"] == operator.username
    assert_error(operator.post(f"{ALERTS}/{alert_id}/acknowledge", json={}), 409, "conflict")
    resolved = operator.post(f"{ALERTS}/{alert_id}/resolve", json={"note": "fixed the firewall"}).json
    assert [(e["from_status"], e["to_status"], e["actor"], e["note"]) for e in resolved["history"]] == [
        (None, "firing", "system", "1 run failed: connection refused"),
        ("firing", "acknowledged", operator.username, "on it"),
        ("acknowledged", "resolved", operator.username, "fixed the firewall"),
    ]
    assert_error(operator.post(f"{ALERTS}/{alert_id}/resolve", json={}), 409, "conflict")
    assert team["viewer"].get(f"{ALERTS}?status=open").json["items"] == []

    from app.services import notification_delivery

    notification_delivery.deliver()  # what the alerts worker does on the messages these sent
    notes = team["viewer"].get(f"{ALERTS}/{alert_id}/notifications").json["items"]
    assert [(n["event"], n["status"]) for n in notes] == [("firing", "sent"), ("acknowledged", "sent"),
                                                          ("resolved", "sent")]
    assert all(len(n["attempt_log"]) == 1 and n["attempt_log"][0]["ok"] for n in notes)
    assert {request.json["id"] for request in receiver.wait_for(3)} == {n["id"] for n in notes}
