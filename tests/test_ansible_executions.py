"""Executions end to end: the API, a real worker on the `ansible` queue, real ansible-core.

Hosts use ``ansible_connection=local`` (the SSH path is covered with a real sshd in
tests/test_ansible_engine.py and tests/test_ansible_ssh.py). Every test checks what an operator would see:
the status and per-host summary, the stored and streamed output, and that nothing of the
run is left on the machine — no process carrying its marker, no private directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import func, select

from app.ansible.processes import MARKER_ENV, processes_with_marker
from app.core.config import PROJECT_ROOT
from app.extensions import db
from app.models import AnsibleExecution, AnsibleExecutionEvent
from app.services import ansible_executions, ansible_schedules
from app.services.execution_events import STREAM_KEY
from app.services.execution_runs import MARKER_PREFIX
from app.services.task_queue import RUN_EXECUTION, Message, publish
from tests.api import Api, Caller
from tests.conftest import make_tenant, wait_for
from tests.pipeline import Processes, wait_for_worker
from tests.servers import PrivatePostgres
from tests.sshd import SshServer, ssh_server  # noqa: F401  (the module's sshd)
from tests.test_pipeline_outages import private_postgres  # noqa: F401  (a PostgreSQL of the test's own)

pytestmark = pytest.mark.timeout(180)

LOCAL = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
INVENTORY = f"[web]\nweb1 {LOCAL}\nweb2 {LOCAL}\n"
FINISHED = ("successful", "failed", "canceled", "timeout", "lost")
# Worker names of this test session: their runs' markers carry them, and a worker starting up
# ends the processes of its name, so another session's tests on the machine never meet ours.
A1, A2 = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("a1", "a2"))


def _play(*tasks: str, hosts: str = "web") -> str:
    return f"- hosts: {hosts}\n  gather_facts: false\n  tasks:\n" + "".join(tasks)


def _task(name: str, module: str) -> str:
    return f"    - name: {name}\n      {module}\n"


HELLO = _play(_task("say hello", "ansible.builtin.debug: {msg: hello}"),
              _task("change something", "ansible.builtin.command: 'true'"))
SLEEP = _play(_task("before", "ansible.builtin.debug: {msg: start}"),
              _task("long", "ansible.builtin.command: sleep 60"), hosts="web1")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def processes(pg_app: Flask, postgres_url: str, tmp_path: Path, runs_dir: Path) -> Iterator[Processes]:
    env = {**os.environ, "ADMIN_MIT_DATABASE__URL": postgres_url,
           "ADMIN_MIT_ANSIBLE__RUNS_DIR": str(runs_dir),
           "ADMIN_MIT_ANSIBLE__HEARTBEAT_SECONDS": "1", "ADMIN_MIT_ANSIBLE__LOST_AFTER_SECONDS": "4",
           "ADMIN_MIT_ANSIBLE__KILL_GRACE_SECONDS": "1"}
    running = Processes(env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def ansible_worker(processes: Processes) -> Processes:
    processes.worker(A1, "--pool=prefork", "--concurrency=2", "-O", "fair", queues="ansible")
    wait_for_worker(A1)
    return processes


@pytest.fixture
def operator(pg_api: Api) -> Caller:
    return pg_api.as_role(make_tenant().id, "operator")


def _playbook(caller: Caller, content: str, name: str = "site") -> int:
    response = caller.post("/api/v1/ansible/playbooks", json={"name": name, "source": "content", "content": content})
    assert response.status_code == 201, response.json
    return response.json["id"]


def _inventory(caller: Caller, content: str = INVENTORY, name: str = "lab") -> int:
    response = caller.post("/api/v1/ansible/inventories",
                           json={"name": name, "kind": "text", "format": "ini", "content": content})
    assert response.status_code == 201, response.json
    return response.json["id"]


def _run(caller: Caller, playbook_id: int, inventory_id: int, **options: object) -> dict:
    response = caller.post("/api/v1/ansible/executions",
                           json={"playbook_id": playbook_id, "inventory_id": inventory_id, **options})
    assert response.status_code == 202, response.json
    return response.json


def _execution(caller: Caller, execution_id: int) -> dict:
    response = caller.get(f"/api/v1/ansible/executions/{execution_id}")
    assert response.status_code == 200, response.json
    return response.json


def _ended(caller: Caller, execution_id: int, timeout: float = 90) -> dict:
    return wait_for(lambda: (e := _execution(caller, execution_id))["status"] in FINISHED and e,
                    timeout=timeout, what=f"execution {execution_id} to end")


def _events(caller: Caller, execution_id: int, after: int = 0) -> list[dict]:
    items: list[dict] = []
    while True:
        page = caller.get(f"/api/v1/ansible/executions/{execution_id}/events?after={after}&limit=7").json
        items += page["items"]
        if page["next_after"] is None or not page["items"]:
            return items
        after = page["next_after"]


def _sse(caller: Caller, execution_id: int, query: str = "", headers: dict | None = None) -> list[tuple[str, dict]]:
    """The stream's messages as (id or "end", data), read until the server ends it."""
    response = caller.get(f"/api/v1/ansible/executions/{execution_id}/stream{query}", headers=headers or {},
                          buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    messages = []
    for block in b"".join(response.response).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            messages.append((fields.get("id") or fields.get("event", ""), json.loads(fields["data"])))
    return messages


def _leftovers(runs_dir: Path) -> tuple[list[int], list[str]]:
    """Processes of this test's workers' runs (their markers name the worker), and private directories."""
    processes = [pid for worker in (A1, A2) for pid in processes_with_marker(prefix=f"{MARKER_PREFIX}/{worker}@")]
    return processes, [p.name for p in runs_dir.iterdir()]


def test_a_run_reports_per_host_results_and_its_output_pages_and_streams_in_order(
        ansible_worker: Processes, operator: Caller, runs_dir: Path, redis_client: redis.Redis) -> None:
    accepted = _run(operator, _playbook(operator, HELLO), _inventory(operator))
    assert accepted["status"] == "pending" and accepted["task_id"]

    done = _ended(operator, accepted["id"])
    assert done["status"] == "successful" and done["rc"] == 0 and done["reason"] is None
    assert {host: (c["ok"], c["changed"], c["failed"]) for host, c in done["hosts"].items()} == {
        "web1": (2, 1, 0), "web2": (2, 1, 0)}
    events = _events(operator, accepted["id"])
    assert [e["seq"] for e in events] == list(range(1, done["event_count"] + 1))
    assert events[0]["event"] == "playbook_on_start" and events[-1]["event"] == "playbook_on_stats"
    ok_hosts = {e["host"] for e in events if e["event"] == "runner_on_ok" and e["task"] == "say hello"}
    assert ok_hosts == {"web1", "web2"}
    assert any("hello" in e["stdout"] for e in events)

    streamed = _sse(operator, accepted["id"])
    assert [int(i) for i, _ in streamed[:-1]] == [e["seq"] for e in events]
    assert streamed[-1] == ("end", {"status": "successful", "last_seq": done["event_count"]})
    # A client that reconnects after seq 5 gets exactly what came after it.
    resumed = _sse(operator, accepted["id"], headers={"Last-Event-ID": "5"})
    assert [int(i) for i, _ in resumed[:-1]] == list(range(6, done["event_count"] + 1))
    assert _sse(operator, accepted["id"], f"?after={done['event_count']}") == [("end", streamed[-1][1])]
    # Redis lost the live stream (a restart without persistence): the stored events are served instead.
    assert redis_client.delete(STREAM_KEY.format(accepted["id"])) == 1
    assert _sse(operator, accepted["id"]) == streamed
    assert _leftovers(runs_dir) == ([], [])


def test_the_live_stream_delivers_events_while_the_run_goes_on_and_ends_with_it(
        ansible_worker: Processes, operator: Caller, runs_dir: Path) -> None:
    steps = _play(*[_task(f"step {n}", "ansible.builtin.command: sleep 0.3") for n in range(3)],
                  _task("quiet", "ansible.builtin.command: sleep 2.5"), hosts="web1")
    accepted = _run(operator, _playbook(operator, steps), _inventory(operator))
    seen_while_running: list[bool] = []
    # As a browser asks: responses are gzipped for such clients, but never the stream.
    response = operator.get(f"/api/v1/ansible/executions/{accepted['id']}/stream", buffered=False,
                            headers={"Accept-Encoding": "gzip, deflate, br"})
    assert "Content-Encoding" not in response.headers
    chunks = []
    for chunk in response.response:
        chunks.append(chunk)
        if chunk.startswith(b"id: "):
            seen_while_running.append(db.session.scalar(
                select(AnsibleExecution.status).where(AnsibleExecution.id == accepted["id"])) == "running")
            db.session.rollback()
    text = b"".join(chunks).decode()
    assert "event: end" in text and '"status": "successful"' in text
    assert any(seen_while_running), "no event arrived before the run ended"
    assert ": waiting\n\n" in text  # the keep-alive comment while the quiet task ran
    ids = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    assert ids == sorted(ids) == list(range(1, len(ids) + 1))


def test_a_failing_task_fails_the_run_with_the_host_counted(ansible_worker: Processes, operator: Caller) -> None:
    failing = _play(_task("boom", "ansible.builtin.command: 'false'"), hosts="web1")
    done = _ended(operator, _run(operator, _playbook(operator, failing), _inventory(operator))["id"])
    assert done["status"] == "failed" and done["rc"] not in (None, 0) and done["reason"]
    assert done["hosts"]["web1"]["failed"] == 1


def test_check_mode_changes_nothing(ansible_worker: Processes, operator: Caller, tmp_path: Path) -> None:
    target = tmp_path / "written-by-playbook"
    copy = _play(_task("write", f"ansible.builtin.copy: {{dest: '{target}', content: hi}}"), hosts="web1")
    done = _ended(operator, _run(operator, _playbook(operator, copy), _inventory(operator), check=True)["id"])
    assert done["status"] == "successful" and done["hosts"]["web1"]["changed"] == 1
    assert not target.exists()


def test_cancel_ends_a_running_playbook_and_its_processes_and_keeps_the_output(
        ansible_worker: Processes, operator: Caller, runs_dir: Path) -> None:
    accepted = _run(operator, _playbook(operator, SLEEP), _inventory(operator))
    wait_for(lambda: any(e["task"] == "long" and e["event"] == "playbook_on_task_start"
                         for e in _events(operator, accepted["id"])), timeout=60, what="the long task")
    wait_for(lambda: _leftovers(runs_dir)[0], timeout=10, what="the run's processes")

    response = operator.post(f"/api/v1/ansible/executions/{accepted['id']}/cancel")
    assert response.status_code == 202 and response.json["cancel_requested_at"]
    done = _ended(operator, accepted["id"], timeout=15)
    assert done["status"] == "canceled"
    assert any(e["event"] == "runner_on_ok" and e["task"] == "before" for e in _events(operator, accepted["id"]))
    assert _leftovers(runs_dir) == ([], [])
    again = operator.post(f"/api/v1/ansible/executions/{accepted['id']}/cancel")
    assert again.status_code == 409 and "already ended (canceled)" in again.json["message"]


def test_the_tenant_limit_queues_executions_and_a_queued_one_cancels_before_it_starts(
        processes: Processes, operator: Caller, runs_dir: Path) -> None:
    processes.env["ADMIN_MIT_ANSIBLE__MAX_CONCURRENT_PER_TENANT"] = "1"
    processes.worker(A1, "--pool=prefork", "--concurrency=2", "-O", "fair", queues="ansible")
    wait_for_worker(A1)
    short = _play(_task("nap", "ansible.builtin.command: sleep 1"), hosts="web1")
    playbook, inventory = _playbook(operator, short), _inventory(operator)
    first, second, third = (_run(operator, playbook, inventory)["id"] for _ in range(3))

    assert operator.post(f"/api/v1/ansible/executions/{third}/cancel").json["status"] == "canceled"
    overlap = []
    while not all(_execution(operator, i)["status"] in FINISHED for i in (first, second)):
        running = db.session.scalar(select(func.count()).select_from(AnsibleExecution)
                                    .where(AnsibleExecution.status == "running"))
        db.session.rollback()
        overlap.append(running)
        time.sleep(0.1)
    assert max(overlap) == 1
    assert [_execution(operator, i)["status"] for i in (first, second, third)] == ["successful", "successful",
                                                                                  "canceled"]
    assert _execution(operator, third)["started_at"] is None


def test_job_and_idle_timeouts_end_the_run_and_its_processes(ansible_worker: Processes, operator: Caller,
                                                             runs_dir: Path) -> None:
    playbook, inventory = _playbook(operator, SLEEP), _inventory(operator)
    job = _run(operator, playbook, inventory, timeout_seconds=3)["id"]  # the two run side by side
    idle = _run(operator, playbook, inventory, idle_timeout_seconds=2)["id"]
    for execution_id, reason in ((job, "job timeout after 3 s"), (idle, "no output for 2 s")):
        done = _ended(operator, execution_id, timeout=40)
        assert done["status"] == "timeout" and reason in done["reason"], done["reason"]
    assert _leftovers(runs_dir) == ([], [])


def test_a_redelivered_message_never_starts_a_second_run(ansible_worker: Processes, operator: Caller,
                                                         tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    append = _play(_task("count", f"ansible.builtin.shell: echo run >> {log}"), hosts="web1")
    execution_id = _run(operator, _playbook(operator, append), _inventory(operator))["id"]
    done = _ended(operator, execution_id)
    again = [publish(Message(RUN_EXECUTION, {"execution_id": execution_id})) for _ in range(2)]
    # The worker has taken both copies and finished with them: they found the execution ended.
    wait_for(lambda: all(f"Task {RUN_EXECUTION}[{task_id}] succeeded" in ansible_worker.log(A1) for task_id in again),
             timeout=30, what="the redelivered messages handled")
    assert log.read_text() == "run\n"
    assert _execution(operator, execution_id)["event_count"] == done["event_count"]


def _run_on_a_worker_then_kill_it(processes: Processes, operator: Caller, runs_dir: Path) -> dict:
    """Start a long run on worker a1, then SIGKILL the whole worker (main process and pool)."""
    processes.worker(A1, "--pool=prefork", "--concurrency=1", queues="ansible")
    wait_for_worker(A1)
    accepted = _run(operator, _playbook(operator, SLEEP), _inventory(operator))
    wait_for(lambda: _leftovers(runs_dir)[0], timeout=60, what="the run's processes")
    processes.stop(A1, signal.SIGKILL)
    return accepted


def test_a_worker_killed_mid_run_leaves_its_execution_lost_and_no_process(
        processes: Processes, operator: Caller, runs_dir: Path) -> None:
    accepted = _run_on_a_worker_then_kill_it(processes, operator, runs_dir)
    # The guard of the run sees its worker gone: it ends the run's processes and removes its directory.
    wait_for(lambda: _leftovers(runs_dir) == ([], []), timeout=15, what="nothing left of the run")
    # A process of the first worker's that outlived even that (here: one made up for the purpose) ...
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True, env={
        **os.environ, MARKER_ENV: f"{MARKER_PREFIX}/{A1}@{socket.gethostname()}/{accepted['id']}"})
    try:
        # ... and the execution are dealt with by the next worker to start under the same name.
        processes.worker(A1, "--pool=prefork", "--concurrency=1", queues="ansible")
        done = _ended(operator, accepted["id"], timeout=60)
        assert done["status"] == "lost" and "restarted" in done["reason"]
        assert orphan.wait(timeout=15) == -signal.SIGTERM
    finally:
        orphan.kill()


def test_beat_marks_lost_an_execution_whose_worker_went_silent(
        processes: Processes, operator: Caller, runs_dir: Path) -> None:
    accepted = _run_on_a_worker_then_kill_it(processes, operator, runs_dir)
    # Another worker (another name: no start-up reaping of the first worker's work) runs beat's housekeeping.
    processes.worker(A2, "--pool=prefork", "--concurrency=1", queues="ansible")
    processes.beat()
    done = _ended(operator, accepted["id"], timeout=60)
    assert done["status"] == "lost" and "no heartbeat" in done["reason"]
    assert _leftovers(runs_dir) == ([], [])


def test_two_beats_start_a_due_template_once(pg_app: Flask, operator: Caller) -> None:
    playbook, inventory = _playbook(operator, HELLO), _inventory(operator)
    created = operator.post("/api/v1/ansible/templates", json={
        "name": "nightly", "playbook_id": playbook, "inventory_id": inventory, "cron": "* * * * *",
        "timezone": "Europe/Berlin"})
    assert created.status_code == 201, created.json
    from app.models import AnsibleExecutionTemplate

    template = db.session.get(AnsibleExecutionTemplate, created.json["id"])
    assert template.next_run_at > time.time() * 1000
    template.next_run_at = int(time.time() * 1000) - 1000
    db.session.commit()

    started: list[list[int]] = []
    barrier = threading.Barrier(2)

    def beat() -> None:
        with pg_app.app_context():
            barrier.wait()
            started.append(ansible_schedules.start_due())
            db.session.remove()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    [thread.start() for thread in threads]
    [thread.join(30) for thread in threads]
    assert sorted(len(ids) for ids in started) == [0, 1]
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(AnsibleExecution)
                             .where(AnsibleExecution.template_id == template.id)) == 1
    assert db.session.get(AnsibleExecutionTemplate, template.id).next_run_at > time.time() * 1000


def test_output_is_stored_in_full_for_a_run_of_many_events(ansible_worker: Processes, operator: Caller) -> None:
    loop = _play(_task("many", "ansible.builtin.debug: {msg: '{{ item }}'}\n      loop: \"{{ range(1500) | list }}\""),
                 hosts="web1")
    done = _ended(operator, _run(operator, _playbook(operator, loop), _inventory(operator))["id"])
    assert done["status"] == "successful", done["reason"]
    stored = db.session.scalar(select(func.count()).select_from(AnsibleExecutionEvent)
                               .where(AnsibleExecutionEvent.execution_id == done["id"]))
    assert stored == done["event_count"] >= 1500
    items = [e for e in _events(operator, done["id"]) if e["event"] == "runner_item_on_ok"]
    assert len(items) == 1500


def test_a_run_over_ssh_with_a_stored_key_and_a_wrong_key(
        processes: Processes, pg_api: Api, ssh_server: SshServer, runs_dir: Path, tmp_path: Path) -> None:
    # A host key not known yet is recorded by the first run (accept_new) in the configured file.
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    processes.env.update({"ADMIN_MIT_ANSIBLE__KNOWN_HOSTS_FILE": str(known_hosts),
                          "ADMIN_MIT_ANSIBLE__HOST_KEY_CHECKING": "accept_new"})
    processes.worker(A1, "--pool=prefork", "--concurrency=1", queues="ansible")
    tenant_id = make_tenant().id
    admin = pg_api.as_role(tenant_id, "admin")
    good = admin.post("/api/v1/ansible/credentials", json={
        "name": "deploy", "kind": "ssh_key", "private_key": ssh_server.client_key}).json
    stranger_key = ssh_server.new_client_key("stranger", authorized=False)
    wrong = admin.post("/api/v1/ansible/credentials", json={
        "name": "stranger", "kind": "ssh_key", "private_key": stranger_key}).json
    whoami = _play(_task("who", "ansible.builtin.command: id -un"), hosts="target")
    playbook, inventory = _playbook(admin, whoami), _inventory(admin, ssh_server.inventory_line("target") + "\n")
    wait_for_worker(A1)

    done = _ended(admin, _run(admin, playbook, inventory, credential_ids=[good["id"]])["id"])
    assert done["status"] == "successful", done["reason"]
    assert done["hosts"]["target"]["changed"] == 1
    assert [e["data"]["res"]["stdout"] for e in _events(admin, done["id"])
            if e["event"] == "runner_on_ok" and e["task"] == "who"] == [ssh_server.user]
    host_key = ssh_server.known_hosts.read_text().split()[-1]  # the server's public host key
    assert [line.split()[-1] for line in known_hosts.read_text().splitlines()] == [host_key]

    refused = _ended(admin, _run(admin, playbook, inventory, credential_ids=[wrong["id"]])["id"])
    assert refused["status"] == "failed" and refused["hosts"]["target"]["unreachable"] == 1
    for execution_id in (done["id"], refused["id"]):
        output = json.dumps(_events(admin, execution_id))
        for key in (ssh_server.client_key, stranger_key):
            assert key.strip().splitlines()[1] not in output  # no line of either key in any event
    assert _leftovers(runs_dir) == ([], [])


def test_the_cli_streams_a_run_and_exits_with_its_status(ansible_worker: Processes, operator: Caller) -> None:
    tenant = str(operator.tenant_id)
    _playbook(operator, HELLO, name="hello")
    _playbook(operator, _play(_task("boom", "ansible.builtin.command: 'false'"), hosts="web1"), name="boom")
    _inventory(operator)

    def admin_mit(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=ansible_worker.env,
                              capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    ran = admin_mit("run", "hello", "--inventory", "lab", "--tenant", tenant, "--limit", "web2")
    assert ran.returncode == 0, ran.stderr
    assert "TASK [say hello]" in ran.stdout and "ok: [web2]" in ran.stdout and "web1" not in ran.stdout
    assert ran.stderr.splitlines()[-1].endswith("successful")
    failed = admin_mit("run", "boom", "--inventory", "lab", "--tenant", tenant)
    assert failed.returncode == 1 and "fatal: [web1]" in failed.stdout
    execution_id = failed.stderr.split()[1]
    shown = admin_mit("execution", "show", execution_id, "--tenant", tenant)
    assert shown.returncode == 0 and shown.stdout.startswith(f"execution {execution_id}: failed")
    assert "web1\t0\t0\t1\t0" in shown.stdout  # ok, changed, failed, unreachable
    listed = admin_mit("execution", "list", "--tenant", tenant, "--status", "failed").stdout.splitlines()
    assert [line.split("\t")[:3] for line in listed[1:]] == [[execution_id, "failed", "boom"]]
    again = admin_mit("execution", "cancel", execution_id, "--tenant", tenant)
    assert again.returncode == 1
    assert again.stderr.strip() == f"admin-mit: error: execution {execution_id} has already ended (failed)"

    # Ctrl-C while a run goes on cancels it, and the command exits with the canceled status.
    _playbook(operator, SLEEP, name="nap")
    following = subprocess.Popen([sys.executable, "-m", "app", "run", "nap", "--inventory", "lab", "--tenant", tenant],
                                 cwd=PROJECT_ROOT, env=ansible_worker.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        for line in following.stdout:  # type: ignore[union-attr]
            if line.startswith("TASK [long]"):
                break
        following.send_signal(signal.SIGINT)
        out, err = following.communicate(timeout=60)
    finally:
        following.kill()
    assert following.returncode == 3, err
    assert "canceling execution" in err and err.strip().splitlines()[-1].endswith("canceled")


def test_a_pending_execution_whose_message_was_lost_is_published_again_by_beat(
        processes: Processes, operator: Caller, clean_redis) -> None:  # type: ignore[no-untyped-def]
    accepted = _run(operator, _playbook(operator, HELLO), _inventory(operator))
    queued = [key for key in clean_redis.keys("ansible*") if clean_redis.type(key) == "list"]
    assert queued and clean_redis.delete(*queued) == len(queued)  # the message, gone with a Redis that lost its data
    db.session.execute(AnsibleExecution.__table__.update().where(AnsibleExecution.id == accepted["id"])
                       .values(published_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
    db.session.commit()
    processes.worker(A1, "--pool=prefork", "--concurrency=1", queues="ansible")
    processes.beat()
    done = _ended(operator, accepted["id"], timeout=60)
    assert done["status"] == "successful" and done["task_id"] == accepted["task_id"]


def test_a_playbook_with_an_execution_that_has_not_ended_cannot_be_deleted(pg_app: Flask, operator: Caller) -> None:
    playbook = _playbook(operator, HELLO)
    execution = _run(operator, playbook, _inventory(operator))  # no worker: it stays pending
    refused = operator.delete(f"/api/v1/ansible/playbooks/{playbook}")
    assert refused.status_code == 409 and f"execution {execution['id']}" in refused.json["message"]
    operator.post(f"/api/v1/ansible/executions/{execution['id']}/cancel")
    assert operator.delete(f"/api/v1/ansible/playbooks/{playbook}").status_code == 204
    kept = _execution(operator, execution["id"])
    assert kept["status"] == "canceled" and kept["playbook_name"] == "site" and kept["playbook_id"] is None


def test_postgres_stopped_mid_run_loses_no_event(private_postgres: tuple[PrivatePostgres, Flask],
                                                 tmp_path: Path) -> None:
    """The database goes away for a few seconds while a run prints: the run goes on, its events
    wait in the worker and are all stored, in order, once the database is back."""
    from app.services import ansible_inventories, ansible_playbooks
    from app.services.ansible_templates import RunOptions

    server, _ = private_postgres
    tenant_id = make_tenant().id
    steps = _play(_task("tick", "ansible.builtin.command: sleep 0.3\n      loop: \"{{ range(30) | list }}\""),
                  hosts="web1")
    playbook = ansible_playbooks.create_playbook(tenant_id, {"name": "ticks", "source": "content", "content": steps})
    inventory = ansible_inventories.create_inventory(tenant_id, {"name": "lab", "kind": "text", "format": "ini",
                                                                 "content": INVENTORY})
    processes = Processes({**os.environ, "ADMIN_MIT_DATABASE__URL": server.url,
                           "ADMIN_MIT_ANSIBLE__RUNS_DIR": str(tmp_path / "runs"),
                           "ADMIN_MIT_ANSIBLE__HEARTBEAT_SECONDS": "1"}, tmp_path)
    try:
        processes.worker(A1, "--pool=prefork", "--concurrency=1", queues="ansible")
        wait_for_worker(A1)
        execution = ansible_executions.create(tenant_id, None, playbook.id, inventory.id, [], RunOptions())
        execution_id = execution.id

        def stored() -> int:
            count = db.session.scalar(select(func.count()).select_from(AnsibleExecutionEvent)
                                      .where(AnsibleExecutionEvent.execution_id == execution_id))
            db.session.rollback()
            return count or 0

        wait_for(lambda: stored() >= 8, timeout=60, what="the first events stored")
        db.session.remove()
        db.engine.dispose()
        server.stop()
        time.sleep(4)  # a dozen loop items finish meanwhile
        server.start()
        done = wait_for(lambda: (row := db.session.get(AnsibleExecution, execution_id)) is not None
                        and db.session.refresh(row) is None and row.status in FINISHED and row, timeout=90,
                        what="the run to end")
    finally:
        processes.stop_all()
    assert done.status == "successful", done.reason
    seqs = list(db.session.scalars(select(AnsibleExecutionEvent.seq)
                                   .where(AnsibleExecutionEvent.execution_id == execution_id)
                                   .order_by(AnsibleExecutionEvent.seq)))
    assert seqs == list(range(1, done.event_count + 1))
    items = db.session.scalar(select(func.count()).select_from(AnsibleExecutionEvent)
                              .where(AnsibleExecutionEvent.execution_id == execution_id,
                                     AnsibleExecutionEvent.event == "runner_item_on_ok"))
    assert items == 30
    assert "events wait for the database" in processes.log(A1)
