"""GET /metrics: parsed with prometheus-client's own parser, its values checked against the stored results,
on SQLite and PostgreSQL; who sees what (tenant tokens, the scrape credential, platform logins); gzip; the
pipeline totals; the Grafana dashboard's queries."""

from __future__ import annotations

import gzip
import json
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.api.security import ACCESS_ATTR
from app.core.config import active_settings
from app.extensions import db
from app.models import Probe, ProbeResult, ProbeRunLoss
from app.services import dispatch, probe_runs, scheduling
from app.services.result_store import MeasuredRun, store
from tests.api import Api, Caller, assert_error
from tests.conftest import make_probe, make_tenant
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(120)

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "admin-mit-dashboard.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


SCRAPE_TOKEN = "scrape-" + "s3cret" * 6  # 43 characters


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def scrape(caller: Caller) -> tuple[Samples, dict[str, str]]:
    """The samples of ``/metrics`` by (name, labels), and each family's type by name."""
    response = caller.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain" and "Content-Encoding" not in response.headers
    return parse(response.get_data(as_text=True))


@pytest.fixture
def scrape_token(monkeypatch: pytest.MonkeyPatch) -> str:
    """``metrics.token`` set, as ``ADMIN_MIT_METRICS__TOKEN`` would at start-up."""
    monkeypatch.setattr(active_settings().metrics, "token", SCRAPE_TOKEN)
    return SCRAPE_TOKEN


def series(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {key: value for (sample, key), value in samples.items() if sample == name and wanted <= key}


def one(samples: Samples, name: str, **labels: str) -> float:
    found = series(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


def token_for(api: Api, tenant_id: int, role: str = "viewer") -> Caller:
    """An API token of the tenant, as Prometheus would send it."""
    admin = api.as_role(tenant_id, "admin")
    secret = admin.post("/api/v1/tokens", json={"name": f"prometheus-{uuid.uuid4().hex[:4]}", "role": role}).json
    return Caller(api.client, secret["token"], tenant_id=tenant_id)


def stored_row(probe: Probe, status: str = "success", **fields: Any) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    row = {"tenant_id": probe.tenant_id, "probe_id": probe.id, "run_key": f"manual:{uuid.uuid4().hex}",
           "probe_type": "manual", "status": status, "response_time_ms": None, "status_code": None,
           "error": None if status == "success" else "connection refused", "dns_ms": None, "connect_ms": None,
           "tls_ms": None, "processing_ms": None, "transfer_ms": None, "cert_expires_at": None, "bytes_read": 0,
           "details": None, "scheduled_for": None, "started_at": now, "created_at": now}
    return {**row, **fields}


def latest_result(probe_id: int) -> ProbeResult:
    db.session.expire_all()
    return db.session.scalars(select(ProbeResult).where(ProbeResult.probe_id == probe_id)
                              .order_by(ProbeResult.id.desc()).limit(1)).one()


# --- values ----------------------------------------------------------------------------------

def test_each_probes_series_are_its_latest_stored_result(api: Api, targets: LoopbackTargets) -> None:
    tenant = make_tenant()
    group = api.as_role(tenant.id, "admin").post("/api/v1/probe-groups", json={"name": "edge"}).json
    https = make_probe(tenant.id, targets.https_url + "/ok", protocol="https", group_id=group["id"],
                       spec={"verify_tls": False})
    failing = make_probe(tenant.id, targets.http_url + "/status/503")
    tcp = make_probe(tenant.id, targets.tcp_echo, protocol="tcp")
    never_run = make_probe(tenant.id, targets.http_url + "/ok")
    # Real runs against the loopback targets, stored through the workers' path.
    probe_runs.execute_runs(tenant.id, probe_runs.run_requests([https.id, failing.id, tcp.id], "manual", "m1"),
                            "manual")

    samples, types = scrape(token_for(api, tenant.id))

    for probe in (https, failing, tcp):
        result = latest_result(probe.id)
        labels = {"tenant": tenant.name, "probe": probe.name, "probe_id": str(probe.id)}
        assert one(samples, "probe_success", **labels) == (1.0 if result.status == "success" else 0.0)
        assert one(samples, "probe_duration_seconds", **labels) == pytest.approx(result.response_time_ms / 1000)
        assert one(samples, "admin_mit_probe_last_run_timestamp_seconds", **labels) == pytest.approx(
            result.created_at.timestamp())
        measured = {"resolve": result.dns_ms, "connect": result.connect_ms, "tls": result.tls_ms,
                    "processing": result.processing_ms, "transfer": result.transfer_ms}
        http_phases = {dict(key)["phase"]: value for key, value in
                       series(samples, "probe_http_duration_seconds", **labels).items()}
        phases = {dict(key)["phase"]: value for key, value in
                  series(samples, "probe_phase_duration_seconds", **labels).items()}
        # Every protocol: the phases it measured, under one name.
        assert phases == {phase: pytest.approx(ms / 1000) for phase, ms in measured.items() if ms is not None}
        assert phases["connect"] > 0
        if probe.protocol in ("http", "https"):  # and blackbox_exporter's family: all five phases, 0 if not reached
            assert http_phases == {phase: pytest.approx((ms or 0) / 1000) for phase, ms in measured.items()}
            assert one(samples, "probe_http_status_code", **labels) == result.status_code
        else:
            assert not http_phases and not series(samples, "probe_http_status_code", **labels)

    assert one(samples, "probe_success", probe=failing.name) == 0.0
    assert one(samples, "probe_http_status_code", probe=failing.name) == 503
    https_result = latest_result(https.id)
    assert https_result.status == "success" and https_result.tls_ms is not None
    assert one(samples, "probe_ssl_earliest_cert_expiry", probe=https.name) == pytest.approx(
        targets.cert_not_after.timestamp()) == pytest.approx(https_result.cert_expires_at.timestamp())
    assert not series(samples, "probe_ssl_earliest_cert_expiry", probe=tcp.name)
    # Labels: the group's name and the protocol on every value series; the target on the probe's info series
    # (every enabled probe has one); a probe that never ran has no value series.
    expected = {"tenant": tenant.name, "probe": https.name, "probe_id": str(https.id), "group": "edge",
                "protocol": "https"}
    (key,) = series(samples, "probe_success", probe=https.name)
    assert dict(key) == expected
    assert all(dict(key) == {**expected, "phase": dict(key)["phase"]}
               for key in series(samples, "probe_http_duration_seconds", probe=https.name))
    assert series(samples, "admin_mit_probe_info", probe=https.name) == {
        frozenset({**expected, "target": targets.https_url + "/ok"}.items()): 1.0}
    assert dict(next(iter(series(samples, "probe_success", probe=tcp.name))))["group"] == ""
    assert not series(samples, "probe_success", probe=never_run.name)
    assert one(samples, "admin_mit_probe_info", probe=never_run.name, target=targets.http_url + "/ok") == 1
    assert not any("target" in dict(key) for (name, key) in samples if name != "admin_mit_probe_info")
    assert types["admin_mit_probe_info"] == "gauge"
    assert types["probe_success"] == "gauge" and types["admin_mit_runs_stored"] == "counter"


def test_a_newer_result_replaces_the_values_and_a_disabled_probe_is_not_exported(api: Api) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "https://127.0.0.1:9/health", protocol="https")
    paused = make_probe(tenant.id, "http://127.0.0.1:9/paused")
    expiry = datetime(2031, 5, 1, 12, 0, tzinfo=timezone.utc)
    store([MeasuredRun(row=stored_row(probe, response_time_ms=80.0, status_code=200, dns_ms=1.0, connect_ms=2.0,
                                      tls_ms=30.0, processing_ms=40.0, transfer_ms=7.0, cert_expires_at=expiry))])
    store([MeasuredRun(row=stored_row(paused, response_time_ms=5.0, status_code=200))])
    caller = token_for(api, tenant.id)
    first, _ = scrape(caller)
    assert one(first, "probe_success", probe=probe.name) == 1.0
    assert one(first, "probe_http_duration_seconds", probe=probe.name, phase="tls") == pytest.approx(0.030)
    assert one(first, "probe_ssl_earliest_cert_expiry", probe=probe.name) == expiry.timestamp()

    store([MeasuredRun(row=stored_row(probe, "timeout", error="timed out after 5.0 s"))])
    api.as_role(tenant.id, "admin").patch(f"/api/v1/probes/{paused.id}", json={"enabled": False})
    second, _ = scrape(caller)

    assert one(second, "probe_success", probe=probe.name) == 0.0
    assert one(second, "probe_http_status_code", probe=probe.name) == 0  # no response, as blackbox_exporter says
    assert not series(second, "probe_duration_seconds", probe=probe.name)  # a timeout measured no duration
    assert set(series(second, "probe_http_duration_seconds", probe=probe.name).values()) == {0}
    assert not series(second, "probe_ssl_earliest_cert_expiry", probe=probe.name)
    assert not series(second, "probe_success", probe=paused.name)


def test_credentials_in_a_target_never_reach_the_output(api: Api) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "https://scraper:hunter2-secret@127.0.0.1:9/status?token=abc123tok&page=2",
                       protocol="https", name='edge "eu" \\ 1')
    store([MeasuredRun(row=stored_row(probe, "error"))])
    response = token_for(api, tenant.id).get("/metrics")
    body = response.get_data(as_text=True)
    assert "hunter2-secret" not in body and "abc123tok" not in body and "scraper" not in body
    samples, _ = scrape(token_for(api, tenant.id))
    (key,) = series(samples, "admin_mit_probe_info", probe=probe.name)
    assert dict(key)["target"] == "https://127.0.0.1:9/status"
    assert dict(key)["probe"] == 'edge "eu" \\ 1'  # escaped in the text, read back as it was


# --- who sees what ----------------------------------------------------------------------------

def test_a_tenant_sees_only_its_own_probes_and_a_platform_admin_sees_every_tenant(api: Api) -> None:
    tenant_a, tenant_b = make_tenant(), make_tenant()
    probe_a = make_probe(tenant_a.id, "http://127.0.0.1:9/a")
    probe_b = make_probe(tenant_b.id, "http://127.0.0.1:9/b", name="secret-b-probe")
    store([MeasuredRun(row=stored_row(probe_a)), MeasuredRun(row=stored_row(probe_b))])

    as_a = token_for(api, tenant_a.id)
    body = as_a.get("/metrics").get_data(as_text=True)
    assert "secret-b-probe" not in body and tenant_b.name not in body
    samples, types = scrape(as_a)
    assert {dict(key)["probe_id"] for key in series(samples, "probe_success")} == {str(probe_a.id)}
    assert {dict(key)["tenant"] for (name, key) in samples if "tenant" in dict(key)} == {tenant_a.name}
    assert "admin_mit_queue_messages" not in types  # platform-wide: not a tenant's to see

    # A password login of a tenant member sees the same as the token.
    viewer, _ = scrape(api.as_role(tenant_a.id, "viewer"))
    assert set(series(viewer, "probe_success")) == set(series(samples, "probe_success"))

    everything, types = scrape(api.platform_admin())
    assert {dict(key)["probe_id"] for key in series(everything, "probe_success")} == {str(probe_a.id),
                                                                                        str(probe_b.id)}
    assert one(everything, "admin_mit_runs_stored_total", tenant=tenant_b.name) == 1
    assert types["admin_mit_queue_messages"] == "gauge"


def test_no_or_a_bad_or_a_revoked_token_is_refused_with_the_error_shape(api: Api) -> None:
    assert_error(api.client.get("/metrics"), 401)
    assert_error(api.client.get("/metrics", headers={"Authorization": "Bearer amt_not-a-token"}), 401)
    tenant = make_tenant()
    admin = api.as_role(tenant.id, "admin")
    created = admin.post("/api/v1/tokens", json={"name": "prometheus", "role": "viewer"}).json
    prometheus = Caller(api.client, created["token"], tenant_id=tenant.id)
    assert prometheus.get("/metrics").status_code == 200
    assert admin.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    assert_error(prometheus.get("/metrics"), 401)


def test_the_scrape_credential_sees_every_tenant_and_the_queues(api: Api, scrape_token: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    tenant_a, tenant_b = make_tenant(), make_tenant()
    probe_a = make_probe(tenant_a.id, "http://127.0.0.1:9/a")
    probe_b = make_probe(tenant_b.id, "http://127.0.0.1:9/b")
    store([MeasuredRun(row=stored_row(probe_a)), MeasuredRun(row=stored_row(probe_b, "failed"))])
    caplog.set_level(logging.DEBUG)

    prometheus = Caller(api.client, scrape_token)
    samples, types = scrape(prometheus)

    assert one(samples, "probe_success", tenant=tenant_a.name, probe_id=str(probe_a.id)) == 1
    assert one(samples, "probe_success", tenant=tenant_b.name, probe_id=str(probe_b.id)) == 0
    assert one(samples, "admin_mit_runs_stored_total", tenant=tenant_b.name) == 1
    assert types["admin_mit_queue_messages"] == "gauge" and "admin_mit_queue_unacked_messages" in types
    assert set(samples) == set(scrape(api.platform_admin())[0])  # what a platform administrator's login sees
    # A tenant's API token keeps seeing its tenant only, with the credential configured.
    tenant_only, types = scrape(token_for(api, tenant_a.id))
    assert {dict(key)["probe_id"] for key in series(tenant_only, "probe_success")} == {str(probe_a.id)}
    assert "admin_mit_queue_messages" not in types
    # Anything else is refused, the token is never echoed, and nothing logged it.
    for wrong in (scrape_token[:-1], scrape_token + "x", scrape_token.upper()):
        assert_error(Caller(api.client, wrong).get("/metrics"), 401)
    response = prometheus.get("/metrics")
    assert scrape_token not in response.get_data(as_text=True) + str(response.headers)
    assert scrape_token not in caplog.text


def test_with_the_scrape_credential_off_no_bearer_value_passes_as_it(api: Api) -> None:
    assert active_settings().metrics.token == ""
    for credential in ("", " ", SCRAPE_TOKEN):
        assert_error(api.client.get("/metrics", headers={"Authorization": f"Bearer {credential}"}), 401)


def _fill(template: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda match: "no-such-page" if match[1] == "slug" else "1", template)


def test_the_scrape_credential_opens_no_other_route(app: Flask, api: Api, scrape_token: str) -> None:
    """Every operation of the API but the public ones (login, health, public pages) answers it with 401."""
    tenant = make_tenant()
    make_probe(tenant.id, "http://127.0.0.1:9/a")
    checked = 0
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        kind = getattr(view, ACCESS_ATTR, ("none",))[0]  # "none": not an operation (the OpenAPI document, UIs)
        if rule.endpoint == "metrics.scrape" or kind in ("public", "none") or not rule.rule.startswith("/api/"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = api.client.open(_fill(rule.rule), method=method, json={},
                                       headers={"Authorization": f"Bearer {scrape_token}"})
            assert response.status_code == 401, (method, rule.rule, response.status_code)
            assert_error(response, 401)
            checked += 1
    assert checked > 100
    assert db.session.scalar(select(func.count()).select_from(Probe)) == 1  # nothing was written


def test_a_gzip_request_gets_a_gzip_body_with_the_same_families(api: Api) -> None:
    tenant = make_tenant()
    for index in range(30):
        probe = make_probe(tenant.id, f"https://127.0.0.1:9/{index}", protocol="https")
        store([MeasuredRun(row=stored_row(probe, response_time_ms=5.0, status_code=200, connect_ms=1.0))])
    caller = token_for(api, tenant.id)
    plain = caller.get("/metrics")
    packed = caller.get("/metrics", headers={"Accept-Encoding": "gzip, deflate"})

    assert "Content-Encoding" not in plain.headers
    assert packed.status_code == 200 and packed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed.headers["Vary"] and "Accept-Encoding" in plain.headers["Vary"]
    assert packed.mimetype == "text/plain" and int(packed.headers["Content-Length"]) == len(packed.get_data())
    assert len(packed.get_data()) < len(plain.get_data()) / 3
    unpacked = gzip.decompress(packed.get_data()).decode()
    assert parse(unpacked) == parse(plain.get_data(as_text=True))
    assert len(series(parse(unpacked)[0], "probe_success")) == 30
    refused = caller.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers and parse(refused.get_data(as_text=True))[1]


# --- pipeline, alerts, queues -------------------------------------------------------------------

def test_the_pipeline_totals_move_with_dispatches_stores_duplicates_and_losses(api: Api) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, "http://127.0.0.1:9/due", interval_seconds=60)
    caller = token_for(api, tenant.id)
    root = api.platform_admin()

    def totals() -> dict[str, float]:
        samples, _ = scrape(caller)
        found = {name.removeprefix("admin_mit_runs_").removesuffix("_total"): one(samples, name, tenant=tenant.name)
                 for name in ("admin_mit_runs_dispatched_total", "admin_mit_runs_reissued_total",
                              "admin_mit_runs_stored_total", "admin_mit_runs_duplicate_total",
                              "admin_mit_runs_in_flight")}
        for reason in ("missed", "expired", "lost", "unwritten"):
            found[reason] = one(samples, "admin_mit_run_losses_total", tenant=tenant.name, reason=reason)
        return found

    assert set(totals().values()) == {0}
    run = MeasuredRun(row=stored_row(probe))
    store([run])
    store([run])  # redelivered: stored once, counted as a duplicate
    assert totals() == {**dict.fromkeys(totals(), 0), "stored": 1, "duplicate": 1}

    # Due now: the dispatcher claims the slot and publishes it (no worker runs it here).
    now = scheduling.now_ms()
    db.session.get(Probe, probe.id).next_run_at = now
    db.session.commit()
    assert dispatch.dispatch_due(now).claimed == 1
    after_dispatch = totals()
    assert after_dispatch["dispatched"] == 1 and after_dispatch["in_flight"] == 1
    queued, _ = scrape(root)
    assert sum(series(queued, "admin_mit_queue_messages", queue="network_probes").values()) == 1

    # Three intervals later nobody started it: the slot expired, and the slots since were missed.
    later = now + 3 * 60_000 + 30_000
    report = dispatch.dispatch_due(later)
    final = totals()
    assert final["expired"] == 1 and final["lost"] == final["unwritten"] == 0
    recorded = dict(db.session.execute(select(ProbeRunLoss.reason, func.sum(ProbeRunLoss.slots))
                                       .where(ProbeRunLoss.tenant_id == tenant.id).group_by(ProbeRunLoss.reason)).all())
    assert recorded == {"expired": 1, "missed": final["missed"]} and final["missed"] >= 1
    assert final["dispatched"] == 1 + report.claimed + report.reissued == 2
    assert final["stored"] == 1 and final["duplicate"] == 1

    # Deleting the probe deletes its loss rows; the totals, being counters, keep what happened.
    assert api.as_role(tenant.id, "admin").delete(f"/api/v1/probes/{probe.id}").status_code == 204
    assert not db.session.scalar(select(func.count()).select_from(ProbeRunLoss)
                                 .where(ProbeRunLoss.tenant_id == tenant.id))
    assert totals() == {**final, "in_flight": 0}


def test_alerts_notifications_and_executions_are_counted_by_status(api: Api) -> None:
    from app.services import alert_evaluation

    tenant = make_tenant()
    admin = api.as_role(tenant.id, "admin")
    probe = make_probe(tenant.id, "http://127.0.0.1:9/down")
    channel = admin.post("/api/v1/notification-channels", json={
        "name": "hook", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}}).json
    rule = admin.post("/api/v1/alert-rules", json={"name": "down", "kind": "down", "probe_id": probe.id,
                                                   "threshold": 1, "channel_ids": [channel["id"]]}).json
    assert rule["id"]
    (result_id,) = store([MeasuredRun(row=stored_row(probe, "error"))]).values()
    assert alert_evaluation.evaluate([(probe.id, result_id)]).fired

    samples, _ = scrape(token_for(api, tenant.id))
    assert one(samples, "admin_mit_alerts", tenant=tenant.name, status="firing") == 1
    assert sum(series(samples, "admin_mit_notifications", tenant=tenant.name).values()) >= 1
    assert not series(samples, "admin_mit_ansible_executions", tenant=tenant.name)


# --- the Grafana dashboard --------------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "time", "clamp_min", "clamp_max",
    "avg_over_time", "sum_over_time", "max_over_time", "min_over_time", "topk", "bottomk", "label_replace",
    "vector", "scalar", "abs", "round", "sort", "sort_desc", "absent", "changes", "resets", "count_over_time",
    "histogram_quantile", "le", "inf", "nan",
}


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # dashboard variables
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {name for name in names if name.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?", name)}


def _expressions(node: Any) -> list[str]:
    """Every panel query (``expr``) in the dashboard, at any depth."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [expr for value in node.values() for expr in _expressions(value)]
    if isinstance(node, list):
        return [expr for value in node for expr in _expressions(value)]
    return []


def test_every_metric_the_grafana_dashboard_queries_is_in_the_output(api: Api) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    tenant = make_tenant()
    probe = make_probe(tenant.id, "https://127.0.0.1:9/", protocol="https")
    store([MeasuredRun(row=stored_row(probe, response_time_ms=5.0, status_code=200, connect_ms=1.0,
                                      cert_expires_at=datetime.now(timezone.utc) + timedelta(days=20)))])
    samples, types = scrape(api.platform_admin())
    exported = {name for name, _ in samples} | set(types)

    expressions = _expressions(dashboard)
    assert len(expressions) >= 7
    used = set().union(*(_metric_names(expr) for expr in expressions))
    assert used, expressions
    assert used <= exported, sorted(used - exported)
    assert {"probe_success", "probe_phase_duration_seconds", "probe_ssl_earliest_cert_expiry",
            "admin_mit_run_losses_total", "admin_mit_queue_messages", "admin_mit_alerts", "admin_mit_probe_info"} <= used
    # The target comes from the info series, joined on the labels both carry.
    for expr in expressions:
        for labels in re.findall(r"\bon\(([^)]*)\)\s*group_left\(target\) admin_mit_probe_info", expr):
            joined = {label.strip() for label in labels.split(",")} - {"job"}  # job: Prometheus's target label
            assert joined and all(joined <= set(dict(key)) for key in series(samples, "admin_mit_probe_info"))
    assert sum("group_left(target) admin_mit_probe_info" in expr for expr in expressions) == 4
    # The variables' label_values(metric, label): the metric is exported and carries the label.
    variables = dashboard["templating"]["list"]
    assert {variable["name"] for variable in variables} == {"tenant", "group", "probe"}
    for variable in variables:
        metric, label = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?,\s*(\w+)\)",
                                     variable["query"]["query"]).groups()
        assert series(samples, metric) and all(label in dict(key) for key in series(samples, metric))


def test_the_metrics_operation_is_documented_as_text(app: Flask) -> None:
    operation = app.api_doc["paths"]["/metrics"]["get"]
    assert "text/plain" in operation["responses"]["200"]["content"]
    assert operation["security"] == [{"bearerAuth": []}]
