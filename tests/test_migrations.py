"""Migrations on data, not only on an empty schema: SQLite and a scratch PostgreSQL database.

0004 moves the protocol-specific columns of ``probes`` into the ``spec`` JSON column; a probe
saved before it must come out with the same settings, run the same way, and go back on
downgrade.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
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

    upgrade()
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
