"""The worker's per-batch statements, on SQLite and PostgreSQL: starting slots on their leases,
reading their probes, and storing results (once, closing the lease, hostile values included)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import ProbeLease, ProbeResult, ProbeRunLoss
from app.probes.base import ProbeOutcome, ProbeStatus
from app.services import leases, probe_runs, result_store
from app.services.probe_executor import Finished
from tests.conftest import make_probe, make_tenant

pytestmark = pytest.mark.timeout(60)

SLOT = 1_800_000_000_000  # epoch ms, in the future of every test run


def lease(probe: Any, slot_ms: int = SLOT, attempt: int = 0, started_ms: int | None = None) -> None:
    db.session.add(ProbeLease(probe_id=probe.id, slot_ms=slot_ms, tenant_id=probe.tenant_id, attempt=attempt,
                              lease_ms=8000, started_ms=started_ms, expires_ms=slot_ms + 8000,
                              stale_ms=slot_ms + 60_000))
    db.session.commit()


def measured_run(probe: Any, slot_ms: int = SLOT, **outcome: Any) -> result_store.MeasuredRun:
    probes = probe_runs._probes(probe.tenant_id, [probe.id])
    job = probe_runs._job(probes[probe.id], f"auto:{slot_ms}", "auto", slot_ms)
    fields = {"response_time_ms": 3.5, "status_code": 200, **outcome}
    return probe_runs.measured(Finished(job, ProbeOutcome(ProbeStatus.SUCCESS, **fields),
                                        datetime.now(timezone.utc)))


@pytest.fixture
def probes(app: Flask) -> list[Any]:
    tenant = make_tenant()
    return [make_probe(tenant.id, f"http://127.0.0.1:9/{index}") for index in range(3)]


class TestStartingSlots:
    def test_each_leased_slot_is_owned_by_the_first_starter_only(self, probes: list[Any]) -> None:
        for probe in probes:
            lease(probe)
        tenant_id = probes[0].tenant_id
        keys = [(probe.id, SLOT, 0) for probe in probes]

        assert leases.start(tenant_id, keys, SLOT - 1000) == {(probe.id, SLOT) for probe in probes}
        db.session.commit()
        assert leases.start(tenant_id, keys, SLOT - 500) == set()  # a second delivery runs nothing

    def test_a_newer_attempt_a_foreign_tenant_and_a_passed_slot_are_not_owned(self, probes: list[Any]) -> None:
        first, second, third = probes
        lease(first, attempt=1)
        lease(second)
        lease(third)
        other = make_tenant()

        assert leases.start(first.tenant_id, [(first.id, SLOT, 0)], SLOT) == set()
        assert leases.start(other.id, [(second.id, SLOT, 0)], SLOT) == set()
        assert leases.start(third.tenant_id, [(third.id, SLOT, 0)], SLOT + 60_000) == set()
        assert leases.start(second.tenant_id, [(second.id, SLOT, 0)], SLOT) == {(second.id, SLOT)}

    def test_the_probes_read_are_the_tenants_only(self, probes: list[Any]) -> None:
        foreign = make_probe(make_tenant().id, "http://127.0.0.1:9/foreign")
        found = probe_runs._probes(probes[0].tenant_id, [probe.id for probe in probes] + [foreign.id])
        assert sorted(found) == sorted(probe.id for probe in probes)
        assert all(found[probe.id].prepared.spec.target == probe.target for probe in probes)


class TestStoringResults:
    def test_a_result_is_stored_once_and_closes_its_lease(self, probes: list[Any]) -> None:
        probe = probes[0]
        lease(probe, started_ms=SLOT)
        run = measured_run(probe)

        first = result_store.store([run])
        again = result_store.store([run])  # a redelivered or re-issued run

        assert list(first) == [(probe.id, f"auto:{SLOT}")]
        assert again == {}
        assert db.session.scalar(select(func.count()).select_from(ProbeResult)) == 1
        assert db.session.scalar(select(func.count()).select_from(ProbeLease)) == 0

    def test_a_stored_row_reads_back_as_measured(self, probes: list[Any]) -> None:
        probe = probes[0]
        expires = datetime(2031, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        run = measured_run(probe, cert_expires_at=expires, details={"answers": ["127.0.0.1"], "note": "é \" \\"},
                           error='quote " backslash \\ newline \n tab \t')
        result_store.store([run])

        row = db.session.execute(select(ProbeResult)).scalar_one()
        assert (row.status, row.response_time_ms, row.status_code) == ("success", 3.5, 200)
        assert row.cert_expires_at == expires
        assert row.scheduled_for == datetime.fromtimestamp(SLOT / 1000, timezone.utc)
        assert row.details == {"answers": ["127.0.0.1"], "note": "é \" \\"}
        assert row.error == 'quote " backslash \\ newline \n tab \t'

    def test_a_value_json_cannot_carry_is_stored_all_the_same(self, probes: list[Any]) -> None:
        runs = [measured_run(probes[0], response_time_ms=math.inf), measured_run(probes[1])]
        stored = result_store.store(runs)

        assert len(stored) == 2
        times = db.session.scalars(select(ProbeResult.response_time_ms).order_by(ProbeResult.probe_id)).all()
        assert times == [math.inf, 3.5]

    def test_a_slot_stored_after_it_was_counted_lost_is_no_longer_counted(self, probes: list[Any]) -> None:
        probe = probes[0]
        db.session.add(ProbeRunLoss(tenant_id=probe.tenant_id, probe_id=probe.id, reason="lost", slot_ms=SLOT,
                                    slots=1, recorded_at=datetime.now(timezone.utc)))
        db.session.commit()

        result_store.store([measured_run(probe)])  # no lease left: the sweep had counted it

        assert db.session.scalar(select(func.count()).select_from(ProbeRunLoss)) == 0
