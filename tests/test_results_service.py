"""Reading results: keyset pages newest first, and per-probe statistics computed in the database."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask

from app.extensions import db
from app.models import ProbeResult
from app.services.errors import InvalidInputError, NotFoundError
from app.services.results import ResultPage, list_results, probe_stats
from tests.conftest import make_probe, make_tenant

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def add_results(probe: Any, *rows: dict[str, Any]) -> list[ProbeResult]:
    """Store results of ``probe`` as given (created_at, status, response_time_ms, ...); returns them with ids."""
    results = [
        ProbeResult(tenant_id=probe.tenant_id, probe_id=probe.id, run_key=f"manual:{uuid.uuid4().hex}",
                    probe_type="manual", **{"status": "success", "started_at": row["created_at"], **row})
        for row in rows
    ]
    db.session.add_all(results)
    db.session.commit()
    return results


def walk(tenant_id: int, probe_id: int, **options: Any) -> list[ResultPage]:
    """Every page, following next_cursor until there is none."""
    pages = [list_results(tenant_id, probe_id, **options)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 100, "paging does not end"
        pages.append(list_results(tenant_id, probe_id, cursor=pages[-1].next_cursor, **options))
    return pages


def ids(pages: list[ResultPage]) -> list[int]:
    return [item["id"] for page in pages for item in page.items]


def newest_first(results: list[ProbeResult]) -> list[int]:
    return [r.id for r in sorted(results, key=lambda r: (r.created_at, r.id), reverse=True)]


@pytest.fixture
def probe(app: Flask) -> Any:
    return make_probe(make_tenant().id, "http://127.0.0.1:9/")


class TestListResults:
    def test_a_result_carries_every_field_a_user_reads(self, probe: Any) -> None:
        [stored] = add_results(probe, {
            "created_at": at(5), "status": "failed", "response_time_ms": 812.5, "status_code": 503,
            "error": "expected status 200, got 503", "dns_ms": 1.5, "connect_ms": 2.25, "tls_ms": 30.0,
            "processing_ms": 700.0, "transfer_ms": 78.75, "cert_expires_at": at(60 * 24 * 90), "bytes_read": 1234,
            "details": {"answers": ["10.0.0.1"]}, "scheduled_for": at(4.99), "started_at": at(4.995),
        })

        [item] = list_results(probe.tenant_id, probe.id).items

        assert item == {
            "id": stored.id, "probe_id": probe.id, "run_key": stored.run_key, "probe_type": "manual",
            "status": "failed", "response_time_ms": 812.5, "status_code": 503,
            "error": "expected status 200, got 503", "dns_ms": 1.5, "connect_ms": 2.25, "tls_ms": 30.0,
            "processing_ms": 700.0, "transfer_ms": 78.75, "cert_expires_at": at(60 * 24 * 90), "bytes_read": 1234,
            "details": {"answers": ["10.0.0.1"]}, "scheduled_for": at(4.99), "started_at": at(4.995),
            "created_at": at(5), "in_maintenance": False,
        }
        assert all(item[name].tzinfo is not None
                   for name in ("created_at", "started_at", "scheduled_for", "cert_expires_at"))

    @pytest.mark.parametrize("limit", [1, 2, 3, 5, 12, 13, 500])
    def test_pages_cover_every_result_once_newest_first_even_with_equal_timestamps(
        self, probe: Any, limit: int
    ) -> None:
        # Five results share one created_at (and sit across page boundaries); rows are stored
        # in shuffled order, so ids alone do not give the newest-first order.
        minutes = [0, 1, 2, 3, 4, 5, 6, 3.5, 3.5, 3.5, 3.5, 3.5]
        random.Random(7).shuffle(minutes)
        results = add_results(probe, *({"created_at": at(m)} for m in minutes))

        pages = walk(probe.tenant_id, probe.id, limit=limit)

        assert ids(pages) == newest_first(results)
        assert [len(page.items) for page in pages[:-1]] == [limit] * (len(pages) - 1)
        assert len(pages) == -(-len(results) // limit)  # no trailing empty page when the count divides evenly

    def test_no_results_is_one_empty_last_page(self, probe: Any) -> None:
        assert list_results(probe.tenant_id, probe.id) == ResultPage(items=[], next_cursor=None)

    def test_since_is_inclusive_and_until_exclusive_also_across_pages(self, probe: Any) -> None:
        results = add_results(probe, *({"created_at": at(m)} for m in range(10)))

        pages = walk(probe.tenant_id, probe.id, limit=2, since=at(2), until=at(7))

        assert [item["created_at"] for item in pages[0].items] == [at(6), at(5)]
        assert ids(pages) == newest_first(results[2:7])
        assert [item["created_at"] for item in list_results(probe.tenant_id, probe.id, since=at(8)).items] == [
            at(9), at(8)]
        assert [item["created_at"] for item in list_results(probe.tenant_id, probe.id, until=at(2)).items] == [
            at(1), at(0)]

    def test_a_window_given_in_another_timezone_means_the_same_instants(self, probe: Any) -> None:
        add_results(probe, *({"created_at": at(m)} for m in range(4)))
        plus_two = timezone(timedelta(hours=2))

        page = list_results(probe.tenant_id, probe.id, since=at(1).astimezone(plus_two),
                            until=at(3).astimezone(plus_two))

        assert [item["created_at"] for item in page.items] == [at(2), at(1)]

    def test_results_of_other_probes_and_tenants_are_not_listed(self, probe: Any) -> None:
        sibling = make_probe(probe.tenant_id, "http://127.0.0.1:9/")
        foreign = make_probe(make_tenant().id, "http://127.0.0.1:9/")
        mine = add_results(probe, {"created_at": at(1)}, {"created_at": at(3)})
        add_results(sibling, {"created_at": at(2)})
        add_results(foreign, {"created_at": at(2)}, {"created_at": at(4)})

        assert ids(walk(probe.tenant_id, probe.id, limit=1)) == newest_first(mine)

    def test_another_tenants_probe_and_a_missing_probe_are_not_found(self, probe: Any) -> None:
        add_results(probe, {"created_at": at(1)})
        intruder = make_tenant()

        with pytest.raises(NotFoundError, match=f"probe {probe.id} not found"):
            list_results(intruder.id, probe.id)
        with pytest.raises(NotFoundError, match="probe 999999 not found"):
            list_results(probe.tenant_id, 999999)

    @pytest.mark.parametrize("cursor", [
        "not a cursor!",
        "",
        "é",
        base64.urlsafe_b64encode(b"hello").decode(),
        base64.urlsafe_b64encode(b"2024-05-01T12:00:00+00:00").decode(),  # no id
        base64.urlsafe_b64encode(b"2024-05-01T12:00:00+00:00|x").decode(),
        base64.urlsafe_b64encode(b"2024-05-01T12:00:00+00:00|-3").decode(),
        base64.urlsafe_b64encode(b"2024-05-01T12:00:00|3").decode().rstrip("="),  # naive
        base64.urlsafe_b64encode(b"yesterday|3").decode().rstrip("="),
        base64.urlsafe_b64encode(b"\xff\xfe|3").decode().rstrip("="),
    ])
    def test_a_malformed_cursor_is_refused_naming_the_cursor(self, probe: Any, cursor: str) -> None:
        with pytest.raises(InvalidInputError) as raised:
            list_results(probe.tenant_id, probe.id, cursor=cursor)
        assert raised.value.field == "cursor"

    def test_a_tampered_cursor_is_refused(self, probe: Any) -> None:
        add_results(probe, *({"created_at": at(m)} for m in range(3)))
        cursor = list_results(probe.tenant_id, probe.id, limit=1).next_cursor
        assert cursor is not None

        for tampered in (cursor + "A", cursor[:-1] + "!", cursor + "=="):
            with pytest.raises(InvalidInputError) as raised:
                list_results(probe.tenant_id, probe.id, limit=1, cursor=tampered)
            assert raised.value.field == "cursor"

    @pytest.mark.parametrize("limit", [0, -1, 501, True, 2.5])
    def test_a_limit_outside_1_to_500_is_refused(self, probe: Any, limit: Any) -> None:
        with pytest.raises(InvalidInputError, match="limit: must be a whole number from 1 to 500") as raised:
            list_results(probe.tenant_id, probe.id, limit=limit)
        assert raised.value.field == "limit"

    @pytest.mark.parametrize("window, field", [
        ({"since": datetime(2024, 5, 1)}, "since"),
        ({"until": datetime(2024, 5, 1)}, "until"),
        ({"since": T0, "until": T0}, "until"),
        ({"since": at(1), "until": at(0)}, "until"),
    ])
    def test_a_naive_or_empty_window_is_refused_naming_the_field(
        self, probe: Any, window: dict[str, datetime], field: str
    ) -> None:
        with pytest.raises(InvalidInputError) as raised:
            list_results(probe.tenant_id, probe.id, **window)
        assert raised.value.field == field


class TestProbeStats:
    def test_percentiles_average_and_uptime_of_a_known_set(self, probe: Any) -> None:
        # 100 results answering in 1..100 ms (stored in random order), 3 of them failed;
        # 3 more errored without a response time: they count for uptime, not for timings.
        times = list(range(1, 101))
        random.Random(3).shuffle(times)
        add_results(probe, *(
            {"created_at": at(i), "response_time_ms": float(ms),
             "status": "failed" if ms in (10, 20, 30) else "success"}
            for i, ms in enumerate(times)
        ))
        add_results(probe, *({"created_at": at(200 + i), "status": "error", "error": "dns"} for i in range(3)))

        stats = probe_stats(probe.tenant_id, probe.id, since=at(0))

        assert stats["count"] == 103
        assert stats["success_count"] == 97
        assert stats["uptime_percent"] == 94.175  # 97 / 103
        assert stats["avg_response_time_ms"] == 50.5
        assert (stats["p50_response_time_ms"], stats["p95_response_time_ms"], stats["p99_response_time_ms"]) == (
            50, 95, 99)
        assert (stats["since"], stats["until"]) == (at(0), None)

    @pytest.mark.parametrize("times, expected", [
        ([7.5], (7.5, 7.5, 7.5)),
        ([20, 10], (10, 20, 20)),
        ([30, 10, 20], (20, 30, 30)),
        (list(range(1, 21)), (10, 19, 20)),  # ranks ceil(10)=10, ceil(19)=19, ceil(19.8)=20
        ([5, 5, 5, 9], (5, 9, 9)),
    ])
    def test_percentiles_use_the_nearest_rank(self, probe: Any, times: list[float], expected: tuple) -> None:
        add_results(probe, *({"created_at": at(i), "response_time_ms": float(ms)} for i, ms in enumerate(times)))

        stats = probe_stats(probe.tenant_id, probe.id, since=at(0))

        assert (stats["p50_response_time_ms"], stats["p95_response_time_ms"], stats["p99_response_time_ms"]) == expected

    def test_only_the_window_counts_and_last_failure_is_its_newest_failure(self, probe: Any) -> None:
        results = add_results(
            probe,
            {"created_at": at(0), "status": "failed", "response_time_ms": 900.0},  # before the window
            {"created_at": at(1), "status": "success", "response_time_ms": 10.0},
            {"created_at": at(2), "status": "timeout", "response_time_ms": None, "error": "timed out"},
            {"created_at": at(3), "status": "failed", "response_time_ms": 30.0, "status_code": 500,
             "error": "expected status 200, got 500"},
            {"created_at": at(4), "status": "success", "response_time_ms": 20.0},
            {"created_at": at(5), "status": "error", "response_time_ms": 1.0, "error": "dns"},  # at until: outside
        )

        stats = probe_stats(probe.tenant_id, probe.id, since=at(1), until=at(5))

        assert stats == {
            "since": at(1), "until": at(5),
            "count": 4, "success_count": 2, "uptime_percent": 50.0,
            "maintenance_count": 0, "uptime_outside_maintenance_percent": 50.0,
            "avg_response_time_ms": 20.0, "min_response_time_ms": 10.0, "max_response_time_ms": 30.0,
            "p50_response_time_ms": 20.0, "p95_response_time_ms": 30.0, "p99_response_time_ms": 30.0,
            "percentile_method": "nearest_rank",
            "last_failure": {"result_id": results[3].id, "at": at(3), "status": "failed", "status_code": 500,
                             "error": "expected status 200, got 500"},
        }

    def test_uptime_can_be_read_without_the_runs_made_in_maintenance(self, probe: Any) -> None:
        add_results(probe, {"created_at": at(0)}, {"created_at": at(1), "status": "failed"},
                    {"created_at": at(2), "status": "failed", "in_maintenance": True},
                    {"created_at": at(3), "status": "timeout", "in_maintenance": True})

        stats = probe_stats(probe.tenant_id, probe.id, since=at(0))

        assert (stats["uptime_percent"], stats["maintenance_count"], stats["uptime_outside_maintenance_percent"]) == (
            25.0, 2, 50.0)

    def test_uptime_is_rounded_to_three_decimals(self, probe: Any) -> None:
        add_results(probe, {"created_at": at(0)}, {"created_at": at(1)}, {"created_at": at(2), "status": "failed"})

        assert probe_stats(probe.tenant_id, probe.id, since=at(0))["uptime_percent"] == 66.667

    def test_an_empty_window_has_a_count_of_zero_and_nothing_else(self, probe: Any) -> None:
        add_results(probe, {"created_at": at(0), "status": "failed", "response_time_ms": 5.0},
                    {"created_at": at(10), "status": "failed", "response_time_ms": 5.0})

        stats = probe_stats(probe.tenant_id, probe.id, since=at(1), until=at(10))

        assert stats == {
            "since": at(1), "until": at(10), "count": 0, "success_count": 0, "uptime_percent": None,
            "maintenance_count": 0, "uptime_outside_maintenance_percent": None, "avg_response_time_ms": None, "p50_response_time_ms": None, "p95_response_time_ms": None,
            "p99_response_time_ms": None, "last_failure": None, "min_response_time_ms": None,
            "max_response_time_ms": None, "percentile_method": "nearest_rank",
        }

    def test_results_without_response_times_give_uptime_but_no_timings(self, probe: Any) -> None:
        add_results(probe, {"created_at": at(0), "status": "timeout"}, {"created_at": at(1), "status": "success"})

        stats = probe_stats(probe.tenant_id, probe.id, since=at(0))

        assert (stats["count"], stats["uptime_percent"]) == (2, 50.0)
        assert [stats[name] for name in ("avg_response_time_ms", "p50_response_time_ms", "p99_response_time_ms")] == [
            None, None, None]

    def test_results_of_other_probes_and_tenants_do_not_count(self, probe: Any) -> None:
        sibling = make_probe(probe.tenant_id, "http://127.0.0.1:9/")
        foreign = make_probe(make_tenant().id, "http://127.0.0.1:9/")
        add_results(probe, {"created_at": at(1), "response_time_ms": 10.0})
        for other in (sibling, foreign):
            add_results(other, {"created_at": at(2), "status": "failed", "response_time_ms": 1000.0},
                        {"created_at": at(3), "status": "success", "response_time_ms": 2000.0})

        stats = probe_stats(probe.tenant_id, probe.id, since=at(0))

        assert (stats["count"], stats["uptime_percent"], stats["last_failure"]) == (1, 100.0, None)
        assert (stats["avg_response_time_ms"], stats["p99_response_time_ms"]) == (10.0, 10.0)

    def test_another_tenants_probe_and_a_missing_probe_are_not_found(self, probe: Any) -> None:
        intruder = make_tenant()

        with pytest.raises(NotFoundError, match=f"probe {probe.id} not found"):
            probe_stats(intruder.id, probe.id, since=at(0))
        with pytest.raises(NotFoundError, match="probe 999999 not found"):
            probe_stats(probe.tenant_id, 999999, since=at(0))

    @pytest.mark.parametrize("window, field", [
        ({"since": datetime(2024, 5, 1)}, "since"),
        ({"since": T0, "until": datetime(2024, 5, 2)}, "until"),
        ({"since": T0, "until": T0}, "until"),
        ({"since": at(1), "until": at(0)}, "until"),
    ])
    def test_a_naive_or_empty_window_is_refused_naming_the_field(
        self, probe: Any, window: dict[str, datetime], field: str
    ) -> None:
        with pytest.raises(InvalidInputError) as raised:
            probe_stats(probe.tenant_id, probe.id, **window)
        assert raised.value.field == field
