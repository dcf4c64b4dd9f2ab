"""The probe API under /api/v1 as a user sees it: probes, groups, run now, tasks, results and stats.

Requests go through Flask's test client into the real application, database (SQLite and
PostgreSQL) and Redis; tests that need a task to run use a real in-process worker and the
loopback targets.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Probe, ProbeResult
from app.services import probe_runs
from app.services.dispatch import queue_length
from tests.api import Api, Caller, assert_error
from tests.conftest import make_tenant, wait_for
from tests.targets import LoopbackTargets, free_port

pytestmark = pytest.mark.timeout(90)

API = "/api/v1"
UNREACHABLE = "http://127.0.0.1:9/"  # only validated, never run
TASK_STATUS_KEYS = {"task_id", "state", "ready", "successful", "result", "exists"}
CHANGING = {"updated_at", "latest"}  # fields a PATCH may move besides the ones it names


# --- helpers ---------------------------------------------------------------------------------

def operator(api: Api) -> tuple[int, Caller]:
    """A fresh tenant and an operator logged in to it."""
    tenant = make_tenant()
    return tenant.id, api.as_role(tenant.id, "operator")


def probe_body(**fields: Any) -> dict[str, Any]:
    return {"name": f"probe-{uuid.uuid4().hex[:8]}", "protocol": "http", "target": UNREACHABLE, **fields}


def create(caller: Caller, **fields: Any) -> dict[str, Any]:
    response = caller.post(f"{API}/probes", json=probe_body(**fields))
    assert response.status_code == 201, response.json
    return response.json


def get(caller: Caller, path: str, **kwargs: Any) -> Any:
    """The JSON of a 200 answer; ``path`` is relative to /api/v1 unless it already starts with it."""
    response = caller.get(path if path.startswith(f"{API}/") else f"{API}{path}", **kwargs)
    assert response.status_code == 200, (path, response.json)
    return response.json


def listed_ids(caller: Caller, **query: Any) -> list[int]:
    return [item["id"] for item in get(caller, "/probes", query_string={"per_page": 500, **query})["items"]]


def stored(model: type[Probe | ProbeResult] = Probe) -> int:
    """Rows in the database (read fresh: the API wrote them in its own sessions)."""
    db.session.commit()
    return db.session.scalar(select(func.count()).select_from(model))


def ms(stamp: str | None) -> int | None:
    return None if stamp is None else round(datetime.fromisoformat(stamp).timestamp() * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def add_results(tenant_id: int, probe_id: int, rows: list[dict[str, Any]]) -> list[int]:
    """Store results directly (known times and response times); returns their ids in order."""
    results = []
    for row in rows:
        fields = {"run_key": f"manual:{uuid.uuid4().hex}", "probe_type": "manual", "status": "success",
                  "bytes_read": 0, "started_at": row["created_at"], **row}
        results.append(ProbeResult(tenant_id=tenant_id, probe_id=probe_id, **fields))
    db.session.add_all(results)
    db.session.commit()
    return [result.id for result in results]


def run_stored(tenant_id: int, *probe_ids: int) -> list[dict[str, Any]]:
    """Run probes now, in this process, and store their results (what a worker would do)."""
    requests = probe_runs.run_requests(list(probe_ids), "manual", uuid.uuid4().hex)
    return probe_runs.execute_runs(tenant_id, requests, "manual")


def wait_task(caller: Caller, status_url: str, state: str | None = None) -> dict[str, Any]:
    """Poll a task's status URL until it is ready (or reaches ``state``)."""
    def done() -> dict[str, Any] | None:
        response = caller.get(status_url)
        assert response.status_code == 200, response.json
        body = response.json
        finished = body["state"] == state if state else body["ready"]
        return body if finished else None

    return wait_for(done, timeout=30, what=f"task {status_url} to be {state or 'ready'}")


def accepted(response: Any, probe_ids: list[int], priority: int | None) -> dict[str, Any]:
    """A 202 of a run endpoint: task id, status URL (also in Location), the probes and the priority."""
    assert response.status_code == 202, response.json
    body = response.json
    assert body == {"task_id": body["task_id"], "status_url": f"{API}/tasks/{body['task_id']}",
                    "probe_ids": probe_ids, "priority": priority}
    assert response.headers["Location"].endswith(body["status_url"])
    return body


# --- probes: CRUD ----------------------------------------------------------------------------

class TestProbeCrud:
    def test_create_echoes_the_probe_with_defaults_and_schedules_it(self, api: Api) -> None:
        _, op = operator(api)
        spec = {"method": "post", "headers": {"X-Check": "1"}, "body": "{}", "verify_tls": False,
                "follow_redirects": False}
        sent = {
            "name": "shop", "protocol": "http", "target": "http://127.0.0.1:9/health", "spec": spec,
            "interval_seconds": 30, "conditions": {"expected_status": [200, 204], "body_contains": "ok"},
        }
        before = now_ms()
        response = op.post(f"{API}/probes", json=sent)
        after = now_ms()

        assert response.status_code == 201, response.json
        probe = response.json
        # The spec comes back whole: what was sent, and the defaults of the rest.
        assert {name: probe[name] for name in sent} == {
            **sent, "spec": {**spec, "method": "POST", "expect": None, "secret_headers": []}}
        assert probe["timeout_seconds"] == 10.0  # probes.default_timeout_seconds, below half the interval
        assert probe["enabled"] is True and probe["auto_probe"] is True and probe["group_id"] is None
        assert probe["missed_runs"] == 0 and probe["latest"] is None
        assert before <= ms(probe["next_run_at"]) < after + 30_000  # within one interval from now
        assert get(op, f"/probes/{probe['id']}") == probe

    @pytest.mark.parametrize("interval, timeout", [(60, 10.0), (10, 5.0), (5, 2.5)])
    def test_timeout_defaults_to_10_s_or_half_the_interval(self, api: Api, interval: int, timeout: float) -> None:
        _, op = operator(api)
        assert create(op, interval_seconds=interval)["timeout_seconds"] == timeout

    @pytest.mark.parametrize("fields", [{"enabled": False}, {"auto_probe": False}])
    def test_a_probe_off_the_schedule_has_no_next_run(self, api: Api, fields: dict[str, bool]) -> None:
        _, op = operator(api)
        probe = create(op, **fields)
        assert probe["next_run_at"] is None
        assert get(op, f"/probes/{probe['id']}")["next_run_at"] is None

    def test_patch_changes_only_the_given_fields(self, api: Api) -> None:
        _, op = operator(api)
        probe = create(op, spec={"headers": {"A": "b"}, "body": "x"}, conditions={"expected_status": [200]},
                       interval_seconds=120)

        response = op.patch(f"{API}/probes/{probe['id']}",
                            json={"name": "renamed", "conditions": {"body_regex": "^ok$"}, "spec": {"expect": "ok"}})

        assert response.status_code == 200, response.json
        changed = response.json
        assert changed["name"] == "renamed" and changed["conditions"] == {"body_regex": "^ok$"}
        assert changed["spec"] == {**probe["spec"], "expect": "ok"}  # the other spec fields kept their values
        untouched = set(probe) - CHANGING - {"name", "conditions", "spec"}
        assert {k: changed[k] for k in untouched} == {k: probe[k] for k in untouched}
        assert changed["next_run_at"] == probe["next_run_at"]  # no timing change: same slot
        assert changed["updated_at"] >= probe["updated_at"] and changed["created_at"] == probe["created_at"]
        assert get(op, f"/probes/{probe['id']}") == changed

    def test_patch_can_ungroup_and_regroup(self, api: Api) -> None:
        _, op = operator(api)
        group = op.post(f"{API}/probe-groups", json={"name": "edge"}).json
        probe = create(op, group_id=group["id"])

        assert op.patch(f"{API}/probes/{probe['id']}", json={"group_id": None}).json["group_id"] is None
        assert op.patch(f"{API}/probes/{probe['id']}", json={"group_id": group["id"]}).json["group_id"] == group["id"]

    def test_delete_answers_204_then_the_probe_and_its_results_are_gone(
        self, api: Api, targets: LoopbackTargets
    ) -> None:
        tenant_id, op = operator(api)
        probe = create(op, target=f"{targets.http_url}/ok")
        kept = create(op)
        run_stored(tenant_id, probe["id"])

        response = op.delete(f"{API}/probes/{probe['id']}")

        assert response.status_code == 204 and response.get_data() == b""
        for method, path in (("GET", ""), ("GET", "/results"), ("GET", "/stats"), ("PATCH", ""), ("DELETE", "")):
            kwargs = {"json": {"name": "x"}} if method == "PATCH" else {}
            assert_error(op.request(method, f"{API}/probes/{probe['id']}{path}", **kwargs), 404, "not_found")
        assert listed_ids(op) == [kept["id"]]
        assert get(op, "/probes/status", query_string={"ids": [probe["id"]]}) == {"items": []}
        assert stored(ProbeResult) == 0

    def test_a_new_probe_never_shows_a_deleted_probes_status(self, api: Api, targets: LoopbackTargets) -> None:
        tenant_id, op = operator(api)
        old = create(op, target=f"{targets.http_url}/ok")
        run_stored(tenant_id, old["id"])
        assert get(op, f"/probes/{old['id']}")["latest"]["status"] == "success"
        assert op.delete(f"{API}/probes/{old['id']}").status_code == 204

        new = create(op)["id"]  # SQLite hands the deleted probe's id out again

        assert get(op, f"/probes/{new}")["latest"] is None
        assert listed_ids(op, status="never_run") == [new]
        assert get(op, "/probes/status", query_string={"ids": [new]}) == {"items": []}
        assert get(op, f"/probes/{new}/results")["items"] == []

    def test_another_tenants_probe_is_not_found(self, api: Api) -> None:
        _, owner = operator(api)
        _, stranger = operator(api)
        probe = create(owner)

        assert_error(stranger.get(f"{API}/probes/{probe['id']}"), 404, "not_found")
        assert_error(stranger.patch(f"{API}/probes/{probe['id']}", json={"name": "mine"}), 404, "not_found")
        assert_error(stranger.delete(f"{API}/probes/{probe['id']}"), 404, "not_found")
        assert_error(stranger.post(f"{API}/probes/{probe['id']}/run"), 404, "not_found")
        assert_error(stranger.get(f"{API}/probes/{probe['id']}/results"), 404, "not_found")
        assert listed_ids(stranger) == []
        assert get(owner, f"/probes/{probe['id']}") == probe


# --- probe groups ----------------------------------------------------------------------------

class TestCredentialHeaders:
    """A probe's credentials for its target are used, but never shown back."""

    def test_credential_headers_are_masked_kept_on_change_and_sent_to_the_target(
        self, api: Api, targets: LoopbackTargets
    ) -> None:
        _, op = operator(api)
        headers = {"Authorization": "Bearer target-credential", "X-Api-Key": "k-123", "X-Trace": "visible"}
        probe = create(op, target=f"{targets.http_url}/echo", spec={"headers": headers},
                       conditions={"body_regex": "Bearer target-cred[e]ntial"})  # not the secret, literally
        shown = {"Authorization": "********", "X-Api-Key": "********", "X-Trace": "visible"}
        assert probe["spec"]["headers"] == shown
        assert get(op, f"/probes/{probe['id']}")["spec"]["headers"] == shown
        assert "target-credential" not in str(get(op, "/probes"))

        # A client that sends back what it was shown keeps the secrets; a new value replaces one.
        changed = op.patch(f"{API}/probes/{probe['id']}",
                           json={"spec": {"headers": {**shown, "X-Trace": "changed", "X-Api-Key": "k-456"}}})
        assert changed.status_code == 200 and changed.json["spec"]["headers"]["X-Trace"] == "changed"
        stored = db.session.get(Probe, probe["id"])
        db.session.refresh(stored)
        # The spec names the credentials; their values are in the encrypted column only.
        assert stored.spec["headers"] == {"Authorization": "********", "X-Api-Key": "********", "X-Trace": "changed"}
        assert stored.secrets == {"headers": {"Authorization": "Bearer target-credential", "X-Api-Key": "k-456"}}

        # The target receives the real value: the echo must contain it for the run to succeed.
        report = probe_runs.execute_runs(stored.tenant_id, probe_runs.run_requests([probe["id"]], "manual", "h"),
                                         "manual")
        assert report[0]["status"] == "success", report


    def test_a_header_the_user_marks_secret_is_masked_like_a_known_credential(
        self, api: Api, targets: LoopbackTargets
    ) -> None:
        tenant_id, op = operator(api)
        probe = create(op, target=f"{targets.http_url}/echo",
                       spec={"headers": {"X-Tenant-Pin": "pin-8812", "X-Trace": "visible"},
                             "secret_headers": ["x-tenant-pin"]},
                       conditions={"body_regex": "pin-881[2]"})

        assert probe["spec"]["headers"] == {"X-Tenant-Pin": "********", "X-Trace": "visible"}
        assert "pin-8812" not in str(get(op, "/probes")) and "pin-8812" not in str(get(op, f"/probes/{probe['id']}"))
        assert run_stored(tenant_id, probe["id"])[0]["status"] == "success"  # the target got the real value


    def test_url_credentials_in_the_target_are_masked_kept_on_change_and_sent(
        self, api: Api, targets: LoopbackTargets
    ) -> None:
        tenant_id, op = operator(api)
        host = targets.http_url.removeprefix("http://")
        target = f"http://ops:hunter2-pass@{host}/echo?token=tok-991&view=full"
        # The echo (path, then headers) holds the query and the basic-auth token of ops:hunter2-pass only if both were sent.
        probe = create(op, target=target, conditions={"body_regex": "tok-99[1].*b3BzOmh1bnRlcjItcGFzcw"})
        shown = f"http://ops:********@{host}/echo?token=********&view=full"
        assert probe["target"] == shown and get(op, f"/probes/{probe['id']}")["target"] == shown
        assert "hunter2" not in str(get(op, "/probes")) and "tok-991" not in str(get(op, "/probes"))

        changed = op.patch(f"{API}/probes/{probe['id']}", json={"target": shown, "name": "renamed"})
        assert changed.status_code == 200 and changed.json["target"] == shown
        stored = db.session.get(Probe, probe["id"])
        db.session.refresh(stored)
        assert stored.target == target  # the mask sent back did not replace the credentials
        assert run_stored(tenant_id, probe["id"])[0]["status"] == "success"


class TestProtocolSpecs:
    """Each protocol takes its own spec; changing the protocol changes the spec with it."""

    def test_a_changed_probe_runs_with_its_new_settings(self, api: Api, targets: LoopbackTargets) -> None:
        # A worker prepares a probe's spec once per version of its row: a change must show at the next run.
        tenant_id, op = operator(api)
        probe = create(op, target=f"{targets.http_url}/ok", spec={"expect": "ok"})
        assert run_stored(tenant_id, probe["id"])[0]["status"] == "success"

        changed = op.patch(f"{API}/probes/{probe['id']}", json={"spec": {"expect": "never in the body"}})
        assert changed.status_code == 200, changed.json

        assert run_stored(tenant_id, probe["id"])[0]["status"] == "failed"

    def test_a_tcp_payload_keeps_its_whitespace_and_speaks_redis(self, api: Api, targets: LoopbackTargets) -> None:
        tenant_id, op = operator(api)
        probe = create(op, protocol="tcp", target=targets.tcp_resp, spec={"body": "PING\r\n", "expect": "+PONG\r\n"})

        assert probe["spec"] == {"body": "PING\r\n", "expect": "+PONG\r\n"}
        assert run_stored(tenant_id, probe["id"])[0]["status"] == "success"

    def test_changing_the_protocol_takes_the_new_protocols_spec(self, api: Api) -> None:
        _, op = operator(api)
        probe = create(op, spec={"method": "POST", "headers": {"A": "b"}})

        kept_http_fields = op.patch(f"{API}/probes/{probe['id']}", json={"protocol": "tcp", "target": "127.0.0.1:9"})
        assert kept_http_fields.status_code == 200, kept_http_fields.json
        assert kept_http_fields.json["spec"] == {"body": None, "expect": None}

        refused = op.patch(f"{API}/probes/{probe['id']}", json={"protocol": "http", "target": UNREACHABLE,
                                                                 "spec": {"body": "x", "record_type": "A"}})
        assert_error(refused, 422, "invalid_input")
        assert get(op, f"/probes/{probe['id']}")["protocol"] == "tcp"  # nothing half-written


class TestProbeGroups:
    def test_crud_with_probe_counts(self, api: Api) -> None:
        _, op = operator(api)
        response = op.post(f"{API}/probe-groups", json={"name": "edge", "description": "front doors"})
        assert response.status_code == 201, response.json
        group = response.json
        assert group == {"id": group["id"], "name": "edge", "description": "front doors", "probe_count": 0,
                         "created_at": group["created_at"]}
        empty = op.post(f"{API}/probe-groups", json={"name": "empty"}).json
        assert empty["description"] == ""
        create(op, group_id=group["id"])
        create(op, group_id=group["id"])
        create(op)

        assert get(op, f"/probe-groups/{group['id']}")["probe_count"] == 2
        assert [(g["name"], g["probe_count"]) for g in get(op, "/probe-groups")["items"]] == [("edge", 2), ("empty", 0)]

        renamed = op.patch(f"{API}/probe-groups/{group['id']}", json={"name": "perimeter"})
        assert renamed.status_code == 200, renamed.json
        assert renamed.json == {**group, "name": "perimeter", "probe_count": 2}
        described = op.patch(f"{API}/probe-groups/{group['id']}", json={"description": ""}).json
        assert described == {**group, "name": "perimeter", "description": "", "probe_count": 2}
        assert get(op, f"/probe-groups/{group['id']}") == described

    def test_deleting_a_group_leaves_its_probes_ungrouped(self, api: Api) -> None:
        _, op = operator(api)
        group = op.post(f"{API}/probe-groups", json={"name": "edge"}).json
        grouped = [create(op, group_id=group["id"])["id"] for _ in range(2)]

        response = op.delete(f"{API}/probe-groups/{group['id']}")

        assert response.status_code == 204 and response.get_data() == b""
        assert_error(op.get(f"{API}/probe-groups/{group['id']}"), 404, "not_found")
        assert_error(op.delete(f"{API}/probe-groups/{group['id']}"), 404, "not_found")
        assert get(op, "/probe-groups") == {"items": []}
        assert [get(op, f"/probes/{pid}")["group_id"] for pid in grouped] == [None, None]
        assert listed_ids(op) == grouped
        assert listed_ids(op, group_id=group["id"]) == []

    def test_duplicate_and_missing_groups(self, api: Api) -> None:
        _, op = operator(api)
        _, stranger = operator(api)
        group = op.post(f"{API}/probe-groups", json={"name": "edge"}).json
        other = op.post(f"{API}/probe-groups", json={"name": "core"}).json

        assert_error(op.post(f"{API}/probe-groups", json={"name": "edge"}), 409, "conflict")
        assert_error(op.patch(f"{API}/probe-groups/{other['id']}", json={"name": "edge"}), 409, "conflict")
        assert get(op, f"/probe-groups/{other['id']}")["name"] == "core"
        assert stranger.post(f"{API}/probe-groups", json={"name": "edge"}).status_code == 201  # per tenant
        assert_error(op.post(f"{API}/probe-groups", json={"name": ""}), 422, "invalid_input", "name")
        assert_error(op.post(f"{API}/probe-groups", json={"name": "x", "colour": "red"}), 422, "invalid_input",
                     "colour")
        missing = group["id"] + 100
        assert_error(op.get(f"{API}/probe-groups/{missing}"), 404, "not_found")
        assert_error(op.patch(f"{API}/probe-groups/{missing}", json={"name": "y"}), 404, "not_found")
        assert_error(op.delete(f"{API}/probe-groups/{missing}"), 404, "not_found")
        assert_error(stranger.get(f"{API}/probe-groups/{group['id']}"), 404, "not_found")
        assert [g["name"] for g in get(op, "/probe-groups")["items"]] == ["edge", "core"]


# --- validation ------------------------------------------------------------------------------

# Invalid creations: the fields sent and the field the error must name.
INVALID_PROBES = [
    pytest.param({"protocol": "gopher"}, "protocol", id="unknown-protocol"),
    pytest.param({"protocol": "tcp", "target": "127.0.0.1"}, "target", id="tcp-without-port"),
    pytest.param({"protocol": "http", "target": "ftp://127.0.0.1/"}, "target", id="http-with-ftp"),
    pytest.param({"interval_seconds": 4}, "interval_seconds", id="interval-below-minimum"),
    pytest.param({"interval_seconds": 30, "timeout_seconds": 30}, "timeout_seconds", id="timeout-not-below"),
    pytest.param({"timeout_seconds": 0}, "timeout_seconds", id="timeout-zero"),
    pytest.param({"conditions": {"expected_status": [700]}}, "conditions.expected_status", id="status-700"),
    pytest.param({"conditions": {"body_regex": "("}}, "conditions.body_regex", id="bad-regex"),
    pytest.param({"conditions": {"colour": "red"}}, "conditions.colour", id="unknown-condition"),
    pytest.param({"spec": {"method": "BREW"}}, "spec.method", id="unknown-method"),
    pytest.param({"method": "GET"}, "method", id="spec-field-outside-spec"),
    pytest.param({"protocol": "tcp", "target": "127.0.0.1:9", "spec": {"method": "GET"}}, "spec.method",
                 id="another-protocols-field"),
    pytest.param({"spec": {"headers": {"Bad Name": "x"}}}, "spec.headers", id="header-name-not-http"),
    pytest.param({"spec": {"headers": {"X-A": "1\r\nX-B: 2"}}}, "spec.headers", id="header-line-break"),
    pytest.param({"spec": "GET"}, "spec", id="spec-not-an-object"),
    pytest.param({"surprise": 1}, "surprise", id="unknown-field"),
    pytest.param({"name": ""}, "name", id="empty-name"),
]
def names_field(response: Any, field: str) -> bool:
    """Some detail names ``field`` (or a part of it, e.g. ``conditions.expected_status.0``)."""
    fields = [detail["field"] or "" for detail in response.json["details"]]
    return any(name == field or name.startswith(f"{field}.") for name in fields)


class TestValidation:
    @pytest.mark.parametrize("fields, field", INVALID_PROBES)
    def test_invalid_probe_is_refused_and_nothing_stored(self, api: Api, fields: dict[str, Any], field: str) -> None:
        _, op = operator(api)
        response = op.post(f"{API}/probes", json=probe_body(**fields))

        assert_error(response, 422, "invalid_input")
        assert response.json["message"].startswith(f"{field}")
        assert stored() == 0 and listed_ids(op) == []

    @pytest.mark.parametrize("fields, field", INVALID_PROBES)
    def test_invalid_field_is_named_in_details(self, api: Api, fields: dict[str, Any], field: str) -> None:
        _, op = operator(api)
        response = op.post(f"{API}/probes", json=probe_body(**fields))
        assert_error(response, 422, "invalid_input")
        assert names_field(response, field), response.json

    @pytest.mark.parametrize("change, field", [
        pytest.param({"interval_seconds": 10}, "timeout_seconds", id="interval-down-to-timeout"),
        pytest.param({"timeout_seconds": 60}, "timeout_seconds", id="timeout-up-to-interval"),
        pytest.param({"protocol": "tcp"}, "target", id="protocol-without-matching-target"),
        pytest.param({"protocol": "gopher"}, "protocol", id="unknown-protocol"),
        pytest.param({"conditions": {"expected_status": [700]}}, "conditions.expected_status", id="status-700"),
        pytest.param({"name": "x", "surprise": 1}, "surprise", id="unknown-field"),
        pytest.param({"interval_seconds": 0}, "interval_seconds", id="interval-zero"),
        pytest.param({"next_run_at": None}, "next_run_at", id="read-only-field"),
        pytest.param({"name": None}, "name", id="null-name"),
    ])
    def test_invalid_patch_changes_nothing(self, api: Api, change: dict[str, Any], field: str) -> None:
        _, op = operator(api)
        probe = create(op, interval_seconds=60, timeout_seconds=10)

        response = op.patch(f"{API}/probes/{probe['id']}", json=change)

        assert_error(response, 422, "invalid_input")
        assert response.json["message"].startswith(field)
        assert get(op, f"/probes/{probe['id']}") == probe

    @pytest.mark.parametrize("change, field", [({"interval_seconds": 10}, "timeout_seconds"),
                                               ({"protocol": "tcp"}, "target")])
    def test_invalid_patch_names_its_field_in_details(self, api: Api, change: dict[str, Any], field: str) -> None:
        _, op = operator(api)
        probe = create(op, interval_seconds=60, timeout_seconds=10)
        assert_error(op.patch(f"{API}/probes/{probe['id']}", json=change), 422, "invalid_input", field)

    @pytest.mark.parametrize("method", ["POST", "PATCH"])
    def test_malformed_json_is_400_and_non_json_is_415(self, api: Api, method: str) -> None:
        _, op = operator(api)
        probe = create(op)
        path = f"{API}/probes" if method == "POST" else f"{API}/probes/{probe['id']}"

        assert_error(op.request(method, path, data='{"name": ', content_type="application/json"), 400, "bad_request")
        assert_error(op.request(method, path, data='{"name": "x"}', content_type="text/plain"), 415)
        assert_error(op.request(method, path, data="name=x", content_type="application/x-www-form-urlencoded"), 415)
        assert_error(op.request(method, path, json=["name"]), 422, "invalid_input")
        assert stored() == 1 and get(op, f"/probes/{probe['id']}") == probe

    def test_missing_body_is_refused(self, api: Api) -> None:
        _, op = operator(api)
        assert_error(op.post(f"{API}/probes"), 422, "invalid_input")
        assert stored() == 0

    def test_duplicate_name_is_409_and_nothing_changes(self, api: Api) -> None:
        _, op = operator(api)
        first = create(op, name="web")
        second = create(op, name="api")

        assert_error(op.post(f"{API}/probes", json=probe_body(name="web")), 409, "conflict")
        assert_error(op.post(f"{API}/probes", json=probe_body(name="  web  ")), 409, "conflict")  # stripped
        assert_error(op.patch(f"{API}/probes/{second['id']}", json={"name": "web"}), 409, "conflict")
        assert listed_ids(op) == [first["id"], second["id"]]
        assert get(op, f"/probes/{second['id']}") == second
        _, stranger = operator(api)
        assert create(stranger, name="web")["name"] == "web"  # names are unique per tenant only

    def test_missing_group_is_404_and_nothing_changes(self, api: Api) -> None:
        _, op = operator(api)
        _, stranger = operator(api)
        foreign = stranger.post(f"{API}/probe-groups", json={"name": "theirs"}).json
        probe = create(op)

        for group_id in (foreign["id"] + 100, foreign["id"]):
            assert_error(op.post(f"{API}/probes", json=probe_body(group_id=group_id)), 404, "not_found")
            assert_error(op.patch(f"{API}/probes/{probe['id']}", json={"group_id": group_id}), 404, "not_found")
        assert stored() == 1 and get(op, f"/probes/{probe['id']}") == probe


# --- listing ---------------------------------------------------------------------------------

class TestListing:
    def test_filters_by_group_protocol_and_enabled(self, api: Api, targets: LoopbackTargets) -> None:
        _, op = operator(api)
        edge = op.post(f"{API}/probe-groups", json={"name": "edge"}).json["id"]
        web = create(op, group_id=edge)["id"]
        tcp = create(op, protocol="tcp", target=targets.tcp_echo, group_id=edge, enabled=False)["id"]
        udp = create(op, protocol="udp", target=targets.udp_echo)["id"]
        off = create(op, enabled=False)["id"]

        assert listed_ids(op) == [web, tcp, udp, off]
        assert listed_ids(op, group_id=edge) == [web, tcp]
        assert listed_ids(op, protocol="http") == [web, off]
        assert listed_ids(op, protocol="tcp") == [tcp]
        assert listed_ids(op, enabled="false") == [tcp, off]
        assert listed_ids(op, enabled="true") == [web, udp]
        assert listed_ids(op, group_id=edge, enabled="true", protocol="http") == [web]
        assert listed_ids(op, protocol="websocket") == []

    def test_filters_by_latest_status(self, api: Api, targets: LoopbackTargets) -> None:
        tenant_id, op = operator(api)
        up = create(op, target=f"{targets.http_url}/ok")["id"]
        down = create(op, protocol="tcp", target=f"127.0.0.1:{free_port()}")["id"]
        erroring = create(op, target=f"{targets.http_url}/status/500")["id"]
        recovered = create(op, target=f"{targets.http_url}/status/503")["id"]
        never = create(op)["id"]
        run_stored(tenant_id, up, down, erroring, recovered)
        op.patch(f"{API}/probes/{recovered}", json={"target": f"{targets.http_url}/ok"})
        run_stored(tenant_id, recovered)

        assert listed_ids(op, status="success") == [up, recovered]
        assert listed_ids(op, status="failed") == [down, erroring]
        assert listed_ids(op, status="never_run") == [never]
        assert listed_ids(op, status="timeout") == []
        page = get(op, "/probes", query_string={"status": "failed", "protocol": "tcp"})
        assert [item["id"] for item in page["items"]] == [down] and page["meta"]["total"] == 1
        assert page["items"][0]["latest"]["status"] == "failed"
        assert_error(op.get(f"{API}/probes", query_string={"status": "sleepy"}), 422, "invalid_input", "status")

    @pytest.mark.parametrize("query", [{}, {"status": "never_run"}, {"protocol": "http"}])
    def test_pages_are_disjoint_and_complete(self, api: Api, query: dict[str, str]) -> None:
        _, op = operator(api)
        created = [create(op)["id"] for _ in range(7)]

        pages = []
        for number in (1, 2, 3, 4):
            page = get(op, "/probes", query_string={**query, "page": number, "per_page": 3})
            assert page["meta"] == {"page": number, "per_page": 3, "total": 7}
            pages.append([item["id"] for item in page["items"]])

        assert [len(ids) for ids in pages] == [3, 3, 1, 0]
        assert [pid for ids in pages for pid in ids] == created

    def test_bad_list_parameters_are_422(self, api: Api) -> None:
        _, op = operator(api)
        for query, field in (({"page": 0}, "page"), ({"per_page": 501}, "per_page"), ({"protocol": "gopher"},
                             "protocol"), ({"group_id": "abc"}, "group_id"), ({"colour": "red"}, "colour")):
            assert_error(op.get(f"{API}/probes", query_string=query), 422, "invalid_input", field)


# --- scheduling ------------------------------------------------------------------------------

class TestScheduling:
    def test_new_interval_moves_the_next_run_onto_the_new_grid_at_once(self, api: Api) -> None:
        _, op = operator(api)
        probes = [create(op, interval_seconds=3600) for _ in range(5)]
        furthest = max(probes, key=lambda probe: ms(probe["next_run_at"]))
        assert ms(furthest["next_run_at"]) > now_ms() + 10_000  # so moving it is visible

        before = now_ms()
        response = op.patch(f"{API}/probes/{furthest['id']}", json={"interval_seconds": 5, "timeout_seconds": 2})
        after = now_ms()

        assert response.status_code == 200, response.json
        moved = response.json
        assert moved["interval_seconds"] == 5
        assert before <= ms(moved["next_run_at"]) < after + 5_000
        assert get(op, f"/probes/{furthest['id']}")["next_run_at"] == moved["next_run_at"]

    def test_disabling_unschedules_and_enabling_schedules_again(self, api: Api) -> None:
        _, op = operator(api)
        probe = create(op, interval_seconds=30)
        path = f"{API}/probes/{probe['id']}"

        assert op.patch(path, json={"enabled": False}).json["next_run_at"] is None
        assert get(op, f"/probes/{probe['id']}")["next_run_at"] is None
        before = now_ms()
        enabled = op.patch(path, json={"enabled": True}).json
        assert before <= ms(enabled["next_run_at"]) < now_ms() + 30_000
        assert get(op, f"/probes/{probe['id']}")["next_run_at"] == enabled["next_run_at"]

        assert op.patch(path, json={"auto_probe": False}).json["next_run_at"] is None
        assert op.patch(path, json={"auto_probe": True}).json["next_run_at"] is not None

    def test_changing_other_fields_keeps_the_slot(self, api: Api) -> None:
        _, op = operator(api)
        probe = create(op, interval_seconds=3600)
        changed = op.patch(f"{API}/probes/{probe['id']}", json={"target": "http://127.0.0.1:9/other",
                                                                  "enabled": True}).json
        assert changed["next_run_at"] == probe["next_run_at"]


# --- run now (real worker) -------------------------------------------------------------------

class TestRunNow:
    def test_run_is_accepted_polled_to_success_and_stored(
        self, pg_api: Api, worker: object, targets: LoopbackTargets
    ) -> None:
        _, op = operator(pg_api)
        probe = create(op, target=f"{targets.http_url}/ok", auto_probe=False)

        task = accepted(op.post(f"{API}/probes/{probe['id']}/run?priority=7"), [probe["id"]], 7)
        status = wait_task(op, task["status_url"])

        assert set(status) == TASK_STATUS_KEYS
        assert status["task_id"] == task["task_id"] and status["exists"] is True
        assert status["state"] == "SUCCESS" and status["successful"] is True
        assert status["result"]["success"] is True and status["result"]["status"] == "success"
        assert status["result"]["probe_id"] == probe["id"] and status["result"]["status_code"] == 200
        results = get(op, f"/probes/{probe['id']}/results")
        [stored] = results["items"]
        assert results["next_cursor"] is None
        assert stored["id"] == status["result"]["result_id"]
        assert stored["status"] == "success" and stored["status_code"] == 200 and stored["probe_type"] == "manual"
        assert stored["run_key"] == f"manual:{task['task_id']}"
        latest = get(op, f"/probes/{probe['id']}")["latest"]
        assert latest["result_id"] == stored["id"] and latest["status"] == "success"

    @pytest.mark.parametrize("kind", ["tcp-refused", "http-500", "udp-silent"])
    def test_a_down_target_is_a_stored_result_not_a_task_failure(
        self, pg_api: Api, worker: object, targets: LoopbackTargets, kind: str
    ) -> None:
        _, op = operator(pg_api)
        fields = {
            "tcp-refused": {"protocol": "tcp", "target": f"127.0.0.1:{free_port()}"},
            "http-500": {"target": f"{targets.http_url}/status/500"},
            "udp-silent": {"protocol": "udp", "target": targets.udp_silent,
                           "spec": {"body": "ping", "expect": "pong"}, "timeout_seconds": 1},
        }[kind]
        probe = create(op, **fields)

        task = accepted(op.post(f"{API}/probes/{probe['id']}/run"), [probe["id"]], None)
        status = wait_task(op, task["status_url"])

        assert status["state"] == "SUCCESS" and status["successful"] is True
        assert status["result"]["success"] is True
        assert status["result"]["status"] in {"failed", "error", "timeout"}
        [stored] = get(op, f"/probes/{probe['id']}/results")["items"]
        assert stored["status"] == status["result"]["status"] and stored["error"]

    def test_batch_run_stores_one_result_per_probe(
        self, pg_api: Api, worker: object, targets: LoopbackTargets
    ) -> None:
        _, op = operator(pg_api)
        ids = [
            create(op, target=f"{targets.http_url}/ok")["id"],
            create(op, target=f"{targets.http_url}/status/500")["id"],
            create(op, protocol="tcp", target=targets.tcp_echo, spec={"body": "hi", "expect": "hi"})["id"],
        ]

        task = accepted(op.post(f"{API}/probes/run", json={"probe_ids": [*ids, ids[0]], "priority": 9}), ids, 9)
        status = wait_task(op, task["status_url"])

        assert status["state"] == "SUCCESS"
        assert status["result"]["total"] == 3
        assert [entry["probe_id"] for entry in status["result"]["results"]] == ids
        statuses = [[r["status"] for r in get(op, f"/probes/{pid}/results")["items"]] for pid in ids]
        assert statuses == [["success"], ["failed"], ["success"]]
        latest = get(op, "/probes/status", query_string={"ids": ids})["items"]
        assert [(entry["probe_id"], entry["status"]) for entry in latest] == list(zip(ids, ["success", "failed",
                                                                                            "success"]))

    def test_a_run_waits_in_the_bucket_of_its_priority(self, api: Api) -> None:
        _, op = operator(api)
        probe = create(op)
        root = api.platform_admin()

        accepted(op.post(f"{API}/probes/{probe['id']}/run?priority=7"), [probe["id"]], 7)
        accepted(op.post(f"{API}/probes/{probe['id']}/run?priority=0"), [probe["id"]], 0)
        accepted(op.post(f"{API}/probes/run", json={"probe_ids": [probe["id"]]}), [probe["id"]], None)

        queues = {entry["queue"]: entry for entry in get(root, "/ops/queues")["items"]}
        waiting = {bucket["priority"]: bucket["waiting"] for bucket in queues["network_probes"]["by_priority"]
                   if bucket["waiting"]}
        assert waiting == {7: 1, 5: 1, 1: 1}

    def test_a_batch_with_a_missing_probe_is_404_and_queues_nothing(self, api: Api) -> None:
        _, op = operator(api)
        _, stranger = operator(api)
        mine = create(op)["id"]
        theirs = create(stranger)["id"]

        for ids in ([mine, mine + theirs + 100], [mine, theirs]):
            response = op.post(f"{API}/probes/run", json={"probe_ids": ids})
            assert_error(response, 404, "not_found")
            assert str(ids[1]) in response.json["message"]
        assert queue_length("network_probes") == 0

    def test_bad_priority_or_batch_is_422_and_queues_nothing(self, api: Api) -> None:
        _, op = operator(api)
        probe = create(op)["id"]

        for priority in (-1, 11, "high"):
            assert_error(op.post(f"{API}/probes/{probe}/run", query_string={"priority": priority}), 422,
                         "invalid_input", "priority")
            assert_error(op.post(f"{API}/probes/run", json={"probe_ids": [probe], "priority": priority}), 422,
                         "invalid_input", "priority")
        assert_error(op.post(f"{API}/probes/run", json={"probe_ids": []}), 422, "invalid_input", "probe_ids")
        assert_error(op.post(f"{API}/probes/run", json={"probe_ids": [probe], "x": 1}), 422, "invalid_input", "x")
        assert_error(op.post(f"{API}/probes/{probe + 100}/run"), 404, "not_found")
        assert queue_length("network_probes") == 0


# --- tasks -----------------------------------------------------------------------------------

class TestTasks:
    def test_a_never_submitted_task_is_404(self, api: Api) -> None:
        _, op = operator(api)
        missing = str(uuid.uuid4())
        assert_error(op.get(f"{API}/tasks/{missing}"), 404, "not_found")
        assert_error(op.post(f"{API}/tasks/{missing}/revoke"), 404, "not_found")

    def test_another_tenants_task_is_404(self, api: Api) -> None:
        _, op = operator(api)
        _, stranger = operator(api)
        probe = create(op)["id"]
        task = accepted(op.post(f"{API}/probes/{probe}/run"), [probe], None)

        assert_error(stranger.get(task["status_url"]), 404, "not_found")
        assert_error(stranger.post(f"{task['status_url']}/revoke"), 404, "not_found")
        queued = get(op, task["status_url"])
        assert queued == {"task_id": task["task_id"], "state": "PENDING", "ready": False, "successful": False,
                          "result": None, "exists": True}

    def test_revoking_a_queued_task(self, api: Api) -> None:
        tenant_id, op = operator(api)
        viewer = api.as_role(tenant_id, "viewer")
        task = op.post(f"{API}/probes/{create(op)['id']}/run").json

        assert_error(viewer.post(f"{task['status_url']}/revoke"), 403, "forbidden")
        response = op.post(f"{task['status_url']}/revoke")

        assert response.status_code == 200, response.json
        assert response.json == {"task_id": task["task_id"], "success": True, "revoked": True, "terminated": False}
        assert get(viewer, task["status_url"])["exists"] is True  # a viewer may still read it

    def test_a_revoked_queued_task_reports_revoked_and_never_runs(
        self, pg_api: Api, worker: object, targets: LoopbackTargets
    ) -> None:
        _, op = operator(pg_api)
        held = create(op, target=f"{targets.http_url}/hold", timeout_seconds=30, auto_probe=False)
        other = create(op, target=f"{targets.http_url}/ok", auto_probe=False)
        targets.reset()
        try:
            busy = op.post(f"{API}/probes/{held['id']}/run").json
            wait_for(lambda: targets.hits("/hold") == 1, what="the worker to be busy")
            queued = op.post(f"{API}/probes/{other['id']}/run").json
            revoked = op.post(f"{queued['status_url']}/revoke")
        finally:
            targets.release_hold()

        assert revoked.status_code == 200 and revoked.json["revoked"] is True
        assert wait_task(op, busy["status_url"])["state"] == "SUCCESS"
        status = wait_task(op, queued["status_url"], state="REVOKED")
        assert status["ready"] is True and status["successful"] is False
        assert get(op, f"/probes/{other['id']}/results")["items"] == []
        assert targets.hits("/ok") == 0

    def test_a_malformed_task_id_is_refused(self, api: Api) -> None:
        _, op = operator(api)
        assert_error(op.get(f"{API}/tasks/not%20a%20task"), 422, "invalid_input", "task_id")


# --- results and statistics ------------------------------------------------------------------

def _results_setup(api: Api) -> tuple[Caller, int, list[int], datetime]:
    """A probe with 7 results a minute apart (two sharing a timestamp), newest last, and one of another probe."""
    tenant_id, op = operator(api)
    probe = create(op)["id"]
    other = create(op)["id"]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    moments = [base + timedelta(minutes=m) for m in (0, 1, 2, 3, 3, 4, 5)]
    ids = add_results(tenant_id, probe, [{"created_at": moment, "response_time_ms": 10.0 + i}
                                          for i, moment in enumerate(moments)])
    add_results(tenant_id, other, [{"created_at": base + timedelta(minutes=2)}])
    return op, probe, ids, base


def _page_through(op: Caller, probe: int, limit: int, **window: str) -> list[int]:
    seen: list[int] = []
    cursor = None
    for _ in range(20):
        query = {"limit": limit, **window, **({"cursor": cursor} if cursor else {})}
        page = get(op, f"/probes/{probe}/results", query_string=query)
        assert len(page["items"]) <= limit
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("paging never ended")


class TestResults:
    def test_newest_first(self, api: Api) -> None:
        op, probe, ids, base = _results_setup(api)
        page = get(op, f"/probes/{probe}/results")
        assert [item["id"] for item in page["items"]] == ids[::-1] and page["next_cursor"] is None
        newest = page["items"][0]
        assert newest["probe_id"] == probe and newest["response_time_ms"] == 16.0
        assert datetime.fromisoformat(newest["created_at"]) == base + timedelta(minutes=5)

    @pytest.mark.parametrize("limit", [1, 2, 3, 7])
    def test_cursor_paging_reaches_every_result_once(self, api: Api, limit: int) -> None:
        op, probe, ids, _ = _results_setup(api)
        assert _page_through(op, probe, limit) == ids[::-1]

    def test_since_is_inclusive_and_until_exclusive(self, api: Api) -> None:
        op, probe, ids, base = _results_setup(api)
        window = {"since": iso(base + timedelta(minutes=1)), "until": iso(base + timedelta(minutes=4))}

        page = get(op, f"/probes/{probe}/results", query_string=window)
        assert [item["id"] for item in page["items"]] == [ids[4], ids[3], ids[2], ids[1]]
        assert _page_through(op, probe, 1, **window) == [ids[4], ids[3], ids[2], ids[1]]
        since_only = get(op, f"/probes/{probe}/results", query_string={"since": iso(base + timedelta(minutes=4))})
        assert [item["id"] for item in since_only["items"]] == [ids[6], ids[5]]
        # A time without a zone is UTC; one with an offset means the same instant.
        naive = (base + timedelta(minutes=4)).replace(tzinfo=None).isoformat()
        shifted = (base + timedelta(minutes=4)).astimezone(timezone(timedelta(hours=8))).isoformat()
        for stamp in (naive, shifted):
            until_only = get(op, f"/probes/{probe}/results", query_string={"until": stamp})
            assert [item["id"] for item in until_only["items"]] == ids[4::-1]

    def test_bad_cursor_or_window_is_422(self, api: Api) -> None:
        op, probe, _, base = _results_setup(api)
        path = f"{API}/probes/{probe}/results"
        for cursor in ("abc", "bm90LWEtY3Vyc29y", "x" * 201):
            assert_error(op.get(path, query_string={"cursor": cursor}), 422, "invalid_input", "cursor")
        stamp = iso(base)
        assert_error(op.get(path, query_string={"since": stamp, "until": stamp}), 422, "invalid_input", "until")
        assert_error(op.get(path, query_string={"since": "yesterday"}), 422, "invalid_input", "since")
        assert_error(op.get(path, query_string={"limit": 0}), 422, "invalid_input", "limit")
        assert_error(op.get(path, query_string={"limit": 501}), 422, "invalid_input", "limit")

    def test_stats_match_the_stored_results(self, api: Api) -> None:
        tenant_id, op = operator(api)
        probe = create(op)["id"]
        now = datetime.now(UTC).replace(microsecond=0)
        # 100 timed results (1..100 ms; every tenth failed), then two timeouts without a time, the newest last.
        rows: list[dict[str, Any]] = [
            {"created_at": now - timedelta(minutes=200 - i), "response_time_ms": float(i),
             "status": "failed" if i % 10 == 0 else "success", "status_code": 500 if i % 10 == 0 else 200}
            for i in range(1, 101)
        ]
        rows += [{"created_at": now - timedelta(minutes=m), "response_time_ms": None, "status": "timeout",
                  "error": "timed out after 10 s"} for m in (50, 10)]
        rows.append({"created_at": now - timedelta(days=2), "response_time_ms": 9999.0, "status": "error"})
        ids = add_results(tenant_id, probe, rows)

        stats = get(op, f"/probes/{probe}/stats")

        assert {k: stats[k] for k in stats if k not in ("since", "until", "last_failure")} == {
            "count": 102, "success_count": 90, "uptime_percent": round(90 / 102 * 100, 3),
            "maintenance_count": 0, "uptime_outside_maintenance_percent": round(90 / 102 * 100, 3),
            "avg_response_time_ms": 50.5, "p50_response_time_ms": 50.0, "p95_response_time_ms": 95.0,
            "p99_response_time_ms": 99.0, "min_response_time_ms": 1.0, "max_response_time_ms": 100.0,
            "percentile_method": "nearest_rank",
        }
        assert stats["last_failure"] == {"result_id": ids[101], "at": iso(now - timedelta(minutes=10)),
                                         "status": "timeout", "status_code": None, "error": "timed out after 10 s"}
        until = datetime.fromisoformat(stats["until"])
        assert until - datetime.fromisoformat(stats["since"]) == timedelta(hours=24)
        assert abs(until - datetime.now(UTC)) < timedelta(minutes=5)

    def test_stats_over_a_chosen_window(self, api: Api) -> None:
        tenant_id, op = operator(api)
        probe = create(op)["id"]
        base = datetime(2024, 1, 1, tzinfo=UTC)
        add_results(tenant_id, probe, [
            {"created_at": base + timedelta(minutes=i), "response_time_ms": float(ms_), "status": status}
            for i, (ms_, status) in enumerate([(40, "success"), (10, "success"), (30, "failed"), (20, "success")])
        ])

        window = {"since": iso(base + timedelta(minutes=1)), "until": iso(base + timedelta(minutes=3))}
        stats = get(op, f"/probes/{probe}/stats", query_string=window)

        assert stats["since"] == window["since"] and stats["until"] == window["until"]
        assert (stats["count"], stats["success_count"], stats["uptime_percent"]) == (2, 1, 50.0)
        assert (stats["avg_response_time_ms"], stats["p50_response_time_ms"], stats["p99_response_time_ms"]) == (
            20.0, 10.0, 30.0)
        assert stats["last_failure"]["status"] == "failed"
        empty = get(op, f"/probes/{probe}/stats")  # the last 24 h: nothing
        assert (empty["count"], empty["uptime_percent"], empty["p95_response_time_ms"], empty["last_failure"]) == (
            0, None, None, None)

    def test_latest_status_of_many_probes(self, api: Api, targets: LoopbackTargets) -> None:
        tenant_id, op = operator(api)
        stranger_tenant, stranger = operator(api)
        up = create(op, target=f"{targets.http_url}/status/503")["id"]
        down = create(op, protocol="tcp", target=f"127.0.0.1:{free_port()}")["id"]
        never = create(op)["id"]
        theirs = create(stranger, target=f"{targets.http_url}/ok")["id"]
        run_stored(tenant_id, up, down)
        op.patch(f"{API}/probes/{up}", json={"target": f"{targets.http_url}/ok"})
        [rerun] = run_stored(tenant_id, up)
        run_stored(stranger_tenant, theirs)

        items = get(op, "/probes/status", query_string={"ids": [down, never, up, theirs, up, 9999]})["items"]

        assert [(item["probe_id"], item["status"]) for item in items] == [(down, "failed"), (up, "success")]
        assert items[1]["result_id"] == rerun["result_id"] and items[1]["status_code"] == 200
        assert items[0]["error"] and items[0]["checked_at"]
        assert get(op, "/probes/status", query_string={"ids": [never]}) == {"items": []}
        assert_error(op.get(f"{API}/probes/status"), 422, "invalid_input", "ids")


# --- roles -----------------------------------------------------------------------------------

class TestRoles:
    def test_a_viewer_reads_but_cannot_change_or_run(self, api: Api) -> None:
        tenant_id, op = operator(api)
        viewer = api.as_role(tenant_id, "viewer")
        group = op.post(f"{API}/probe-groups", json={"name": "edge"}).json
        probe = create(op, group_id=group["id"])
        path = f"{API}/probes/{probe['id']}"

        assert listed_ids(viewer) == [probe["id"]]
        assert get(viewer, f"/probes/{probe['id']}")["name"] == probe["name"]
        assert get(viewer, f"/probe-groups/{group['id']}")["probe_count"] == 1
        assert get(viewer, "/probe-groups")["items"][0]["id"] == group["id"]
        assert get(viewer, f"/probes/{probe['id']}/results")["items"] == []
        assert get(viewer, f"/probes/{probe['id']}/stats")["count"] == 0
        assert get(viewer, "/probes/status", query_string={"ids": [probe["id"]]}) == {"items": []}

        refused = [
            viewer.post(f"{API}/probes", json=probe_body()),
            viewer.patch(path, json={"name": "mine"}),
            viewer.delete(path),
            viewer.post(f"{path}/run"),
            viewer.post(f"{API}/probes/run", json={"probe_ids": [probe["id"]]}),
            viewer.post(f"{API}/probe-groups", json={"name": "mine"}),
            viewer.patch(f"{API}/probe-groups/{group['id']}", json={"name": "mine"}),
            viewer.delete(f"{API}/probe-groups/{group['id']}"),
        ]
        for response in refused:
            assert_error(response, 403, "forbidden")
        assert get(op, f"/probes/{probe['id']}") == probe and stored() == 1
        assert get(op, f"/probe-groups/{group['id']}")["name"] == "edge"
        assert queue_length("network_probes") == 0

    @pytest.mark.parametrize("role", ["operator", "admin"])
    def test_an_operator_or_admin_may_change_and_run(self, api: Api, role: str) -> None:
        tenant_id = make_tenant().id
        caller = api.as_role(tenant_id, role)
        group = caller.post(f"{API}/probe-groups", json={"name": "edge"})
        assert group.status_code == 201
        probe = create(caller, group_id=group.json["id"])
        path = f"{API}/probes/{probe['id']}"

        assert caller.patch(path, json={"name": "renamed"}).status_code == 200
        assert caller.post(f"{path}/run").status_code == 202
        assert caller.post(f"{API}/probes/run", json={"probe_ids": [probe["id"]]}).status_code == 202
        assert caller.patch(f"{API}/probe-groups/{group.json['id']}", json={"name": "core"}).status_code == 200
        assert caller.delete(f"{API}/probe-groups/{group.json['id']}").status_code == 204
        assert caller.delete(path).status_code == 204

    def test_without_credentials_everything_is_401(self, api: Api) -> None:
        _, op = operator(api)
        probe = create(op)
        for method, path in (("GET", "/probes"), ("POST", "/probes"), ("GET", f"/probes/{probe['id']}"),
                             ("POST", f"/probes/{probe['id']}/run"), ("GET", "/probe-groups")):
            response = api.client.open(f"{API}{path}", method=method, json=probe_body())
            assert_error(response, 401, "unauthenticated")
            assert response.headers["WWW-Authenticate"] == "Bearer"
