#!/usr/bin/env python
"""Alert noise: a parent probe and its children going down together, with grouping and
dependencies — how many messages each channel gets, and how long after the parent's
threshold the message that tells it arrives.

Setup (the infrastructure of ``bench/alert_latency.py``): ``--probes`` HTTP auto probes at
``--interval`` in ``--groups`` probe groups of equal size (``site-01`` …), on the loopback
targets of ``bench/fleet_targets.py``, plus one *parent* probe (``site-01 switch``) on
which every probe of ``site-01`` depends (``depends_on``). The parent sits in a group of its
own (``network``) or, with ``--parent-group same``, in ``site-01`` with its children. The
parent and ``site-01``'s probes check a switchable target (``/switch/…``), every other
probe ``/ok``. One tenant-wide ``down`` rule — ``--threshold`` failures in a row, recovery
1, resolved notices on, flapping detection off (``flap_changes`` 0), ``group_by`` ``group``
with ``--group-wait`` and ``--group-interval`` — notifies two webhook channels (default rate
limit), each signed and pointing at a receiver of its own inside this process
(``bench/webhook_receiver.py``), so messages are counted per channel. The deployment is the
recommended one, as in alert_latency.py: one ``celery worker -Q network_probes``, one
``celery worker -Q alerts`` and one ``celery beat`` (default prefork pools), on a scratch
PostgreSQL database and Redis database ``--redis-db``.

Each of ``--rounds`` rounds switches the parent's and its children's targets down at one
moment (``GET /control/switch?down=1``), waits until the parent's outage has been told on
both channels, every child's alert has opened and no group flush is pending, and then
until ``--quiet`` seconds (default: the group interval + 5 s) pass without a message; then
it switches them up and waits the same way for the parent's recovery.

Afterwards it reads the alerts, their history (``alert_events``), the group items
(``alert_group_items``: which alert event went out in which notification) and the outbox,
and attributes each message a receiver got to its round, half (outage or recovery) and
channel, with the alert events it carried (the parent's or a child's; a summary's rows are
followed to the notifications it folded in). The parent's *crossing result* is found as in
alert_latency.py, by replaying its stored results through ``app.alerting.rules.advance``:
the failure that completes the threshold, the first success after it; latency is from its
``probe_results.created_at`` to the arrival of the message that carried the parent's
firing (resolved) notice, per channel. The goal: one message per channel for the outage,
one for the recovery, no child told while its parent is down, latency p99 below the group
wait + 2 s.

Exit status 1 on a loss or noise: a round whose parent outage (or recovery) no message
told on a channel, a child's firing told while the parent was down, a notification id
received twice, an alert event carried twice on one channel. 0 otherwise, 2 when the
benchmark could not run.

    .venv/bin/python bench/alert_noise.py                                  # about 15 minutes
    .venv/bin/python bench/alert_noise.py --probes 200 --rounds 1 --group-wait 5   # smoke run, about 4 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from alert_latency import (POLL_SECONDS, _crossings, _epoch, _message_of, _read, start_deployment,
                           switch, wait_until_evaluated)  # bench/ is on sys.path when run as a script
from bench_env import BenchError
from probe_throughput import (Children, _database_label, log_errors, percentile, start_bench_app,
                              start_fleet_targets)
from webhook_receiver import Arrival, WebhookReceiver

CHANNELS = ("A", "B")
DELIVERY_MARGIN_SECONDS = 2.0  # the goal: the parent's message within the group wait + this
DROPPED = ""  # alert_group_items.notification_id of an item its group's message left out (alert_groups.DROPPED)


# --- options ---------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Take a parent probe and its children down together, with a grouping rule and probe "
                    "dependencies, and count the messages per channel and the time from the parent's threshold "
                    "to the message that tells it. Exit status: 0 ok, 1 an outage or recovery of the parent "
                    "not told, a child told while its parent was down, or a notification received twice; 2 the "
                    "benchmark could not run.")
    parser.add_argument("--probes", type=int, default=2000,
                        help="HTTP auto probes besides the parent, in --groups groups (default: %(default)s)")
    parser.add_argument("--groups", type=int, default=10,
                        help="probe groups the probes are spread over; the first one's probes are the "
                             "children (default: %(default)s)")
    parser.add_argument("--parent-group", choices=("own", "same"), default="own",
                        help="the parent probe in a group of its own ('network') or in its children's group "
                             "(default: %(default)s)")
    parser.add_argument("--interval", type=int, default=10,
                        help="interval of every probe in seconds, at least 5 (default: %(default)s)")
    parser.add_argument("--threshold", type=int, default=2,
                        help="failures in a row that open an alert (default: %(default)s)")
    parser.add_argument("--group-wait", type=int, default=30,
                        help="the rule's group_wait_seconds (default: %(default)s, the rule default)")
    parser.add_argument("--group-interval", type=int, default=60,
                        help="the rule's group_interval_seconds (default: %(default)s; the rule default is 300)")
    parser.add_argument("--rounds", type=int, default=3, help="outage-and-recovery rounds (default: %(default)s)")
    parser.add_argument("--quiet", type=float,
                        help="seconds without a message that end each half of a round, once its messages "
                             "have arrived (default: the group interval + 5)")
    parser.add_argument("--round-timeout", type=float, default=300,
                        help="seconds to wait for the messages of one switch, quiet period not included "
                             "(default: %(default)s)")
    parser.add_argument("--database", metavar="URL|sqlite",
                        help="SQLAlchemy URL to use as is, or 'sqlite' for a temporary SQLite file "
                             "(default: a scratch PostgreSQL database, dropped at the end)")
    parser.add_argument("--redis-db", type=int, default=10,
                        help="Redis database for broker and cache, flushed at start (default: %(default)s)")
    parser.add_argument("--log-level", choices=("warning", "info"), default="warning",
                        help="the workers' and beat's --loglevel (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.groups < 2 or args.probes < 2 * args.groups:
        parser.error("--groups must be at least 2 and --probes at least twice --groups")
    if args.interval < 5:
        parser.error("--interval must be at least 5")
    if not 1 <= args.threshold <= 100:
        parser.error("--threshold must be 1..100")
    if not 0 <= args.group_wait <= 3600 or not 1 <= args.group_interval <= 86400:
        parser.error("--group-wait must be 0..3600 and --group-interval 1..86400 (the rule's bounds)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db must be 0..15")
    args.quiet = float(args.group_interval + 5 if args.quiet is None else args.quiet)
    return args


# --- setup -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    tenant_id: int
    rule_id: int
    parent_id: int
    children: frozenset[int]  # the probes of the first group: they depend on the parent
    channel_ids: tuple[int, ...]  # in the order of the receivers (CHANNELS)
    control_url: str  # the fleet targets' switch (alert_latency.switch)
    parent_group: str  # the parent's group's name

    def role(self, probe_id: int) -> str:
        return "parent" if probe_id == self.parent_id else "child" if probe_id in self.children else "other"


def create_setup(args: argparse.Namespace, http_port: int, receivers: list[WebhookReceiver],
                 signing_keys: list[str]) -> Setup:
    """One tenant, its groups and probes (the children depending on the parent), two
    webhook channels and the grouping ``down`` rule that notifies both."""
    from app.services.alert_rules import create_rule
    from app.services.notification_channels import create_channel
    from app.services.probe_groups import create_group
    from app.services.probes import create_probe
    from app.services.tenants import create_tenant

    tenant = create_tenant(f"noise-bench-{uuid.uuid4().hex[:8]}")
    groups = [create_group(tenant.id, f"site-{number:02d}").id for number in range(1, args.groups + 1)]
    parent_group = groups[0] if args.parent_group == "same" else create_group(tenant.id, "network").id
    base = f"http://127.0.0.1:{http_port}"
    common = {"protocol": "http", "interval_seconds": args.interval, "timeout_seconds": min(5.0, args.interval / 2)}
    parent = create_probe(tenant.id, {"name": "site-01 switch", "target": f"{base}/switch/parent",
                                      "group_id": parent_group, **common})
    per_group = args.probes // args.groups
    children = set()
    for index in range(args.probes):
        group = min(index // per_group, args.groups - 1)
        child = group == 0
        probe = create_probe(tenant.id, {
            "name": f"site-{group + 1:02d}-host-{index:05d}", "group_id": groups[group],
            "target": f"{base}/switch/{index}" if child else f"{base}/ok",
            "depends_on": [parent.id] if child else [], **common})
        if child:
            children.add(probe.id)
    channel_ids = tuple(create_channel(tenant.id, {
        "name": f"hook-{name}", "kind": "webhook", "settings": {"url": receiver.url},
        "secrets": {"signing_key": key}}).id for name, receiver, key in zip(CHANNELS, receivers, signing_keys))
    rule = create_rule(tenant.id, {
        "name": "fleet down", "kind": "down", "threshold": args.threshold, "recovery": 1, "send_resolved": True,
        "group_by": "group", "group_wait_seconds": args.group_wait, "group_interval_seconds": args.group_interval,
        "flap_changes": 0, "channel_ids": list(channel_ids)})
    return Setup(tenant.id, rule.id, parent.id, frozenset(children), channel_ids, f"{base}/control/switch",
                 "site-01" if args.parent_group == "same" else "network")


def check_dependencies(setup: Setup) -> None:
    """The children's ``depends_on`` was stored (one edge per child, to the parent)."""
    from sqlalchemy import select

    from app.models import ProbeDependency

    edges = _read(select(ProbeDependency.probe_id, ProbeDependency.parent_id)
                  .where(ProbeDependency.tenant_id == setup.tenant_id))
    if {(row.probe_id, row.parent_id) for row in edges} != {(child, setup.parent_id) for child in setup.children}:
        raise BenchError(f"expected {len(setup.children)} dependencies on the parent, found {len(edges)}")


# --- waiting on the database and the receivers -----------------------------------------------

def carriers(alert_id: int, event: str) -> dict[int, set[str]]:
    """Channel id → the messages (a group message, the alert's own notification, or the
    summary either went into) that carry ``event`` of ``alert_id``."""
    from sqlalchemy import and_, or_, select

    from app.models import AlertGroup, AlertGroupItem, Notification

    grouped = {row.notification_id for row in _read(
        select(AlertGroupItem.notification_id).where(AlertGroupItem.alert_id == alert_id,
                                                     AlertGroupItem.event == event,
                                                     AlertGroupItem.notification_id.is_not(None),
                                                     AlertGroupItem.notification_id != DROPPED)
        .join(AlertGroup, AlertGroup.id == AlertGroupItem.group_id))}
    found: dict[int, set[str]] = defaultdict(set)
    for row in _read(select(Notification.id, Notification.channel_id, Notification.status, Notification.summary_id)
                     .where(or_(Notification.id.in_(sorted(grouped)),
                                and_(Notification.alert_id == alert_id, Notification.event == event)))):
        message = _message_of(row.status, row.id, row.summary_id)
        if message is not None:
            found[row.channel_id].add(message)
    return found


def told_everywhere(setup: Setup, receivers: list[WebhookReceiver], alert_id: int, event: str) -> bool:
    """Whether a message carrying ``event`` of the alert has arrived on every channel."""
    messages = carriers(alert_id, event)
    return all(messages.get(channel_id, set()) & {arrival.notification_id for arrival in receiver.arrivals()}
               for channel_id, receiver in zip(setup.channel_ids, receivers))


def parent_alert(setup: Setup, since: float) -> Any | None:
    """The parent's alert opened after ``since`` (epoch seconds), if any."""
    from sqlalchemy import select

    from app.models import Alert

    rows = [row for row in _read(select(Alert.id, Alert.status, Alert.opened_at)
                                 .where(Alert.probe_id == setup.parent_id).order_by(Alert.id))
            if _epoch(row.opened_at) >= since]
    return rows[-1] if rows else None


def pending(setup: Setup) -> int:
    """Group flushes due or waiting, and notifications not sent yet, of the tenant."""
    from sqlalchemy import func, select

    from app.models import AlertGroup, Notification

    groups = _read(select(func.count()).select_from(AlertGroup).where(AlertGroup.tenant_id == setup.tenant_id,
                                                                      AlertGroup.flush_at.is_not(None)))[0][0]
    outbox = _read(select(func.count()).select_from(Notification).where(
        Notification.tenant_id == setup.tenant_id, Notification.status.in_(("pending", "sending"))))[0][0]
    return int(groups) + int(outbox)


def switched_alerts(setup: Setup, since: float) -> tuple[int, int]:
    """Of the parent's and children's alerts opened after ``since``: (opened, still open)."""
    from sqlalchemy import select

    from app.models import Alert

    rows = [row for row in _read(select(Alert.probe_id, Alert.status, Alert.opened_at)
                                 .where(Alert.tenant_id == setup.tenant_id))
            if _epoch(row.opened_at) >= since and setup.role(row.probe_id) != "other"]
    return len(rows), sum(1 for row in rows if row.status != "resolved")


def wait_for(what: str, done: Callable[[], bool], args: argparse.Namespace, setup: Setup,
             receivers: list[WebhookReceiver], children: Children) -> bool:
    """Until ``done()`` holds (or ``--round-timeout``), then until ``--quiet`` seconds pass with
    no message and nothing pending; False if ``done()`` never held."""
    deadline = time.monotonic() + args.round_timeout
    ok = False
    while time.monotonic() < deadline:
        children.check_alive()
        if done():
            ok = True
            break
        time.sleep(POLL_SECONDS)
    if not ok:
        print(f"bench: {what}: not complete within {args.round_timeout:g} s", file=sys.stderr)
    quiet_deadline = time.monotonic() + args.round_timeout + args.quiet
    while time.monotonic() < quiet_deadline:
        children.check_alive()
        last = max((arrival.at for receiver in receivers for arrival in receiver.arrivals()), default=0.0)
        if time.time() - last >= args.quiet and not pending(setup):
            return ok
        time.sleep(POLL_SECONDS)
    print(f"bench: {what}: no quiet period of {args.quiet:g} s within {args.round_timeout:g} s", file=sys.stderr)
    return ok


# --- one round -------------------------------------------------------------------------------

@dataclass
class Round:
    number: int
    down_at: float = 0.0
    up_at: float = 0.0
    ended_at: float = 0.0


def run_round(args: argparse.Namespace, setup: Setup, receivers: list[WebhookReceiver], children: Children,
              number: int) -> Round:
    expected = len(setup.children) + 1
    current = Round(number)
    print(f"round {number}: parent and {len(setup.children)} children down", file=sys.stderr)
    current.down_at = switch(setup, True)  # type: ignore[arg-type]  # needs .control_url only

    def outage_told() -> bool:
        alert = parent_alert(setup, current.down_at)
        return (alert is not None and switched_alerts(setup, current.down_at)[0] >= expected
                and told_everywhere(setup, receivers, alert.id, "firing") and not pending(setup))

    wait_for(f"round {number} outage", outage_told, args, setup, receivers, children)
    print(f"round {number}: outage told — targets up", file=sys.stderr)
    current.up_at = switch(setup, False)  # type: ignore[arg-type]

    def recovery_told() -> bool:
        alert = parent_alert(setup, current.down_at)
        return (alert is not None and alert.status == "resolved" and not switched_alerts(setup, current.down_at)[1]
                and told_everywhere(setup, receivers, alert.id, "resolved") and not pending(setup))

    wait_for(f"round {number} recovery", recovery_told, args, setup, receivers, children)
    current.ended_at = time.time()
    return current


# --- measuring -------------------------------------------------------------------------------

@dataclass
class Half:
    """One channel's view of one half (outage or recovery) of a round."""

    messages: Counter[str] = field(default_factory=Counter)  # received, by event
    carried: Counter[str] = field(default_factory=Counter)  # "<role> <event>" carried by those messages
    items_per_message: list[int] = field(default_factory=list)
    arrived_after: list[float] = field(default_factory=list)  # seconds after the half's switch
    latency_ms: float | None = None  # the parent's crossing result → its message's arrival
    evaluated_ms: float | None = None  # crossing result → alert opened / resolved (the evaluator)
    gathered_ms: float | None = None  # evaluated → the message written (the group's wait, or interval)
    delivered_ms: float | None = None  # written → arrival
    in_body: bool = True  # the parent's message lists the parent's alert (or counts it in ``more``)


@dataclass
class RoundResult:
    round: Round
    halves: dict[tuple[str, str], Half]  # (channel name, "outage" | "recovery")
    parent_crossed_after: float | None  # the parent's crossing result, seconds after the switch down
    parent_recovered_after: float | None  # its first success, seconds after the switch up
    children_opened: int = 0
    opened_suppressed: int = 0  # opened while the parent was down: nothing sent
    held_at_flush: int = 0  # opened firing before the parent, suppressed when their group's message went out
    released: int = 0  # suppressed → firing when the parent recovered first
    children_told: dict[str, set[int]] = field(default_factory=dict)  # channel -> children told firing
    # channel -> alerts of the round told firing there and never told resolved there (by the run's end)
    left_firing: dict[str, set[int]] = field(default_factory=dict)
    children_resolved: int = 0
    other_alerts: int = 0  # alerts of probes neither parent nor child opened in the round
    engine_mismatch: bool = False  # the replay does not explain the parent's alert


@dataclass
class Checks:
    duplicate_ids: int
    carried_twice: int  # (channel, alert, event) carried by more than one message
    unsigned: int
    outside_rounds: int  # messages that arrived outside every round
    log_errors: list[str]


def measure(args: argparse.Namespace, setup: Setup, rounds: list[Round], receivers: list[WebhookReceiver],
            children: Children) -> tuple[list[RoundResult], Checks]:
    from sqlalchemy import select

    from app.models import Alert, AlertEvent, AlertGroup, AlertGroupItem, Notification, ProbeResult

    alerts = {row.id: row for row in _read(select(Alert.id, Alert.probe_id, Alert.status, Alert.opened_at,
                                                  Alert.resolved_at)
                                           .where(Alert.tenant_id == setup.tenant_id).order_by(Alert.id))}
    history: dict[int, list[Any]] = defaultdict(list)
    for row in _read(select(AlertEvent.alert_id, AlertEvent.from_status, AlertEvent.to_status, AlertEvent.at,
                            AlertEvent.note)
                     .where(AlertEvent.tenant_id == setup.tenant_id).order_by(AlertEvent.id)):
        history[row.alert_id].append(row)
    notifications = {row.id: row for row in _read(
        select(Notification.id, Notification.channel_id, Notification.alert_id, Notification.event,
               Notification.status, Notification.summary_id, Notification.created_at)
        .where(Notification.tenant_id == setup.tenant_id))}
    items: dict[str, list[Any]] = defaultdict(list)  # group notification id -> its items
    for row in _read(select(AlertGroupItem.alert_id, AlertGroupItem.event, AlertGroupItem.notification_id,
                            AlertGroup.channel_id)
                     .join(AlertGroup, AlertGroup.id == AlertGroupItem.group_id)
                     .where(AlertGroupItem.tenant_id == setup.tenant_id)):
        if row.notification_id:
            items[row.notification_id].append(row)
    summarized: dict[str, list[str]] = defaultdict(list)
    for row in notifications.values():
        if row.summary_id:
            summarized[row.summary_id].append(row.id)
    parent_results = _read(select(ProbeResult.id, ProbeResult.probe_id, ProbeResult.status, ProbeResult.created_at,
                                  ProbeResult.response_time_ms)
                           .where(ProbeResult.probe_id == setup.parent_id).order_by(ProbeResult.id))
    crossings = _crossings(args.threshold, parent_results)
    parent_alerts = [alert for alert in alerts.values() if alert.probe_id == setup.parent_id]

    def carried_by(message_id: str) -> list[tuple[int, str]]:
        """The (alert, event) pairs one arrived message carries."""
        pairs: list[tuple[int, str]] = []
        for notification_id in [message_id, *summarized.get(message_id, [])]:
            row = notifications.get(notification_id)
            if row is None or row.event == "summary":
                continue
            if row.event == "group":
                pairs += [(item.alert_id, item.event) for item in items.get(notification_id, [])]
            elif row.alert_id is not None:
                pairs.append((row.alert_id, row.event))
        return pairs

    arrivals = {name: receiver.arrivals() for name, receiver in zip(CHANNELS, receivers)}
    first_arrival: dict[str, dict[str, Arrival]] = {name: {} for name in CHANNELS}
    for name, received in arrivals.items():
        for arrival in received:
            first_arrival[name].setdefault(arrival.notification_id, arrival)
    carried_count: Counter[tuple[str, int, str]] = Counter()
    for name in CHANNELS:
        for message_id in first_arrival[name]:
            for pair in carried_by(message_id):
                carried_count[(name, *pair)] += 1

    results = []
    outside = sum(len(received) for received in arrivals.values())
    for current in rounds:
        halves = {(name, half): Half() for name in CHANNELS for half in ("outage", "recovery")}
        mine = [alert for alert in alerts.values() if current.down_at <= _epoch(alert.opened_at) < current.ended_at]
        result = RoundResult(current, halves, None, None)
        for name in CHANNELS:
            for arrival in arrivals[name]:
                if not current.down_at <= arrival.at <= current.ended_at:
                    continue
                outside -= 1
                half = halves[(name, "outage" if arrival.at < current.up_at else "recovery")]
                half.messages[arrival.event or "?"] += 1
                pairs = carried_by(arrival.notification_id)
                half.items_per_message.append(len(pairs))
                half.arrived_after.append(arrival.at - (current.down_at if arrival.at < current.up_at
                                                        else current.up_at))
                for alert_id, event in pairs:
                    alert = alerts.get(alert_id)
                    role = setup.role(alert.probe_id) if alert is not None else "other"
                    half.carried[f"{role} {event}"] += 1
                    if role == "child" and event != "resolved":
                        result.children_told.setdefault(name, set()).add(alert_id)
        for name in CHANNELS:
            result.left_firing[name] = {alert.id for alert in mine if carried_count[(name, alert.id, "firing")]
                                        and not carried_count[(name, alert.id, "resolved")]}
        for alert in mine:
            role = setup.role(alert.probe_id)
            if role == "other":
                result.other_alerts += 1
            if role != "child":
                continue
            result.children_opened += 1
            result.children_resolved += alert.status == "resolved"
            steps = [(step.from_status, step.to_status) for step in history.get(alert.id, [])]
            result.opened_suppressed += (None, "suppressed") in steps
            result.held_at_flush += ("firing", "suppressed") in steps
            result.released += ("suppressed", "firing") in steps
        mine_parent = [alert for alert in parent_alerts if alert in mine]
        if len(mine_parent) != 1:
            result.engine_mismatch = True
            results.append(result)
            continue
        parent = mine_parent[0]
        episode = parent_alerts.index(parent)
        for event, action, decided, half_name, origin in (
                ("firing", "fire", parent.opened_at, "outage", current.down_at),
                ("resolved", "resolve", parent.resolved_at, "recovery", current.up_at)):
            chosen = crossings[action][episode] if episode < len(crossings[action]) else None
            if chosen is None:
                result.engine_mismatch = True
                continue
            crossed = _epoch(chosen.created_at)
            if event == "firing":
                result.parent_crossed_after = crossed - origin
            else:
                result.parent_recovered_after = crossed - origin
            for name, channel_id in zip(CHANNELS, setup.channel_ids):
                half = halves[(name, half_name)]
                told = [(arrival, notifications[arrival.notification_id]) for arrival in first_arrival[name].values()
                        if arrival.notification_id in notifications
                        and (parent.id, event) in carried_by(arrival.notification_id)]
                if not told:
                    continue
                arrival, written = min(told, key=lambda pair: pair[0].at)
                half.latency_ms = (arrival.at - crossed) * 1000
                if decided is not None:
                    half.evaluated_ms = (_epoch(decided) - crossed) * 1000
                    half.gathered_ms = (_epoch(written.created_at) - _epoch(decided)) * 1000
                half.delivered_ms = (arrival.at - _epoch(written.created_at)) * 1000
                listed = arrival.data.get("alerts") or []
                half.in_body = (any(entry.get("id") == parent.id and entry.get("event") == event for entry in listed)
                                or bool(arrival.data.get("more"))
                                or (arrival.data.get("alert") or {}).get("id") == parent.id)
        results.append(result)

    ids = Counter((name, arrival.notification_id) for name, received in arrivals.items() for arrival in received)
    for result in results:  # what happened to a few of the alerts left firing, for the log
        for name, left in result.left_firing.items():
            for alert_id in sorted(left)[:3]:
                steps = "; ".join(f"+{_epoch(step.at) - result.round.down_at:.1f} s {step.from_status} → "
                                  f"{step.to_status}: {step.note}" for step in history.get(alert_id, []))
                print(f"bench: round {result.round.number}, channel {name}: alert {alert_id} "
                      f"({setup.role(alerts[alert_id].probe_id)}) told firing, never resolved there: {steps}",
                      file=sys.stderr)
    checks = Checks(duplicate_ids=sum(count - 1 for count in ids.values() if count > 1),
                    carried_twice=sum(1 for count in carried_count.values() if count > 1),
                    unsigned=sum(1 for received in arrivals.values() for arrival in received if not arrival.signed),
                    outside_rounds=outside, log_errors=log_errors(children))
    return results, checks


# --- report ----------------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _three(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "n/a"
    return " / ".join(_ms(v) for v in (percentile(values, .5), percentile(values, .99), values[-1]))


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {count}" for key, count in sorted(counter.items())) or "none"


def _per_channel(result: RoundResult, half: str, show: Callable[[Half], str]) -> str:
    return " / ".join(show(result.halves[(name, half)]) for name in CHANNELS)


def setup_table(args: argparse.Namespace, setup: Setup, commands: list[str], load_before: float) -> str:
    per_group = args.probes // args.groups
    rows = [
        ("probes × interval", f"{args.probes} http × {args.interval} s in {args.groups} groups of {per_group} "
                              f"(`site-01` … `site-{args.groups:02d}`), plus the parent; the parent and "
                              f"`site-01`'s {len(setup.children)} probes check a switchable target (503 while "
                              "down), the rest answer 200"),
        ("parent", f"`site-01 switch`, in group `{setup.parent_group}`; every probe of `site-01` has "
                   "`depends_on: [parent]`"),
        ("rule", f"tenant-wide `down`, threshold {args.threshold}, recovery 1, resolved notices on, "
                 f"`flap_changes` 0, `group_by` `group`, `group_wait_seconds` {args.group_wait}, "
                 f"`group_interval_seconds` {args.group_interval}"),
        ("channels", f"{len(CHANNELS)} webhooks ({', '.join(CHANNELS)}), HMAC-signed, default rate limit "
                     "(20 per 60 s), each to a receiver of its own in the benchmark process"),
        ("rounds", f"{args.rounds}: all switchable targets down at one moment; once the outage is told and "
                   f"{args.quiet:g} s passed without a message, up again; the same wait for the recovery"),
        ("processes", "<br>".join(f"`{command}`" for command in commands)),
        ("database / Redis", f"{_database_label(args.database)} / db {args.redis_db}"),
        ("machine: cores / load average before the run", f"{os.cpu_count()} / {load_before:.2f}"),
        ("latency", "from the parent's crossing result's `probe_results.created_at` (the failure that completes "
                    "the threshold; for the recovery the first success) to the arrival of the message that "
                    "carried the parent's alert, per channel"),
    ]
    return "\n".join(["| setup | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def rounds_table(setup: Setup, results: list[RoundResult]) -> str:
    children = len(setup.children)

    def latency(half: Half) -> str:
        return _ms(half.latency_ms)

    def breakdown(half: Half) -> str:
        return f"{_ms(half.evaluated_ms)} + {_ms(half.gathered_ms)} + {_ms(half.delivered_ms)}"

    def seconds(value: float | None) -> str:
        return "—" if value is None else f"+{value:.1f} s"

    rows: list[tuple[str, Callable[[RoundResult], str]]] = [
        ("parent's crossing result after the switch down", lambda r: seconds(r.parent_crossed_after)),
        ("children's alerts opened", lambda r: f"{r.children_opened} of {children}"),
        ("children: opened suppressed / held back at the group's flush / released when the parent recovered",
         lambda r: f"{r.opened_suppressed} / {r.held_at_flush} / {r.released}"),
        ("**outage: messages received, channel A / B**",
         lambda r: "**" + _per_channel(r, "outage", lambda h: _counts(h.messages)) + "**"),
        ("outage: alert events carried, A / B",
         lambda r: _per_channel(r, "outage", lambda h: _counts(h.carried))),
        ("outage: alert events per message, A / B",
         lambda r: _per_channel(r, "outage", lambda h: ", ".join(map(str, h.items_per_message)) or "—")),
        ("outage: messages' arrival after the switch, A / B",
         lambda r: _per_channel(r, "outage", lambda h: ", ".join(f"+{a:.1f} s" for a in h.arrived_after) or "—")),
        ("**outage: parent latency ms, A / B**", lambda r: "**" + _per_channel(r, "outage", latency) + "**"),
        ("outage: crossing → opened + opened → message written + written → arrival ms, A / B",
         lambda r: _per_channel(r, "outage", breakdown)),
        ("targets up after the switch down", lambda r: seconds(r.round.up_at - r.round.down_at)),
        ("parent's first success after the switch up", lambda r: seconds(r.parent_recovered_after)),
        ("**recovery: messages received, A / B**",
         lambda r: "**" + _per_channel(r, "recovery", lambda h: _counts(h.messages)) + "**"),
        ("recovery: alert events carried, A / B",
         lambda r: _per_channel(r, "recovery", lambda h: _counts(h.carried))),
        ("recovery: alert events per message, A / B",
         lambda r: _per_channel(r, "recovery", lambda h: ", ".join(map(str, h.items_per_message)) or "—")),
        ("recovery: messages' arrival after the switch, A / B",
         lambda r: _per_channel(r, "recovery", lambda h: ", ".join(f"+{a:.1f} s" for a in h.arrived_after) or "—")),
        ("**recovery: parent latency ms, A / B**", lambda r: "**" + _per_channel(r, "recovery", latency) + "**"),
        ("recovery: crossing → resolved + resolved → message written + written → arrival ms, A / B",
         lambda r: _per_channel(r, "recovery", breakdown)),
        ("children's alerts resolved; children told firing (by any message), A / B",
         lambda r: f"{r.children_resolved}; " + " / ".join(str(len(r.children_told.get(n, ()))) for n in CHANNELS)),
        ("**alerts told firing and never told resolved, A / B**",
         lambda r: "**" + " / ".join(str(len(r.left_firing.get(n, ()))) for n in CHANNELS) + "**"),
        ("alerts of other probes", lambda r: str(r.other_alerts)),
        ("round length", lambda r: f"{r.round.ended_at - r.round.down_at:.0f} s"),
    ]
    header = "| round | " + " | ".join(str(r.round.number) for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    lines += [f"| {name} | " + " | ".join(show(r) for r in results) + " |" for name, show in rows]
    return "\n".join(lines)


@dataclass
class Verdict:
    outage_messages: list[int]
    recovery_messages: list[int]
    firing_ms: list[float]
    resolved_ms: list[float]
    parent_untold: int  # (round, channel) halves whose parent event no message carried
    noise_outage: int  # children's firing carried by a message in an outage half
    noise_recovery: int  # children's firing carried by a message in a recovery half
    not_in_body: int
    engine_mismatches: int
    left_firing: int  # (channel, alert) told firing and never told resolved


def verdict(results: list[RoundResult]) -> Verdict:
    v = Verdict([], [], [], [], 0, 0, 0, 0, 0, 0)
    for result in results:
        v.engine_mismatches += result.engine_mismatch
        v.left_firing += sum(len(alerts) for alerts in result.left_firing.values())
        for (_, half_name), half in result.halves.items():
            (v.outage_messages if half_name == "outage" else v.recovery_messages).append(sum(half.messages.values()))
            if half.latency_ms is None:
                v.parent_untold += 1
            else:
                (v.firing_ms if half_name == "outage" else v.resolved_ms).append(half.latency_ms)
                v.not_in_body += not half.in_body
            noise = sum(count for key, count in half.carried.items() if key.startswith("child ")
                        and not key.endswith(" resolved"))
            if half_name == "outage":
                v.noise_outage += noise
            else:
                v.noise_recovery += noise
    return v


def summary_table(args: argparse.Namespace, results: list[RoundResult], v: Verdict, checks: Checks) -> str:
    goal_ms = (args.group_wait + DELIVERY_MARGIN_SECONDS) * 1000
    halves = len(results) * len(CHANNELS)

    def messages(counts: list[int]) -> str:
        return f"{min(counts, default=0)} / {max(counts, default=0)} ({sum(counts)} in {len(counts)})"

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    def p99(values: list[float]) -> float:
        return percentile(sorted(values), .99) if values else float("inf")

    rows = [
        ("**outage: messages per channel and round**: min / max (total in rounds × channels)",
         f"**{messages(v.outage_messages)}**", "1", met(v.outage_messages and set(v.outage_messages) == {1})),
        ("**recovery: messages per channel and round**: min / max",
         f"**{messages(v.recovery_messages)}**", "1", met(v.recovery_messages and set(v.recovery_messages) == {1})),
        ("**outage: parent latency ms**, all rounds and channels: median / p99 / max",
         f"**{_three(v.firing_ms)}** (n = {len(v.firing_ms)})", f"p99 < {goal_ms:,.0f}",
         met(p99(v.firing_ms) < goal_ms and len(v.firing_ms) == halves)),
        ("**recovery: parent latency ms**: median / p99 / max",
         f"**{_three(v.resolved_ms)}** (n = {len(v.resolved_ms)})", f"p99 < {goal_ms:,.0f}",
         met(p99(v.resolved_ms) < goal_ms and len(v.resolved_ms) == halves)),
        ("**parent outages / recoveries not told** (round × channel)",
         f"**{sum(1 for r in results for n in CHANNELS if r.halves[(n, 'outage')].latency_ms is None)} / "
         f"{sum(1 for r in results for n in CHANNELS if r.halves[(n, 'recovery')].latency_ms is None)}**",
         "0 / 0", met(v.parent_untold == 0)),
        ("**children's firing told while the parent was down** (alert events carried, all channels)",
         f"**{v.noise_outage}**", "0", met(v.noise_outage == 0)),
        ("children's firing told after the parent recovered (alert events carried, all channels)",
         str(v.noise_recovery), "0", met(v.noise_recovery == 0)),
        ("**alerts told firing on a channel and never told resolved there** (channel × alert)",
         f"**{v.left_firing}**", "0", met(v.left_firing == 0)),
        ("children's alerts opened / suppressed (opened so, or held back at the flush)",
         f"{sum(r.children_opened for r in results)} / "
         f"{sum(r.opened_suppressed + r.held_at_flush for r in results)}", "", ""),
        ("**duplicates**: notification ids received twice / alert events carried twice on a channel",
         f"**{checks.duplicate_ids} / {checks.carried_twice}**", "0 / 0",
         met(not checks.duplicate_ids and not checks.carried_twice)),
        ("parent's message not naming its alert / rounds the engine replay does not explain",
         f"{v.not_in_body} / {v.engine_mismatches}", "0 / 0", met(not v.not_in_body and not v.engine_mismatches)),
        ("messages with a wrong signature / arriving outside the rounds", f"{checks.unsigned} / {checks.outside_rounds}",
         "0 / 0", met(not checks.unsigned and not checks.outside_rounds)),
        ("ERROR lines in the worker and beat logs", str(len(checks.log_errors)), "0", met(not checks.log_errors)),
    ]
    lines = ["| all rounds, both channels | result | goal | |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {goal} | {ok} |" for name, value, goal, ok in rows]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------

def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> int:
    children, _ = start_bench_app(args, tmp, stack)
    ports = start_fleet_targets(children)
    signing_keys = [secrets.token_urlsafe(24) for _ in CHANNELS]
    receivers = [stack.enter_context(WebhookReceiver(key)) for key in signing_keys]

    load_before = os.getloadavg()[0]
    began = time.monotonic()
    setup = create_setup(args, ports["http"], receivers, signing_keys)
    check_dependencies(setup)
    print(f"created {args.probes + 1} probes in {time.monotonic() - began:.1f} s", file=sys.stderr)

    commands, first_slot = start_deployment(children, setup.tenant_id, args.log_level, tmp)
    wait_until_evaluated(setup, args.probes + 1, first_slot + args.interval + 2, children)  # type: ignore[arg-type]

    rounds = [run_round(args, setup, receivers, children, number) for number in range(1, args.rounds + 1)]
    children.check_alive()
    results, checks = measure(args, setup, rounds, receivers, children)
    children.stop()

    v = verdict(results)
    print(setup_table(args, setup, commands, load_before))
    print()
    print(rounds_table(setup, results))
    print()
    print(summary_table(args, results, v, checks))
    for line in checks.log_errors[:20]:
        print(line, file=sys.stderr)
    lost = v.parent_untold or v.noise_outage or v.left_firing or checks.duplicate_ids or checks.carried_twice
    return 1 if lost else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="admin-mit-noise-bench-") as tmp, contextlib.ExitStack() as stack:
        try:
            return run(args, Path(tmp), stack)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
