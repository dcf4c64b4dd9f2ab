"""The service layer the CLI, the tasks and the API share: validation, tenant scoping, cache, retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import redis
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Probe, ProbeResult
from app.services import probe_runs, retention, status_cache
from app.services.errors import ConflictError, InvalidInputError, NotFoundError
from app.services.probes import create_probe, delete_probe, get_probe, list_probes, update_probe
from tests.conftest import make_probe, make_tenant
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(60)


def probe_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Probe))


class TestProbeValidation:
    @pytest.mark.parametrize("fields, message", [
        ({"protocol": "gopher"}, "protocol: unknown protocol 'gopher'"),
        ({"protocol": "http", "target": "ftp://127.0.0.1/"}, "target: http targets must start with http://"),
        ({"protocol": "tcp", "target": "127.0.0.1"}, "target: expected host:port"),
        ({"protocol": "udp", "target": "127.0.0.1:70000"}, "target: .*port"),
        ({"interval_seconds": 2}, "interval_seconds: must be at least 5"),
        ({"interval_seconds": 30, "timeout_seconds": 30}, "timeout_seconds: must be shorter than interval_seconds"),
        ({"conditions": {"expected_status": [700]}}, "expected_status"),
        ({"conditions": {"body_regex": "("}}, "body_regex"),
        ({"conditions": {"colour": "red"}}, "colour"),
        ({"spec": {"method": "BREW"}}, "spec.method: unknown HTTP method 'BREW'"),
        ({"method": "GET"}, "method: belongs in spec"),
        ({"protocol": "tcp", "target": "127.0.0.1:1", "spec": {"method": "GET"}}, "spec.method: unknown field"),
        ({"surprise": 1}, "surprise: unknown field"),
    ])
    def test_bad_probe_is_refused_with_the_field_named_and_nothing_stored(
        self, app: Flask, fields: dict[str, object], message: str
    ) -> None:
        tenant = make_tenant()
        data = {"name": "p", "protocol": "http", "target": "http://127.0.0.1:9/", **fields}
        with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
            create_probe(tenant.id, data)
        assert probe_count() == 0

    @pytest.mark.parametrize("interval, timeout", [(60, 10.0), (10, 5.0), (5, 2.5)])
    def test_timeout_defaults_to_10_s_or_half_the_interval(self, app: Flask, interval: int, timeout: float) -> None:
        tenant = make_tenant()
        probe = create_probe(tenant.id, {"name": "p", "protocol": "http", "target": "http://127.0.0.1:9/",
                                         "interval_seconds": interval})
        assert probe.timeout_seconds == timeout

    def test_names_are_unique_per_tenant_only(self, app: Flask) -> None:
        first, second = make_tenant(), make_tenant()
        make_probe(first.id, "http://127.0.0.1:9/", name="web")
        with pytest.raises(ConflictError, match="'web' already exists"):
            make_probe(first.id, "http://127.0.0.1:9/", name="web")
        make_probe(second.id, "http://127.0.0.1:9/", name="web")
        assert probe_count() == 2


class TestTenantScoping:
    def test_another_tenants_probe_is_not_found_and_untouched(self, app: Flask) -> None:
        owner, intruder = make_tenant(), make_tenant()
        probe = make_probe(owner.id, "http://127.0.0.1:9/", name="theirs")

        for attempt in (
            lambda: get_probe(intruder.id, probe.id),
            lambda: update_probe(intruder.id, probe.id, {"name": "mine"}),
            lambda: delete_probe(intruder.id, probe.id),
        ):
            with pytest.raises(NotFoundError, match=f"probe {probe.id} not found"):
                attempt()
        assert [p.name for p in list_probes(owner.id)] == ["theirs"]
        assert list_probes(intruder.id) == []

    def test_runs_of_another_tenants_probe_store_nothing(self, app: Flask, targets: LoopbackTargets) -> None:
        owner, intruder = make_tenant(), make_tenant()
        probe = make_probe(owner.id, f"{targets.http_url}/ok")
        requests = probe_runs.run_requests([probe.id], "manual", "run-1")

        [entry] = probe_runs.execute_runs(intruder.id, requests, "manual")

        assert entry["success"] is False and entry["error"] == f"probe {probe.id} not found"
        assert db.session.scalar(select(func.count()).select_from(ProbeResult)) == 0


class TestStatusCache:
    def test_latest_status_survives_a_lost_cache(self, app: Flask, clean_redis: redis.Redis,
                                                 targets: LoopbackTargets) -> None:
        tenant = make_tenant()
        up = make_probe(tenant.id, f"{targets.http_url}/ok")
        down = make_probe(tenant.id, f"{targets.http_url}/status/500")
        never = make_probe(tenant.id, f"{targets.http_url}/ok")
        probe_runs.execute_runs(tenant.id, probe_runs.run_requests([up.id, down.id], "manual", "r1"), "manual")
        assert clean_redis.hlen(status_cache.KEY.format(tenant.id)) == 2

        clean_redis.flushdb()
        latest = status_cache.latest(tenant.id, [up.id, down.id, never.id])

        assert {pid: entry["status"] for pid, entry in latest.items()} == {up.id: "success", down.id: "failed"}
        assert clean_redis.hlen(status_cache.KEY.format(tenant.id)) == 2  # refilled from the database

    def test_deleting_a_probe_drops_its_cached_status(self, app: Flask, clean_redis: redis.Redis,
                                                      targets: LoopbackTargets) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"{targets.http_url}/ok")
        probe_runs.execute_runs(tenant.id, probe_runs.run_requests([probe.id], "manual", "r1"), "manual")

        delete_probe(tenant.id, probe.id)

        assert status_cache.latest(tenant.id, [probe.id]) == {}
        assert clean_redis.hlen(status_cache.KEY.format(tenant.id)) == 0


class TestRetention:
    def test_old_results_are_deleted_in_bounded_batches(self, app: Flask) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/")
        now = datetime.now(timezone.utc)
        db.session.execute(ProbeResult.__table__.insert(), [
            {"tenant_id": tenant.id, "probe_id": probe.id, "run_key": f"manual:{i}", "probe_type": "manual",
             "status": "success", "bytes_read": 0, "started_at": now, "created_at": now - timedelta(days=days)}
            for i, days in enumerate([60] * 11 + [5] * 2)
        ])
        db.session.commit()

        report = retention.cleanup_old_results(30, batch_size=4)

        assert (report["deleted"], report["batches"]) == (11, 3)
        assert db.session.scalar(select(func.count()).select_from(ProbeResult)) == 2
