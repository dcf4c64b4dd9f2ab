"""One playbook run through ansible-runner, from a private directory that is gone afterwards.

The private directory ``<runs_dir>/<name>-<random>`` (0700) holds everything of the run:
``inventory/hosts``, the playbook in ``project/`` (unless an existing project's playbook
runs from its own directory), ``env/extravars`` and ``env/settings``, an empty
``ansible.cfg``, ansible's local temporary files in ``tmp/``, ssh's ControlMaster sockets
in ``cp/`` and ansible-runner's ``artifacts/``. Files with content are created 0600.

Secrets are never written to a file: the SSH key reaches ``ssh-agent`` through a FIFO that
ansible-runner creates in the artifacts directory (``ssh-add`` reads it once, a shell trap
removes it); the key's passphrase, the SSH password (``--ask-pass``, with ``sshpass``), the
become password (``--ask-become-pass``) and the vault password (``--ask-vault-pass``) are
typed at ansible's prompts by ansible-runner (pexpect, the run has a pseudo-terminal). Each
secret is also masked (``events.MASK``) in every event's stdout and data, in case a task
prints it; only ansible's own hand-over files in ``artifacts/run/job_events`` (0600) hold a
task's output unmasked, until ansible-runner reads them a moment later. The extra vars are
a file (``-e @file``), not part of a command line that any user of the machine can read.

Environment: ``environment.clean_env`` (of the worker's own variables only an allow-list
passes), then the caller's ``extra_env``, then the marker. ``ANSIBLE_HOST_KEY_CHECKING`` stays on (ansible's own default, not
ansible-runner's "off"). An unknown host key is refused at once: ssh's "continue
connecting?" question is answered "no", so the host is unreachable with "Host key
verification failed" rather than the run waiting for an answer. Callers that trust new
hosts pass ``ANSIBLE_HOST_KEY_CHECKING=False``, or a ``known_hosts`` file through
``ANSIBLE_SSH_COMMON_ARGS="-o UserKnownHostsFile=..."``. ssh multiplexes connections
(ControlPersist) with sockets inside the private directory; when that directory's path is
too long for a socket name, multiplexing is off for the run.

Ending a run: cancel, the job timeout and the idle timeout (no event for that long) all
end it the same way, from ansible-runner's ``cancel_callback``, which it calls every
``POLL_SECONDS`` at least: SIGTERM to the process groups of every process carrying the
run's marker, then, while they end, output is still read (ansible says what it was doing);
after ``kill_grace_seconds`` SIGKILL. Whatever way the run ends, afterwards any process
still carrying the marker (``ssh-agent``, an ssh ControlPersist master) is ended and the
private directory is removed.

Events: ``on_event`` gets every event in order as it arrives; none is kept, and
ansible-runner is told not to write them (nor its stdout file) to the artifacts directory,
so neither disk nor memory grows with the length of a run (pexpect's own buffer of
everything read is emptied at every line end: see ``_passwords``). Each event is capped:
see ``app.ansible.events``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shlex
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.ansible import guard
from app.ansible.environment import clean_env, command, private_dir, write_private
from app.ansible.events import Masker, RunEvent, make_event, secrets_of_key
from app.ansible.processes import MARKER_ENV, end_process_groups, processes_with_marker, signal_process_groups

__all__ = ["HOST_COUNTS", "MARKER_ENV", "RunEvent", "RunOutcome", "RunRequest", "run_playbook"]

log = logging.getLogger(__name__)

HOST_COUNTS = ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")
# ansible-runner's names in playbook_on_stats for our HOST_COUNTS.
_STATS_KEYS = {"ok": "ok", "changed": "changed", "failed": "failures", "unreachable": "dark",
               "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
POLL_SECONDS = 0.2
# While a run is being ended, how often to look whether its processes are gone.
_SCAN_SECONDS = 0.1
# The longest path a Unix socket may have, less what ansible (a 10-character name) and ssh
# (a 17-character suffix while it sets the socket up) add to the ControlPath directory.
_MAX_CONTROL_DIR = 107 - 28
_SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=60s"
_FIFO_DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class RunRequest:
    runs_dir: Path
    name: str
    marker: str
    inventory: str
    playbook_content: str | None = None
    playbook_path: Path | None = None
    extravars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    check: bool = False
    diff: bool = False
    forks: int = 5
    verbosity: int = 0
    remote_user: str | None = None
    ssh_key: str | None = None
    ssh_key_passphrase: str | None = None
    ssh_password: str | None = None
    become_password: str | None = None
    become_method: str | None = None   # ansible's --become-method / --become-user (a play's own keywords win)
    become_user: str | None = None
    vault_password: str | None = None
    vault_id: str | None = None        # the password is then asked for as --vault-id <id>@prompt
    job_timeout: float | None = None
    idle_timeout: float | None = None
    kill_grace_seconds: float = 2.0
    max_event_bytes: int = 64 * 1024
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    status: str
    rc: int | None
    hosts: dict[str, dict[str, int]]
    reason: str | None


def run_playbook(request: RunRequest, on_event: Callable[[RunEvent], None],
                 should_cancel: Callable[[], bool] = lambda: False,
                 on_start: Callable[[Path], None] | None = None) -> RunOutcome:
    """Run the request's playbook to its end; ``on_event`` gets each event in order.

    ``should_cancel`` is asked every ``POLL_SECONDS`` (also while ansible is quiet, so it
    may double as a timer). An exception from ``on_event`` or ``should_cancel`` ends the run
    and is raised once its processes are gone and its directory removed.
    """
    if (request.playbook_content is None) == (request.playbook_path is None):
        raise ValueError("a run needs exactly one of playbook_content and playbook_path")
    if not request.marker:
        raise ValueError("a run needs a marker")
    Path(request.runs_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    with private_dir(Path(request.runs_dir), request.name) as directory:
        run = _Run(request, directory, on_event, should_cancel)
        try:
            run.prepare()
            if on_start is not None:
                on_start(directory)
            return run.execute()
        finally:
            run.end()


class _Run:
    def __init__(self, request: RunRequest, directory: Path, on_event: Callable[[RunEvent], None],
                 should_cancel: Callable[[], bool]) -> None:
        self.request = request
        self.directory = directory
        self.on_event = on_event
        self.should_cancel = should_cancel
        secrets = [s for s in (request.ssh_key_passphrase, request.ssh_password, request.become_password,
                               request.vault_password) if s]
        if request.ssh_key:
            secrets += secrets_of_key(request.ssh_key)
        self.masker = Masker(secrets, private_prefix=f"{directory}{os.sep}")
        self.error: BaseException | None = None
        self.ending: str | None = None  # why the run is being ended: canceled, job, idle, error
        self.ending_at = 0.0
        self.started_at = time.monotonic()
        self.last_output = self.started_at
        self.last_cancel_check = 0.0
        self.last_scan = 0.0
        self.stats: dict[str, Any] | None = None
        self.playbook_started = False
        self.early_lines: list[str] = []  # output before the playbook started, for the reason
        self.fifo: Path | None = None
        self.fifo_writers: set[threading.Thread] = set()

    # -- the private directory -------------------------------------------------------

    def prepare(self) -> None:
        request, directory = self.request, self.directory
        for sub in ("inventory", "project", "env", "cp"):
            (directory / sub).mkdir(mode=0o700)
        self.inventory = directory / "inventory" / "hosts"
        write_private(self.inventory, request.inventory)
        if request.playbook_content is not None:
            self.playbook = directory / "project" / "main.yml"
            write_private(self.playbook, request.playbook_content)
        else:
            self.playbook = Path(request.playbook_path).absolute()  # type: ignore[arg-type]
        if request.extravars:
            write_private(directory / "env" / "extravars", json.dumps(request.extravars))
        self.env = self._env()

    def _env(self) -> dict[str, str]:
        control_dir = self.directory / "cp"
        env = clean_env(self.directory)
        env.update({
            "ANSIBLE_INVENTORY_ENABLED": "yaml,ini",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": _SSH_ARGS if len(str(control_dir)) <= _MAX_CONTROL_DIR else "-C",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        })
        env.update(self.request.extra_env)
        env[MARKER_ENV] = self.request.marker
        # "ansible-playbook" is found first in bin/: the guard, which runs the real one and ends
        # the run if this process dies (guard.py).
        env.update(guard.guard_env(self.directory, command("ansible-playbook"), self.request.kill_grace_seconds))
        env["PATH"] = os.pathsep.join((str(guard.wrapper_script(self.directory / "bin").parent), env["PATH"]))
        return env

    def _cmdline(self) -> str:
        request = self.request
        args = []
        if request.check:
            args.append("--check")
        if request.diff:
            args.append("--diff")
        if request.remote_user:
            args += ["--user", request.remote_user]
        if request.ssh_password:
            args.append("--ask-pass")
        if request.become_password:
            args.append("--ask-become-pass")
        if request.become_method:
            args += ["--become-method", request.become_method]
        if request.become_user:
            args += ["--become-user", request.become_user]
        if request.vault_password:
            args += ["--vault-id", f"{request.vault_id}@prompt"] if request.vault_id else ["--ask-vault-pass"]
        return shlex.join(args)

    def _passwords(self) -> dict[str, str]:
        """ansible-runner's prompt patterns (regular expressions, multi-line) and answers."""
        request = self.request
        answers = {
            # ssh-add asks for the key's passphrase; without one, an empty answer makes it
            # give up instead of waiting. A wrong one is not retried.
            r"^Enter passphrase for .*:\s*?$": request.ssh_key_passphrase or "",
            r"^Bad passphrase, try again for .*:\s*?$": "",
            r"Are you sure you want to continue connecting \(yes/no[^)]*\)\?\s*?$": "no",
        }
        if request.ssh_password:
            answers[r"^SSH password:\s*?$"] = request.ssh_password
        if request.become_password:
            answers[r"^BECOME password.*:\s*?$"] = request.become_password
        if request.vault_password:
            answers[r"^Vault password.*:\s*?$"] = request.vault_password
        # Not a prompt: matching every line end makes pexpect drop what it has read so far.
        # Otherwise it keeps the whole output of the run in memory (its "before" buffer only
        # empties on a match), and copies it on every poll.
        answers["\n"] = None  # type: ignore[assignment]
        return answers

    # -- running ---------------------------------------------------------------------

    def execute(self) -> RunOutcome:
        from ansible_runner.config.runner import RunnerConfig
        from ansible_runner.exceptions import AnsibleRunnerException
        from ansible_runner.runner import Runner

        request = self.request
        if self._poll_cancel(time.monotonic()):
            return RunOutcome("canceled", None, {}, "canceled")
        if self.error is not None:
            raise self.error
        # As a file: ansible-runner drops a ``settings`` argument when there is no
        # env/settings file to merge it with (and its other env/ files are ours to avoid).
        write_private(self.directory / "env" / "settings", json.dumps({
            "pexpect_timeout": POLL_SECONDS,
            "suppress_ansible_output": True,
            "suppress_output_file": True,
        }))
        try:
            config = RunnerConfig(
                private_data_dir=str(self.directory),
                project_dir=str(self.playbook.parent),
                playbook=str(self.playbook),
                inventory=str(self.inventory),
                ident="run",
                envvars=dict(self.env),
                passwords=self._passwords(),
                ssh_key=request.ssh_key or None,
                cmdline=self._cmdline() or None,
                limit=request.limit,
                tags=",".join(request.tags) or None,
                skip_tags=",".join(request.skip_tags) or None,
                forks=request.forks,
                verbosity=request.verbosity or None,
                quiet=True,
                suppress_env_files=True,
            )
            threads = set(threading.enumerate())
            try:
                config.prepare()
            finally:
                self.fifo = Path(config.artifact_dir) / "ssh_key_data" if request.ssh_key else None
                # ansible-runner's FIFO writer: a thread started with the FIFO's path as argument.
                self.fifo_writers = {t for t in set(threading.enumerate()) - threads
                                     if self.fifo and getattr(t, "_args", (None,))[:1] == (str(self.fifo),)}
            config.env = self._runner_env(config.env)
            runner = Runner(config, event_handler=self._on_event, cancel_callback=self._poll)
            self.started_at = self.last_output = time.monotonic()
            runner.run()
        except AnsibleRunnerException as exc:  # its configuration errors, mostly
            if self.error is not None:
                raise self.error from None
            message = self.masker.text(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            return RunOutcome("failed", None, {}, f"ansible could not be started: {message}"[:300])
        if self.error is not None:
            raise self.error
        return self._outcome(runner.status, runner.rc)

    def _runner_env(self, env: dict[str, str]) -> dict[str, str]:
        """ansible-runner starts from a copy of our own environment: keep only what we
        chose and what ansible-runner itself added or changed."""
        inherited = os.environ
        return {key: value for key, value in env.items()
                if key in self.env or key not in inherited or inherited[key] != value}

    def _outcome(self, status: str, rc: int | None) -> RunOutcome:
        hosts = self._host_counts()
        request = self.request
        if self.ending == "canceled":
            return RunOutcome("canceled", rc, hosts, "canceled")
        if self.ending == "job":
            return RunOutcome("timeout", rc, hosts, f"job timeout after {request.job_timeout:g} s")
        if self.ending == "idle":
            return RunOutcome("timeout", rc, hosts, f"no output for {request.idle_timeout:g} s")
        if status == "successful":
            return RunOutcome("successful", rc, hosts, None)
        return RunOutcome("failed", rc, hosts, self._failure_reason(rc, hosts))

    def _failure_reason(self, rc: int | None, hosts: dict[str, dict[str, int]]) -> str:
        if not self.playbook_started:
            lines = [line.strip() for line in self.early_lines if line.strip()]
            errors = [re.sub(r"^(\[ERROR\]:|ERROR!)\s*", "", line) for line in lines
                      if line.startswith(("[ERROR]:", "ERROR!"))]
            said = errors[0] if errors else (lines[-1] if lines else "")
            if self.request.ssh_key and re.match(r"(Enter|Bad) passphrase", said):
                return "the SSH key could not be loaded: wrong or missing passphrase"
            if self.request.ssh_key and "ssh_key_data" in said:
                return f"the SSH key could not be loaded: {said}"[:300]
            return f"{_ended(rc)} before the playbook started: {said}"[:300].rstrip(": ")
        reason = _ended(rc)
        for count, label in (("failed", "failed"), ("unreachable", "unreachable")):
            names = [host for host, counts in hosts.items() if counts[count]]
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                reason += f"; {label}: {shown}"
        return reason[:300]

    def _host_counts(self) -> dict[str, dict[str, int]]:
        stats = self.stats or {}
        hosts: dict[str, dict[str, int]] = {}
        for name in HOST_COUNTS:
            per_host = stats.get(_STATS_KEYS[name]) or {}
            for host, value in per_host.items():
                hosts.setdefault(host, dict.fromkeys(HOST_COUNTS, 0))[name] = int(value)
        for host in stats.get("processed") or {}:
            hosts.setdefault(host, dict.fromkeys(HOST_COUNTS, 0))
        return hosts

    # -- ansible-runner's callbacks ------------------------------------------------------

    def _on_event(self, raw: dict[str, Any]) -> bool:
        """ansible-runner's event_handler: False tells it not to write the event to disk."""
        self.last_output = time.monotonic()
        kind = raw.get("event")
        if kind == "playbook_on_start":
            self.playbook_started = True
        elif kind == "playbook_on_stats":
            self.stats = raw.get("event_data") or {}
        if self.error is not None:
            return False
        try:
            event = make_event(raw, self.request.max_event_bytes, self.masker)
            if not self.playbook_started and event.event == "verbose":
                self.early_lines = (self.early_lines + [event.stdout[:300]])[-50:]
            self.on_event(event)
        except BaseException as exc:  # raised again once the run is over
            self.error = exc
            self._begin_end("error")
        return False

    def _poll(self) -> bool:
        """ansible-runner's cancel_callback: True makes it SIGKILL the run's process group."""
        now = time.monotonic()
        if self.ending is None:
            request = self.request
            if self._poll_cancel(now):
                self._begin_end("canceled")
            elif request.job_timeout is not None and now - self.started_at >= request.job_timeout:
                self._begin_end("job")
            elif request.idle_timeout is not None and now - self.last_output >= request.idle_timeout:
                self._begin_end("idle")
        if self.ending is None:
            return False
        if now - self.ending_at >= self.request.kill_grace_seconds:
            signal_process_groups(processes_with_marker(self.request.marker), signal.SIGKILL)
            return True
        if now - self.last_scan < _SCAN_SECONDS:  # this is called at every line of output too
            return False
        self.last_scan = now
        return not processes_with_marker(self.request.marker)

    def _poll_cancel(self, now: float) -> bool:
        if self.error is not None:
            return False
        if now - self.last_cancel_check < POLL_SECONDS:
            return False
        self.last_cancel_check = now
        try:
            return bool(self.should_cancel())
        except BaseException as exc:  # raised again once the run is over
            self.error = exc
            self._begin_end("error")
            return False

    def _begin_end(self, why: str) -> None:
        if self.ending is not None:
            return
        self.ending = why
        self.ending_at = time.monotonic()
        signal_process_groups(processes_with_marker(self.request.marker), signal.SIGTERM)

    # -- afterwards ----------------------------------------------------------------------

    def end(self) -> None:
        """Whatever happened: no process of the run left, no thread waiting on the key FIFO."""
        end_process_groups(processes_with_marker(self.request.marker), self.request.kill_grace_seconds)
        self._release_fifo_writers()

    def _release_fifo_writers(self) -> None:
        """ansible-runner writes the SSH key into its FIFO from a thread that blocks until a
        reader opens it. If ``ssh-add`` never did (the run ended first), read it here, and
        throw it away, so that thread ends."""
        writers = {t for t in self.fifo_writers if t.is_alive()}
        if not writers:
            return
        fd = None
        if self.fifo is not None:
            try:
                if stat.S_ISFIFO(os.lstat(self.fifo).st_mode):
                    fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                fd = None
        deadline = time.monotonic() + _FIFO_DRAIN_SECONDS
        try:
            while any(t.is_alive() for t in writers) and time.monotonic() < deadline:
                if fd is not None:
                    ready, _, _ = select.select([fd], [], [], 0.05)
                    if ready:
                        try:
                            os.read(fd, 65536)
                        except BlockingIOError:
                            pass
                else:
                    time.sleep(0.05)
        finally:
            if fd is not None:
                os.close(fd)
        if any(t.is_alive() for t in writers):
            log.warning("a thread writing an SSH key for run %s is still waiting for a reader", self.request.name)


def _ended(rc: int | None) -> str:
    return f"ansible-playbook exited {rc}" if rc is not None else "ansible-playbook was killed"
