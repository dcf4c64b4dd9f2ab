#!/usr/bin/env python
"""End-to-end alert latency: from the stored result that crosses a rule's threshold to the
notification's arrival at a webhook, with and without the channel's rate limit in the way.

Setup: ``--probes`` HTTP auto probes at ``--interval`` on the loopback targets of
``bench/fleet_targets.py``; ``--fail-share`` of them check a *switchable* target
(``/switch/…``), the others ``/ok``. One tenant-wide ``down`` rule (``--threshold``
failures in a row open the alert, one success resolves it, resolved notifications on)
notifies one webhook channel, signed, pointing at a receiver inside this process
(``bench/webhook_receiver.py``) that records each request's arrival time and JSON body.
The deployment is the recommended one: one ``celery worker -Q network_probes`` (default
prefork pool), one ``celery worker -Q alerts`` and one ``celery beat`` (its
``alert-housekeeping`` entry retries, sends what waited for the rate window, every 5 s),
on a scratch PostgreSQL database and Redis database ``--redis-db``.

Each ``--rate-limit`` is one phase, on a fresh channel of that limit per
``--rate-window`` seconds (the rule is pointed at it): every switchable target goes down
at one moment (``GET /control/switch?down=1``); once every one of their alerts has been
notified they come back up, and the phase ends when every resolution has been notified.

For each alert and event, the *crossing result* is found by feeding the probe's stored
results, in order, to the rule engine (``app.alerting.rules.advance``): the failed result
that completes the threshold (firing), the first successful one after it (resolved). Its
``probe_results.created_at`` — taken by the worker when the run finished, before the
micro-batched write — is the start; the end is the arrival at the receiver of the message
that carried the alert: its own notification, or the summary it was folded into
(``notifications.summary_id``; a summary body lists at most 50 alerts, so the outbox row is
what links the others). The body is checked against the alert (``data.alert.id``,
``data.probe.id``, the summary's ``data.alerts[].id``). Alerts not notified within
``--phase-timeout``, notification ids received twice and alerts carried by two messages are
counted; the exit status is 1 if there are any.

    .venv/bin/python bench/alert_latency.py                     # about 3.5 minutes
    .venv/bin/python bench/alert_latency.py --rate-limit 1000 --threshold 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from bench_env import BenchError  # bench/ is on sys.path when run as a script
from probe_throughput import (READY_TIMEOUT, Children, anchor_schedule, log_errors, percentile, start_bench_app,
                              start_fleet_targets, wait_for_workers)
from webhook_receiver import Arrival, WebhookReceiver

BEAT_START_SECONDS = 5.0  # the first slot comes this long after the beat is started
POLL_SECONDS = 0.5
QUIET_SECONDS = 6.0  # after the last phase: what a late duplicate or a housekeeping pass would still send
WORKER_ARGS = {  # celery -A celery_worker.celery worker …
    "probes": ["-Q", "network_probes", "-n", "probes@%h"],
    "alerts": ["-Q", "alerts", "-n", "alerts@%h"],
}
DISCARDED = "Discarding revoked task: "  # what a worker logs (at info) for an expired message


# --- options ---------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the time from the stored result that crosses an alert rule's threshold to the "
                    "notification's arrival at a loopback webhook, for a share of a fleet failing at once, and "
                    "the same for recovery. Exit status: 0 ok, 1 an alert was not notified or notified twice, "
                    "2 the benchmark could not run.")
    parser.add_argument("--probes", type=int, default=1000, help="HTTP auto probes (default: %(default)s)")
    parser.add_argument("--interval", type=int, default=10,
                        help="interval of every probe in seconds, at least 5 (default: %(default)s)")
    parser.add_argument("--fail-share", type=float, default=0.1,
                        help="share of the probes whose target goes down and up together (default: %(default)s)")
    parser.add_argument("--threshold", type=int, default=2,
                        help="failures in a row that open an alert (the rule's threshold = window; "
                             "default: %(default)s)")
    parser.add_argument("--rate-limit", type=int, action="append", metavar="N",
                        help="one phase per value: the channel's sends per --rate-window "
                             "(default: 1000, then 20 — the channel default)")
    parser.add_argument("--rate-window", type=int, default=60,
                        help="the channel's rate window in seconds (default: %(default)s, the channel default)")
    parser.add_argument("--phase-timeout", type=float, default=240,
                        help="seconds to wait for the notifications of one switch (default: %(default)s)")
    parser.add_argument("--database", metavar="URL|sqlite",
                        help="SQLAlchemy URL to use as is, or 'sqlite' for a temporary SQLite file "
                             "(default: a scratch PostgreSQL database, dropped at the end)")
    parser.add_argument("--redis-db", type=int, default=9,
                        help="Redis database for broker and cache, flushed at start (default: %(default)s)")
    parser.add_argument("--log-level", choices=("warning", "info"), default="warning",
                        help="the workers' and beat's --loglevel; with info, task messages discarded "
                             "because they expired in the queue are counted (default: %(default)s)")
    args = parser.parse_args(argv)
    args.rate_limit = args.rate_limit or [1000, 20]
    if args.probes < 10 or args.interval < 5:
        parser.error("--probes must be at least 10 and --interval at least 5")
    if not 0 < args.fail_share <= 0.5:
        parser.error("--fail-share must be in (0, 0.5]")
    if not 1 <= args.threshold <= 100:
        parser.error("--threshold must be 1..100")
    if any(not 1 <= limit <= 10000 for limit in args.rate_limit) or not 1 <= args.rate_window <= 86400:
        parser.error("--rate-limit must be 1..10000 and --rate-window 1..86400 (the channel's bounds)")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db must be 0..15")
    return args


# --- setup -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    tenant_id: int
    rule_id: int
    switched: frozenset[int]  # probe ids whose target goes down and up
    control_url: str
    signing_key: str
    receiver_url: str


def create_setup(args: argparse.Namespace, http_port: int, receiver_url: str, signing_key: str) -> Setup:
    """One tenant, its probes and one ``down`` rule (channels come per phase)."""
    from app.services.alert_rules import create_rule
    from app.services.probes import create_probe
    from app.services.tenants import create_tenant

    tenant = create_tenant(f"alert-bench-{uuid.uuid4().hex[:8]}")
    failing = round(args.probes * args.fail_share)
    switched = set()
    for index in range(args.probes):
        switch = index * 7919 % args.probes < failing  # spread over the fleet (7919 is prime)
        path = f"/switch/{index}" if switch else "/ok"
        probe = create_probe(tenant.id, {
            "name": f"alert-bench-{'switch' if switch else 'ok'}-{index:05d}", "protocol": "http",
            "target": f"http://127.0.0.1:{http_port}{path}", "interval_seconds": args.interval,
            "timeout_seconds": min(5.0, args.interval / 2)})
        if switch:
            switched.add(probe.id)
    rule = create_rule(tenant.id, {"name": "fleet down", "kind": "down", "threshold": args.threshold,
                                   "recovery": 1, "send_resolved": True})
    return Setup(tenant.id, rule.id, frozenset(switched), f"http://127.0.0.1:{http_port}/control/switch",
                 signing_key, receiver_url)


def use_channel(setup: Setup, name: str, rate_limit: int, rate_window: int) -> int:
    """A fresh webhook channel (its rate window unused) that the rule now notifies alone."""
    from app.services.alert_rules import update_rule
    from app.services.notification_channels import create_channel

    channel = create_channel(setup.tenant_id, {
        "name": name, "kind": "webhook", "settings": {"url": setup.receiver_url},
        "secrets": {"signing_key": setup.signing_key}, "rate_limit": rate_limit,
        "rate_window_seconds": rate_window})
    update_rule(setup.tenant_id, setup.rule_id, {"channel_ids": [channel.id]})
    return channel.id


def switch(setup: Setup, down: bool) -> float:
    """Turn the switchable targets down or up; the target process's time of the switch."""
    with urllib.request.urlopen(f"{setup.control_url}?down={int(down)}", timeout=5) as answer:
        return float(json.loads(answer.read())["at"])


# --- waiting on the database and the receiver ------------------------------------------------

def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp()


def _read(statement: Any) -> list[Any]:
    """Rows of a read, with no transaction left open."""
    from app.extensions import db

    try:
        return list(db.session.execute(statement).all())
    finally:
        db.session.rollback()


def wait_until_evaluated(setup: Setup, probes: int, not_before: float, children: Children) -> None:
    """Until every probe's results have been evaluated at least once (its rule state exists)."""
    from sqlalchemy import func, select

    from app.models import AlertState

    deadline = time.monotonic() + READY_TIMEOUT + not_before - time.time()
    while time.monotonic() < deadline:
        children.check_alive()
        count = _read(select(func.count()).select_from(AlertState).where(AlertState.tenant_id == setup.tenant_id))
        if time.time() >= not_before and count[0][0] >= probes:
            return
        time.sleep(POLL_SECONDS)
    raise BenchError("the probes' first results were not evaluated in time (is the alerts worker consuming?)")


def _message_of(status: str, notification_id: str, summary_id: str | None) -> str | None:
    """The id of the message that carries a notification: its own, or its summary's."""
    if status == "sent":
        return notification_id
    if status == "summarized":
        return summary_id
    return None


def wait_for_notified(setup: Setup, event: str, alert_ids: set[int] | None, since: float, expected: int,
                      receiver: WebhookReceiver, children: Children, timeout: float) -> set[int]:
    """Until ``expected`` alerts (opened after ``since``, or ``alert_ids``) have their ``event``
    notification received, or ``timeout``; returns the alerts of the phase."""
    from sqlalchemy import select

    from app.models import Alert, Notification

    deadline = time.monotonic() + timeout
    found: set[int] = set()
    while True:
        children.check_alive()
        if alert_ids is None:
            rows = _read(select(Alert.id, Alert.opened_at).where(Alert.tenant_id == setup.tenant_id))
            found = {row.id for row in rows if _epoch(row.opened_at) >= since}
        else:
            found = alert_ids
        arrived = {arrival.notification_id for arrival in receiver.arrivals()}
        told = set()
        if found:
            for row in _read(select(Notification.alert_id, Notification.id, Notification.status,
                                    Notification.summary_id)
                             .where(Notification.alert_id.in_(sorted(found)), Notification.event == event)):
                if _message_of(row.status, row.id, row.summary_id) in arrived:
                    told.add(row.alert_id)
        if len(found) >= expected and told >= found:
            return found
        if time.monotonic() >= deadline:
            print(f"bench: {event}: {len(told)} of {max(expected, len(found))} alerts notified within "
                  f"{timeout:g} s", file=sys.stderr)
            return found
        time.sleep(POLL_SECONDS)


def wait_until_settled(setup: Setup, children: Children, timeout: float) -> None:
    """Until no notification is pending or being sent and no alert is open."""
    from sqlalchemy import func, select

    from app.models import Alert, Notification

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check_alive()
        busy = _read(select(func.count()).select_from(Notification).where(
            Notification.tenant_id == setup.tenant_id, Notification.status.in_(("pending", "sending"))))[0][0]
        open_alerts = _read(select(func.count()).select_from(Alert).where(
            Alert.tenant_id == setup.tenant_id, Alert.status != "resolved"))[0][0]
        if not busy and not open_alerts:
            return
        time.sleep(POLL_SECONDS)
    print("bench: notifications still pending or alerts still open when the next phase began", file=sys.stderr)


# --- one phase -------------------------------------------------------------------------------

@dataclass
class Phase:
    rate_limit: int
    channel_id: int
    down_at: float = 0.0
    up_at: float = 0.0
    ended_at: float = 0.0
    alert_ids: set[int] = field(default_factory=set)


def run_phase(args: argparse.Namespace, setup: Setup, receiver: WebhookReceiver, children: Children,
              index: int, rate_limit: int) -> Phase:
    channel_id = use_channel(setup, f"hook-{index}-{rate_limit}-per-{args.rate_window}s", rate_limit,
                             args.rate_window)
    phase = Phase(rate_limit, channel_id)
    time.sleep(1.0)  # an evaluation that read the rule before the change has committed by now
    print(f"phase {index}: {rate_limit} per {args.rate_window} s — targets down", file=sys.stderr)
    phase.down_at = switch(setup, True)
    phase.alert_ids = wait_for_notified(setup, "firing", None, phase.down_at, len(setup.switched), receiver,
                                        children, args.phase_timeout)
    print(f"phase {index}: {len(phase.alert_ids)} alerts notified — targets up", file=sys.stderr)
    phase.up_at = switch(setup, False)
    wait_for_notified(setup, "resolved", phase.alert_ids, phase.up_at, len(phase.alert_ids), receiver, children,
                      args.phase_timeout)
    phase.ended_at = time.time()
    wait_until_settled(setup, children, args.phase_timeout)
    return phase


# --- measuring -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Told:
    """How one alert's notification of one event reached the receiver."""

    alert_id: int
    probe_id: int
    crossing_at: float  # created_at of the result that crossed the threshold (or resolved)
    evaluated_at: float  # when the evaluator decided (alerts.opened_at / resolved_at)
    arrival: Arrival | None  # the message that carried it, None if none arrived
    summary: bool  # it went out inside a summary message
    in_body: bool  # the message's body names the alert (and, for its own message, the probe)

    @property
    def latency_ms(self) -> float:
        assert self.arrival is not None
        return (self.arrival.at - self.crossing_at) * 1000


@dataclass
class EventResult:
    event: str
    told: list[Told] = field(default_factory=list)
    not_notified: int = 0
    summaries: list[Arrival] = field(default_factory=list)  # summary messages that carried these alerts
    engine_mismatches: int = 0  # alerts the rule engine's replay does not account for


@dataclass
class PhaseResult:
    phase: Phase
    alerts_opened: int
    alerts_other_probes: int
    events: dict[str, EventResult]
    received: Counter[str]  # messages received during the phase, by event
    statuses: Counter[str]  # outbox rows of the phase's alerts, by (event, status)
    retried: int  # outbox rows sent with more than one attempt


@dataclass
class Checks:
    duplicate_ids: int  # notification ids received more than once
    told_twice: int  # (alert, event) pairs carried by more than one message
    unsigned: int  # messages whose signature did not match
    log_errors: list[str]
    discarded: Counter[str]  # task messages a worker discarded as expired or revoked, by task (--log-level info)


def discarded_messages(children: Children) -> Counter[str]:
    found: Counter[str] = Counter()
    for child in children.items:
        for line in child.log.read_text(errors="replace").splitlines():
            if DISCARDED in line:
                found[line.split(DISCARDED, 1)[1].split("[", 1)[0].strip()] += 1
    return found


def _crossings(threshold: int, results: list[Any]) -> dict[str, list[Any]]:
    """The results at which the rule fires and resolves, in order (the engine replayed)."""
    from app.alerting.rules import Memory, ResultView, RuleSpec, advance

    spec = RuleSpec(kind="down", threshold=threshold, window=threshold, recovery=1)
    views = [ResultView(row.id, row.status, row.created_at, row.response_time_ms) for row in results]
    _, transitions = advance(spec, Memory(), views)
    by_id = {row.id: row for row in results}
    found: dict[str, list[Any]] = {"fire": [], "resolve": []}
    for transition in transitions:
        found[transition.action].append(by_id[transition.result.id])
    return found


def measure(args: argparse.Namespace, setup: Setup, phases: list[Phase], arrivals: list[Arrival],
            children: Children) -> tuple[list[PhaseResult], Checks]:
    from sqlalchemy import select

    from app.models import Alert, Notification, ProbeResult

    alerts = _read(select(Alert.id, Alert.probe_id, Alert.opened_at, Alert.resolved_at)
                   .where(Alert.tenant_id == setup.tenant_id).order_by(Alert.id))
    notifications = _read(select(Notification.id, Notification.alert_id, Notification.event, Notification.status,
                                 Notification.summary_id, Notification.attempts)
                          .where(Notification.tenant_id == setup.tenant_id))
    results = _read(select(ProbeResult.id, ProbeResult.probe_id, ProbeResult.status, ProbeResult.created_at,
                           ProbeResult.response_time_ms)
                    .where(ProbeResult.probe_id.in_(sorted(setup.switched))).order_by(ProbeResult.id))

    by_probe: dict[int, list[Any]] = defaultdict(list)
    for row in results:
        by_probe[row.probe_id].append(row)
    crossings = {probe_id: _crossings(args.threshold, rows) for probe_id, rows in by_probe.items()}
    episode: dict[int, int] = {}  # alert id -> its index among its probe's alerts
    seen: Counter[int] = Counter()
    for alert in alerts:
        episode[alert.id] = seen[alert.probe_id]
        seen[alert.probe_id] += 1

    first_arrival: dict[str, Arrival] = {}
    for arrival in arrivals:
        first_arrival.setdefault(arrival.notification_id, arrival)
    rows_of: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for row in notifications:
        if row.alert_id is not None:
            rows_of[(row.alert_id, row.event)].append(row)

    measured = []
    for phase in phases:
        mine = [alert for alert in alerts if alert.id in phase.alert_ids]
        events = {event: EventResult(event) for event in ("firing", "resolved")}
        summary_ids: dict[str, set[str]] = {"firing": set(), "resolved": set()}
        for alert in mine:
            steps = crossings.get(alert.probe_id, {"fire": [], "resolve": []})
            for event, action, decided in (("firing", "fire", alert.opened_at), ("resolved", "resolve",
                                                                                 alert.resolved_at)):
                result = events[event]
                chosen = steps[action][episode[alert.id]] if episode[alert.id] < len(steps[action]) else None
                if chosen is None or decided is None:
                    result.engine_mismatches += chosen is None
                    result.not_notified += 1
                    continue
                row = next(iter(rows_of.get((alert.id, event), [])), None)
                message = _message_of(row.status, row.id, row.summary_id) if row is not None else None
                arrival = first_arrival.get(message) if message else None
                if arrival is None:
                    result.not_notified += 1
                    continue
                summary = arrival.event == "summary"
                if summary:  # a summary lists SUMMARY_ITEMS_SHOWN alerts and counts the rest in ``more``
                    summary_ids[event].add(arrival.notification_id)
                    in_body = (any(entry.get("id") == alert.id for entry in arrival.data.get("alerts") or [])
                               or bool(arrival.data.get("more")))
                else:
                    in_body = ((arrival.data.get("alert") or {}).get("id") == alert.id
                               and (arrival.data.get("probe") or {}).get("id") == alert.probe_id
                               and arrival.event == event)
                result.told.append(Told(alert.id, alert.probe_id, _epoch(chosen.created_at), _epoch(decided),
                                        arrival, summary, in_body))
        for event, result in events.items():
            result.summaries = sorted((first_arrival[sid] for sid in summary_ids[event]), key=lambda a: a.at)
            result.told.sort(key=lambda told: told.latency_ms)
        statuses: Counter[str] = Counter()
        retried = 0
        for alert in mine:
            for event in ("firing", "resolved"):
                for row in rows_of.get((alert.id, event), []):
                    statuses[f"{event} {row.status}"] += 1
                    retried += row.attempts > 1
        measured.append(PhaseResult(
            phase=phase,
            alerts_opened=sum(1 for alert in mine if alert.probe_id in setup.switched),
            alerts_other_probes=sum(1 for alert in alerts if phase.down_at <= _epoch(alert.opened_at) <= phase.ended_at
                                    and alert.probe_id not in setup.switched),
            events=events,
            received=Counter(arrival.event for arrival in arrivals if phase.down_at <= arrival.at <= phase.ended_at),
            statuses=statuses,
            retried=retried,
        ))

    ids = Counter(arrival.notification_id for arrival in arrivals)
    carried: Counter[tuple[int, str]] = Counter()
    summarized_in: dict[str, list[Any]] = defaultdict(list)
    for row in notifications:
        if row.summary_id:
            summarized_in[row.summary_id].append(row)
    for arrival in (first_arrival[notification_id] for notification_id in ids):
        if arrival.event == "summary":
            for row in summarized_in.get(arrival.notification_id, []):
                carried[(row.alert_id, row.event)] += 1
        elif (arrival.data.get("alert") or {}).get("id") is not None:
            carried[(arrival.data["alert"]["id"], arrival.event)] += 1
    checks = Checks(duplicate_ids=sum(count - 1 for count in ids.values() if count > 1),
                    told_twice=sum(1 for count in carried.values() if count > 1),
                    unsigned=sum(1 for arrival in arrivals if not arrival.signed),
                    log_errors=log_errors(children), discarded=discarded_messages(children))
    return measured, checks


# --- report ----------------------------------------------------------------------------------

def _ms(value: float) -> str:
    return f"{value:,.0f}"


def _spread(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "n/a"
    return " / ".join(_ms(v) for v in (percentile(values, .5), percentile(values, .95), percentile(values, .99),
                                       values[-1]))


def _seconds_after(moment: float, origin: float) -> str:
    return f"+{moment - origin:.1f} s"


def setup_table(args: argparse.Namespace, setup: Setup, commands: list[str], load_before: float) -> str:
    from probe_throughput import _database_label

    rows = [
        ("probes × interval", f"{args.probes} http × {args.interval} s; {len(setup.switched)} switchable "
                              f"({args.fail_share:.0%}) fail with 503 together, the rest answer 200"),
        ("rule", f"tenant-wide `down`, threshold {args.threshold} (failures in a row), recovery 1, "
                 "resolved notifications on"),
        ("channel", "webhook, HMAC-signed, to a receiver in the benchmark process; a fresh channel per phase"),
        ("processes", "<br>".join(f"`{command}`" for command in commands)),
        ("database / Redis", f"{_database_label(args.database)} / db {args.redis_db}"),
        ("machine: cores / load average before the run", f"{os.cpu_count()} / {load_before:.2f}"),
        ("latency", "from the crossing result's `probe_results.created_at` (set by the worker when the run "
                    "finished, before the micro-batched write) to its message's arrival at the receiver"),
    ]
    return "\n".join(["| setup | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def _event_rows(result: EventResult, origin: float, switched: int, label: str) -> list[tuple[str, str]]:
    told = result.told
    own = [item for item in told if not item.summary]
    folded = [item for item in told if item.summary]
    rows = [
        (f"**{label}: notified individually / inside a summary / not notified**",
         f"**{len(own)} / {len(folded)} / {result.not_notified}** of {switched}"),
        (f"**{label} latency ms** (crossing result → arrival), all: median / p95 / p99 / max",
         f"**{_spread([item.latency_ms for item in told])}**"),
    ]
    if folded:
        rows.append((f"{label} latency ms, notified individually: median / p95 / p99 / max",
                     _spread([item.latency_ms for item in own])))
    rows += [
        (f"{label}: crossing result → evaluated (alert opened/resolved) ms: median / p99 / max",
         _three([(item.evaluated_at - item.crossing_at) * 1000 for item in told])),
        (f"{label}: evaluated → arrival ms, individual messages: median / p99 / max",
         _three([(item.arrival.at - item.evaluated_at) * 1000 for item in own if item.arrival])),
    ]
    if told:
        rows.append((f"{label}: first / last arrival after the switch",
                     f"{_seconds_after(min(i.arrival.at for i in told if i.arrival), origin)} / "
                     f"{_seconds_after(max(i.arrival.at for i in told if i.arrival), origin)}"))
    for number, summary in enumerate(result.summaries, 1):
        data = summary.data
        counts = data.get("counts") or {}
        carried = sum(1 for item in folded if item.arrival is summary)
        rows.append((f"{label} summary {number}: arrival after the switch; alerts carried",
                     f"{_seconds_after(summary.at, origin)}; {carried} of this phase "
                     f"({data.get('notifications', '?')} in the message: "
                     + ", ".join(f"{state} {count}" for state, count in counts.items() if count)
                     + f"; {len(data.get('alerts') or [])} listed, {data.get('more', 0)} counted)"))
    unmatched = sum(1 for item in told if not item.in_body)
    if unmatched or result.engine_mismatches:
        rows.append((f"{label}: bodies not naming their alert / alerts the engine replay does not explain",
                     f"{unmatched} / {result.engine_mismatches}"))
    return rows


def _three(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "n/a"
    return " / ".join(_ms(v) for v in (percentile(values, .5), percentile(values, .99), values[-1]))


def phase_table(args: argparse.Namespace, setup: Setup, result: PhaseResult) -> str:
    phase = result.phase
    switched = len(setup.switched)
    rows = [
        ("channel rate limit", f"{phase.rate_limit} per {args.rate_window} s"),
        ("alerts opened for the switched probes / for other probes",
         f"{result.alerts_opened} of {switched} / {result.alerts_other_probes}"),
        *_event_rows(result.events["firing"], phase.down_at, switched, "firing"),
        ("targets back up after the switch down", _seconds_after(phase.up_at, phase.down_at)),
        *_event_rows(result.events["resolved"], phase.up_at, switched, "resolved"),
        ("**messages received in the phase**",
         "**" + ", ".join(f"{event} {count}" for event, count in sorted(result.received.items()))
         + f" (total {sum(result.received.values())})**"),
        ("outbox rows of the phase's alerts, by event and status",
         ", ".join(f"{key} {count}" for key, count in sorted(result.statuses.items()))),
        ("outbox rows sent after more than one attempt", str(result.retried)),
    ]
    lines = [f"| phase: rate limit {phase.rate_limit} / {args.rate_window} s | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def checks_table(args: argparse.Namespace, checks: Checks) -> str:
    discarded = (", ".join(f"{task.rsplit('.', 1)[-1]} {count}" for task, count in sorted(checks.discarded.items()))
                 or "none") if args.log_level == "info" else "not counted (--log-level info counts them)"
    rows = [
        ("**duplicates**: notification ids received twice / (alert, event) carried by two messages",
         f"**{checks.duplicate_ids} / {checks.told_twice}**"),
        ("messages with a wrong signature", str(checks.unsigned)),
        ("ERROR lines in the worker and beat logs", str(len(checks.log_errors))),
        ("task messages discarded unrun because they expired in the queue, by task", discarded),
    ]
    return "\n".join(["| whole run | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


# --- main ------------------------------------------------------------------------------------

def start_deployment(children: Children, tenant_id: int, log_level: str, tmp: Path) -> tuple[list[str], float]:
    """Start the recommended deployment (the workers of ``WORKER_ARGS``, then beat, with the
    tenant's first slot ``BEAT_START_SECONDS`` after it); returns the commands as a person
    would type them and the first slot's time."""
    commands = []
    for name, options in WORKER_ARGS.items():
        command = ["worker", *options, f"--loglevel={log_level}"]
        children.start(f"worker-{name}", "worker", *command)
        commands.append(" ".join(["celery -A celery_worker.celery", *command]))
    wait_for_workers(children, len(WORKER_ARGS))
    first_slot = time.time() + BEAT_START_SECONDS
    anchor_schedule(tenant_id, first_slot)
    beat = ["beat", f"--loglevel={log_level}", "-s", str(tmp / "beat-schedule")]
    children.start("beat", "beat", *beat)
    commands.append(" ".join(["celery -A celery_worker.celery", *beat[:-1], "<schedule file>"]))
    return commands, first_slot


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> int:
    children, _ = start_bench_app(args, tmp, stack)
    ports = start_fleet_targets(children)
    signing_key = secrets.token_urlsafe(24)
    receiver = stack.enter_context(WebhookReceiver(signing_key))

    load_before = os.getloadavg()[0]
    began = time.monotonic()
    setup = create_setup(args, ports["http"], receiver.url, signing_key)
    print(f"created {args.probes} probes in {time.monotonic() - began:.1f} s", file=sys.stderr)

    commands, first_slot = start_deployment(children, setup.tenant_id, args.log_level, tmp)
    wait_until_evaluated(setup, args.probes, first_slot + args.interval + 2, children)

    phases = []
    for index, rate_limit in enumerate(args.rate_limit, 1):
        phases.append(run_phase(args, setup, receiver, children, index, rate_limit))
    time.sleep(QUIET_SECONDS)
    children.check_alive()
    results, checks = measure(args, setup, phases, receiver.arrivals(), children)
    children.stop()

    print(setup_table(args, setup, commands, load_before))
    for result in results:
        print()
        print(phase_table(args, setup, result))
    print()
    print(checks_table(args, checks))
    for line in checks.log_errors[:20]:
        print(line, file=sys.stderr)
    lost = sum(event.not_notified for result in results for event in result.events.values())
    return 1 if lost or checks.duplicate_ids or checks.told_twice else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="admin-mit-alert-bench-") as tmp, contextlib.ExitStack() as stack:
        try:
            return run(args, Path(tmp), stack)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
