"""The Ansible engine (app/ansible) with real ansible-core and ansible-runner, no mocks.

Most runs target this machine through ``ansible_connection=local``; the SSH cases log in to
a real sshd on 127.0.0.1 (tests/sshd.py). Every run is checked for what a user would
notice afterwards: no process of the run left, no private directory left.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from app.ansible.environment import command
from app.ansible.inventory import InventoryError, ParsedGroup, parse_inventory, render_inventory_yaml
from app.ansible.processes import MARKER_ENV, end_process_groups, processes_with_marker
from app.ansible.runs import HOST_COUNTS, RunEvent, RunOutcome, RunRequest, run_playbook
from app.ansible.syntax import PlaybookSyntaxError, check_playbook, check_project_playbook
from tests.conftest import wait_for
from tests import sshd
from tests.sshd import SshServer, free_port, password_login_unavailable

pytestmark = pytest.mark.timeout(120)
ssh_server = sshd.ssh_server  # a fixture: one sshd for this module

PYTHON = sys.executable
LONG_TASK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: wait
      ansible.builtin.command: sleep 60
"""


def local_inventory(*names: str) -> str:
    return "".join(f"{name} ansible_connection=local ansible_python_interpreter={PYTHON}\n" for name in names)


def play(*tasks: str, hosts: str = "all") -> str:
    body = "".join("    - " + task.strip().replace("\n", "\n      ") + "\n" for task in tasks)
    return f"- hosts: {hosts}\n  gather_facts: false\n  tasks:\n{body}"


class Run:
    """One run_playbook call and what it showed on the way."""

    def __init__(self, runs_dir: Path, **fields: Any) -> None:
        self.runs_dir = runs_dir
        self.marker = f"test-{uuid.uuid4().hex}"
        self.request = RunRequest(runs_dir=runs_dir, name="execution-42", marker=self.marker, **fields)
        self.events: list[RunEvent] = []
        self.private_dir: Path | None = None
        self.watch: Callable[[RunEvent, Path], None] | None = None

    def on_start(self, directory: Path) -> None:
        self.private_dir = directory

    def on_event(self, event: RunEvent) -> None:
        self.events.append(event)
        if self.watch is not None and self.private_dir is not None:
            self.watch(event, self.private_dir)

    def __call__(self, should_cancel: Callable[[], bool] = lambda: False) -> RunOutcome:
        started = time.monotonic()
        try:
            return run_playbook(self.request, self.on_event, should_cancel, self.on_start)
        finally:
            self.seconds = time.monotonic() - started

    def of(self, kind: str) -> list[RunEvent]:
        return [event for event in self.events if event.event == kind]

    def assert_left_nothing(self) -> None:
        assert processes_with_marker(self.marker) == []
        assert self.private_dir is not None and not self.private_dir.exists()
        assert list(self.runs_dir.iterdir()) == []


def counts(**values: int) -> dict[str, int]:
    return {name: values.get(name, 0) for name in HOST_COUNTS}


def private_files(directory: Path) -> Iterator[Path]:
    """The regular files of a private directory (a FIFO is skipped: reading it would block)."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    yield path
            except FileNotFoundError:
                continue


def file_modes(directory: Path) -> dict[str, int]:
    """Permission bits of the directory (as ".") and of each regular file in it, by relative path."""
    modes = {".": stat.S_IMODE(directory.stat().st_mode)}
    for path in private_files(directory):
        try:
            modes[str(path.relative_to(directory))] = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
    return modes


def holds(path: Path, *secrets: str) -> bool:
    """Whether the file holds one of ``secrets`` (a file that is gone holds none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return any(secret in text for secret in secrets)


def event_text(run: Run) -> str:
    return "\n".join(event.stdout + json.dumps(event.data) for event in run.events)


# --- runs on this machine ----------------------------------------------------------------------


def test_a_successful_run_reports_its_events_in_order_and_counts_per_host(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADMIN_MIT_TEST_WORKER_SECRET", "worker-only-value")
    run = Run(tmp_path, inventory=local_inventory("web1", "web2"), extravars={"greeting": "hello there"},
              playbook_content=play(
                  "name: say\nansible.builtin.command: echo {{ greeting }}",
                  "name: show\nansible.builtin.debug:\n  msg: \"[{{ lookup('env', 'ADMIN_MIT_TEST_WORKER_SECRET') }}]\""))
    seen: dict[str, Any] = {}

    def watch(event: RunEvent, directory: Path) -> None:
        if "modes" not in seen:
            seen["modes"] = file_modes(directory)
        if event.event == "playbook_on_stats":
            seen["written"] = sorted(p.name for p in (directory / "artifacts" / "run" / "job_events").iterdir())
            seen["stdout file"] = (directory / "artifacts" / "run" / "stdout").exists()

    run.watch = watch
    outcome = run()

    assert (outcome.status, outcome.rc, outcome.reason) == ("successful", 0, None)
    assert outcome.hosts == {"web1": counts(ok=2, changed=1), "web2": counts(ok=2, changed=1)}
    seqs = [event.seq for event in run.events]
    assert seqs[0] == 1 and all(a < b for a, b in zip(seqs, seqs[1:]))
    assert run.events[0].event == "playbook_on_start" and run.events[-1].event == "playbook_on_stats"
    oks = run.of("runner_on_ok")
    assert sorted((e.host, e.task) for e in oks) == [("web1", "say"), ("web1", "show"), ("web2", "say"),
                                                     ("web2", "show")]
    assert all(e.play == "all" and e.created.utcoffset().total_seconds() == 0 for e in oks)
    said = [e for e in oks if e.task == "say"][0]
    assert said.data["res"]["stdout"] == "hello there" and not said.truncated
    shown = [e for e in oks if e.task == "show"][0]
    assert '"msg": "[]"' in shown.stdout  # the worker's own environment is not the run's
    # Private: the directory 0700, every file of the run 0600; events not written to disk.
    modes = seen["modes"]
    assert modes["."] == 0o700 and modes["inventory/hosts"] == modes["project/main.yml"] == 0o600
    assert modes["env/extravars"] == 0o600 and set(modes.values()) <= {0o700, 0o600}
    assert not seen["stdout file"] and not [name for name in seen["written"] if not name.endswith("partial.json")]
    run.assert_left_nothing()


def test_a_failing_task_fails_the_run_and_names_the_host(tmp_path: Path) -> None:
    run = Run(tmp_path, inventory=local_inventory("web1"),
              playbook_content=play("name: break\nansible.builtin.command: /bin/false"))
    outcome = run()
    assert outcome.status == "failed" and outcome.rc not in (0, None)
    assert outcome.hosts["web1"] == counts(failed=1)
    assert outcome.reason == f"ansible-playbook exited {outcome.rc}; failed: web1"
    assert run.of("runner_on_failed")[0].task == "break"
    run.assert_left_nothing()


def test_an_unreachable_host_is_counted_unreachable(tmp_path: Path) -> None:
    closed = free_port()
    run = Run(tmp_path, inventory=f"ghost ansible_host=127.0.0.1 ansible_port={closed} ansible_user=nobody\n",
              playbook_content=play("ansible.builtin.ping:"))
    outcome = run()
    assert outcome.status == "failed"
    assert outcome.hosts == {"ghost": counts(unreachable=1)}
    assert "unreachable: ghost" in outcome.reason
    assert "Connection refused" in run.of("runner_on_unreachable")[0].stdout
    run.assert_left_nothing()


def test_check_mode_reports_the_change_without_making_it(tmp_path: Path) -> None:
    target = tmp_path / "outside" / "created.txt"
    target.parent.mkdir()
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    run = Run(runs_dir, inventory=local_inventory("web1"), check=True, diff=True,
              playbook_content=play(f"ansible.builtin.copy:\n  content: hello\n  dest: {target}"))
    outcome = run()
    assert outcome.status == "successful"
    assert outcome.hosts["web1"] == counts(ok=1, changed=1)
    assert not target.exists()
    assert run.of("runner_on_ok")[0].data["res"]["changed"] is True
    run.assert_left_nothing()


def test_a_project_playbook_runs_from_its_own_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tasks").mkdir(parents=True)
    (project / "tasks" / "hello.yml").write_text("- ansible.builtin.debug:\n    msg: from an included file\n")
    (project / "site.yml").write_text(play("ansible.builtin.include_tasks: tasks/hello.yml"))
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    run = Run(runs_dir, inventory=local_inventory("web1"), playbook_path=project / "site.yml")
    outcome = run()
    assert outcome.status == "successful", [e.stdout for e in run.events]
    assert any("from an included file" in e.stdout for e in run.of("runner_on_ok"))
    run.assert_left_nothing()
    assert sorted(p.name for p in project.iterdir()) == ["site.yml", "tasks"]


@pytest.mark.parametrize("vault_id", [None, "prod"], ids=["vault-password", "vault-id"])
def test_secrets_are_typed_at_prompts_never_written_and_masked_in_output(tmp_path: Path, vault_id: str | None) -> None:
    vault_password, become_password = "vault-Pass-4711", "become-Pass-4712"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "ansible.cfg").write_text("")
    (scratch / "vault-pass").write_text(vault_password + "\n")
    encrypted = subprocess.run(
        [command("ansible-vault"), "encrypt_string",
         *(["--vault-id", f"{vault_id}@{scratch / 'vault-pass'}"] if vault_id else
           ["--vault-password-file", str(scratch / "vault-pass")]),
         "decrypted-value", "--name", "secret_var"],
        capture_output=True, text=True, check=True, env={**os.environ, "ANSIBLE_CONFIG": str(scratch / "ansible.cfg")},
    ).stdout
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    playbook = ("- hosts: all\n  gather_facts: false\n  vars:\n"
                + "".join(f"    {line}\n" for line in encrypted.splitlines())
                + "  tasks:\n    - ansible.builtin.debug:\n        msg: \"{{ secret_var | length }}\"\n"
                # A task that prints the secrets (made up while it runs: the playbook file does not hold them).
                + "    - ansible.builtin.debug:\n        msg: \"{{ 'vault-Pass' ~ '-4711' }} {{ 'become-Pass' ~ '-4712' }}\"\n")
    run = Run(runs_dir, inventory=local_inventory("web1"), playbook_content=playbook,
              vault_password=vault_password, vault_id=vault_id, become_password=become_password)
    on_disk: list[str] = []

    def watch(event: RunEvent, directory: Path) -> None:
        # Not the files where ansible hands each event over (the printed secret is in the
        # task's output there until ansible-runner reads it), only what the engine wrote.
        if event.event == "runner_on_ok":
            on_disk.extend(str(p) for p in private_files(directory) if not p.name.endswith("-partial.json")
                           and holds(p, vault_password, become_password))

    run.watch = watch
    outcome = run()
    assert outcome.status == "successful", [e.stdout for e in run.events]
    first, second = run.of("runner_on_ok")
    assert '"msg": 15' in first.stdout  # the vault password was given: the value decrypted
    assert '"msg": "******** ********"' in second.stdout
    assert vault_password not in event_text(run) and become_password not in event_text(run)
    assert on_disk == []
    run.assert_left_nothing()


def test_cancel_ends_the_run_and_every_process_of_it(tmp_path: Path) -> None:
    run = Run(tmp_path, inventory=local_inventory("web1"), playbook_content=LONG_TASK, kill_grace_seconds=2.0)
    state: dict[str, Any] = {}

    def should_cancel() -> bool:
        if "canceled" in state:
            return True
        if run.of("runner_on_start"):
            # The task runs: wait until its sleep is one of the run's processes, then cancel.
            sleeping = [pid for pid in processes_with_marker(run.marker) if _cmdline(pid) == "sleep 60"]
            if sleeping:
                state["sleep"] = sleeping
                state["canceled"] = time.monotonic()
                return True
        return False

    outcome = run(should_cancel)
    ended = time.monotonic()
    assert (outcome.status, outcome.reason) == ("canceled", "canceled")
    assert ended - state["canceled"] < 10, "cancel took effect"
    assert outcome.hosts == {}
    assert all(_cmdline(pid) != "sleep 60" for pid in state["sleep"])
    run.assert_left_nothing()


@pytest.mark.parametrize("limit, reason", [({"job_timeout": 3}, "job timeout after 3 s"),
                                           ({"idle_timeout": 2}, "no output for 2 s")])
def test_a_timeout_ends_the_run(tmp_path: Path, limit: dict[str, float], reason: str) -> None:
    run = Run(tmp_path, inventory=local_inventory("web1"), playbook_content=LONG_TASK, kill_grace_seconds=1.0, **limit)
    outcome = run()
    assert (outcome.status, outcome.reason) == ("timeout", reason)
    assert run.of("runner_on_start") and run.seconds < 30
    run.assert_left_nothing()


@pytest.mark.parametrize("where", ["on_event", "should_cancel"])
def test_an_exception_from_a_callback_ends_the_run_and_is_raised(tmp_path: Path, where: str) -> None:
    run = Run(tmp_path, inventory=local_inventory("web1"), playbook_content=LONG_TASK, kill_grace_seconds=1.0)

    class Broken(Exception):
        pass

    def broken_on_event(event: RunEvent) -> None:
        run.events.append(event)
        if event.event == "runner_on_start":
            raise Broken("the event store is down")

    def broken_should_cancel() -> bool:
        if run.of("runner_on_start"):
            raise Broken("the cancel flag store is down")
        return False

    started = time.monotonic()
    with pytest.raises(Broken):
        if where == "on_event":
            run_playbook(run.request, broken_on_event, on_start=run.on_start)
        else:
            run_playbook(run.request, run.on_event, broken_should_cancel, on_start=run.on_start)
    assert time.monotonic() - started < 30
    run.assert_left_nothing()


def test_a_huge_event_is_capped_and_the_run_still_succeeds(tmp_path: Path) -> None:
    cap = 64 * 1024
    run = Run(tmp_path, inventory=local_inventory("web1"), max_event_bytes=cap,
              playbook_content=play("name: shout\nansible.builtin.debug:\n  msg: \"{{ 'x' * 1000000 }}\"",
                                    "name: talk\nansible.builtin.debug:\n  msg: \"{{ 'y' * 300000 }}\""))
    outcome = run()
    assert outcome.status == "successful"
    big, bigger_than_the_cap = run.of("runner_on_ok")
    assert big.truncated and big.stdout.startswith("ok: [web1]") and "xxxx" in big.stdout
    # ansible-runner itself drops a result over 700 000 characters; a smaller one is shortened.
    assert bigger_than_the_cap.truncated and bigger_than_the_cap.data["truncated"] is True
    assert bigger_than_the_cap.data["res"]["msg"].startswith("yyyy") and bigger_than_the_cap.task == "talk"
    for event in run.events:
        assert len(event.stdout.encode()) <= cap
        assert len(json.dumps(event.data, ensure_ascii=False).encode()) <= cap
    assert big.task == "shout" and big.host == "web1"
    run.assert_left_nothing()


def test_an_ssh_key_that_is_never_read_leaves_no_thread_waiting(tmp_path: Path) -> None:
    """ansible-runner writes the key into a FIFO from a thread that waits for a reader; when
    the run ends before ssh-add reads it (here: ssh-agent cannot start), that thread would
    wait for ever and keep the worker process from exiting."""
    threads = set(threading.enumerate())
    run = Run(tmp_path, inventory=local_inventory("web1"), playbook_content=play("ansible.builtin.ping:"),
              ssh_key="-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEgcmVhbCBrZXksIGp1c3QgYnl0ZXM=\n"
                      "-----END OPENSSH PRIVATE KEY-----\n",
              extra_env={"PATH": str(tmp_path / "no-programs-here")})
    outcome = run()
    assert outcome.status == "failed" and "ssh-agent" in outcome.reason
    assert set(threading.enumerate()) - threads == set()
    assert "bm90IGEgcmVhbCBrZXksIGp1c3QgYnl0ZXM=" not in event_text(run)
    run.assert_left_nothing()


def test_processes_are_found_by_marker_and_ended_even_when_they_ignore_sigterm(tmp_path: Path) -> None:
    marker = f"test-{uuid.uuid4().hex}"
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30 & wait"], start_new_session=True,
                                env={**os.environ, MARKER_ENV: marker})
    try:
        found = wait_for(lambda: len(processes_with_marker(marker)) == 2 and processes_with_marker(marker),
                         what="both processes")
        assert stubborn.pid in found and processes_with_marker(prefix=marker[:10]) == processes_with_marker(marker)
        started = time.monotonic()
        end_process_groups(found, grace_seconds=0.5)
        assert processes_with_marker(marker) == []
        assert time.monotonic() - started < 5
    finally:
        stubborn.kill()
        stubborn.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


# --- runs over SSH, to a real sshd -------------------------------------------------------------


@pytest.fixture
def ssh_runs_dir() -> Iterator[Path]:
    """A short runs directory: ssh's ControlPersist sockets live in the private directory,
    and a Unix socket's path has at most 107 characters."""
    directory = Path(tempfile.mkdtemp(prefix="runs-"))
    yield directory
    for leftover in directory.iterdir():
        raise AssertionError(f"left in the runs directory: {leftover}")
    directory.rmdir()


WHO_AM_I = play("name: who\nansible.builtin.command: id -un")


def ssh_run(server: SshServer, runs_dir: Path, **fields: Any) -> Run:
    fields.setdefault("extra_env", server.ssh_env())
    return Run(runs_dir, inventory=server.inventory_line("target") + "\n", playbook_content=WHO_AM_I, **fields)


def test_ssh_key_login_runs_tasks_and_leaves_no_agent_or_master_behind(ssh_server: SshServer,
                                                                        ssh_runs_dir: Path) -> None:
    run = ssh_run(ssh_server, ssh_runs_dir, ssh_key=ssh_server.client_key)
    body = [line for line in ssh_server.client_key.splitlines() if not line.startswith("-----")]
    seen: dict[str, Any] = {}

    def watch(event: RunEvent, directory: Path) -> None:
        if event.event == "runner_on_ok":
            seen["sockets"] = [p.name for p in (directory / "cp").iterdir() if p.is_socket()]
            seen["fifo"] = (directory / "artifacts" / "run" / "ssh_key_data").exists()
            seen["agent"] = [pid for pid in processes_with_marker(run.marker) if "ssh-agent" in _cmdline(pid)]
            seen["key on disk"] = [str(p) for p in private_files(directory) if holds(p, *body)]

    run.watch = watch
    outcome = run()
    assert outcome.status == "successful", [e.stdout for e in run.events]
    assert outcome.hosts == {"target": counts(ok=1, changed=1)}
    assert run.of("runner_on_ok")[0].data["res"]["stdout"] == ssh_server.user
    # While it ran: an agent held the key, read from a FIFO that was gone once read, and ssh
    # kept a ControlPersist master in the private directory; neither outlived the run.
    assert seen["agent"] and seen["sockets"] and seen["fifo"] is False and seen["key on disk"] == []
    run.assert_left_nothing()


def test_ssh_key_with_passphrase(ssh_server: SshServer, ssh_runs_dir: Path) -> None:
    passphrase = "pass-Phrase-0042"
    key = ssh_server.new_client_key("with_passphrase", passphrase=passphrase)
    run = ssh_run(ssh_server, ssh_runs_dir, ssh_key=key, ssh_key_passphrase=passphrase)
    outcome = run()
    assert outcome.status == "successful", [e.stdout for e in run.events]
    assert outcome.hosts == {"target": counts(ok=1, changed=1)}
    assert passphrase not in event_text(run)
    run.assert_left_nothing()

    wrong = ssh_run(ssh_server, ssh_runs_dir, ssh_key=key, ssh_key_passphrase="not-the-passphrase")
    outcome = wrong()
    assert outcome.status == "failed" and wrong.seconds < 30
    assert outcome.reason == "the SSH key could not be loaded: wrong or missing passphrase"
    wrong.assert_left_nothing()


def test_a_wrong_key_is_unreachable_and_never_shown(ssh_server: SshServer, ssh_runs_dir: Path) -> None:
    key = ssh_server.new_client_key("not_authorized", authorized=False)
    run = ssh_run(ssh_server, ssh_runs_dir, ssh_key=key)
    outcome = run()
    assert outcome.status == "failed"
    assert outcome.hosts == {"target": counts(unreachable=1)}
    assert "Permission denied" in run.of("runner_on_unreachable")[0].stdout
    text = event_text(run)
    assert all(line not in text for line in key.splitlines() if not line.startswith("-----"))
    run.assert_left_nothing()


def test_an_unknown_host_key_is_refused_without_waiting_for_an_answer(ssh_server: SshServer, ssh_runs_dir: Path,
                                                                     tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    run = ssh_run(ssh_server, ssh_runs_dir, ssh_key=ssh_server.client_key, idle_timeout=30,
                  extra_env={"ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={empty}"})
    outcome = run()
    assert outcome.status == "failed" and outcome.hosts == {"target": counts(unreachable=1)}
    assert "Host key verification failed" in run.of("runner_on_unreachable")[0].stdout
    run.assert_left_nothing()


def test_ssh_password_login(tmp_path: Path, ssh_runs_dir: Path) -> None:
    if reason := password_login_unavailable():
        pytest.skip(reason)
    password = "ssh-Password-0815"
    with SshServer(tmp_path / "sshd", password=password) as server:
        run = ssh_run(server, ssh_runs_dir, ssh_password=password)
        outcome = run()
        assert outcome.status == "successful", [e.stdout for e in run.events]
        assert outcome.hosts == {"target": counts(ok=1, changed=1)}
        assert password not in event_text(run)
        run.assert_left_nothing()


# --- inventories -----------------------------------------------------------------------------

INI = """\
lonely

[web]
web1 ansible_host=10.0.0.1 ansible_port=2222
web2

[db]
db1 role="primary db"

[prod:children]
web
db

[prod:vars]
env=prod

[all:vars]
ntp=pool.ntp.org
"""

YAML = """\
all:
  vars:
    ntp: pool.ntp.org
  hosts:
    lonely:
  children:
    web:
      hosts:
        web1: {ansible_host: 10.0.0.1, ansible_port: 2222}
        web2:
    db:
      hosts:
        db1: {role: primary db}
    prod:
      vars: {env: prod}
      children:
        web:
        db:
"""


def expected_inventory_checks(inventory: Any) -> None:
    assert inventory.hosts == {"web1": {"ansible_host": "10.0.0.1", "ansible_port": 2222}, "web2": {},
                               "db1": {"role": "primary db"}, "lonely": {}}
    assert inventory.groups == {
        "web": ParsedGroup(hosts=("web1", "web2"), children=(), vars={}),
        "db": ParsedGroup(hosts=("db1",), children=(), vars={}),
        "prod": ParsedGroup(hosts=(), children=("web", "db"), vars={"env": "prod"}),
    }
    assert inventory.vars == {"ntp": "pool.ntp.org"}


def test_an_ini_inventory_parses_with_groups_children_and_vars() -> None:
    expected_inventory_checks(parse_inventory(INI, "ini"))


def test_a_yaml_inventory_parses_and_renders_back_to_the_same() -> None:
    inventory = parse_inventory(YAML, "yaml")
    expected_inventory_checks(inventory)
    rendered = render_inventory_yaml(inventory.hosts, inventory.groups, inventory.vars)
    assert parse_inventory(rendered, "yaml") == inventory


def test_rendering_nests_groups_and_lists_groupless_hosts_under_all() -> None:
    rendered = render_inventory_yaml(
        {"a": {"x": 1}, "b": {}, "c": {"y": "z"}},
        {"inner": ParsedGroup(("a",), (), {"v": 1}), "outer": ParsedGroup(("b",), ("inner",), {})})
    inventory = parse_inventory(rendered, "yaml")
    assert inventory.hosts == {"a": {"x": 1}, "b": {}, "c": {"y": "z"}}
    assert inventory.groups["outer"] == ParsedGroup(("b",), ("inner",), {})
    assert inventory.groups["inner"] == ParsedGroup(("a",), (), {"v": 1})


@pytest.mark.parametrize("text, line, words", [
    ("[web]\nweb1\n\n[prod:children]\nweb\nnogroup\n", 6, "undefined group 'nogroup'"),
    ("web1\n[web:vars]\nnot_a_pair\n", 3, "Expected key=value"),
    ("web1 ansible_port\n", 1, "key=value"),
    ("web1\n\n[g:vars]\nx=1\n", 3, "undefined group 'g'"),
])
def test_a_broken_ini_inventory_names_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, "ini")
    assert caught.value.line == line and words in caught.value.message


def test_a_broken_yaml_inventory_names_its_line() -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory("all:\n  hosts:\n    web1:\n   bad indent: [\n", "yaml")
    assert caught.value.line == 4
    with pytest.raises(InventoryError, match="requires a dictionary"):
        parse_inventory("all:\n  children:\n    web:\n      hosts: 5\n", "yaml")


@pytest.mark.parametrize("text, fmt, words", [
    ("#!/bin/sh\necho '{\"all\": {\"hosts\": [\"h\"]}}'\n", "ini", "scripts are not accepted"),
    ("plugin: ansible.builtin.constructed\n", "yaml", "Plugin configuration"),
    ("web1\n", "toml", "unknown inventory format"),
    ("# nothing but a comment\n", "ini", "no hosts"),
    ("", "yaml", "empty"),
    ("web1 x=" + "y" * (1024 * 1024) + "\n", "ini", "more than"),
])
def test_inventories_that_are_refused(text: str, fmt: str, words: str) -> None:
    with pytest.raises(InventoryError, match=words):
        parse_inventory(text, fmt)


# --- playbooks -----------------------------------------------------------------------------


def test_a_good_playbook_passes_the_syntax_check() -> None:
    check_playbook(play("ansible.builtin.debug:\n  msg: hi", "ansible.builtin.command: id"))


@pytest.mark.parametrize("content, line, words", [
    ("- hosts: all\n  tasks:\n    - name: x\n     debug: msg=hi\n", 4, "expected"),
    (play("name: fine\nansible.builtin.debug: msg=hi", "name: bad\nno.such.module: x=1"), 6, "no.such.module"),
    (play("ansible.builtin.debug: msg=hi\nnot_a_keyword: 3"), 4, "not_a_keyword"),
    ("- hosts: all\n  bogus_play_keyword: 1\n  tasks: []\n", 2, "bogus_play_keyword"),
    ("hosts: all\ntasks: []\n", 1, "list of plays"),
    ("- hosts: all\n  tasks: []\n- just text\n", 3, "play 2"),
])
def test_a_bad_playbook_names_the_line(content: str, line: int, words: str) -> None:
    with pytest.raises(PlaybookSyntaxError) as caught:
        check_playbook(content)
    assert caught.value.line == line and words in caught.value.message
    assert "\n" not in caught.value.message


def test_an_oversized_playbook_is_refused() -> None:
    with pytest.raises(PlaybookSyntaxError, match="more than"):
        check_playbook("# " + "x" * (1024 * 1024) + "\n" + play("ansible.builtin.ping:"))


def test_a_project_playbook_must_stay_inside_the_project(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    (root / "app" / "tasks").mkdir(parents=True)
    (root / "app" / "site.yml").write_text(play("ansible.builtin.include_tasks: tasks/t.yml"))
    (root / "app" / "tasks" / "t.yml").write_text("- ansible.builtin.ping:\n")
    outside = tmp_path / "outside.yml"
    outside.write_text(play("ansible.builtin.ping:"))
    (root / "app" / "link.yml").symlink_to(outside)
    (root / "app" / "broken.yml").write_text(play("no.such.module: x=1"))

    assert check_project_playbook(root, "app", "site.yml") == (root / "app" / "site.yml").resolve()
    for project_dir, playbook, words in [
        ("app", "../../outside.yml", "outside"),
        ("..", "outside.yml", "outside"),
        ("app", "link.yml", "outside"),
        ("app", str(outside), "relative"),
        ("app", "missing.yml", "does not exist"),
    ]:
        with pytest.raises(PlaybookSyntaxError, match=words):
            check_project_playbook(root, project_dir, playbook)
    with pytest.raises(PlaybookSyntaxError) as caught:
        check_project_playbook(root, "app", "broken.yml")
    assert caught.value.line == 4 and "no.such.module" in caught.value.message
