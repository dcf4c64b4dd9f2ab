"""Migrations on data, not only on an empty schema: SQLite and a scratch PostgreSQL database.

0004 moves the protocol-specific columns of ``probes`` into the ``spec`` JSON column; a probe
saved before it must come out with the same settings, run the same way, and go back on
downgrade. 0005 moves the values of credential headers out of ``spec`` into the encrypted
``probes.secrets``: the spec no longer holds them, the run still sends them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from app import create_app
from app.extensions import db
from app.probes import stored_spec
from tests.conftest import scratch_postgres, settings_with

# What probes looked like at 0003: one row per protocol, with the values the old columns held.
OLD_ROWS: dict[str, dict[str, Any]] = {
    "http": {"protocol": "https", "target": "https://example.test/health", "method": "POST",
             "headers": '{"Authorization": "Bearer t", "X-A": "1"}', "body": "{}", "expect": "ok",
             "verify_tls": False, "follow_redirects": False},
    "websocket": {"protocol": "websocket", "target": "ws://example.test/socket", "method": "GET",
                  "headers": '{"X-B": "2"}', "body": "hello", "expect": "hell", "verify_tls": True,
                  "follow_redirects": True},
    "tcp": {"protocol": "tcp", "target": "example.test:6379", "method": "GET", "headers": "{}",
            "body": "PING\r\n", "expect": "+PONG", "verify_tls": True, "follow_redirects": True},
}
EXPECTED_SPECS = {
    "http": {"method": "POST", "headers": {"Authorization": "Bearer t", "X-A": "1"}, "body": "{}", "expect": "ok",
             "verify_tls": False, "follow_redirects": False},
    "websocket": {"headers": {"X-B": "2"}, "body": "hello", "expect": "hell", "verify_tls": True},
    "tcp": {"body": "PING\r\n", "expect": "+PONG"},
}
MOVED = {"method", "headers", "body", "expect", "verify_tls", "follow_redirects"}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    yield from scratch_postgres("admin_mit_migrations")


@pytest.fixture
def app_at_0003(database_url: str) -> Iterator[Flask]:
    flask_app = create_app(settings_with(database_url))
    with flask_app.app_context():
        upgrade(revision="0003")
        yield flask_app
        db.session.remove()
        db.engine.dispose()


def _insert_old_probes() -> dict[str, int]:
    db.session.execute(text("INSERT INTO tenants (name, created_at) VALUES ('t', CURRENT_TIMESTAMP)"))
    tenant_id = db.session.execute(text("SELECT id FROM tenants")).scalar_one()
    ids = {}
    for name, row in OLD_ROWS.items():
        db.session.execute(text(
            "INSERT INTO probes (tenant_id, name, protocol, target, method, headers, body, expect, verify_tls, "
            "follow_redirects, timeout_seconds, interval_seconds, enabled, auto_probe, conditions, missed_runs, "
            "last_missed_slots, created_at, updated_at) VALUES (:tenant_id, :name, :protocol, :target, :method, "
            ":headers, :body, :expect, :verify_tls, :follow_redirects, 5, 60, true, true, '{}', 0, 0, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"tenant_id": tenant_id, "name": name, **row})
        ids[name] = db.session.execute(text("SELECT id FROM probes WHERE name = :name"), {"name": name}).scalar_one()
    db.session.commit()
    return ids


def _columns(table: str) -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns(table)}


def test_0004_moves_each_protocols_fields_into_its_spec_and_back(app_at_0003: Flask) -> None:
    ids = _insert_old_probes()

    upgrade(revision="0004")
    db.session.remove()

    assert not MOVED & _columns("probes") and "spec" in _columns("probes")
    assert "details" in _columns("probe_results")
    for name, probe_id in ids.items():
        protocol, target, spec = db.session.execute(
            text("SELECT protocol, target, spec FROM probes WHERE id = :id"), {"id": probe_id}).one()
        spec = spec if isinstance(spec, dict) else json.loads(spec)
        assert spec == EXPECTED_SPECS[name], name
        # The moved settings are a valid spec of the probe's protocol, read back unchanged.
        read = stored_spec(protocol, target, 5, spec).stored()
        assert {field: read[field] for field in spec} == spec, name
    db.session.remove()  # an open read would hold the lock the downgrade's ALTER TABLE waits for

    downgrade(revision="0003")
    db.session.remove()

    assert MOVED <= _columns("probes") and "spec" not in _columns("probes")
    restored = db.session.execute(
        text("SELECT method, body, expect, verify_tls, follow_redirects FROM probes WHERE id = :id"),
        {"id": ids["http"]}).one()
    assert tuple(restored) == ("POST", "{}", "ok", False, False)


# --- 0005: credential header values move out of spec into the encrypted probes.secrets -------

CREDENTIAL = "Bearer migrated-credential"


@pytest.fixture
def app_at_0004(database_url: str) -> Iterator[Flask]:
    flask_app = create_app(settings_with(database_url))
    with flask_app.app_context():
        upgrade(revision="0004")
        yield flask_app
        db.session.remove()
        db.engine.dispose()


def _raw_spec_and_secrets(probe_id: int) -> tuple[dict[str, Any], str | None]:
    spec, secrets = db.session.execute(
        text("SELECT CAST(spec AS TEXT), secrets FROM probes WHERE id = :id"), {"id": probe_id}).one()
    return json.loads(spec), secrets


def test_0005_moves_credential_headers_into_the_encrypted_column_and_back(
    app_at_0004: Flask, targets: Any
) -> None:
    from app.services import probe_runs

    db.session.execute(text("INSERT INTO tenants (name, created_at) VALUES ('t', CURRENT_TIMESTAMP)"))
    tenant_id = db.session.execute(text("SELECT id FROM tenants")).scalar_one()
    probes = sa.table("probes", *(sa.column(name) for name in (
        "tenant_id", "name", "protocol", "target", "timeout_seconds", "interval_seconds", "enabled", "auto_probe",
        "missed_runs", "last_missed_slots")), sa.column("spec", sa.JSON()), sa.column("conditions", sa.JSON()),
        sa.column("created_at", sa.DateTime()), sa.column("updated_at", sa.DateTime()))
    common = {"tenant_id": tenant_id, "timeout_seconds": 5, "interval_seconds": 60, "enabled": True,
              "auto_probe": False, "missed_runs": 0, "last_missed_slots": 0,
              "created_at": sa.func.current_timestamp(), "updated_at": sa.func.current_timestamp()}
    stored_at_0004 = {"method": "GET", "headers": {"Authorization": CREDENTIAL, "X-Pin": "4711", "X-Trace": "visible"},
                      "secret_headers": ["x-pin"], "body": None, "expect": None, "verify_tls": True,
                      "follow_redirects": True}
    db.session.execute(sa.insert(probes).values(
        name="with-credentials", protocol="http", target=f"{targets.http_url}/echo", spec=stored_at_0004,
        conditions={"body_regex": "Bearer migrated-credentia[l].*4711"}, **common))
    db.session.execute(sa.insert(probes).values(
        name="plain", protocol="tcp", target=targets.tcp_echo, spec={"body": "PING", "expect": None},
        conditions={}, **common))
    with_credentials, plain = db.session.execute(text("SELECT id FROM probes ORDER BY id")).scalars().all()
    db.session.commit()

    upgrade()
    db.session.remove()

    spec, secrets = _raw_spec_and_secrets(with_credentials)
    assert spec == {**stored_at_0004, "headers": {"Authorization": "********", "X-Pin": "********",
                                                  "X-Trace": "visible"}}
    assert secrets is not None and "migrated-credential" not in secrets and "4711" not in secrets
    assert _raw_spec_and_secrets(plain) == ({"body": "PING", "expect": None}, None)
    # The run puts the credentials back: the echo target must have received both for the condition to hold.
    report = probe_runs.execute_runs(tenant_id, probe_runs.run_requests([with_credentials], "manual", "m5"), "manual")
    assert report[0]["status"] == "success", report
    db.session.remove()  # an open read would hold the lock the downgrade's ALTER TABLE waits for

    downgrade(revision="0004")
    db.session.remove()

    assert "secrets" not in _columns("probes")
    spec = db.session.execute(text("SELECT CAST(spec AS TEXT) FROM probes WHERE id = :id"),
                              {"id": with_credentials}).scalar_one()
    assert json.loads(spec) == stored_at_0004


def test_0006_creates_the_alerting_tables_and_the_schema_matches_the_models(app_at_0003: Flask) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    alerting = {"notification_channels", "alert_rules", "alert_rule_channels", "alert_states", "alerts",
                "alert_events", "notifications", "notification_attempts"}
    upgrade()
    assert alerting <= set(inspect(db.engine).get_table_names())
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []  # every model is what the migrations build, on this dialect too

    downgrade(revision="0005")
    assert not alerting & set(inspect(db.engine).get_table_names())
    upgrade()
    assert alerting <= set(inspect(db.engine).get_table_names())


def test_0007_adds_maintenance_windows_and_marks_and_removes_them_again(app_at_0003: Flask) -> None:
    windows = {"maintenance_windows", "maintenance_window_probes", "maintenance_window_groups"}
    upgrade()
    assert windows <= set(inspect(db.engine).get_table_names())
    assert "in_maintenance" in _columns("probe_results") and "held" in _columns("alert_states")

    downgrade(revision="0006")
    assert not windows & set(inspect(db.engine).get_table_names())
    assert "in_maintenance" not in _columns("probe_results") and "held" not in _columns("alert_states")
    upgrade()
    assert windows <= set(inspect(db.engine).get_table_names())


def test_0008_adds_noise_control_and_keeps_open_alerts_told(app_at_0003: Flask) -> None:
    noise = {"probe_dependencies", "silences", "alert_groups", "alert_group_items"}
    probe_id = next(iter(_insert_old_probes().values()))
    upgrade(revision="0007")
    tenant_id = db.session.execute(text("SELECT id FROM tenants")).scalar_one()
    values = {"tenant_id": tenant_id, "probe_id": probe_id}
    db.session.execute(text(
        'INSERT INTO alert_rules (tenant_id, name, description, kind, threshold, "window", recovery, '
        "reminder_seconds, send_resolved, enabled, created_at, updated_at) VALUES (:tenant_id, 'down', '', 'down', "
        "1, 1, 1, 0, true, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), values)
    rule_id = db.session.execute(text("SELECT id FROM alert_rules")).scalar_one()
    db.session.execute(text(
        "INSERT INTO alerts (tenant_id, rule_id, probe_id, status, reason, opened_at, since, reminders_sent) "
        "VALUES (:tenant_id, :rule_id, :probe_id, 'firing', '1 run failed', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"),
        {**values, "rule_id": rule_id})
    alert_id = db.session.execute(text("SELECT id FROM alerts")).scalar_one()
    db.session.execute(text(
        "INSERT INTO alert_states (rule_id, probe_id, tenant_id, last_result_id, recent, good_streak, version, "
        "alert_id, held, updated_at) VALUES (:rule_id, :probe_id, :tenant_id, 0, 'b', 0, 1, :alert_id, false, "
        "CURRENT_TIMESTAMP)"), {**values, "rule_id": rule_id, "alert_id": alert_id})
    db.session.commit()
    db.session.remove()

    upgrade()
    assert noise <= set(inspect(db.engine).get_table_names())
    # The open alert was told when it fired (its resolution will be), and its rule's condition holds.
    assert db.session.execute(text("SELECT notified FROM alerts")).scalar_one() in (True, 1)
    assert db.session.execute(text("SELECT firing FROM alert_states")).scalar_one() in (True, 1)
    group_by, escalation = db.session.execute(text("SELECT group_by, escalation FROM alert_rules")).one()
    assert group_by == "none"
    assert (json.loads(escalation) if isinstance(escalation, str) else escalation) == []
    db.session.remove()

    downgrade(revision="0007")
    assert not noise & set(inspect(db.engine).get_table_names())
    assert "firing" not in _columns("alert_states") and "group_by" not in _columns("alert_rules")
    db.session.remove()
    upgrade()
    assert noise <= set(inspect(db.engine).get_table_names())


def test_0010_adds_the_rollup_table_and_removes_it_again(app_at_0003: Flask) -> None:
    history = {"probe_rollups"}
    upgrade(revision="0010")
    assert history <= set(inspect(db.engine).get_table_names())
    assert "rt_sketch" in _columns("probe_rollups")

    downgrade(revision="0009")
    assert not history & set(inspect(db.engine).get_table_names())
    upgrade(revision="0010")
    assert history <= set(inspect(db.engine).get_table_names())


def test_0011_adds_status_pages_and_removes_them_again(app_at_0003: Flask) -> None:
    pages = {"status_pages", "status_page_probes", "status_page_groups", "status_page_incidents"}
    upgrade()
    assert pages <= set(inspect(db.engine).get_table_names())
    db.session.execute(text("INSERT INTO tenants (name, created_at) VALUES ('t', CURRENT_TIMESTAMP)"))
    db.session.execute(text(
        "INSERT INTO status_pages (tenant_id, slug, title, description, public, created_at, updated_at) "
        "SELECT id, 'acme', 'Acme', '', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM tenants"))
    db.session.commit()
    db.session.remove()

    downgrade(revision="0010")
    assert not pages & set(inspect(db.engine).get_table_names())
    assert "probe_rollups" in set(inspect(db.engine).get_table_names())
    upgrade()
    assert pages <= set(inspect(db.engine).get_table_names())
