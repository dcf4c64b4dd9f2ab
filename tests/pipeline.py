"""Helpers for end-to-end pipeline tests: worker and beat processes, and the slot ledger.

``unaccounted_slots`` states the pipeline's promise in one function: every scheduled
slot of a probe ends as a stored result or as a counted loss, and never as both or
twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from sqlalchemy import select

from app.core.config import PROJECT_ROOT
from app.extensions import db
from app.models import Probe, ProbeResult, ProbeRunLoss
from app.services import leases, run_losses, scheduling


# What beat logs once its dispatcher has run a first tick: from then on, due slots are claimed on time.
DISPATCHING = "dispatcher: claiming due probes"
HOLD_MS = 3_600_000


def hold(probe_ids: list[int]) -> None:
    """Keep new probes' first slots an hour away, so a beat that takes a while to start claims none
    of them late: the test starts their schedules (``scheduling.restart``) once beat dispatches."""
    scheduling.restart(probe_ids, first_in_ms=HOLD_MS)


class Processes:
    """Worker and beat subprocesses of one test, each in its own process group, logging to files."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{name}.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_worker.celery", *args],
                                   cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.running[name] = process
        return process

    def worker(self, name: str, *options: str, queues: str = "network_probes") -> subprocess.Popen[bytes]:
        # Without mingle (a second of "searching for neighbors" at every start) and gossip:
        # neither is part of what these tests check, and workers still answer inspect.
        return self._start(name, ["worker", "--loglevel=info", "-Q", queues, "-n", f"{name}@%h",
                                  "--without-mingle", "--without-gossip", *options])

    def beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        return self._start(name, ["beat", "--loglevel=info", "-s", str(self.directory / f"{name}-schedule")])

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> None:
        process = self.running.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def alive(self, name: str) -> bool:
        return self.running[name].poll() is None


def wait_for_worker(name: str) -> None:
    """Until a worker started with ``-n <name>@%h`` answers ``inspect``."""
    from app import celery_utils
    from tests.conftest import wait_for

    wait_for(lambda: any(w["name"].startswith(f"{name}@") for w in celery_utils.get_worker_stats()["workers"]),
             timeout=60, what=f"worker {name}")


def stored_slots(probe_ids: list[int]) -> dict[int, list[int]]:
    """Scheduled slots with a stored result, per probe (a slot appearing twice would show twice)."""
    db.session.expire_all()
    rows = db.session.execute(
        select(ProbeResult.probe_id, ProbeResult.run_key)
        .where(ProbeResult.probe_id.in_(probe_ids), ProbeResult.run_key.like("auto:%"))).all()
    found: dict[int, list[int]] = defaultdict(list)
    for probe_id, run_key in rows:
        found[probe_id].append(int(run_key.removeprefix("auto:")))
    return found


def sweep_now(grace_ms: int = 0) -> None:
    """Count the leases that ended, as the dispatcher's next tick would."""
    run_losses.record(leases.sweep_stale(scheduling.now_ms(), grace_ms, 100_000))
    db.session.commit()


def unaccounted_slots(probe_ids: list[int], since_ms: int, until_ms: int) -> dict[str, dict[int, list[int]]]:
    """Per problem kind, the slots in ``[since_ms, until_ms)`` the pipeline did not account for.

    ``missing``: neither stored nor counted as a loss. ``twice``: stored more than once,
    or stored and counted, or counted twice. An empty dict means the ledger is exact.
    """
    db.session.expire_all()
    probes = {row.id: row for row in db.session.execute(
        select(Probe.id, Probe.interval_seconds, Probe.next_run_at).where(Probe.id.in_(probe_ids)))}
    accounted: dict[int, Counter[int]] = defaultdict(Counter)
    for probe_id, slots in stored_slots(probe_ids).items():
        accounted[probe_id].update(slots)
    for loss in db.session.scalars(select(ProbeRunLoss).where(ProbeRunLoss.probe_id.in_(probe_ids))):
        interval_ms = probes[loss.probe_id].interval_seconds * 1000
        accounted[loss.probe_id].update(loss.slot_ms + k * interval_ms for k in range(loss.slots))
    problems: dict[str, dict[int, list[int]]] = defaultdict(dict)
    for probe_id, probe in probes.items():
        interval_ms = probe.interval_seconds * 1000
        anchor = probe.next_run_at % interval_ms
        first = since_ms + (anchor - since_ms) % interval_ms
        expected = range(first, until_ms, interval_ms)
        missing = [slot for slot in expected if accounted[probe_id][slot] == 0]
        twice = sorted(slot for slot, count in accounted[probe_id].items() if count > 1)
        if missing:
            problems["missing"][probe_id] = missing
        if twice:
            problems["twice"][probe_id] = twice
    return dict(problems)


def losses_by_reason(probe_ids: list[int]) -> dict[str, int]:
    db.session.expire_all()
    totals: Counter[str] = Counter()
    for loss in db.session.scalars(select(ProbeRunLoss).where(ProbeRunLoss.probe_id.in_(probe_ids))):
        totals[loss.reason] += loss.slots
    return dict(totals)


def losses_after_dispatch(probe_ids: list[int]) -> dict[str, int]:
    """The losses of slots the dispatcher handed out: all but ``missed``.

    ``missed`` is counted by beat alone, for slots it reached a whole interval late (the
    machine stalled, as seen under CI load); tests of what workers do with their slots
    leave it out, while the ledger (``unaccounted_slots``) still holds every slot.
    """
    return {reason: slots for reason, slots in losses_by_reason(probe_ids).items() if reason != "missed"}


def loss_rows(probe_ids: list[int]) -> list[tuple[str, int, int, str]]:
    """Every loss row of the probes as (reason, probe, slot, recorded at), for failure messages."""
    db.session.expire_all()
    return [(loss.reason, loss.probe_id, loss.slot_ms, loss.recorded_at.isoformat()) for loss in
            db.session.scalars(select(ProbeRunLoss).where(ProbeRunLoss.probe_id.in_(probe_ids)))]
