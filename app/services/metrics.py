"""``GET /metrics``: the probes' latest results and the platform's counts in the Prometheus text format.

Nothing is kept in the process: each scrape builds a fresh ``CollectorRegistry`` holding
one ``Snapshot`` collector, which reads the status cache (Redis, one HMGET per tenant)
and the database (one GROUP BY per table) while prometheus-client renders it. So every
API process answers the same, whatever the number of processes, with no multiprocess
files. Per-probe series use blackbox_exporter's names, so its dashboards and alert rules
apply; series of our own start with ``admin_mit_``.

Scope: a tenant's caller sees that tenant; ``tenant_id=None`` (a platform
administrator's login, or the scrape credential ``metrics.token``) sees every tenant and
the platform-wide series (queues).

Labels: the value series carry tenant, probe, probe_id, group and protocol; the probe's
target (which may be long, and changes when the probe is edited) is on one
``admin_mit_probe_info`` series per probe, to join with ``* on(job, probe_id) group_left(target)``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from collections import defaultdict
from datetime import datetime
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select

from app.core.config import active_settings
from app.extensions import db
from app.models import Alert, AnsibleExecution, Notification, Probe, ProbeGroup, ProbeLease, Tenant
from app.probes.urls import redact
from app.services import operations, pipeline_counters, status_cache

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROBE_LABELS = ("tenant", "probe", "probe_id", "group", "protocol")  # of every per-probe series
# Cache column -> blackbox_exporter's phase name (probe_http_duration_seconds{phase}).
PHASES = (("dns_ms", "resolve"), ("connect_ms", "connect"), ("tls_ms", "tls"),
          ("processing_ms", "processing"), ("transfer_ms", "transfer"))
HTTP_PROTOCOLS = ("http", "https")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def is_scrape_token(credential: str) -> bool:
    """Whether ``credential`` is the configured ``metrics.token`` (never, when it is empty).

    Digests are compared in constant time, so neither the token's content nor its length leaks.
    """
    token = active_settings().metrics.token
    return bool(token) and hmac.compare_digest(_digest(credential), _digest(token))


def render(tenant_id: int | None) -> bytes:
    tenants = _tenants(tenant_id)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(tenant_id, tenants))
    return probe_series(tenant_id, tenants) + generate_latest(registry)


def _scoped(query: Any, column: Any, tenant_id: int | None) -> Any:
    return query if tenant_id is None else query.where(column == tenant_id)


def _tenants(tenant_id: int | None) -> dict[int, str]:
    return dict(db.session.execute(_scoped(select(Tenant.id, Tenant.name), Tenant.id, tenant_id)).all())


@functools.lru_cache(maxsize=65536)
def target_label(target: str) -> str:
    """A target as a label may show it: a URL without credentials or query string (``urls.redact``)."""
    return redact(target) if "://" in target else target


def _epoch(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


# --- per probe -------------------------------------------------------------------------------
# Up to eleven samples per probe: 110,000 for 10,000 probes. prometheus-client's generate_latest
# spends about 20 µs on each (it escapes and sorts every label of every sample), two seconds
# there; these lines are written in the same format with each probe's label set escaped once
# (prometheus-client's escaping of label values; Python's float repr, which Prometheus parses).

PROBE_FAMILIES = (
    ("admin_mit_probe_info", "1 for every enabled probe, with its target (a URL without credentials or "
                             "query string) as a label"),
    ("probe_success", "1 if the probe's latest run succeeded, else 0"),
    ("probe_duration_seconds", "How long the probe's latest run took, in seconds"),
    ("probe_http_duration_seconds", "Duration of the latest HTTP(S) run by phase (0: not reached), in seconds "
                                    "(blackbox_exporter's family)"),
    ("probe_phase_duration_seconds", "Duration of the latest run by phase, the phases it measured, for every "
                                     "protocol, in seconds"),
    ("probe_http_status_code", "Response HTTP status code of the latest HTTP(S) run (0: no response)"),
    ("probe_ssl_earliest_cert_expiry", "Expiry of the certificate the latest run saw, in unix seconds"),
    ("admin_mit_probe_last_run_timestamp_seconds", "When the probe's latest result was stored, in unix seconds"),
)


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _labels(*pairs: tuple[str, str]) -> str:
    return ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs)


def _number(value: float) -> str:
    """``repr`` for a finite float (what Prometheus parses; a tenth of floatToGoString's time), else Go's spelling."""
    return repr(value) if math.isfinite(value) else floatToGoString(value)


def probe_series(tenant_id: int | None, tenants: dict[int, str]) -> bytes:
    """The info series of every enabled probe, and the value series (blackbox names) of those that ran."""
    query = _scoped(
        select(Probe.id, Probe.tenant_id, Probe.name, Probe.protocol, Probe.target, ProbeGroup.name)
        .outerjoin(ProbeGroup, ProbeGroup.id == Probe.group_id)
        .where(Probe.enabled.is_(True)).order_by(Probe.id),
        Probe.tenant_id, tenant_id)
    by_tenant: dict[int, list[Any]] = defaultdict(list)
    for row in db.session.execute(query):
        by_tenant[row[1]].append(row)
    lines: dict[str, list[str]] = {name: [] for name, _ in PROBE_FAMILIES}
    info, success, duration, http_phases, phases, status_code, cert_expiry, checked = lines.values()
    for tenant, rows in by_tenant.items():
        latest = status_cache.latest(tenant, [row[0] for row in rows])
        tenant_name = tenants.get(tenant, str(tenant))
        for probe_id, _, name, protocol, target, group in rows:
            labels = _labels(*zip(PROBE_LABELS, (tenant_name, name, str(probe_id), group or "", protocol)))
            info.append(f'admin_mit_probe_info{{{labels},target="{_label_value(target_label(target))}"}} 1\n')
            entry = latest.get(probe_id)
            if entry is None:
                continue  # never ran: nothing to measure yet
            success.append(f"probe_success{{{labels}}} {1 if entry['status'] == 'success' else 0}\n")
            if (elapsed := entry.get("response_time_ms")) is not None:
                duration.append(f"probe_duration_seconds{{{labels}}} {_number(elapsed / 1000)}\n")
            for column, phase in PHASES:
                if (ms := entry.get(column)) is not None:
                    phases.append(f'probe_phase_duration_seconds{{{labels},phase="{phase}"}} {_number(ms / 1000)}\n')
            if protocol in HTTP_PROTOCOLS:
                for column, phase in PHASES:
                    value = _number((entry.get(column) or 0) / 1000)
                    http_phases.append(f'probe_http_duration_seconds{{{labels},phase="{phase}"}} {value}\n')
                status_code.append(f"probe_http_status_code{{{labels}}} {int(entry.get('status_code') or 0)}\n")
            if (expiry := _epoch(entry.get("cert_expires_at"))) is not None:
                cert_expiry.append(f"probe_ssl_earliest_cert_expiry{{{labels}}} {_number(expiry)}\n")
            if (at := _epoch(entry.get("checked_at"))) is not None:
                checked.append(f"admin_mit_probe_last_run_timestamp_seconds{{{labels}}} {_number(at)}\n")
    out = []
    for name, doc in PROBE_FAMILIES:
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        out.extend(lines[name])
    return "".join(out).encode()


class Snapshot(Collector):
    """The per-tenant and platform families (a few hundred samples), read when collected."""

    def __init__(self, tenant_id: int | None, tenants: dict[int, str]) -> None:
        self.tenant_id = tenant_id
        self.tenants = tenants

    def _scoped(self, query: Any, column: Any) -> Any:
        return _scoped(query, column, self.tenant_id)

    def collect(self) -> Iterator[Metric]:
        tenants = self.tenants
        yield from self._pipeline(tenants)
        yield from self._counts(tenants)
        if self.tenant_id is None:
            yield from self._queues()

    # --- pipeline --------------------------------------------------------------------------

    def _pipeline(self, tenants: dict[int, str]) -> Iterator[Metric]:
        totals = pipeline_counters.totals()
        families = {
            "dispatched": CounterMetricFamily("admin_mit_runs_dispatched", "Probe slots published to workers "
                                              "(re-issues included)", labels=("tenant",)),
            "reissued": CounterMetricFamily("admin_mit_runs_reissued", "Slots published again after their "
                                            "lease expired", labels=("tenant",)),
            "stored": CounterMetricFamily("admin_mit_runs_stored", "Probe results stored", labels=("tenant",)),
            "duplicates": CounterMetricFamily("admin_mit_runs_duplicate", "Runs not stored because they were "
                                              "stored before (a redelivered or re-issued run)", labels=("tenant",)),
        }
        losses = CounterMetricFamily("admin_mit_run_losses", "Scheduled slots that ended without a stored result, "
                                     "by reason (missed, expired, lost, unwritten)", labels=("tenant", "reason"))
        for tenant_id, name in tenants.items():
            counts = totals.get(tenant_id, {})
            for event, family in families.items():
                family.add_metric((name,), counts.get(event, 0))
            for reason in pipeline_counters.REASONS:
                losses.add_metric((name, reason), counts.get(reason, 0))
        yield from (*families.values(), losses)
        in_flight = GaugeMetricFamily("admin_mit_runs_in_flight", "Claimed slots with no stored result yet",
                                      labels=("tenant",))
        leases = dict(db.session.execute(self._scoped(
            select(ProbeLease.tenant_id, func.count()).group_by(ProbeLease.tenant_id), ProbeLease.tenant_id)).all())
        for tenant_id, name in tenants.items():
            in_flight.add_metric((name,), leases.get(tenant_id, 0))
        yield in_flight

    # --- alerts, notifications, playbook runs ------------------------------------------------

    def _counts(self, tenants: dict[int, str]) -> Iterator[Metric]:
        for model, name, doc in (
            (Alert, "admin_mit_alerts", "Alerts by status (firing, acknowledged, suppressed, resolved)"),
            (Notification, "admin_mit_notifications", "Notifications in the outbox by status"),
            (AnsibleExecution, "admin_mit_ansible_executions", "Ansible executions by status"),
        ):
            family = GaugeMetricFamily(name, doc, labels=("tenant", "status"))
            query = self._scoped(select(model.tenant_id, model.status, func.count())
                                 .group_by(model.tenant_id, model.status), model.tenant_id)
            for tenant_id, status, count in db.session.execute(query):
                if tenant_id in tenants:
                    family.add_metric((tenants[tenant_id], status), count)
            yield family

    # --- platform --------------------------------------------------------------------------

    def _queues(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("admin_mit_queue_messages", "Messages waiting in a queue, per priority bucket "
                                    "(the user priority the bucket reads back as)", labels=("queue", "priority"))
        unacked = GaugeMetricFamily("admin_mit_queue_unacked_messages", "Messages delivered to a worker and not "
                                    "acknowledged yet", labels=("queue",))
        for queue in operations.queue_lengths():
            for bucket in queue["by_priority"]:
                waiting.add_metric((queue["queue"], str(bucket["priority"])), bucket["waiting"])
            unacked.add_metric((queue["queue"],), queue["unacked"])
        yield from (waiting, unacked)
