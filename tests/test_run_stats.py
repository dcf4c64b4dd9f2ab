"""What happened to the runs: ``admin-mit stats`` and ``GET /api/v1/runs/stats``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from app.celery_app import celery_init_app
from app.core.config import PROJECT_ROOT
from app.extensions import db
from app.services import probe_runs, run_losses
from app.services.run_losses import Loss
from tests.api import Api, assert_error
from tests.conftest import _migrated_app, make_probe, make_tenant, settings_with, subprocess_environ


def _record_losses(tenant_id: int, probe_id: int, **slots: int) -> None:
    run_losses.record(Loss(tenant_id, probe_id, reason, 1_700_000_000_000, count) for reason, count in slots.items())
    db.session.commit()


def test_the_api_reports_a_tenants_own_runs_and_losses_only(api: Api) -> None:
    mine, theirs = make_tenant(), make_tenant()
    probe = make_probe(mine.id, "127.0.0.1:9", protocol="tcp")
    other = make_probe(theirs.id, "127.0.0.1:9", protocol="tcp")
    probe_runs.execute_runs(mine.id, probe_runs.run_requests([probe.id], "manual", "r1"), "manual")
    _record_losses(mine.id, probe.id, missed=3, lost=1)
    _record_losses(theirs.id, other.id, expired=7, unwritten=2)

    viewer = api.as_role(mine.id, "viewer")
    body = viewer.get("/api/v1/runs/stats").json
    assert {key: body[key] for key in ("stored", "missed", "expired", "lost", "unwritten", "in_flight")} == {
        "stored": 1, "missed": 3, "expired": 0, "lost": 1, "unwritten": 0, "in_flight": 0}

    assert_error(viewer.get("/api/v1/runs/stats?since=2030-01-02T00:00:00&until=2030-01-01T00:00:00"),
                 422, field="since")
    assert_error(viewer.get("/api/v1/runs/stats?until=1700000000"), 422, field="until")  # ISO 8601 only


def test_the_cli_prints_stored_runs_and_losses_by_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stats.db'}"
    flask_app = _migrated_app(settings_with(url))
    celery_init_app(flask_app)
    with flask_app.app_context():
        tenant = make_tenant("acme")
        probe = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
        _record_losses(tenant.id, probe.id, missed=4, expired=2)
        db.session.remove()
    env = subprocess_environ(tmp_path, url)

    def stats(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", "stats", *args], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    shown = stats("--tenant", "acme")
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines()[1:]}
    assert lines["missed"] == "4" and lines["expired"] == "2" and lines["lost"] == "0"
    assert "tenant acme" in shown.stdout.splitlines()[0]

    as_json = json.loads(stats("--json", "--since", "7d").stdout)
    assert (as_json["missed"], as_json["expired"], as_json["unwritten"]) == (4, 2, 0)

    for bad in (["--since", "5 fortnights"], ["--tenant", "nobody"]):
        refused = stats(*bad)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and refused.stderr.startswith("admin-mit: error: ")
