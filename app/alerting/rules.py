"""Rule evaluation: from a rule, its memory of one probe and new results, the next memory and
the alert transitions they cause. Pure functions: no database, no clock but the results'.

Every result is a verdict for a rule — bad, good, or not counted:

- ``down``: a run that did not succeed is bad, a successful run good;
- ``slow``: a successful run slower than ``slow_ms`` is bad, a faster one good; a failed
  run is not counted (the ``down`` rule speaks for it);
- ``certificate``: a run whose certificate has fewer than ``cert_days`` days left (at the
  time of the run) is bad, more is good; a run that saw no certificate is not counted.

The rule fires when ``threshold`` of the last ``window`` counted verdicts are bad (with
``window == threshold``: that many in a row) and resolves after ``recovery`` good verdicts
in a row. Resolving forgets the window, so the next episode needs ``threshold`` new bad
verdicts rather than firing again on the old ones.

A result that ran in a maintenance window counts like any other, but opens nothing: a
rule reaching its threshold there *holds* the episode (firing, no alert). The first bad
result outside maintenance opens the held alert (the target is still down when the
window ends: one notification); recovering first *drops* it (nothing is ever sent). An
alert open before the window that resolves inside it resolves without a notice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

BAD, GOOD = "b", "g"
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class RuleSpec:
    kind: Literal["down", "slow", "certificate"]
    threshold: int = 3
    window: int = 3
    recovery: int = 1
    slow_ms: float | None = None
    cert_days: int | None = None


@dataclass(frozen=True)
class ResultView:
    """The fields of a stored probe result that rules look at."""

    id: int
    status: str
    created_at: datetime
    response_time_ms: float | None = None
    cert_expires_at: datetime | None = None
    error: str | None = None
    status_code: int | None = None
    in_maintenance: bool = False


@dataclass(frozen=True)
class Memory:
    """What a rule remembers of one probe (see ``AlertState``)."""

    recent: str = ""
    good_streak: int = 0
    bad_since: datetime | None = None
    firing: bool = False
    held: bool = False  # firing, but it fired in maintenance: no alert is open


@dataclass(frozen=True)
class Transition:
    """At ``result`` the alert opens (``fire``) or resolves (``resolve``), or an episode that
    fired in maintenance is held (``hold``: no alert) or recovers while held (``drop``)."""

    action: Literal["fire", "resolve", "hold", "drop"]
    result: ResultView
    since: datetime  # fire: the first bad result of the episode; resolve: the result itself
    reason: str


def verdict(rule: RuleSpec, result: ResultView) -> str | None:
    if rule.kind == "down":
        return GOOD if result.status == "success" else BAD
    if rule.kind == "slow":
        if result.status != "success" or result.response_time_ms is None or rule.slow_ms is None:
            return None
        return BAD if result.response_time_ms > rule.slow_ms else GOOD
    if result.cert_expires_at is None or rule.cert_days is None:
        return None
    return BAD if days_left(result) < rule.cert_days else GOOD


def days_left(result: ResultView) -> float:
    assert result.cert_expires_at is not None
    return (result.cert_expires_at - result.created_at).total_seconds() / SECONDS_PER_DAY


def advance(rule: RuleSpec, memory: Memory, results: list[ResultView]) -> tuple[Memory, list[Transition]]:
    """Feed ``results`` (in the order they were stored) to the rule; return the new memory and
    the transitions, in order (a batch can hold a whole short episode: fire, then resolve)."""
    transitions: list[Transition] = []
    for result in results:
        mark = verdict(rule, result)
        if mark is None:
            continue
        recent = (memory.recent + mark)[-rule.window:]
        good_streak = memory.good_streak + 1 if mark == GOOD else 0
        bad_since = memory.bad_since
        if mark == BAD and bad_since is None:
            bad_since = result.created_at
        elif BAD not in recent:
            bad_since = None
        memory = replace(memory, recent=recent, good_streak=good_streak, bad_since=bad_since)
        if not memory.firing and recent.count(BAD) >= rule.threshold:
            held = result.in_maintenance
            transitions.append(Transition("hold" if held else "fire", result, bad_since or result.created_at,
                                          fire_reason(rule, recent, result)))
            memory = replace(memory, firing=True, held=held)
        elif memory.firing and good_streak >= rule.recovery:
            transitions.append(Transition("drop" if memory.held else "resolve", result, result.created_at,
                                          resolve_reason(rule, result)))
            memory = Memory()
        elif memory.held and mark == BAD and not result.in_maintenance:
            transitions.append(Transition("fire", result, bad_since or result.created_at,
                                          f"still failing after maintenance: {fire_reason(rule, recent, result)}"))
            memory = replace(memory, held=False)
    return memory, transitions


def fire_reason(rule: RuleSpec, recent: str, result: ResultView) -> str:
    bad = recent.count(BAD)
    if bad != len(recent):
        runs = f"{bad} of the last {len(recent)} runs"
    else:
        runs = "1 run" if bad == 1 else f"{bad} runs in a row"
    if rule.kind == "down":
        detail = f": {result.error}" if result.error else f" (status {result.status})"
        return f"{runs} failed{detail}"
    if rule.kind == "slow":
        return f"{runs} took longer than {rule.slow_ms:g} ms (last {result.response_time_ms:.0f} ms)"
    return f"{_certificate(days_left(result))} ({runs} under {rule.cert_days} days)"


def resolve_reason(rule: RuleSpec, result: ResultView) -> str:
    runs = "1 run" if rule.recovery == 1 else f"{rule.recovery} runs in a row"
    if rule.kind == "down":
        return f"{runs} succeeded"
    if rule.kind == "slow":
        return f"{runs} answered within {rule.slow_ms:g} ms (last {result.response_time_ms:.0f} ms)"
    return f"{_certificate(days_left(result))} ({runs} at {rule.cert_days} days or more)"


def _certificate(days: float) -> str:
    if days < 0:
        return f"the certificate expired {_days(-days)} ago"
    return f"the certificate expires in {_days(days)}"


def _days(days: float) -> str:
    whole = int(days)
    return "less than a day" if whole == 0 else f"{whole} day{'s' if whole != 1 else ''}"
