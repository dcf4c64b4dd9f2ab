"""Finding and ending the processes of a run.

Every process of a run carries ``MARKER_ENV=<marker>`` in its environment, inherited from
the ``ansible-playbook`` process the run starts. That is how the processes that leave the
run's process group are found too: ``ssh-agent`` and an ssh ControlPersist master start
sessions of their own, so ending the run's process group alone would leave them behind.

Only ``/proc`` is read (Linux). A zombie has no readable environment, so it never counts as
a process of a run: it is already dead and only waits for its parent.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

MARKER_ENV = "ADMIN_MIT_ANSIBLE_RUN"

_PROC = Path("/proc")
_POLL_SECONDS = 0.05
# After SIGKILL the kernel still needs a moment to take a process down.
_AFTER_KILL_SECONDS = 1.0


def processes_with_marker(marker: str | None = None, prefix: str | None = None) -> list[int]:
    """The pids whose environment has ``MARKER_ENV`` equal to ``marker``, or starting with
    ``prefix`` (with neither: any value). Our own process is never listed."""
    key = MARKER_ENV.encode() + b"="
    exact = marker.encode() if marker is not None else None
    start = (prefix or "").encode()
    own = os.getpid()
    found = []
    for pid in _pids():
        if pid == own:
            continue
        try:
            environ = (_PROC / str(pid) / "environ").read_bytes()
        except OSError:  # vanished, or not ours to read
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(key):
                value = entry[len(key):]
                if (value == exact) if exact is not None else value.startswith(start):
                    found.append(pid)
                break
    return found


def signal_process_groups(pids: Iterable[int], sig: int) -> set[int]:
    """Send ``sig`` to the process group of each pid (once per group), without waiting.

    A pid in our own process group gets the signal alone: our group is never signalled.
    Returns the groups signalled; vanished processes are skipped.
    """
    own_group = os.getpgrp()
    groups: set[int] = set()
    for pid in pids:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            continue
        try:
            if group == own_group:
                os.kill(pid, sig)
            elif group not in groups:
                os.killpg(group, sig)
                groups.add(group)
        except ProcessLookupError:
            continue
    return groups


def end_process_groups(pids: Iterable[int], grace_seconds: float) -> None:
    """SIGTERM the process groups of ``pids``, wait up to ``grace_seconds`` for them to end,
    then SIGKILL the groups that still have a live process (and wait briefly for those)."""
    pids = list(pids)
    own_group = os.getpgrp()
    groups = signal_process_groups(pids, signal.SIGTERM)
    singles = {pid for pid in pids if _group_of(pid) == own_group}
    if _wait_gone(groups, singles, grace_seconds):
        return
    live = _live_members(groups)
    signal_process_groups([pid for members in live.values() for pid in members] + sorted(singles), signal.SIGKILL)
    _wait_gone(groups, singles, _AFTER_KILL_SECONDS)


def _wait_gone(groups: set[int], singles: set[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        singles.intersection_update(pid for pid in singles if _alive(pid))
        if not singles and not _live_members(groups):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


def _pids() -> list[int]:
    try:
        return [int(entry.name) for entry in os.scandir(_PROC) if entry.name.isdigit()]
    except OSError:
        return []


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process, None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[2])


def _group_of(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _live_members(groups: set[int]) -> dict[int, list[int]]:
    """The processes, other than zombies, in each of ``groups`` that has any."""
    if not groups:
        return {}
    members: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat and stat[1] in groups and stat[0] not in ("Z", "X"):
            members.setdefault(stat[1], []).append(pid)
    return members
