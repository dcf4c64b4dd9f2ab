"""CPU per scheduled run of a worker's bookkeeping: everything around the probe itself.

For each batch of ``--batch`` slots it does what a worker does for a dispatcher's
message, in this process and on a real PostgreSQL and Redis, without the network
probe: start the slots on their leases and read their probes (``start_scheduled``'s
database work), build each result row (``measured``) and store the rows as the result
writer does (insert, close the leases, commit, refresh the status cache). The leases
are opened beforehand, as the dispatcher would. It prints the process CPU per run of
each step, so a change to one of them can be measured alone::

    .venv/bin/python bench/run_bookkeeping.py
    .venv/bin/python bench/run_bookkeeping.py --probes 10000 --batch 200 --rounds 20
    .venv/bin/python bench/run_bookkeeping.py --alert-rule   # also the alerts worker's evaluation per result

The engine's own cost (a new-connection HTTP GET) is ``bench/probe_engine.py``; the
whole pipeline is ``bench/probe_throughput.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from bench_env import BenchError, point_app_at, scratch_postgres  # bench/ is on sys.path when run as a script


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--probes", type=int, default=5000, help="auto probes in the tenant")
    parser.add_argument("--batch", type=int, default=50, help="slots per dispatcher message")
    parser.add_argument("--rounds", type=int, default=10, help="times every probe gets a slot")
    parser.add_argument("--redis-db", type=int, default=8, help="Redis database for the status cache (flushed)")
    parser.add_argument("--alert-rule", action="store_true",
                        help="a tenant-wide down rule: also time the alert evaluation of every stored batch "
                             "(what an alerts worker does for the batch's message)")
    return parser.parse_args()


@contextmanager
def cpu_clock(totals: dict[str, float], step: str) -> Iterator[None]:
    started = time.process_time()
    yield
    totals[step] = totals.get(step, 0.0) + time.process_time() - started


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="admin-mit-bookkeeping-") as tmp, scratch_postgres() as url:
        point_app_at(args.redis_db, tmp, url)
        from app import create_app
        from app.extensions import db

        flask_app = create_app()
        with flask_app.app_context():
            db.create_all()
            return measure(args)


def measure(args: argparse.Namespace) -> int:
    from sqlalchemy import insert, select

    from app.core.redis_client import get_redis
    from app.extensions import db
    from app.models import Probe, ProbeLease
    from app.probes.base import ProbeOutcome, ProbeStatus
    from app.services import alert_evaluation, alert_rules, leases, probe_runs, result_store
    from app.services.probe_executor import Finished
    from app.services.tenants import create_tenant

    get_redis().flushdb()
    tenant = create_tenant("bookkeeping")
    db.session.execute(insert(Probe), [
        {"tenant_id": tenant.id, "name": f"p{index:05d}", "protocol": "http",
         "target": f"http://127.0.0.1:9/{index}", "interval_seconds": 10, "timeout_seconds": 5.0,
         "auto_probe": True, "enabled": True, "spec": {}, "conditions": {}} for index in range(args.probes)])
    db.session.commit()
    ids = list(db.session.scalars(select(Probe.id).where(Probe.tenant_id == tenant.id).order_by(Probe.id)))
    if args.alert_rule:
        alert_rules.create_rule(tenant.id, {"name": "all down", "kind": "down", "threshold": 3})

    totals: dict[str, float] = {}
    runs = 0
    base = int(time.time() * 1000)
    for round_ in range(args.rounds):
        slot = base + round_ * 10_000
        for first in range(0, len(ids), args.batch):
            batch = ids[first:first + args.batch]
            db.session.execute(insert(ProbeLease), [
                {"probe_id": pid, "slot_ms": slot, "tenant_id": tenant.id, "attempt": 0, "lease_ms": 8000,
                 "started_ms": None, "expires_ms": slot + 8000, "stale_ms": slot + 10_000} for pid in batch])
            db.session.commit()
            with cpu_clock(totals, "start: leases + probes + commit"):
                owned = leases.start(tenant.id, [(pid, slot, 0) for pid in batch], slot)
                probes = probe_runs._probes(tenant.id, [pid for pid, _ in owned])
                jobs = [probe_runs._job(probes[pid], f"auto:{slot}", "auto", slot) for pid, _ in sorted(owned)]
                db.session.commit()
            with cpu_clock(totals, "result rows (measured)"):
                now = datetime.now(timezone.utc)
                outcome = ProbeOutcome(ProbeStatus.SUCCESS, response_time_ms=3.2, status_code=200, bytes_read=2)
                measured = [probe_runs.measured(Finished(job, outcome, now)) for job in jobs]
            with cpu_clock(totals, "store: insert + close leases + commit + cache"):
                stored = result_store.store(measured)
            if args.alert_rule:
                with cpu_clock(totals, "alert evaluation of the batch (alerts worker)"):
                    alert_evaluation.evaluate([(probe_id, result_id) for (probe_id, _), result_id in stored.items()])
            runs += len(measured)
    if runs != args.probes * args.rounds:
        print(f"expected {args.probes * args.rounds} runs, stored {runs}", file=sys.stderr)
        return 1
    print(f"| step ({args.probes} probes, batches of {args.batch}, {runs} runs) | CPU µs per run |")
    print("|---|---:|")
    for step, seconds in totals.items():
        print(f"| {step} | {seconds / runs * 1e6:.0f} |")
    print(f"| **total** | **{sum(totals.values()) / runs * 1e6:.0f}** |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"run_bookkeeping: {exc}", file=sys.stderr)
        sys.exit(2)
