#!/usr/bin/env python
"""Scheduled-probe throughput: N probes on loopback targets, real Celery workers and beats.

Creates one tenant and N auto probes, starts K workers on ``network_probes`` and
B beats (each dispatching due probes about every second), lets them run, stops
them and reads from the database how many runs were stored, how late they
started, and whether any slot ran twice or not at all. With ``--alerts``, a tenant-wide
``down`` rule notifies a rate-limited webhook receiver in this process and an ``alerts``
worker evaluates every stored batch, so the same fleet can be measured with rule
evaluation off and on. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench_env import REDIS_SERVER, ROOT, BenchError, scratch_postgres  # bench/ is on sys.path when run as a script

PROBE_QUEUE = "network_probes"
ALERTS_QUEUE = "alerts"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
SETTLE_MARGIN = 5.0  # seconds a dispatched run may take to be stored, on top of its interval
BEAT_START_SECONDS = 5.0  # the first slot comes this long after the beats are started
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- options ---------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure scheduled-probe throughput, dispatch lag and exactly-once delivery "
                    "with real workers and beats against loopback targets. Exit status: 0 ok, "
                    "1 a slot ran twice, 2 the benchmark could not run.",
    )
    parser.add_argument("--probes", type=int, default=1000, help="auto probes to create (default: %(default)s)")
    parser.add_argument("--interval", type=int, default=10,
                        help="interval of every probe in seconds, at least 5 (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=60,
                        help="seconds the beats run, warm-up included (default: %(default)s)")
    parser.add_argument("--warmup", type=float,
                        help="seconds after the beats start that are left out of the results (default: --interval)")
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="pool processes per worker (default: %(default)s)")
    parser.add_argument("--beats", type=int, default=2,
                        help="beat processes dispatching side by side (default: %(default)s)")
    parser.add_argument("--database", metavar="URL|sqlite",
                        help="SQLAlchemy URL to use as is, or 'sqlite' for a temporary SQLite file "
                             "(default: a scratch PostgreSQL database, dropped at the end)")
    parser.add_argument("--redis-db", type=int, default=8,
                        help="Redis database for broker and cache, flushed at start (default: %(default)s)")
    parser.add_argument("--protocol", choices=("http", "tcp", "udp"), default="http",
                        help="what the probes check (default: %(default)s)")
    parser.add_argument("--dead-share", type=float, default=0.0,
                        help="share of http probes whose target accepts connections and never answers "
                             "(default: %(default)s; the realistic fleet: 0.05)")
    parser.add_argument("--slow-share", type=float, default=0.0,
                        help="share of http probes whose target answers after --slow-ms (default: %(default)s)")
    parser.add_argument("--slow-ms", type=int, default=2000, help="delay of the slow targets (default: %(default)s)")
    parser.add_argument("--alerts", action="store_true",
                        help="evaluate alert rules: a tenant-wide down rule notifying a loopback webhook, and one "
                             "celery worker -Q alerts (default: off, no rule, no alerts worker)")
    parser.add_argument("--alert-threshold", type=int, default=3,
                        help="with --alerts: failures in a row that open an alert (default: %(default)s)")
    parser.add_argument("--alert-rate-limit", type=int, default=20,
                        help="with --alerts: the webhook channel's sends per 60 s; more become a summary "
                             "(default: %(default)s, the channel default)")
    parser.add_argument("--blackbox", metavar="PATH", nargs="?", const="prometheus-blackbox-exporter",
                        help="also run blackbox_exporter (Debian: prometheus-blackbox-exporter) on the same "
                             "targets at the same schedule for --duration, and report both")
    args = parser.parse_args(argv)
    args.warmup = float(args.interval if args.warmup is None else args.warmup)
    if args.probes < 1 or args.workers < 1 or args.concurrency < 1 or args.beats < 1:
        parser.error("--probes, --workers, --concurrency and --beats must be at least 1")
    if args.interval < 5:
        parser.error("--interval must be at least 5 (probes.min_interval_seconds)")
    if args.duration < args.warmup + args.interval + SETTLE_MARGIN + 1:
        parser.error(f"--duration must exceed warm-up + interval + {SETTLE_MARGIN:g} s, "
                     "or no slot can be checked")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db must be 0..15")
    if not (0 <= args.dead_share <= 0.5 and 0 <= args.slow_share <= 0.5):
        parser.error("--dead-share and --slow-share must be between 0 and 0.5")
    if not (1 <= args.alert_threshold <= 100 and 1 <= args.alert_rate_limit <= 10000):
        parser.error("--alert-threshold must be 1..100 and --alert-rate-limit 1..10000")
    if (args.dead_share or args.slow_share or args.blackbox) and args.protocol != "http":
        parser.error("--dead-share, --slow-share and --blackbox need --protocol http")
    return args


# --- database and environment ----------------------------------------------------------------

@contextlib.contextmanager
def database(choice: str | None, tmp: Path) -> Iterator[str]:
    """The database URL to benchmark on; a scratch PostgreSQL database lives only for the run."""
    if choice == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    if choice:
        yield choice
        return
    with scratch_postgres() as url:
        yield url


def configure_environment(args: argparse.Namespace, database_url: str, tmp: Path) -> None:
    """Point this process and every child at the benchmark's services (read once, at app import)."""
    host, _, port = REDIS_SERVER.rpartition(":")
    os.environ.update({
        "ADMIN_MIT_REDIS__EMBEDDED": "false",
        "ADMIN_MIT_REDIS__HOST": host,
        "ADMIN_MIT_REDIS__PORT": port,
        "ADMIN_MIT_REDIS__DB": str(args.redis_db),
        "ADMIN_MIT_DATABASE__URL": database_url,
        "ADMIN_MIT_APP__INSTANCE_PATH": str(tmp),
        "ADMIN_MIT_APP__LOG_LEVEL": "WARNING",
    })


def migrate() -> None:
    try:
        done = subprocess.run([sys.executable, "-m", "app", "db", "upgrade"], cwd=ROOT,
                              capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        raise BenchError("migration did not finish within 180 s") from None
    if done.returncode != 0:
        raise BenchError(f"migration failed: {(done.stderr or done.stdout).strip()[-2000:]}")


def start_loopback_targets(stack: contextlib.ExitStack) -> Any:
    from tests.targets import LoopbackTargets

    return stack.enter_context(LoopbackTargets())


def start_fleet_targets(children: Children) -> dict[str, int]:
    """bench/fleet_targets.py in a process of its own (role ``targets``); its ports."""
    child = children.spawn("targets", "targets", [sys.executable, str(ROOT / "bench" / "fleet_targets.py")])
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        children.check_alive()
        for line in child.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                return json.loads(line)
        time.sleep(0.05)
    raise BenchError("the fleet targets did not start")


def listen_overflows() -> int:
    """Connections the kernel dropped because a listen queue was full (system-wide counter)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split())).get("ListenOverflows", 0))
    return 0


CATEGORIES = ("healthy", "slow", "dead")


@dataclass(frozen=True)
class Fleet:
    tenant_id: int
    category: dict[int, str]  # probe id -> healthy, slow or dead
    target: dict[int, str]  # probe id -> what it checks
    timeout: float
    rule_id: int | None = None  # --alerts: the tenant-wide down rule


def create_alert_rule(args: argparse.Namespace, tenant_id: int, receiver_url: str, signing_key: str) -> int:
    """A webhook channel to the loopback receiver and a tenant-wide ``down`` rule notifying it."""
    from app.services.alert_rules import create_rule
    from app.services.notification_channels import create_channel

    channel = create_channel(tenant_id, {"name": "bench-hook", "kind": "webhook", "settings": {"url": receiver_url},
                                         "secrets": {"signing_key": signing_key},
                                         "rate_limit": args.alert_rate_limit, "rate_window_seconds": 60})
    rule = create_rule(tenant_id, {"name": "fleet down", "kind": "down", "threshold": args.alert_threshold,
                                   "recovery": 1, "channel_ids": [channel.id]})
    return rule.id


def _category(index: int, count: int, dead: int, slow: int) -> str:
    """Spread the dead and slow probes over the fleet (7919 is prime: ``index * 7919 % count`` permutes)."""
    order = index * 7919 % count
    return "dead" if order < dead else "slow" if order < dead + slow else "healthy"


def create_fleet(args: argparse.Namespace, http_ports: dict[str, int] | None, loopback: Any) -> Fleet:
    """One tenant with ``--probes`` auto probes, created through the service layer."""
    from app.services.probes import create_probe
    from app.services.tenants import create_tenant

    tenant = create_tenant(f"bench-{uuid.uuid4().hex[:8]}")
    timeout = min(5.0, args.interval / 2)
    dead, slow = round(args.probes * args.dead_share), round(args.probes * args.slow_share)
    category, target = {}, {}
    for index in range(args.probes):
        kind = _category(index, args.probes, dead, slow) if args.protocol == "http" else "healthy"
        if args.protocol == "http":
            assert http_ports is not None
            url = {"healthy": f"http://127.0.0.1:{http_ports['http']}/ok",
                   "slow": f"http://127.0.0.1:{http_ports['http']}/slow?ms={args.slow_ms}",
                   "dead": f"http://127.0.0.1:{http_ports['dead']}/"}[kind]
            fields: dict[str, Any] = {"protocol": "http", "target": url}
        else:
            address = loopback.tcp_echo if args.protocol == "tcp" else loopback.udp_echo
            fields = {"protocol": args.protocol, "target": address, "spec": {"body": "ping", "expect": "ping"}}
        created = create_probe(tenant.id, {"name": f"bench-{kind}-{index:05d}", "interval_seconds": args.interval,
                                           "timeout_seconds": timeout, **fields})
        category[created.id], target[created.id] = kind, fields["target"]
    return Fleet(tenant.id, category, target, timeout)


def anchor_schedule(tenant_id: int, first_slot: float) -> None:
    """Give the probes fresh first slots from ``first_slot`` (epoch seconds) on.

    Slots that passed while the workers and beats were starting would run late together
    and measure start-up, not the pipeline running.
    """
    from sqlalchemy import update

    from app.extensions import db
    from app.models import Probe
    from app.services.scheduling import reconcile

    db.session.execute(update(Probe).where(Probe.tenant_id == tenant_id).values(next_run_at=None, missed_runs=0))
    db.session.commit()
    reconcile(now=int(first_slot * 1000))


def count_alerts(tenant_id: int) -> int:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import Alert

    return int(db.session.scalar(select(func.count()).select_from(Alert).where(Alert.tenant_id == tenant_id)) or 0)


def count_unfinished_slots(interval: int, timeout: float) -> None:
    """Name the slots still queued or in flight when the workers stopped, as the dispatcher would.

    Waits until the last claimed slot and its lease have passed, then runs the dispatcher's
    sweep once with no grace, so every slot ends stored or counted.
    """
    from app.core.config import active_settings
    from app.extensions import db
    from app.services import leases, run_losses, scheduling

    time.sleep(max(interval, timeout + active_settings().probes.lease_margin_seconds) + 1)
    run_losses.record(leases.sweep_stale(scheduling.now_ms(), 0, 1_000_000))
    db.session.commit()


# --- child processes -------------------------------------------------------------------------

@dataclass
class Child:
    name: str
    role: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Children:
    """Workers and beats, each in its own process group so nothing outlives the benchmark."""

    directory: Path
    items: list[Child] = field(default_factory=list)

    def start(self, name: str, role: str, *args: str) -> Child:
        return self.spawn(name, role, [sys.executable, "-m", "celery", "-A", "celery_worker.celery", *args])

    def spawn(self, name: str, role: str, command: list[str]) -> Child:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        child = Child(name, role, process, log)
        self.items.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.items:
            if child.process.poll() is not None:
                raise BenchError(f"{child.name} exited with {child.process.returncode}:\n{tail(child.log)}")

    def stop(self, role: str | None = None) -> None:
        """SIGTERM (a warm shutdown: running tasks finish), wait, then kill whatever is left of the group."""
        chosen = [child for child in self.items if role is None or child.role == role]
        for child in chosen:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in chosen:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()


def tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def log_errors(children: Children) -> list[str]:
    found = []
    for child in children.items:
        for line in child.log.read_text(errors="replace").splitlines():
            if "ERROR" in line or "CRITICAL" in line or line.startswith("Traceback"):
                found.append(f"{child.name}: {line}")
    return found


def start_workers(children: Children, count: int, concurrency: int) -> None:
    for index in range(count):
        children.start(f"worker-{index}", "worker", "worker", "-Q", PROBE_QUEUE, "-n", f"bench{index}@%h",
                       f"--concurrency={concurrency}", "--loglevel=warning")


ALERTS_WORKER = ["worker", "-Q", ALERTS_QUEUE, "-n", "alerts@%h", "--loglevel=warning"]  # default prefork pool


def start_alerts_worker(children: Children) -> None:
    """``celery -A celery_worker.celery worker -Q alerts`` (role ``alerts``)."""
    children.start("alerts-0", "alerts", *ALERTS_WORKER)


def start_beats(children: Children, count: int) -> None:
    for index in range(count):
        children.start(f"beat-{index}", "beat", "beat", "--loglevel=warning",
                       "-s", str(children.directory / f"beat-{index}"))


def wait_for_workers(children: Children, count: int) -> None:
    from app.celery_app import celery

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        children.check_alive()
        if len(celery.control.ping(timeout=1.0)) >= count:
            return
    raise BenchError(f"{count} worker(s) did not answer a ping within {READY_TIMEOUT:g} s")


# --- sampling: queue length, RSS, CPU --------------------------------------------------------

def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    return parents


def _tree(root: int, parents: dict[int, int]) -> list[int]:
    pids, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        pids += frontier
    return pids


def _memory_kib(pid: int, path: str, field_name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1])
    return 0


def _rss_kib(pid: int) -> int:
    return _memory_kib(pid, "status", "VmRSS:")


def _pss_kib(pid: int) -> int:
    """Proportional set size: pages shared by several processes (a prefork parent and its
    children share the imported code) count in each by their share, not in full."""
    return _memory_kib(pid, "smaps_rollup", "Pss:")


def _cpu_ticks(pid: int) -> int:
    with contextlib.suppress(OSError, IndexError):
        fields = _stat_fields(pid)
        return int(fields[11]) + int(fields[12])  # utime + stime
    return 0


def _postgres_backends(database_name: str) -> list[int]:
    """Server processes serving the benchmark's database (they name it in their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f" {database_name} ".encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


@dataclass
class Sampler:
    """Once a second: queue length, RSS of the worker process trees, CPU time per role."""

    children: Children
    database_name: str | None
    window_start: float
    queue_peak: int = 0
    sample_alerts_queue: bool = False
    alerts_queue_peak: int = 0
    rss_peak_kib: dict[str, int] = field(default_factory=dict)  # peak of the summed RSS, per role
    pss_peak_kib: dict[str, int] = field(default_factory=dict)  # the same for PSS
    _ticks: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    _baseline: dict[str, int] | None = None
    _baseline_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def cores_used(self, until: float) -> dict[str, float]:
        """Average CPU cores per role between the window start and ``until``."""
        if self._baseline is None or until <= self._baseline_at:
            return {}
        totals = self._totals()
        return {role: (totals[role] - self._baseline.get(role, 0)) / CLOCK_TICKS / (until - self._baseline_at)
                for role in totals}

    def _run(self) -> None:
        from app.services.task_queue import queue_length

        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):  # a sample lost to a busy broker is not a result
                self.queue_peak = max(self.queue_peak, queue_length(PROBE_QUEUE))
                if self.sample_alerts_queue:
                    self.alerts_queue_peak = max(self.alerts_queue_peak, queue_length(ALERTS_QUEUE))
            self._sample_processes()
            if self._baseline is None and time.time() >= self.window_start:
                self._baseline, self._baseline_at = self._totals(), time.time()

    def _sample_processes(self) -> None:
        parents = _parents()
        rss: dict[str, int] = defaultdict(int)
        pss: dict[str, int] = defaultdict(int)
        roles: dict[str, list[int]] = {"bench": [os.getpid()]}
        for child in self.children.items:
            tree = _tree(child.process.pid, parents)
            roles.setdefault(child.role, []).extend(tree)
            rss[child.role] += sum(_rss_kib(pid) for pid in tree)
            pss[child.role] += sum(_pss_kib(pid) for pid in tree)
        if self.database_name:
            roles["postgres"] = _postgres_backends(self.database_name)
        for role, kib in rss.items():
            self.rss_peak_kib[role] = max(self.rss_peak_kib.get(role, 0), kib)
        for role, kib in pss.items():
            self.pss_peak_kib[role] = max(self.pss_peak_kib.get(role, 0), kib)
        for role, pids in roles.items():
            for pid in pids:
                ticks = _cpu_ticks(pid)
                if ticks:
                    self._ticks[role][pid] = ticks

    def _totals(self) -> dict[str, int]:
        return {role: sum(by_pid.values()) for role, by_pid in self._ticks.items()}


# --- measuring -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    start: float  # after warm-up
    end: float  # beats stopped
    settled_end: float  # last slot whose run must be stored by ``end``


@dataclass
class Category:
    """What one kind of target (healthy, slow, dead) got: results in the window, lags of settled slots."""

    probes: int = 0
    stored: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    response_ms: list[float] = field(default_factory=list)
    dispatch_lag_ms: list[float] = field(default_factory=list)
    completion_lag_ms: list[float] = field(default_factory=list)
    slots_expected: int = 0
    slots_missing: int = 0


@dataclass
class Results:
    window_seconds: float
    stored: int
    categories: dict[str, Category]
    slots_off_grid: int
    skipped_by_dispatcher: int
    duplicate_rows: int
    duplicate_counter: int
    losses: dict[str, int]
    queue_peak: int
    worker_rss_peak_mib: float
    beat_rss_peak_mib: float
    worker_pss_peak_mib: float
    beat_pss_peak_mib: float
    cores: dict[str, float]
    listen_overflows: int
    load_before: float
    evaluation: Evaluation | None = None  # --alerts


@dataclass
class Evaluation:
    """With ``--alerts``: what the alerts worker did in the window."""

    evaluated: int  # results evaluated between the window's two snapshots
    seconds: float  # between the snapshots
    unevaluated_at_end: int  # results stored but not yet evaluated when the beats stopped
    lag_ms: list[float]  # per probe, at the end: its state's last update − created_at of the last result it saw
    alerts_opened: int
    received: Counter[str]  # webhook messages, by event
    queue_peak: int
    rss_peak_mib: float
    pss_peak_mib: float


def evaluated_results(tenant_id: int, rule_id: int) -> tuple[float, int]:
    """(now, results of the tenant its rule has seen): the rule's state of each probe covers
    every result up to ``last_result_id``."""
    from sqlalchemy import and_, func, select

    from app.extensions import db
    from app.models import AlertState, ProbeResult

    try:
        count = db.session.scalar(
            select(func.count()).select_from(ProbeResult)
            .join(AlertState, and_(AlertState.probe_id == ProbeResult.probe_id, AlertState.rule_id == rule_id))
            .where(ProbeResult.tenant_id == tenant_id, ProbeResult.id <= AlertState.last_result_id))
    finally:
        db.session.rollback()
    return time.time(), int(count or 0)


def evaluation_at_end(fleet: Fleet) -> tuple[tuple[float, int], int, list[float]]:
    """When the beats stop: the evaluated count, the results not evaluated yet, and each
    probe's evaluation lag (its state's ``updated_at`` − ``created_at`` of its last seen result)."""
    from sqlalchemy import and_, func, select

    from app.extensions import db
    from app.models import AlertState, ProbeResult

    assert fleet.rule_id is not None
    end = evaluated_results(fleet.tenant_id, fleet.rule_id)
    try:
        behind = db.session.scalar(
            select(func.count()).select_from(ProbeResult)
            .join(AlertState, and_(AlertState.probe_id == ProbeResult.probe_id,
                                   AlertState.rule_id == fleet.rule_id))
            .where(ProbeResult.tenant_id == fleet.tenant_id, ProbeResult.id > AlertState.last_result_id))
        lags = sorted((_epoch(updated) - _epoch(created)) * 1000 for updated, created in db.session.execute(
            select(AlertState.updated_at, ProbeResult.created_at)
            .join(ProbeResult, and_(ProbeResult.id == AlertState.last_result_id,
                                    ProbeResult.probe_id == AlertState.probe_id))
            .where(AlertState.rule_id == fleet.rule_id)))
    finally:
        db.session.rollback()
    return end, int(behind or 0), lags


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp()


def _slot_ms(moment: datetime) -> int:
    return round(_epoch(moment) * 1000)


def _expected_slots(next_run_at_ms: int, interval_ms: int, start_ms: int, end_ms: int) -> range:
    """Slots of a fixed-rate schedule (all congruent to ``next_run_at``) falling in [start, end]."""
    phase = next_run_at_ms % interval_ms
    first = start_ms + (phase - start_ms) % interval_ms
    return range(first, end_ms + 1, interval_ms)


def measure(fleet: Fleet, window: Window, sampler: Sampler, overflows_before: int, load_before: float) -> Results:
    from sqlalchemy import func, select

    from app.core.redis_client import get_redis
    from app.extensions import db
    from app.models import Probe, ProbeResult, ProbeRunLoss
    from app.services.result_store import DUPLICATES_COUNTER

    tenant_id = fleet.tenant_id
    rows = db.session.execute(
        select(ProbeResult.probe_id, ProbeResult.status, ProbeResult.response_time_ms, ProbeResult.scheduled_for,
               ProbeResult.started_at, ProbeResult.created_at)
        .where(ProbeResult.tenant_id == tenant_id)
    ).all()
    probes = db.session.execute(
        select(Probe.id, Probe.next_run_at, Probe.interval_seconds, Probe.missed_runs)
        .where(Probe.tenant_id == tenant_id)
    ).all()
    duplicate_rows = db.session.scalar(
        select(func.count()).select_from(
            select(ProbeResult.probe_id)
            .where(ProbeResult.tenant_id == tenant_id, ProbeResult.scheduled_for.is_not(None))
            .group_by(ProbeResult.probe_id, ProbeResult.scheduled_for)
            .having(func.count() > 1)
            .subquery()
        )
    )

    categories = {kind: Category() for kind in CATEGORIES}
    for kind in fleet.category.values():
        categories[kind].probes += 1
    start_ms, end_ms = int(window.start * 1000), int(window.settled_end * 1000)
    in_window = 0
    slots_by_probe: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        kind = categories[fleet.category[row.probe_id]]
        if window.start <= _epoch(row.created_at) <= window.end:
            in_window += 1
            kind.stored += 1
            kind.statuses[row.status] += 1
            kind.response_ms.append(row.response_time_ms or 0.0)
        if row.scheduled_for is not None and start_ms <= _slot_ms(row.scheduled_for) <= end_ms:
            slots_by_probe[row.probe_id].add(_slot_ms(row.scheduled_for))
            kind.dispatch_lag_ms.append((_epoch(row.started_at) - _epoch(row.scheduled_for)) * 1000)
            kind.completion_lag_ms.append((_epoch(row.created_at) - _epoch(row.scheduled_for)) * 1000)
    off_grid = 0
    for probe in probes:
        kind = categories[fleet.category[probe.id]]
        due = set(_expected_slots(probe.next_run_at, probe.interval_seconds * 1000, start_ms, end_ms))
        stored = slots_by_probe.get(probe.id, set())
        kind.slots_expected += len(due)
        kind.slots_missing += len(due - stored)
        off_grid += len(stored - due)
    for kind in categories.values():
        for values in (kind.response_ms, kind.dispatch_lag_ms, kind.completion_lag_ms):
            values.sort()

    return Results(
        window_seconds=window.end - window.start,
        stored=in_window,
        categories=categories,
        slots_off_grid=off_grid,
        skipped_by_dispatcher=sum(probe.missed_runs for probe in probes),
        duplicate_rows=duplicate_rows or 0,
        duplicate_counter=int(get_redis().get(DUPLICATES_COUNTER) or 0),
        losses={reason: int(count) for reason, count in db.session.execute(
            select(ProbeRunLoss.reason, func.sum(ProbeRunLoss.slots))
            .where(ProbeRunLoss.tenant_id == tenant_id).group_by(ProbeRunLoss.reason)).all()},
        queue_peak=sampler.queue_peak,
        worker_rss_peak_mib=sampler.rss_peak_kib.get("worker", 0) / 1024,
        beat_rss_peak_mib=sampler.rss_peak_kib.get("beat", 0) / 1024,
        worker_pss_peak_mib=sampler.pss_peak_kib.get("worker", 0) / 1024,
        beat_pss_peak_mib=sampler.pss_peak_kib.get("beat", 0) / 1024,
        cores=sampler.cores_used(window.end),
        listen_overflows=listen_overflows() - overflows_before,
        load_before=load_before,
    )


# --- report ----------------------------------------------------------------------------------

def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _ms(value: float) -> str:
    return f"{value:,.0f}"


def _database_label(choice: str | None) -> str:
    if choice is None:
        return "PostgreSQL (scratch database)"
    if choice == "sqlite":
        return "SQLite (temporary file)"
    return choice.split("://", 1)[0]


def _lags(values: list[float]) -> str:
    return " / ".join(_ms(v) for v in (percentile(values, .5), percentile(values, .95), percentile(values, .99),
                                       values[-1] if values else float("nan")))


def _statuses(kind: Category) -> str:
    return ", ".join(f"{status} {count:,}" for status, count in sorted(kind.statuses.items())) or "none"


def report(args: argparse.Namespace, results: Results) -> str:
    rate = results.stored / results.window_seconds
    healthy = results.categories["healthy"]
    healthy_rate = healthy.stored / results.window_seconds
    cores = ", ".join(f"{role} {value:.2f}" for role, value in sorted(results.cores.items())) or "n/a"
    worker_ms_per_run = 1000 * results.cores.get("worker", float("nan")) / rate if rate else float("nan")
    offered = args.probes / args.interval
    rows = [
        ("probes × interval", f"{args.probes} {args.protocol} × {args.interval} s (offered {offered:,.1f} runs/s; "
                              + ", ".join(f"{kind.probes:,} {name}" for name, kind in results.categories.items()
                                          if kind.probes) + ")"),
        ("duration (warm-up excluded)", f"{args.duration:g} s ({args.warmup:g} s)"),
        ("workers × concurrency", f"{args.workers} × {args.concurrency}"),
        ("beats", str(args.beats)),
        ("database", _database_label(args.database)),
        ("machine: cores / load average before the run", f"{os.cpu_count()} / {results.load_before:.2f}"),
        ("**healthy runs/s stored**", f"**{healthy_rate:,.1f}** of {healthy.probes / args.interval:,.1f} offered "
                                      f"({_statuses(healthy)})"),
        ("all runs/s stored", f"{rate:,.1f} ({results.stored:,} results in {results.window_seconds:.0f} s)"),
    ]
    for name in ("slow", "dead"):
        kind = results.categories[name]
        if kind.probes:
            rows.append((f"{name} targets: results in window", _statuses(kind)))
    rows += [
        ("healthy probe response time ms: median / p99",
         f"{_ms(percentile(healthy.response_ms, .5))} / {_ms(percentile(healthy.response_ms, .99))}"),
        ("**healthy dispatch lag ms** (started − scheduled): median / p95 / p99 / max",
         f"**{_lags(healthy.dispatch_lag_ms)}**"),
        ("healthy completion lag ms (stored − scheduled): median / p95 / p99 / max", _lags(healthy.completion_lag_ms)),
        ("slots due in settled window: expected / missing, by kind",
         "; ".join(f"{name} {kind.slots_expected:,} / {kind.slots_missing:,}"
                   for name, kind in results.categories.items() if kind.probes)),
        ("stored slots off the schedule's grid", f"{results.slots_off_grid:,}"),
        ("slots lost, by reason: missed / expired / lost / unwritten (probe_run_losses)",
         " / ".join(f"{results.losses.get(reason, 0):,}" for reason in ("missed", "expired", "lost", "unwritten"))),
        ("**duplicate runs**: rows per (probe, slot) > 1 / re-runs skipped at write",
         f"**{results.duplicate_rows} / {results.duplicate_counter}**"),
        ("peak network_probes queue length (messages)", f"{results.queue_peak:,}"),
        ("peak RSS: workers (all processes) / beats (all)",
         f"{results.worker_rss_peak_mib:,.0f} MiB / {results.beat_rss_peak_mib:,.0f} MiB"),
        ("peak PSS (shared pages divided among the processes): workers / beats",
         f"{results.worker_pss_peak_mib:,.0f} MiB / {results.beat_pss_peak_mib:,.0f} MiB"),
        ("CPU cores used in window", cores),
        ("**worker CPU per stored run**", f"**{worker_ms_per_run:.2f} ms**"),
        ("TCP listen-queue overflows (system-wide; > 0: targets dropped connections)",
         f"{results.listen_overflows:,}"),
    ]
    rows += _evaluation_rows(args, results)
    lines = ["| parameter / result | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _evaluation_rows(args: argparse.Namespace, results: Results) -> list[tuple[str, str]]:
    evaluation = results.evaluation
    if evaluation is None:
        return [("alert evaluation", "off (no rule, no alerts worker)")]
    rate = evaluation.evaluated / evaluation.seconds if evaluation.seconds > 0 else float("nan")
    cores = results.cores.get("alerts", float("nan"))
    per_result_us = 1e6 * cores / rate if rate else float("nan")
    received = ", ".join(f"{event} {count:,}" for event, count in sorted(evaluation.received.items())) or "none"
    return [
        ("alert evaluation", f"on: tenant-wide `down` rule (threshold {args.alert_threshold}), webhook channel "
                             f"{args.alert_rate_limit}/60 s to a loopback receiver; "
                             f"`celery -A celery_worker.celery {' '.join(ALERTS_WORKER)}`"),
        ("results evaluated in window", f"{evaluation.evaluated:,} ({rate:,.1f}/s)"),
        ("**alerts worker CPU per evaluated result**", f"**{per_result_us:,.0f} µs** ({cores:.2f} cores)"),
        ("evaluation lag ms (state written − result created), each probe's last evaluation: "
         "median / p95 / p99 / max", _lags(evaluation.lag_ms)),
        ("results stored but not evaluated when the beats stopped", f"{evaluation.unevaluated_at_end:,}"),
        ("peak alerts queue length (messages)", f"{evaluation.queue_peak:,}"),
        ("peak RSS / PSS: alerts worker (all processes)",
         f"{evaluation.rss_peak_mib:,.0f} MiB / {evaluation.pss_peak_mib:,.0f} MiB"),
        ("alerts opened / webhook messages received", f"{evaluation.alerts_opened:,} / {received}"),
    ]


# --- main ------------------------------------------------------------------------------------

def start_bench_app(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> tuple[Children, str]:
    """The scratch database migrated, this process in its app context, the Redis database
    flushed; the (empty) set of child processes, stopped when ``stack`` closes, and the
    database URL."""
    database_url = stack.enter_context(database(args.database, tmp))
    configure_environment(args, database_url, tmp)
    migrate()

    from app import create_app
    from app.core.redis_client import get_redis

    stack.enter_context(create_app().app_context())
    get_redis().flushdb()
    children = Children(tmp)
    stack.callback(children.stop)
    return children, database_url


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> tuple[Results, Fleet, Children]:
    children, database_url = start_bench_app(args, tmp, stack)
    http_ports = start_fleet_targets(children) if args.protocol == "http" else None
    loopback = start_loopback_targets(stack) if args.protocol != "http" else None
    receiver = None
    if args.alerts:
        from webhook_receiver import WebhookReceiver  # bench/webhook_receiver.py

        signing_key = secrets.token_urlsafe(24)
        receiver = stack.enter_context(WebhookReceiver(signing_key))

    load_before = os.getloadavg()[0]
    began = time.monotonic()
    fleet = create_fleet(args, http_ports, loopback)
    if receiver is not None:
        fleet = dataclasses.replace(fleet, rule_id=create_alert_rule(args, fleet.tenant_id, receiver.url,
                                                                     signing_key))
    print(f"created {args.probes} probes in {time.monotonic() - began:.1f} s", file=sys.stderr)

    start_workers(children, args.workers, args.concurrency)
    if args.alerts:
        start_alerts_worker(children)
    wait_for_workers(children, args.workers + (1 if args.alerts else 0))
    started = time.time() + BEAT_START_SECONDS
    anchor_schedule(fleet.tenant_id, started)
    overflows = listen_overflows()
    start_beats(children, args.beats)
    sampler = Sampler(children, database_url.rpartition("/")[2] if args.database is None else None,
                      window_start=started + args.warmup, sample_alerts_queue=args.alerts)
    sampler.start()
    stack.callback(sampler.stop)
    print(f"running {args.duration:g} s …", file=sys.stderr)
    evaluated_start: tuple[float, int] | None = None
    while time.time() < started + args.duration:
        children.check_alive()
        if fleet.rule_id is not None and evaluated_start is None and time.time() >= started + args.warmup:
            evaluated_start = evaluated_results(fleet.tenant_id, fleet.rule_id)
        time.sleep(0.5)

    children.stop("beat")
    end = time.time()
    at_end = evaluation_at_end(fleet) if fleet.rule_id is not None else None
    sampler.stop()
    children.stop("worker")
    children.stop("alerts")
    count_unfinished_slots(args.interval, fleet.timeout)
    window = Window(start=started + args.warmup, end=end, settled_end=end - args.interval - SETTLE_MARGIN)
    results = measure(fleet, window, sampler, overflows, load_before)
    if at_end is not None and evaluated_start is not None and receiver is not None:
        (end_at, end_count), behind, lags = at_end
        results.evaluation = Evaluation(
            evaluated=end_count - evaluated_start[1], seconds=end_at - evaluated_start[0],
            unevaluated_at_end=behind, lag_ms=lags, alerts_opened=count_alerts(fleet.tenant_id),
            received=Counter(arrival.event for arrival in receiver.arrivals()),
            queue_peak=sampler.alerts_queue_peak, rss_peak_mib=sampler.rss_peak_kib.get("alerts", 0) / 1024,
            pss_peak_mib=sampler.pss_peak_kib.get("alerts", 0) / 1024)
    for line in log_errors(children)[:20]:
        print(line, file=sys.stderr)
    return results, fleet, children


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so workers, beats and the scratch database go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="admin-mit-bench-") as tmp, contextlib.ExitStack() as stack:
        try:
            results, fleet, children = run(args, Path(tmp), stack)
            print(report(args, results))
            if args.blackbox:
                from blackbox import compare  # bench/blackbox.py

                print()
                print(compare(args, fleet, children, results))
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    return 1 if results.duplicate_rows else 0


if __name__ == "__main__":
    sys.exit(main())
