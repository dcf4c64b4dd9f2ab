"""A worker killed in the middle of a probe loses nothing: the message comes back and runs once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.celery_app import build_config
from app.core.config import PROJECT_ROOT, load_settings
from app.extensions import db
from app.models import ProbeResult, ProbeRollup
from app.tasks.network_probe_tasks import execute_probe
from tests.conftest import make_probe, make_tenant, wait_for
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(120)

# Redis hands an unacknowledged message back after this long (2 h in production), found by a
# sweep every restore interval × throttle (100 s by default): seconds here, through the config.
TRANSPORT_OPTIONS = "{visibility_timeout: 3, unacked_restore_interval: 1, unacked_restore_throttle: 1}"


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "worker", "--pool=prefork",
         "--concurrency=1", "--loglevel=info", "-Q", "network_probes"],
        cwd=PROJECT_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        process.wait(30)


def test_broker_transport_options_from_config_keep_the_priority_settings() -> None:
    settings = load_settings(environ={**os.environ,
                                     "ADMIN_MIT_CELERY__BROKER_TRANSPORT_OPTIONS": "{visibility_timeout: 30}"})
    options = build_config(settings)["broker_transport_options"]
    assert options["visibility_timeout"] == 30
    assert options["queue_order_strategy"] == "priority" and options["priority_steps"] == list(range(10))


def test_probe_of_a_killed_worker_is_redelivered_and_stored_once(
    pg_app: Flask, postgres_url: str, targets: LoopbackTargets, tmp_path: Path
) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, f"{targets.http_url}/hold", auto_probe=False, timeout_seconds=30)
    env = {**os.environ, "ADMIN_MIT_DATABASE__URL": postgres_url,
           "ADMIN_MIT_CELERY__BROKER_TRANSPORT_OPTIONS": TRANSPORT_OPTIONS}
    log = tmp_path / "workers.log"
    targets.reset()

    first = _start_worker(env, log)
    try:
        task = execute_probe.apply_async(kwargs={"probe_id": probe.id, "tenant_id": tenant.id})
        wait_for(lambda: targets.hits("/hold") == 1, timeout=30, what="the first worker to start the probe")
    finally:
        _stop(first, signal.SIGKILL)  # no warm shutdown, no ack
    targets.release_hold()

    second = _start_worker(env, log)
    try:
        result = task.get(timeout=60)
    finally:
        _stop(second, signal.SIGTERM)

    assert result["success"] is True and result["status"] == "success"
    assert targets.hits("/hold") == 2  # the probe ran again on the second worker
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(ProbeResult)) == 1
    # and it is in its history once: one run in its minute, hour and day rollups.
    assert dict(db.session.execute(select(ProbeRollup.level, ProbeRollup.count)
                                   .where(ProbeRollup.probe_id == probe.id)).all()) == {60: 1, 3600: 1, 86400: 1}
