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

Flapping: every time the rule's condition starts or stops holding (fire, resolve) is a
change. More than ``flap_changes`` changes within ``flap_window_seconds`` make the probe
*flapping* (``flap``): one alert stays open whatever the condition does and nothing more
is told, until a result comes ``flap_settle_seconds`` after the last change (``settle``):
the alert then goes on firing, or resolves, by the condition at that moment. Times are
the results' own, so a quiet clock is never needed.
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
    flap_changes: int = 0  # 0: never flapping
    flap_window_seconds: float = 600.0
    flap_settle_seconds: float = 600.0


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
    firing: bool = False  # the condition holds
    held: bool = False  # firing, but it fired in maintenance: no alert is open
    flapping: bool = False  # an alert is open whatever ``firing`` says; nothing is told
    changes: tuple[float, ...] = ()  # when ``firing`` changed (Unix seconds), within the flap window


@dataclass(frozen=True)
class Transition:
    """At ``result`` the alert opens (``fire``) or resolves (``resolve``), or an episode that
    fired in maintenance is held (``hold``: no alert) or recovers while held (``drop``), or
    the probe starts flapping (``flap``: the alert is open, from now on or still) or settles
    (``settle``: the alert goes on firing if ``firing``, else it resolves)."""

    action: Literal["fire", "resolve", "hold", "drop", "flap", "settle"]
    result: ResultView
    since: datetime  # fire: the first bad result of the episode; resolve: the result itself
    reason: str
    firing: bool = False  # flap, settle: whether the condition holds at this result
    changes: int = 0  # flap: the changes counted within the window


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
        if memory.flapping and memory.changes and _at(result) - memory.changes[-1] >= rule.flap_settle_seconds:
            transitions.append(_settled(rule, memory, result))
            memory = replace(memory, flapping=False, changes=(), held=False)
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
            held = result.in_maintenance and not memory.flapping
            transition = Transition("hold" if held else "fire", result, bad_since or result.created_at,
                                    fire_reason(rule, recent, result))
            memory = replace(memory, firing=True, held=held)
            memory, transition = _changed(rule, memory, transition)
            if transition is not None:
                transitions.append(transition)
        elif memory.firing and good_streak >= rule.recovery:
            transition = Transition("drop" if memory.held else "resolve", result, result.created_at,
                                    resolve_reason(rule, result))
            held = memory.held
            memory = replace(Memory(), flapping=memory.flapping, changes=memory.changes)
            if not held:
                memory, transition = _changed(rule, memory, transition)
            if transition is not None:
                transitions.append(transition)
        elif memory.held and mark == BAD and not result.in_maintenance:
            transitions.append(Transition("fire", result, bad_since or result.created_at,
                                          f"still failing after maintenance: {fire_reason(rule, recent, result)}"))
            memory = replace(memory, held=False)
    return memory, transitions


def _at(result: ResultView) -> float:
    return result.created_at.timestamp()


def _changed(rule: RuleSpec, memory: Memory, transition: Transition) -> tuple[Memory, Transition | None]:
    """Count a fire or resolve as a change; returns the memory and what to tell: the
    transition itself, ``flap`` when this change makes the probe flapping, or nothing while
    it flaps (and for an episode held in maintenance, which opened nothing)."""
    if transition.action == "hold":
        return memory, transition
    if rule.flap_changes <= 0:
        return memory, transition
    now = _at(transition.result)
    changes = tuple(at for at in memory.changes if now - at < rule.flap_window_seconds) + (now,)
    memory = replace(memory, changes=changes[-(rule.flap_changes + 1):])
    if memory.flapping:
        return memory, None
    if len(changes) > rule.flap_changes:
        reason = f"changed state {len(changes)} times in {_span(rule.flap_window_seconds)}: flapping"
        return replace(memory, flapping=True), Transition("flap", transition.result, transition.since, reason,
                                                          firing=memory.firing, changes=len(changes))
    return memory, transition


def _settled(rule: RuleSpec, memory: Memory, result: ResultView) -> Transition:
    state = "still firing" if memory.firing else "recovered"
    reason = f"stable for {_span(rule.flap_settle_seconds)} after flapping: {state}"
    return Transition("settle", result, memory.bad_since or result.created_at, reason, firing=memory.firing)


def _span(seconds: float) -> str:
    if seconds % 60 == 0 and seconds >= 60:
        minutes = int(seconds // 60)
        return f"{minutes} min"
    return f"{seconds:g} s"


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
