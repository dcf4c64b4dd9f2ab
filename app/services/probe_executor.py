"""The worker process's probe executor: one event loop, thousands of probes in flight.

A Celery task hands probes to the executor and, for scheduled slots, returns at once:
the probes run on an asyncio loop in an OS thread of the process (``uvloop`` when it
is installed), each one bounded by its own deadline, so a dead target holds one
in-flight probe — never a pool process, and never a database transaction. The same
loop serves every pool the worker may use (prefork: one executor per child; threads,
solo and gevent: one per worker).

At most ``probes.max_in_flight`` probes run at once; a task that brings more waits
before it claims its slots, so its message stays with the broker for another worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from app.core.os_threads import allocate_lock, cooperative_sleep, start_thread, wait_future
from app.probes import new_event_loop, run_probe
from app.probes.base import ProbeOutcome, ProbeSpec, ProbeStatus
from app.probes.conditions import Conditions

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 10.0
SLOT_WAIT_SLACK = 0.002  # seconds added to a wait for a run's slot
# Runs handed over ahead of their slot start on the next multiple of this after it: the
# loop wakes ten times a second to start runs together, not once per run (waking per run
# doubled the worker's CPU per run in bench/probe_throughput.py).
START_STEP_MS = 100


@dataclass(frozen=True)
class ProbeJob:
    """One run to carry out: what to probe, and what the result row will say it was."""

    spec: ProbeSpec
    conditions: Conditions
    tenant_id: int
    probe_id: int
    run_key: str
    probe_type: str
    slot_ms: int | None = None  # the scheduled slot, for a dispatcher's run: it starts no earlier
    problem: str | None = None  # set when the saved probe cannot be run: its result is this error


@dataclass(frozen=True)
class Finished:
    job: ProbeJob
    outcome: ProbeOutcome
    started_at: datetime


OnFinished = Callable[[Finished], None]


def _start_at(job: ProbeJob) -> float | None:
    """When a dispatcher's run starts (epoch seconds): its slot, rounded up to a start step."""
    if job.slot_ms is None:
        return None
    return math.ceil(job.slot_ms / START_STEP_MS) * START_STEP_MS / 1000


class ProbeExecutor:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self._lock = allocate_lock()
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._accepting = True

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # --- called from tasks (any thread, any pool) -------------------------------------------

    def wait_for_capacity(self, runs: int, timeout: float) -> bool:
        """Wait until ``runs`` more probes fit under ``max_in_flight`` (or nothing is in flight)."""
        deadline = time.monotonic() + timeout
        while self._in_flight and self._in_flight + runs > self.max_in_flight:
            if time.monotonic() >= deadline:
                return False
            cooperative_sleep(0.01)
        return True

    def submit(self, jobs: list[ProbeJob], on_finished: OnFinished) -> None:
        """Start ``jobs`` and return; ``on_finished`` is called on the loop's thread as each one ends."""
        if not jobs:
            return
        loop = self._running_loop()
        self._count(len(jobs))
        loop.call_soon_threadsafe(self._launch, jobs, on_finished)

    def run(self, jobs: list[ProbeJob], timeout: float) -> list[Finished]:
        """Run ``jobs`` and wait for all of them; results in the order of ``jobs``."""
        if not jobs:
            return []
        loop = self._running_loop()
        self._count(len(jobs))
        future: concurrent.futures.Future[list[Finished]] = asyncio.run_coroutine_threadsafe(
            self._run_all(jobs), loop)
        return wait_future(future, timeout)

    def drain(self, timeout: float) -> bool:
        """Accept nothing more and wait until the probes in flight have finished."""
        self._accepting = False
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            cooperative_sleep(0.05)
        if self._in_flight:
            log.error("stopping with %d probes still running after %g s", self._in_flight, timeout)
        return not self._in_flight

    # --- the loop --------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if not self._accepting:
            raise RuntimeError("the probe executor is shutting down")
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    self._start_loop()
        assert self._loop is not None
        return self._loop

    def _start_loop(self) -> None:
        ready: list[asyncio.AbstractEventLoop] = []

        def main() -> None:
            loop = new_event_loop()
            asyncio.set_event_loop(loop)
            ready.append(loop)
            loop.run_forever()

        start_thread(main, "probe-executor")
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not ready:
            if time.monotonic() > deadline:
                raise RuntimeError("the probe executor's event loop did not start")
            time.sleep(0.001)
        self._loop = ready[0]

    def _count(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta

    def _launch(self, jobs: list[ProbeJob], on_finished: OnFinished) -> None:
        """Start the jobs due now; the others together on a timer for their start step."""
        assert self._loop is not None
        due_at: dict[float, list[ProbeJob]] = {}
        now = time.time()
        for job in jobs:
            start_at = _start_at(job)
            if start_at is None or start_at <= now:
                self._start(job, on_finished)
            else:
                due_at.setdefault(start_at, []).append(job)
        for start_at, group in due_at.items():
            self._loop.call_later(start_at - now + SLOT_WAIT_SLACK, self._start_all, group, on_finished)

    def _start_all(self, jobs: list[ProbeJob], on_finished: OnFinished) -> None:
        for job in jobs:
            self._start(job, on_finished)

    def _start(self, job: ProbeJob, on_finished: OnFinished) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._run_one(job, on_finished))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_all(self, jobs: list[ProbeJob]) -> list[Finished]:
        finished: list[Finished] = []
        await asyncio.gather(*(self._run_one(job, finished.append) for job in jobs))
        order = {id(job): index for index, job in enumerate(jobs)}
        return sorted(finished, key=lambda item: order[id(item.job)])

    async def _run_one(self, job: ProbeJob, on_finished: OnFinished) -> None:
        start_at = _start_at(job)
        if start_at is not None:  # dispatched ahead of its slot: it starts on time, not early
            while (early := start_at - time.time()) > 0:
                # The loop's timers have millisecond resolution and may fire a little early:
                # sleeping exactly ``early`` again and again would spin until the slot.
                await asyncio.sleep(early + SLOT_WAIT_SLACK)
        started_at = datetime.now(timezone.utc)
        try:
            if job.problem is not None:
                outcome = ProbeOutcome(ProbeStatus.ERROR, error=job.problem, response_time_ms=0.0)
            else:
                outcome = await run_probe(job.spec, job.conditions)
        except Exception as exc:  # run_probe turns failures into outcomes; this is a last resort
            log.exception("probe %s crashed", job.probe_id)
            outcome = ProbeOutcome(ProbeStatus.ERROR, error=f"internal error: {type(exc).__name__}")
        finally:
            self._count(-1)
        try:
            on_finished(Finished(job, outcome, started_at))
        except Exception:
            log.exception("handing on the result of probe %s failed", job.probe_id)
