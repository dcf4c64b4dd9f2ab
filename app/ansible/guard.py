"""Runs ansible-playbook for a run, and ends the run's processes if the worker that started it dies.

ansible-runner starts the playbook in a session of its own (a pseudo-terminal), so when
the worker process is killed (SIGKILL, the OOM killer) nothing tells the playbook: it
would run on, unsupervised, its output going nowhere. The runner is therefore pointed at
a wrapper (``wrapper_script``) that starts this file instead of ansible-playbook. It runs
the real ansible-playbook as its child, passes on the signals it gets, and checks twice a
second that its owner — the worker process, identified by pid and start time so a reused
pid does not fool it — is still alive. When the owner is gone it ends every process that
carries the run's marker (SIGTERM, then SIGKILL after the grace), removes the run's private
directory, and ends itself.

It is run as a plain script beside ``processes.py`` (standard library only), so starting
it costs no import of the application.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

OWNER_ENV = "ADMIN_MIT_ANSIBLE_OWNER"       # "<pid>:<start time>" of the worker process
PLAYBOOK_ENV = "ADMIN_MIT_ANSIBLE_PLAYBOOK"  # the real ansible-playbook
GRACE_ENV = "ADMIN_MIT_ANSIBLE_GRACE"
PRIVATE_DIR_ENV = "ADMIN_MIT_ANSIBLE_PRIVATE_DIR"
CHECK_EVERY_SECONDS = 0.5


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), None if it is gone.

    A zombie is gone too: a killed worker process stays one for as long as nobody reaps it
    (its parent died with it, and in a container process 1 may never do it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_token(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{pid}:{start_time(pid)}"


def owner_alive(token: str) -> bool:
    pid, _, started = token.partition(":")
    return start_time(int(pid)) == started


def guard_env(private_dir: Path, playbook_command: str, grace_seconds: float) -> dict[str, str]:
    """What the guard needs to know, passed in the run's environment."""
    return {OWNER_ENV: owner_token(), PLAYBOOK_ENV: playbook_command, GRACE_ENV: str(grace_seconds),
            PRIVATE_DIR_ENV: str(private_dir)}


def wrapper_script(directory: Path) -> Path:
    """Write the executable the runner is given as its ansible-playbook; returns its path."""
    directory.mkdir(mode=0o700, exist_ok=True)
    script = directory / "ansible-playbook"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -E -s {shlex.quote(__file__)} \"$@\"\n")
    script.chmod(0o700)
    return script


def _end_run(grace: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from processes import MARKER_ENV, end_process_groups, processes_with_marker  # type: ignore[import-not-found]

    marker = os.environ.get(MARKER_ENV)
    if marker:
        end_process_groups([pid for pid in processes_with_marker(marker) if pid != os.getpid()], grace)
    private_dir = os.environ.get(PRIVATE_DIR_ENV)
    if private_dir:
        shutil.rmtree(private_dir, ignore_errors=True)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def main(argv: list[str]) -> int:
    owner = os.environ.get(OWNER_ENV, "")
    grace = float(os.environ.get(GRACE_ENV, "2"))
    child = subprocess.Popen([os.environ[PLAYBOOK_ENV], *argv])
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda signum, _frame: child.send_signal(signum))
    while True:
        try:
            code = child.wait(timeout=CHECK_EVERY_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        if owner and not owner_alive(owner):
            # Also when ansible-playbook ended by itself (its terminal closed with the worker):
            # nobody else is left to end the rest of the run and remove its directory.
            _end_run(grace)
        if code is not None:
            return code


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.exit(code if code >= 0 else 128 - code)
