#!/usr/bin/env python
"""Ansible executions: event throughput to the database and to a live SSE client, worker
memory, and how fast a cancel ends a run.

Setup (the infrastructure of ``bench/probe_throughput.py``): a scratch PostgreSQL database
(``ADMIN_MIT_TEST_POSTGRES_URL``, dropped at the end), Redis database ``--redis-db``
(default 10, **flushed at the start and the end**), a temporary instance directory and runs directory. One
tenant, an operator and an API token for it, a text inventory with one host
(``localhost ansible_connection=local ansible_python_interpreter=<this Python>``) and two
stored playbooks, all through the service layer. Then, as child processes in their own
process groups:

    celery -A celery_worker.celery worker -Q ansible --pool=prefork --concurrency=2 -O fair -n bench-ansible-<pid>@%h
    gunicorn … wsgi:app          (app.runner.api_command: 2 processes × 8 threads, on a free loopback port)

(The worker's name carries the benchmark's pid: a worker starting under a name ends the
playbook processes of any earlier worker of that name, so two benchmarks on one machine
must not share it.) Every request the benchmark makes goes over HTTP to that API with the token.

1. **Calibration**: plain ``ansible_runner.run`` (no code of ours) of the loop playbook with
   5 and 10 items gives the events per loop item and the fixed events of the playbook, and
   so the number of items K for which the run produces at least ``--events`` events.
2. **Reference** (unless ``--skip-reference``): the same K-item playbook with plain
   ``ansible-playbook`` (output to a file; wall and CPU time), and through our runner alone
   (``app.ansible.runs.run_playbook`` in a subprocess, every event counted and dropped:
   ansible-runner and our event handling without database, Redis or Celery).
3. **Throughput**: ``POST /api/v1/ansible/executions`` of the K-item playbook, an SSE client
   (``http.client``, one thread of this process) following ``/stream?after=0`` while it runs,
   the execution row polled every 0.1 s (``event_count`` is written with each batch of rows),
   and the worker's processes sampled every 0.5 s (RSS, PSS from ``smaps_rollup``, CPU).
   The main ``ansible-playbook`` process's scheduler state is sampled every 50 ms (running, or
   where it sleeps: ``wait_woken`` would be a write to a full pty, i.e. our reader falling
   behind), for the reference runs too, with the whole machine's busy cores (/proc/stat).
   Afterwards the stored rows are read: count, seq 1..N without a gap, per event type, against
   the reference's and the calibration's count, and each SSE event against its row. Then, as
   a ceiling for the storage: the stored events written again by ``EventWriter`` in this
   process (bursts of ``flush_events``, and batches the size of the run's flushes, timed), and
   a second SSE client reading the finished run from ``after=0``.
4. **Cancel**: ``--cancels`` executions, one after the other, of a playbook whose one task is
   ``command: sleep 300``. Once the task's ``runner_on_start`` event is stored, ``POST
   …/cancel``; latency is from just before that request until the execution reads
   ``canceled`` *and* no process carries its marker (``app.ansible.processes``, the
   ``ADMIN_MIT_ANSIBLE_RUN`` value ``admin-mit/<worker>/<id>``), both polled every 20 ms.

Exit status: 0 clean; 1 an event was lost, an SSE client missed or doubled one, or a cancel
took longer than ``--cancel-goal`` or did not end as ``canceled``; 2 the benchmark could not run.

    .venv/bin/python bench/ansible_events.py                 # 20,000 events, 20 cancels: about 5.5 minutes
    .venv/bin/python bench/ansible_events.py --quick         # 2,000 events, 3 cancels: about 1 minute
    .venv/bin/python bench/ansible_events.py --skip-reference --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from alert_latency import _epoch, _read  # bench/ is on sys.path when run as a script
from bench_env import ROOT, BenchError
from probe_throughput import (CLOCK_TICKS, READY_TIMEOUT, Children, _cpu_ticks, _database_label, _parents,
                              _postgres_backends, _pss_kib, _rss_kib, _stat_fields, _tree, log_errors, percentile,
                              start_bench_app, tail, wait_for_workers)

QUEUE = "ansible"
CALIBRATION_ITEMS = (5, 10)
REFERENCE_MARKER = f"admin-mit-bench-reference/{os.getpid()}/"  # processes of the reference runs
DB_POLL_SECONDS = 0.1
SAMPLE_SECONDS = 0.5
CANCEL_POLL_SECONDS = 0.02
CANCEL_TIMEOUT = 60.0
START_TIMEOUT = 120.0
SSE_END_TIMEOUT = 120.0
FINISHED = ("successful", "failed", "canceled", "timeout", "lost")

LOOP_PLAYBOOK = """\
- name: events
  hosts: all
  gather_facts: false
  tasks:
    - name: items
      ansible.builtin.debug:
        msg: "item {{{{ item }}}}"
      loop: "{{{{ range({items}) | list }}}}"
"""

SLEEP_PLAYBOOK = """\
- name: sleeper
  hosts: all
  gather_facts: false
  tasks:
    - name: sleep
      ansible.builtin.command: sleep 300
"""


def tenth_rates(times: list[float]) -> list[float]:
    """Events per second in each tenth of a run's events (by seq), from their ``created`` times."""
    n = len(times)
    rates = []
    for k in range(10):
        low, high = k * n // 10, max(k * n // 10 + 1, (k + 1) * n // 10 - 1)
        high = min(high, n - 1)
        span = times[high] - times[low]
        rates.append((high - low) / span if span > 0 else float("nan"))
    return rates


def machine_busy_ticks() -> int:
    """Busy CPU ticks of the whole machine so far (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4]


def inventory_text() -> str:
    return f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"


# --- options ---------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure an Ansible execution's event pipeline (runner → stored rows → SSE client), the "
                    "worker's memory while it runs, and cancel latency. Exit status: 0 ok, 1 an event lost or a "
                    "cancel over the goal, 2 the benchmark could not run.")
    parser.add_argument("--events", type=int,
                        help="events the throughput run must produce at least (default: 20000; --quick: 2000)")
    parser.add_argument("--cancels", type=int, help="executions to cancel (default: 20; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 events, 3 cancels")
    parser.add_argument("--skip-reference", action="store_true",
                        help="do not run the playbook with plain ansible-playbook and through the runner alone")
    parser.add_argument("--cancel-goal", type=float, default=5.0,
                        help="seconds a cancel may take (default: %(default)s)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="also write the results as JSON to FILE ('-' or no value: stdout, after the tables)")
    parser.add_argument("--database", metavar="URL|sqlite",
                        help="SQLAlchemy URL to use as is, or 'sqlite' for a temporary SQLite file "
                             "(default: a scratch PostgreSQL database, dropped at the end)")
    parser.add_argument("--redis-db", type=int, default=10,
                        help="Redis database for broker and cache, flushed at the start and the end "
                             "(default: %(default)s)")
    parser.add_argument("--log-level", choices=("warning", "info"), default="warning",
                        help="the worker's --loglevel (default: %(default)s)")
    parser.add_argument("--reference-child", nargs=3, metavar=("MODE", "DIR", "ITEMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_child:
        return args
    args.events = args.events if args.events is not None else (2000 if args.quick else 20000)
    args.cancels = args.cancels if args.cancels is not None else (3 if args.quick else 20)
    if args.events < 10:
        parser.error("--events must be at least 10")
    if args.cancels < 0:
        parser.error("--cancels must be 0 or more")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db must be 0..15")
    return args


# --- the reference runs (subprocesses) ---------------------------------------------------------

def _prepare_directory(directory: Path, items: int) -> None:
    """A playbook and inventory as a run would have them (``clean_env`` adds ansible.cfg and tmp/)."""
    (directory / "project").mkdir(parents=True)
    (directory / "inventory").mkdir()
    (directory / "project" / "main.yml").write_text(LOOP_PLAYBOOK.format(items=items))
    (directory / "inventory" / "hosts").write_text(inventory_text())


def _reference_env(directory: Path) -> dict[str, str]:
    from app.ansible.environment import clean_env
    from app.ansible.processes import MARKER_ENV

    env = clean_env(directory)
    env[MARKER_ENV] = f"{REFERENCE_MARKER}{directory.name}"
    return env


def reference_child(mode: str, directory: str, items: str) -> int:
    """Run in a subprocess: one run of the loop playbook, its event counts as one JSON line."""
    path = Path(directory)
    counts: Counter[str] = Counter()
    created: list[float] = []
    began = time.monotonic()
    if mode == "ansible-runner":  # nothing of ours: ansible-runner's own API
        import ansible_runner

        def handler(event: dict[str, Any]) -> bool:
            counts[str(event.get("event") or "verbose")] += 1
            return False

        result = ansible_runner.run(private_data_dir=str(path), playbook="main.yml",
                                    inventory=str(path / "inventory" / "hosts"), quiet=True,
                                    event_handler=handler, envvars={})
        status, rc = result.status, result.rc
    else:  # "runner": app.ansible.runs as the worker calls it, without storing anything
        from app.ansible.runs import RunRequest, run_playbook

        request = RunRequest(runs_dir=path, name="reference", marker=os.environ["ADMIN_MIT_ANSIBLE_RUN"],
                             inventory=inventory_text(), playbook_content=LOOP_PLAYBOOK.format(items=int(items)))

        def on_event(event: Any) -> None:
            counts[event.event] += 1
            created.append(event.created.timestamp())

        outcome = run_playbook(request, on_event=on_event)
        status, rc = outcome.status, outcome.rc
    print(json.dumps({"status": status, "rc": rc, "seconds": time.monotonic() - began, "events": counts,
                      "tenths": tenth_rates(created) if len(created) >= 100 else []}))
    return 0


def _run_reference(command: list[str], env: dict[str, str], cwd: Path, log: Path,
                   timeout: float) -> tuple[float, float, int, float]:
    """Run ``command`` to its end in a session of its own: (wall s, CPU s of it and its children,
    rc, cores the whole machine kept busy meanwhile)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_ticks()
    began = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = process.wait(timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc, (machine_busy_ticks() - busy_before) / CLOCK_TICKS / wall


def _child_run(tmp: Path, mode: str, items: int, timeout: float) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix=f"reference-{mode}-", dir=tmp))
    if mode == "ansible-runner":
        _prepare_directory(directory, items)
    env = dict(_reference_env(directory))
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'bench'}"
    log = tmp / f"reference-{mode}-{items}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--reference-child", mode, str(directory), str(items)]
    with PlaybookStates(env["ADMIN_MIT_ANSIBLE_RUN"]) as states:
        wall, cpu, rc, machine_cores = _run_reference(command, env, ROOT, log, timeout)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        raise BenchError(f"the {mode} reference run failed ({rc}):\n{tail(log)}")
    found = json.loads(lines[-1])
    if found["status"] != "successful":
        raise BenchError(f"the {mode} reference run ended {found['status']} ({found['rc']}):\n{tail(log)}")
    # The run's own time (the child's imports and start-up left out); CPU is the whole child's.
    return {"wall_s": found["seconds"], "process_wall_s": wall, "cpu_s": cpu, "events": Counter(found["events"]),
            "tenths": found.get("tenths") or [], "machine_cores": machine_cores, "states": states.shares()}


@dataclass
class Calibration:
    counts: dict[int, int]  # items → events
    per_item: int
    fixed: int
    items: int  # the loop's length for --events
    expected_events: int


def calibrate(tmp: Path, events: int) -> Calibration:
    counts = {items: sum(_child_run(tmp, "ansible-runner", items, 120)["events"].values())
              for items in CALIBRATION_ITEMS}
    low, high = CALIBRATION_ITEMS
    per_item, remainder = divmod(counts[high] - counts[low], high - low)
    if per_item < 1 or remainder:
        raise BenchError(f"the loop playbook's events do not grow by a whole number per item: {counts}")
    fixed = counts[low] - per_item * low
    items = max(1, math.ceil((events - fixed) / per_item))
    return Calibration(counts, per_item, fixed, items, fixed + per_item * items)


@dataclass
class Reference:
    playbook_wall_s: float
    playbook_cpu_s: float
    playbook_items_printed: int
    runner_wall_s: float
    runner_cpu_s: float
    runner_events: dict[str, int]
    playbook_machine_cores: float
    runner_machine_cores: float
    runner_tenths: list[float]
    playbook_states: str
    runner_states: str


def run_references(tmp: Path, items: int) -> Reference:
    from app.ansible.environment import command

    directory = Path(tempfile.mkdtemp(prefix="reference-playbook-", dir=tmp))
    _prepare_directory(directory, items)
    log = tmp / "reference-ansible-playbook.log"
    timeout = 600 + items * 0.1
    print(f"reference: ansible-playbook with {items:,} items …", file=sys.stderr)
    env = _reference_env(directory)
    with PlaybookStates(env["ADMIN_MIT_ANSIBLE_RUN"]) as states:
        playbook = [command("ansible-playbook"), "-i", str(directory / "inventory" / "hosts"),
                    str(directory / "project" / "main.yml")]
        wall, cpu, rc, playbook_cores = _run_reference(playbook, env, directory, log, timeout)
    if rc != 0:
        raise BenchError(f"plain ansible-playbook exited {rc}:\n{tail(log)}")
    printed = sum(1 for line in log.read_text(errors="replace").splitlines()
                  if line.startswith("ok: [localhost] => (item="))
    print(f"reference: {wall:.1f} s; the same through app.ansible.runs alone …", file=sys.stderr)
    runner = _child_run(tmp, "runner", items, timeout)
    print(f"reference: {runner['wall_s']:.1f} s", file=sys.stderr)
    return Reference(wall, cpu, printed, runner["wall_s"], runner["cpu_s"], dict(runner["events"]), playbook_cores,
                     runner["machine_cores"], runner["tenths"], states.shares(), runner["states"])


def end_reference_processes() -> None:
    from app.ansible.processes import end_process_groups, processes_with_marker

    end_process_groups(processes_with_marker(prefix=REFERENCE_MARKER), 2.0)


# --- setup -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    tenant_id: int
    token: str
    inventory_id: int
    loop_playbook_id: int
    sleep_playbook_id: int


def create_setup(items: int) -> Setup:
    from app.services import ansible_inventories, ansible_playbooks, api_tokens, users
    from app.services.auth import Principal
    from app.services.tenants import create_tenant

    tenant = create_tenant(f"ansible-bench-{uuid.uuid4().hex[:8]}")
    user = users.create_user(f"ansible-bench-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16))
    users.grant(tenant.id, user, "operator")  # commits
    _, token = api_tokens.create_token(Principal(user.id, user.username, tenant.id, "operator", False), "bench")
    inventory = ansible_inventories.create_inventory(tenant.id, {
        "name": "local", "kind": "text", "format": "ini", "content": inventory_text()})
    loop = ansible_playbooks.create_playbook(tenant.id, {
        "name": f"loop-{items}", "source": "content", "content": LOOP_PLAYBOOK.format(items=items)})
    sleep = ansible_playbooks.create_playbook(tenant.id, {
        "name": "sleep", "source": "content", "content": SLEEP_PLAYBOOK})
    return Setup(tenant.id, token, inventory.id, loop.id, sleep.id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def worker_arguments(name: str, log_level: str) -> list[str]:
    return ["worker", "-Q", QUEUE, "--pool=prefork", "--concurrency=2", "-O", "fair", "-n", name,
            f"--loglevel={log_level}"]


def start_api(children: Children, port: int) -> list[str]:
    from app.core.config import active_settings
    from app.runner import api_command

    command = api_command(active_settings())
    children.spawn("api", "api", command)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        children.check_alive()
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return command
        time.sleep(0.2)
    raise BenchError(f"the API did not answer /healthz within {READY_TIMEOUT:g} s")


class Api:
    """JSON requests to the API on loopback with the bearer token (a connection per request)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, f"/api/v1{path}", body=json.dumps(body) if body is not None else None,
                               headers=self.headers)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        finally:
            connection.close()
        if response.status != expect:
            raise BenchError(f"{method} {path}: {response.status} {text[:500]}")
        return json.loads(text) if text else {}

    def create(self, setup: Setup, playbook_id: int) -> int:
        answer = self.call("POST", "/ansible/executions", {"playbook_id": playbook_id,
                                                            "inventory_id": setup.inventory_id}, expect=202)
        return int(answer["id"])


# --- following the stream ------------------------------------------------------------------------

@dataclass
class SseFollower:
    """An SSE client of ``/stream`` in a thread: each event's seq, arrival time and data line."""

    port: int
    token: str
    execution_id: int
    received: list[tuple[int, float, bytes]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    end_at: float | None = None
    connections: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-sse", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        assert self._thread is not None
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        after = 0
        while not self._stop.is_set() and self.end is None and self.connections < 50:
            self.connections += 1
            try:
                after = self._follow(after)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def _follow(self, after: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", f"/api/v1/ansible/executions/{self.execution_id}/stream?after={after}",
                               headers={"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"})
            response = connection.getresponse()
            if response.status != 200:
                self.errors.append(f"GET /stream: {response.status} {response.read()[:300]!r}")
                time.sleep(1)
                return after
            event_id: bytes | None = None
            kind: bytes | None = None
            data: bytes | None = None
            while not self._stop.is_set():
                line = response.readline()
                if not line:
                    return after  # closed without the end: reconnect after the last id
                line = line.rstrip(b"\r\n")
                if not line:  # the blank line that dispatches a message
                    now = time.time()
                    if kind == b"end" and data is not None:
                        self.end, self.end_at = json.loads(data), now
                        return after
                    if event_id is not None and data is not None:
                        after = int(event_id)
                        self.received.append((after, now, data))
                    event_id = kind = data = None
                    continue
                if line.startswith(b":"):
                    continue
                name, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if name == b"id":
                    event_id = value
                elif name == b"event":
                    kind = value
                elif name == b"data":
                    data = value if data is None else data + b"\n" + value
            return after
        finally:
            connection.close()


# --- sampling the worker's processes -----------------------------------------------------------

class PlaybookStates:
    """Every 50 ms, the scheduler state of the run's main ``ansible-playbook`` process (the one
    whose parent is not an ansible-playbook: its forks carry the same command line) and, when it
    sleeps, where (``/proc/<pid>/wchan``). ``wait_woken`` is a write to a full pseudo-terminal:
    ansible waits for its reader (ansible-runner's pexpect loop) to catch up."""

    def __init__(self, marker_prefix: str) -> None:
        self.prefix = marker_prefix
        self.states: Counter[str] = Counter()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-states", daemon=True)

    def __enter__(self) -> PlaybookStates:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    @staticmethod
    def _is_playbook(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return b"ansible-playbook" in Path(f"/proc/{pid}/cmdline").read_bytes()
        return False

    def _find(self) -> int | None:
        from app.ansible.processes import processes_with_marker

        for pid in processes_with_marker(prefix=self.prefix):
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int(_stat_fields(pid)[1])
                if self._is_playbook(pid) and not self._is_playbook(parent):
                    return pid
        return None

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self._pid is None:
                self._pid = self._find()
                if self._pid is None:
                    continue
            try:
                state = _stat_fields(self._pid)[0]
                wchan = Path(f"/proc/{self._pid}/wchan").read_text().strip() if state != "R" else ""
            except (OSError, IndexError):
                self._pid = None
                continue
            if state in ("Z", "X"):
                self._pid = None
                continue
            self.states["running" if state == "R" else f"{state} {wchan or '?'}"] += 1

    def shares(self) -> str:
        total = sum(self.states.values())
        if not total:
            return "n/a"
        named = {"running": "running", "S wait_woken": "blocked writing to the pty"}
        return ", ".join(f"{named.get(key, key)} {count / total:.0%}" for key, count in self.states.most_common(5)) \
            + f" ({total:,} samples)"


def _redis_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "redis-server":
                    found.append(int(entry.name))
    return found


@dataclass
class ProcessSampler:
    """Every ``SAMPLE_SECONDS``: RSS and PSS of the worker's main process, of each pool
    process and of the playbook processes below them; CPU ticks per role."""

    worker_pid: int
    api_pid: int | None
    database_name: str | None
    samples: int = 0
    peak_kib: dict[str, int] = field(default_factory=dict)
    _baseline: dict[int, int] = field(default_factory=dict)
    _ticks: dict[str, dict[int, int]] = field(default_factory=dict)
    _names: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    started_at: float = 0.0
    stopped_at: float = 0.0

    def start(self) -> None:
        for pids in self._roles().values():
            for pid in pids:
                self._baseline[pid] = _cpu_ticks(pid)
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._sample()
        self.stopped_at = time.monotonic()

    def busiest(self, role: str) -> tuple[float, str]:
        """CPU seconds of the role's busiest process, and its name."""
        by_pid = self._ticks.get(role, {})
        if not by_pid:
            return 0.0, ""
        pid = max(by_pid, key=lambda p: by_pid[p] - self._baseline.get(p, 0))
        return (by_pid[pid] - self._baseline.get(pid, 0)) / CLOCK_TICKS, self._names.get(pid, str(pid))

    def cpu_seconds(self) -> dict[str, float]:
        return {role: sum(ticks - self._baseline.get(pid, 0) for pid, ticks in by_pid.items()) / CLOCK_TICKS
                for role, by_pid in self._ticks.items()}

    def _roles(self) -> dict[str, list[int]]:
        parents = _parents()
        pool = [pid for pid, parent in parents.items() if parent == self.worker_pid]
        playbook = [pid for root in pool for pid in _tree(root, parents)[1:]]
        roles = {"worker main": [self.worker_pid], "worker pool": pool, "ansible": playbook,
                 "bench": [os.getpid()], "redis": _redis_pids()}
        if self.api_pid is not None:
            roles["api"] = _tree(self.api_pid, parents)
        if self.database_name:
            roles["postgres"] = _postgres_backends(self.database_name)
        return roles

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            with contextlib.suppress(Exception):  # a process that vanished mid-sample
                self._sample()

    def _peak(self, name: str, kib: int) -> None:
        self.peak_kib[name] = max(self.peak_kib.get(name, 0), kib)

    def _sample(self) -> None:
        roles = self._roles()
        self.samples += 1
        main = roles["worker main"][0]
        pool = roles["worker pool"]
        rss = {pid: _rss_kib(pid) for pid in [main, *pool, *roles["ansible"]]}
        pss = {pid: _pss_kib(pid) for pid in [main, *pool]}
        self._peak("worker main rss", rss[main])
        self._peak("worker main pss", pss[main])
        self._peak("pool process rss", max((rss[pid] for pid in pool), default=0))
        self._peak("pool process pss", max((pss[pid] for pid in pool), default=0))
        self._peak("worker rss", rss[main] + sum(rss[pid] for pid in pool))
        self._peak("worker pss", pss[main] + sum(pss[pid] for pid in pool))
        self._peak("ansible rss", sum(rss[pid] for pid in roles["ansible"]))
        for role, pids in roles.items():
            by_pid = self._ticks.setdefault("worker" if role.startswith("worker") else role, {})
            for pid in pids:
                ticks = _cpu_ticks(pid)
                if ticks:
                    by_pid[pid] = ticks
                    if pid not in self._names:
                        with contextlib.suppress(OSError, IndexError, ValueError):
                            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                            name = " ".join(Path(w.decode(errors="replace")).name for w in words[:2])
                            if role == "ansible" and b"ansible-playbook" in b" ".join(words[:2]):
                                parent = int(_stat_fields(pid)[1])
                                forked = b"ansible-playbook" in Path(f"/proc/{parent}/cmdline").read_bytes()
                                name += " (a fork: the task's worker process)" if forked else " (the main process)"
                            self._names[pid] = name


# --- the throughput run ------------------------------------------------------------------------

@dataclass
class Throughput:
    execution_id: int
    status: str
    reason: str | None
    items: int
    expected_events: int  # from the calibration
    reference_events: int | None  # counted by the reference run through app.ansible.runs
    stored_rows: int
    event_count: int
    seq_min: int
    seq_max: int
    seq_gaps: int
    truncated_rows: int
    by_type: dict[str, int]
    first_created: float
    last_created: float
    last_visible: float  # first poll that saw event_count reach the end
    store_lag_ms: list[float]  # created → visible in the database, per event (poll resolution 0.1 s)
    sse_received: int
    sse_unique: int
    sse_out_of_order: int
    sse_last_at: float | None
    sse_end_at: float | None
    sse_connections: int
    sse_errors: list[str]
    sse_lag_ms: list[float]  # created → received by the SSE client, per event
    sse_mismatched: int  # events whose SSE data differs from the stored row (seq, event, stdout, data, truncated)
    posted_at: float
    started_at: float
    finished_at: float
    cpu_s: dict[str, float]
    busiest_ansible: tuple[float, str]
    peak_kib: dict[str, int]
    samples: int
    machine_cores: float  # the whole machine's busy cores from POST to the end
    tenths: list[float]  # ansible's event rate in each tenth of the run
    playbook_states: str
    flushes: int  # event_count changes the 0.1 s polls saw: about the worker's flushes
    replay_events_per_s: float | None = None  # EventWriter alone, the stored events written again
    flush_ms: list[float] = field(default_factory=list)  # EventWriter alone, flushes of the run's batch size
    catch_up_events_per_s: float | None = None  # a second SSE client reading the finished run from after=0
    catch_up_complete: bool | None = None

    @property
    def produced(self) -> int:
        """The events ansible produced: as the reference run counted them, else the calibration's count."""
        return self.reference_events if self.reference_events is not None else self.expected_events

    @property
    def lost(self) -> int:
        return self.produced - self.stored_rows

    @property
    def emit_s(self) -> float:
        return self.last_created - self.first_created

    @property
    def to_rows_s(self) -> float:
        return self.last_visible - self.first_created

    @property
    def to_sse_s(self) -> float | None:
        return None if self.sse_last_at is None else self.sse_last_at - self.first_created

    @property
    def wall_s(self) -> float:
        return self.finished_at - self.started_at


def _execution_state(execution_id: int) -> Any:
    from sqlalchemy import select

    from app.models import AnsibleExecution

    return _read(select(AnsibleExecution.status, AnsibleExecution.event_count, AnsibleExecution.reason,
                        AnsibleExecution.started_at, AnsibleExecution.finished_at, AnsibleExecution.worker)
                 .where(AnsibleExecution.id == execution_id))[0]


def _worker_pid(children: Children) -> int:
    return next(child.process.pid for child in children.items if child.role == "worker")


def run_throughput(args: argparse.Namespace, children: Children, api: Api, setup: Setup, port: int,
                   calibration: Calibration, reference: Reference | None, database_name: str | None,
                   marker_prefix: str) -> Throughput:
    from sqlalchemy import func, select

    from app.models import AnsibleExecutionEvent

    api_pid = next((child.process.pid for child in children.items if child.role == "api"), None)
    sampler = ProcessSampler(_worker_pid(children), api_pid, database_name)
    sampler.start()
    states = PlaybookStates(marker_prefix).__enter__()
    busy_before, began = machine_busy_ticks(), time.monotonic()
    posted_at = time.time()
    execution_id = api.create(setup, setup.loop_playbook_id)
    follower = SseFollower(port, setup.token, execution_id)
    follower.start()
    print(f"throughput: execution {execution_id}, {calibration.expected_events:,} events …", file=sys.stderr)
    seen: list[tuple[float, int]] = []  # (poll time, event_count) whenever it moved
    deadline = time.monotonic() + 600 + calibration.items * 0.1
    try:
        while True:
            state = _execution_state(execution_id)
            now = time.time()
            if not seen or state.event_count != seen[-1][1]:
                seen.append((now, state.event_count))
            if state.status in FINISHED:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"execution {execution_id} did not finish in time ({state.status}, "
                                 f"{state.event_count} events)")
            children.check_alive()
            time.sleep(DB_POLL_SECONDS)
    finally:
        sampler.stop()
        states.__exit__()
    machine_cores = (machine_busy_ticks() - busy_before) / CLOCK_TICKS / (time.monotonic() - began)
    if not follower.wait(SSE_END_TIMEOUT):
        follower.stop()
        follower.errors.append(f"no end event within {SSE_END_TIMEOUT:g} s of the execution's end")

    table = AnsibleExecutionEvent
    rows = _read(select(table.seq, table.event, table.created_at, table.host, table.play, table.task, table.stdout,
                        table.data, table.truncated)
                 .where(table.execution_id == execution_id).order_by(table.seq))
    if not rows:
        raise BenchError(f"execution {execution_id} ended {state.status} with no events: {state.reason}")
    created = {row.seq: _epoch(row.created_at) for row in rows}
    seqs = [row.seq for row in rows]
    store_lag, index = [], 0
    for seq in seqs:  # the first poll whose event_count covered the seq
        while index < len(seen) and seen[index][1] < seq:
            index += 1
        if index < len(seen):
            store_lag.append((seen[index][0] - created[seq]) * 1000)
    visible_at = next(at for at, count in seen if count >= seqs[-1])

    arrivals: dict[int, float] = {}
    out_of_order, previous = 0, 0
    for seq, at, _data in follower.received:
        out_of_order += seq <= previous
        previous = seq
        arrivals.setdefault(seq, at)
    sse_lag = [(at - created[seq]) * 1000 for seq, at in arrivals.items() if seq in created]
    mismatched = _mismatched(rows, follower.received)
    count = _read(select(func.count()).select_from(AnsibleExecutionEvent)
                  .where(AnsibleExecutionEvent.execution_id == execution_id))[0][0]
    return Throughput(
        execution_id=execution_id, status=state.status, reason=state.reason, items=calibration.items,
        expected_events=calibration.expected_events,
        reference_events=sum(reference.runner_events.values()) if reference else None,
        stored_rows=int(count), event_count=state.event_count, seq_min=seqs[0], seq_max=seqs[-1],
        seq_gaps=seqs[-1] - seqs[0] + 1 - len(seqs), truncated_rows=sum(1 for row in rows if row.truncated),
        by_type=dict(Counter(row.event for row in rows)), first_created=min(created.values()),
        last_created=max(created.values()), last_visible=visible_at, store_lag_ms=sorted(store_lag),
        sse_received=len(follower.received), sse_unique=len(arrivals), sse_out_of_order=out_of_order,
        sse_last_at=max(arrivals.values()) if arrivals else None, sse_end_at=follower.end_at,
        sse_connections=follower.connections, sse_errors=follower.errors, sse_lag_ms=sorted(sse_lag),
        sse_mismatched=mismatched, posted_at=posted_at, started_at=_epoch(state.started_at),
        finished_at=_epoch(state.finished_at),
        cpu_s=sampler.cpu_seconds(), busiest_ansible=sampler.busiest("ansible"), peak_kib=dict(sampler.peak_kib),
        samples=sampler.samples,
        machine_cores=machine_cores, tenths=tenth_rates([created[seq] for seq in seqs]),
        playbook_states=states.shares(), flushes=max(1, len(seen) - 1))


def _mismatched(rows: list[Any], received: list[tuple[int, float, bytes]]) -> int:
    """Events the SSE client got with other content than the stored row (each seq once)."""
    from app.services.execution_events import event_fields

    stored = {row.seq: row for row in rows}
    keys = ("seq", "event", "stdout", "data", "truncated", "host", "task")
    bad, checked = 0, set()
    for seq, _at, data in received:
        if seq in checked:
            continue
        checked.add(seq)
        row = stored.get(seq)
        got = json.loads(data)
        if row is None or any(got.get(key) != event_fields(row).get(key) for key in keys):
            bad += 1
    return bad


def replay(setup: Setup, execution_id: int, batch: int | None) -> tuple[float, list[float]]:
    """``EventWriter`` by itself: the run's stored events written again to a new execution row,
    as fast as this process hands them over. ``batch`` None: as the writer batches a burst
    (``flush_events``); else a flush every ``batch`` events, as the run's flushes were.
    Returns events per second and each flush's milliseconds."""
    from sqlalchemy import select

    from app.ansible.events import RunEvent
    from app.extensions import db
    from app.models import AnsibleExecution, AnsibleExecutionEvent
    from app.services import ansible_executions
    from app.services.execution_events import EventWriter

    rows = [RunEvent(seq=row.seq, uuid="", event=row.event, created=row.created_at, host=row.host, play=row.play,
                     task=row.task, stdout=row.stdout, data=row.data, truncated=row.truncated)
            for row in db.session.scalars(select(AnsibleExecutionEvent)
                                          .where(AnsibleExecutionEvent.execution_id == execution_id)
                                          .order_by(AnsibleExecutionEvent.seq))]
    now = datetime.now().astimezone()
    row = AnsibleExecution(tenant_id=setup.tenant_id, playbook_id=setup.loop_playbook_id, playbook_name="replay",
                           inventory_text="", credential_ids=[], options={}, status="running",
                           worker="bench-replay", started_at=now, heartbeat_at=now)
    db.session.add(row)
    db.session.commit()
    replay_id = row.id
    db.session.rollback()
    writer = EventWriter(replay_id)
    flushes: list[float] = []
    began = time.monotonic()
    for event in rows:
        if batch is None:
            writer.add(event)
            continue
        writer._buffer.append(dict(execution_id=replay_id, seq=event.seq, event=event.event,  # noqa: SLF001
                                   created_at=event.created, host=event.host, play=event.play, task=event.task,
                                   stdout=event.stdout, data=event.data, truncated=event.truncated))
        if len(writer._buffer) >= batch:  # noqa: SLF001
            flush_began = time.monotonic()
            writer.flush()
            flushes.append((time.monotonic() - flush_began) * 1000)
    writer.flush()
    elapsed = time.monotonic() - began
    if writer.written != rows[-1].seq:
        raise BenchError(f"the replay stored up to seq {writer.written} of {rows[-1].seq}")
    ansible_executions.finish(replay_id, "bench-replay", ansible_executions.Ending("successful"))
    return len(rows) / elapsed, sorted(flushes)


def catch_up_rate(port: int, token: str, execution_id: int, expected: int) -> tuple[float, bool]:
    """A second SSE client on the finished run from after=0, reading raw bytes and counting the
    ``id:`` lines (no parsing, so the server's rate, not this client's): events per second from
    the request to the end event, and whether it got every event and the end."""
    began = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ids, tail_bytes, ended = 0, b"", False
    try:
        connection.request("GET", f"/api/v1/ansible/executions/{execution_id}/stream?after=0",
                           headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200:
            raise BenchError(f"GET /stream: {response.status} {response.read()[:300]!r}")
        while time.monotonic() - began < SSE_END_TIMEOUT:
            chunk = response.read1(65536)
            if not chunk:
                break
            text = tail_bytes + chunk
            ids += text.count(b"\nid: ") - tail_bytes.count(b"\nid: ")
            ended = ended or b"\nevent: end\n" in text
            tail_bytes = text[-16:]
    finally:
        connection.close()
    return ids / (time.monotonic() - began), ids == expected and ended


# --- cancel latency ------------------------------------------------------------------------------

@dataclass
class CancelRun:
    execution_id: int
    status: str
    to_task_start_s: float  # POST create → the sleep task's runner_on_start stored (seen)
    processes_at_cancel: int
    canceled_after_s: float | None  # POST cancel → status canceled seen
    gone_after_s: float | None  # POST cancel → no process with the marker
    response_s: float  # the cancel request itself

    @property
    def latency_s(self) -> float | None:
        if self.canceled_after_s is None or self.gone_after_s is None:
            return None
        return max(self.canceled_after_s, self.gone_after_s)


def _task_started(execution_id: int) -> bool:
    from sqlalchemy import select

    from app.models import AnsibleExecutionEvent

    return bool(_read(select(AnsibleExecutionEvent.seq).where(
        AnsibleExecutionEvent.execution_id == execution_id, AnsibleExecutionEvent.event == "runner_on_start",
        AnsibleExecutionEvent.task == "sleep").limit(1)))


def cancel_once(children: Children, api: Api, setup: Setup) -> CancelRun:
    from app.ansible.processes import processes_with_marker
    from app.services.execution_runs import marker_prefix

    created_at = time.monotonic()
    execution_id = api.create(setup, setup.sleep_playbook_id)
    while not _task_started(execution_id):
        state = _execution_state(execution_id)
        if state.status in FINISHED:
            raise BenchError(f"execution {execution_id} ended {state.status} before its task started: {state.reason}")
        if time.monotonic() - created_at > START_TIMEOUT:
            raise BenchError(f"execution {execution_id}'s sleep task did not start within {START_TIMEOUT:g} s")
        children.check_alive()
        time.sleep(0.05)
    started_after = time.monotonic() - created_at
    marker = f"{marker_prefix(_execution_state(execution_id).worker)}{execution_id}"
    at_cancel = len(processes_with_marker(marker))
    began = time.monotonic()
    api.call("POST", f"/ansible/executions/{execution_id}/cancel", {}, expect=202)
    response = time.monotonic() - began
    canceled_after = gone_after = None
    status = "running"
    while time.monotonic() - began < CANCEL_TIMEOUT:
        if canceled_after is None:
            status = _execution_state(execution_id).status
            if status in FINISHED:
                canceled_after = time.monotonic() - began
        if gone_after is None and not processes_with_marker(marker):
            gone_after = time.monotonic() - began
        if canceled_after is not None and gone_after is not None:
            break
        time.sleep(CANCEL_POLL_SECONDS)
    else:
        status = _execution_state(execution_id).status
    return CancelRun(execution_id, status, started_after, at_cancel,
                     canceled_after if status == "canceled" else None, gone_after, response)


def run_cancels(args: argparse.Namespace, children: Children, api: Api, setup: Setup) -> list[CancelRun]:
    runs = []
    for number in range(1, args.cancels + 1):
        run = cancel_once(children, api, setup)
        runs.append(run)
        latency = "—" if run.latency_s is None else f"{run.latency_s:.2f} s"
        print(f"cancel {number}/{args.cancels}: execution {run.execution_id} {run.status} after {latency}",
              file=sys.stderr)
        # The pool process is free again once the worker's task returned: wait for the run's end entry.
        time.sleep(0.2)
    return runs


# --- report ------------------------------------------------------------------------------------

def _n(value: float) -> str:
    return f"{value:,.0f}"


def _pcts(values: list[float]) -> str:
    if not values:
        return "n/a"
    return " / ".join(_n(v) for v in (percentile(values, .5), percentile(values, .99), values[-1]))


def _mib(kib: int | None) -> str:
    return "n/a" if not kib else f"{kib / 1024:,.0f}"


def _flush_share(result: Throughput) -> float:
    """Share of the run's wall time its flushes would take at the replay's mean flush time."""
    return sum(result.flush_ms) / len(result.flush_ms) / 1000 * result.flushes / result.wall_s


def _by_type(stored: dict[str, int], reference: dict[str, int] | None) -> str:
    parts = []
    for kind in sorted(set(stored) | set(reference or {}), key=lambda k: (-stored.get(k, 0), k)):
        text = f"{kind} {stored.get(kind, 0):,}"
        if reference is not None and reference.get(kind, 0) != stored.get(kind, 0):
            text += f" (reference {reference.get(kind, 0):,})"
        parts.append(text)
    return ", ".join(parts)


def setup_table(args: argparse.Namespace, commands: list[str], calibration: Calibration, load_before: float) -> str:
    from importlib.metadata import version

    from app.core.config import active_settings
    from app.services.execution_events import STREAM_MAXLEN

    section = active_settings().ansible
    rows = [
        ("throughput playbook", f"one `debug` task, `loop: range({calibration.items})`, one local host "
                                "(`ansible_connection=local`), `gather_facts: false`"),
        ("events per item / fixed (calibration with plain `ansible_runner.run`)",
         f"{calibration.per_item} / {calibration.fixed} "
         f"({', '.join(f'{k} items: {v}' for k, v in calibration.counts.items())})"),
        ("cancel playbook", "one task, `command: sleep 300`, the same host"),
        ("processes", "<br>".join(f"`{command}`" for command in commands)),
        ("settings", f"`ansible` section: flush every {section.flush_interval_ms} ms or {section.flush_events:,} "
                     f"events, `max_event_bytes` {section.max_event_bytes:,}, kill grace "
                     f"{section.kill_grace_seconds:g} s, heartbeat {section.heartbeat_seconds:g} s; Redis stream "
                     f"maxlen {STREAM_MAXLEN:,}"),
        ("database / Redis", f"{_database_label(args.database)} / db {args.redis_db}"),
        ("versions", f"ansible-core {version('ansible-core')}, ansible-runner {version('ansible-runner')}, "
                     f"Python {sys.version.split()[0]}"),
        ("machine: cores / load average before the run", f"{os.cpu_count()} / {load_before:.2f}"),
    ]
    return "\n".join(["| setup | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def throughput_table(result: Throughput, reference: Reference | None) -> str:
    ref_count = "not run" if result.reference_events is None else f"{result.reference_events:,}"
    to_sse = result.to_sse_s
    cpu = result.cpu_s
    rows = [
        ("events ansible produced: calibration / reference run through app.ansible.runs",
         f"{result.expected_events:,} / {ref_count}"),
        ("stored rows / `event_count` / seq range (gaps)",
         f"{result.stored_rows:,} / {result.event_count:,} / {result.seq_min}–{result.seq_max} ({result.seq_gaps})"),
        ("**events lost**", f"**{result.lost}**" if result.lost >= 0 else f"**0** ({-result.lost} more stored "
                                                                                  "than produced)"),
        ("stored events by type" + ("" if reference is None else " (reference's count where it differs)"),
         _by_type(result.by_type, None if reference is None else reference.runner_events)),
        ("rows with `truncated` (stdout or data cut to `max_event_bytes`)", f"{result.truncated_rows}"),
        ("execution status", f"{result.status}" + (f" ({result.reason})" if result.reason else "")),
        ("ansible's own event rate: first → last `created_at`",
         f"{result.stored_rows / result.emit_s:,.0f} events/s over {result.emit_s:.1f} s"),
        ("ansible's event rate in each tenth of the run, events/s", " ".join(f"{v:,.0f}" for v in result.tenths)
         + ("" if reference is None or not reference.runner_tenths else
            " (through `app.ansible.runs` alone: " + " ".join(f"{v:,.0f}" for v in reference.runner_tenths) + ")")),
        ("the run's main `ansible-playbook` process, 50 ms samples", result.playbook_states),
        ("**events/s to stored rows**: first `created_at` → last row visible",
         f"**{result.stored_rows / result.to_rows_s:,.0f}** over {result.to_rows_s:.1f} s"),
        ("store lag ms, created → row visible (0.1 s polls): p50 / p99 / max", _pcts(result.store_lag_ms)),
        ("**events/s to the SSE client**: first `created_at` → last event received",
         "n/a" if to_sse is None else f"**{result.sse_unique / to_sse:,.0f}** over {to_sse:.1f} s"),
        ("**SSE lag ms**, created → received: p50 / p99 / max", f"**{_pcts(result.sse_lag_ms)}**"),
        ("SSE events received / distinct / out of order / connections",
         f"{result.sse_received:,} / {result.sse_unique:,} / {result.sse_out_of_order} / {result.sse_connections}"),
        ("SSE events whose content differs from the stored row", str(result.sse_mismatched)),
        ("SSE end event after the execution's `finished_at`",
         "not received" if result.sse_end_at is None else f"{(result.sse_end_at - result.finished_at) * 1000:,.0f} ms"),
    ]
    if reference is not None:
        rows += [
            ("**wall time: plain `ansible-playbook`** (output to a file)",
             f"**{reference.playbook_wall_s:.1f} s** (CPU {reference.playbook_cpu_s:.1f} s; "
             f"{reference.playbook_items_printed:,} items printed; machine busy {reference.playbook_machine_cores:.2f} "
             f"cores); its main process: {reference.playbook_states}"),
            ("wall time: through `app.ansible.runs` alone (ansible-runner, events counted and dropped)",
             f"{reference.runner_wall_s:.1f} s (CPU {reference.runner_cpu_s:.1f} s; machine busy "
             f"{reference.runner_machine_cores:.2f} cores); its main `ansible-playbook`: {reference.runner_states}"),
        ]
    rows += [
        ("**wall time: ours**, `started_at` → `finished_at`", f"**{result.wall_s:.1f} s**" + (
            f" (× {result.wall_s / reference.playbook_wall_s:.2f} plain ansible-playbook)" if reference else "")
         + f"; machine busy {result.machine_cores:.2f} cores"),
        ("wall time: ours, `POST` → SSE end event",
         "n/a" if result.sse_end_at is None else f"{result.sse_end_at - result.posted_at:.1f} s"),
        ("capacity of the storage alone: `EventWriter` replaying the stored events from the bench process "
         "(batches of `flush_events`)",
         "n/a" if result.replay_events_per_s is None else f"{result.replay_events_per_s:,.0f} events/s"),
        ("the same, one flush per run-sized batch: events per flush / flush ms p50 / p99 / flush time × the "
         "run's flushes per second", "n/a" if not result.flush_ms else
         f"{round(result.stored_rows / result.flushes)} / {percentile(result.flush_ms, .5):.1f} / "
         f"{percentile(result.flush_ms, .99):.1f} / {_flush_share(result):.1%} of the time"),
        ("a second SSE client reading the finished run from `after=0` (raw bytes, `id:` lines counted)",
         "n/a" if result.catch_up_events_per_s is None else
         f"{result.catch_up_events_per_s:,.0f} events/s" + ("" if result.catch_up_complete else " (**incomplete**)")),
        ("**worker RSS max, MiB**: main / largest pool process / main + pool",
         f"**{_mib(result.peak_kib.get('worker main rss'))} / {_mib(result.peak_kib.get('pool process rss'))} / "
         f"{_mib(result.peak_kib.get('worker rss'))}**"),
        ("worker PSS max, MiB: main / largest pool process / main + pool",
         f"{_mib(result.peak_kib.get('worker main pss'))} / {_mib(result.peak_kib.get('pool process pss'))} / "
         f"{_mib(result.peak_kib.get('worker pss'))}"),
        ("playbook processes (app.ansible.guard, ansible-playbook and its forks) RSS max, MiB",
         _mib(result.peak_kib.get("ansible rss"))),
        ("CPU seconds during the run: ansible / worker / API / PostgreSQL / Redis / bench",
         " / ".join(f"{cpu.get(role, 0):.1f}" for role in ("ansible", "worker", "api", "postgres", "redis", "bench"))),
        ("busiest playbook process: CPU seconds (share of the run's wall time)",
         f"{result.busiest_ansible[0]:.1f} s ({result.busiest_ansible[0] / result.wall_s:.0%}): "
         f"`{result.busiest_ansible[1]}`"),
        ("process samples (every 0.5 s)", str(result.samples)),
    ]
    return "\n".join(["| throughput | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def cancel_table(runs: list[CancelRun], goal: float) -> str:
    latencies = sorted(run.latency_s for run in runs if run.latency_s is not None)
    over = [run for run in runs if run.latency_s is None or run.latency_s > goal]

    def spread(values: list[float]) -> str:
        values = sorted(values)
        if not values:
            return "n/a"
        return f"{percentile(values, .5):.2f} / {values[-1]:.2f}"

    rows = [
        ("executions canceled", f"{len(runs)} ({Counter(run.status for run in runs)})"),
        ("**cancel latency s** (`POST …/cancel` → `canceled` and no marked process): median / max",
         f"**{spread(latencies)}**"),
        ("→ status `canceled` seen: median / max", spread([r.canceled_after_s for r in runs
                                                           if r.canceled_after_s is not None])),
        ("→ no process with the run's marker: median / max", spread([r.gone_after_s for r in runs
                                                                    if r.gone_after_s is not None])),
        ("the cancel request's response: median / max", spread([r.response_s for r in runs])),
        ("marked processes when the cancel was sent: min / max",
         f"{min((r.processes_at_cancel for r in runs), default=0)} / "
         f"{max((r.processes_at_cancel for r in runs), default=0)}"),
        ("`POST` execution → sleep task's `runner_on_start` stored: median / max",
         spread([r.to_task_start_s for r in runs])),
        (f"**over {goal:g} s, or not canceled** (execution ids)",
         "**none**" if not over else "**" + ", ".join(
             f"{run.execution_id} ({'—' if run.latency_s is None else f'{run.latency_s:.2f} s'}, {run.status})"
             for run in over) + "**"),
    ]
    return "\n".join(["| cancel | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def results_json(args: argparse.Namespace, calibration: Calibration, reference: Reference | None,
                 result: Throughput, cancels: list[CancelRun]) -> dict[str, Any]:
    summary = {key: value for key, value in asdict(result).items() if key not in ("store_lag_ms", "sse_lag_ms")}
    summary.update(
        lost=result.lost, events_per_s_to_rows=result.stored_rows / result.to_rows_s,
        events_per_s_to_sse=None if result.to_sse_s is None else result.sse_unique / result.to_sse_s,
        events_per_s_emitted=result.stored_rows / result.emit_s, wall_s=result.wall_s,
        store_lag_ms={"p50": percentile(result.store_lag_ms, .5), "p99": percentile(result.store_lag_ms, .99),
                      "max": result.store_lag_ms[-1] if result.store_lag_ms else None},
        sse_lag_ms={"p50": percentile(result.sse_lag_ms, .5), "p99": percentile(result.sse_lag_ms, .99),
                    "max": result.sse_lag_ms[-1] if result.sse_lag_ms else None})
    latencies = sorted(run.latency_s for run in cancels if run.latency_s is not None)
    return _json({
        "events": args.events, "cancels": args.cancels, "machine": {"cores": os.cpu_count()},
        "calibration": asdict(calibration), "reference": asdict(reference) if reference else None,
        "throughput": summary,
        "cancel": {"runs": [dict(asdict(run), latency_s=run.latency_s) for run in cancels],
                   "median_s": percentile(latencies, .5) if latencies else None,
                   "max_s": latencies[-1] if latencies else None,
                   "over_goal": [run.execution_id for run in cancels
                                 if run.latency_s is None or run.latency_s > args.cancel_goal]},
    })


# --- main ------------------------------------------------------------------------------------

def end_leftovers(prefix: str) -> None:
    """Whatever a run of ours left running (ansible-runner puts the playbook in a session of
    its own, so stopping the worker's process group does not reach it)."""
    from app.ansible.processes import end_process_groups, processes_with_marker

    left = processes_with_marker(prefix=prefix)
    if left:
        print(f"bench: ending {len(left)} leftover playbook processes ({prefix})", file=sys.stderr)
        end_process_groups(left, 2.0)


def flush_redis() -> None:
    if "app.core.redis_client" not in sys.modules:
        return  # the app never started
    from app.core.redis_client import get_redis

    with contextlib.suppress(Exception):
        get_redis().flushdb()


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> int:
    port = free_port()
    worker_name = f"bench-ansible-{os.getpid()}@{socket.gethostname()}"
    os.environ.update({"ADMIN_MIT_ANSIBLE__RUNS_DIR": str(tmp / "runs"), "ADMIN_MIT_API__HOST": "127.0.0.1",
                       "ADMIN_MIT_API__PORT": str(port)})
    # execution_runs.marker_prefix(worker_name); the app is not imported before its environment is set.
    prefix = f"admin-mit/{worker_name}/"
    stack.callback(flush_redis)  # last: the run's streams and the broker's keys, once everything has stopped
    stack.callback(end_leftovers, prefix)  # after the children are stopped, too
    children, database_url = start_bench_app(args, tmp, stack)
    from app.services.execution_runs import marker_prefix

    if marker_prefix(worker_name) != prefix:
        raise BenchError(f"the runs' marker is {marker_prefix(worker_name)!r}, not {prefix!r}")
    stack.callback(end_leftovers, prefix)  # before the worker is stopped
    stack.callback(end_reference_processes)
    load_before = os.getloadavg()[0]

    print("calibrating …", file=sys.stderr)
    calibration = calibrate(tmp, args.events)
    setup = create_setup(calibration.items)
    reference = None if args.skip_reference else run_references(tmp, calibration.items)

    worker = worker_arguments(worker_name, args.log_level)
    children.start("worker-ansible", "worker", *worker)
    wait_for_workers(children, 1)
    api_command = start_api(children, port)
    commands = [" ".join(["celery -A celery_worker.celery", *worker]).replace(worker_name, "bench-ansible-<pid>@%h"),
                " ".join(["gunicorn", *api_command[api_command.index("gunicorn") + 1:]])]
    api = Api(port, setup.token)

    database_name = database_url.rpartition("/")[2] if args.database is None else None
    result = run_throughput(args, children, api, setup, port, calibration, reference, database_name, prefix)
    result.catch_up_events_per_s, result.catch_up_complete = catch_up_rate(port, setup.token, result.execution_id,
                                                                           result.stored_rows)
    result.replay_events_per_s, _ = replay(setup, result.execution_id, None)
    _, result.flush_ms = replay(setup, result.execution_id, max(1, round(result.stored_rows / result.flushes)))
    cancels = run_cancels(args, children, api, setup) if args.cancels else []
    children.check_alive()
    errors = log_errors(children)
    children.stop()
    from app.ansible.processes import processes_with_marker

    leftover = len(processes_with_marker(prefix=prefix))

    print(setup_table(args, commands, calibration, load_before))
    print()
    print(throughput_table(result, reference))
    if cancels:
        print()
        print(cancel_table(cancels, args.cancel_goal))
    print()
    print(f"ERROR lines in the worker and API logs: {len(errors)}; playbook processes left after the worker "
          f"stopped: {leftover}")
    for line in errors[:20]:
        print(line, file=sys.stderr)
    for line in result.sse_errors[:10]:
        print(f"bench: SSE client: {line}", file=sys.stderr)
    if args.json:
        document = json.dumps(results_json(args, calibration, reference, result, cancels), indent=2, default=str)
        if args.json == "-":
            print()
            print(document)
        else:
            Path(args.json).write_text(document + "\n")
    bad_cancel = any(run.latency_s is None or run.latency_s > args.cancel_goal or run.status != "canceled"
                     for run in cancels)
    bad_events = (result.lost != 0 or result.seq_gaps or result.stored_rows != result.event_count
                  or result.sse_unique != result.stored_rows or result.sse_received != result.sse_unique
                  or result.sse_mismatched or not result.catch_up_complete
                  or result.status != "successful")
    return 1 if bad_cancel or bad_events or leftover else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reference_child:
        return reference_child(*args.reference_child)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C: worker, API, playbooks and the scratch database go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="admin-mit-ansible-bench-") as tmp, contextlib.ExitStack() as stack:
        try:
            return run(args, Path(tmp), stack)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
