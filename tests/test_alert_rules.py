"""Rule evaluation as a function: which results open an alert, which resolve it, and why."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count

from app.alerting.rules import Memory, ResultView, RuleSpec, advance

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
_ids = count(1)


def run(status: str = "success", ms: float = 20.0, cert_days: float | None = None, error: str | None = None,
        at: datetime | None = None) -> ResultView:
    result_id = next(_ids)
    created = at or T0 + timedelta(seconds=10 * result_id)
    expires = created + timedelta(days=cert_days) if cert_days is not None else None
    return ResultView(id=result_id, status=status, created_at=created, response_time_ms=ms,
                      cert_expires_at=expires, error=error)


def feed(rule: RuleSpec, *results: ResultView, memory: Memory = Memory()) -> tuple[Memory, list[str]]:
    memory, transitions = advance(rule, memory, list(results))
    return memory, [transition.action for transition in transitions]


def test_down_fires_exactly_at_the_threshold() -> None:
    rule = RuleSpec("down", threshold=3, window=3)
    memory, actions = feed(rule, run("failed"), run("timeout"))
    assert actions == [] and not memory.firing
    first_bad = memory.bad_since
    memory, transitions = advance(rule, memory, [run("failed", error="connection refused")])
    assert [t.action for t in transitions] == ["fire"]
    assert transitions[0].since == first_bad  # the episode began with the first failure
    assert transitions[0].reason == "3 runs in a row failed: connection refused"


def test_a_success_between_failures_restarts_the_count() -> None:
    rule = RuleSpec("down", threshold=3, window=3)
    _, actions = feed(rule, run("failed"), run("failed"), run(), run("failed"), run("failed"))
    assert actions == []


def test_k_of_n_fires_on_scattered_failures() -> None:
    rule = RuleSpec("down", threshold=3, window=5)
    memory, transitions = advance(rule, Memory(), [run("failed"), run(), run("failed"), run(), run("failed")])
    assert [t.action for t in transitions] == ["fire"]
    assert transitions[0].reason.startswith("3 of the last 5 runs failed")


def test_recovery_needs_its_successes_in_a_row_and_forgets_the_episode() -> None:
    rule = RuleSpec("down", threshold=2, window=2, recovery=2)
    memory, actions = feed(rule, run("failed"), run("failed"), run(), run("failed"), run())
    assert actions == ["fire"] and memory.firing
    memory, actions = feed(rule, run(), memory=memory)
    assert actions == ["resolve"]
    assert memory == Memory()  # a new episode needs the threshold again
    _, actions = feed(rule, run("failed"), memory=memory)
    assert actions == []


def test_a_whole_episode_in_one_batch_is_two_transitions_in_order() -> None:
    rule = RuleSpec("down", threshold=1, window=1, recovery=1)
    _, actions = feed(rule, run("failed"), run(), run("error"))
    assert actions == ["fire", "resolve", "fire"]


def test_slow_counts_only_successful_runs() -> None:
    rule = RuleSpec("slow", threshold=2, window=2, slow_ms=500)
    memory, actions = feed(rule, run(ms=800), run("failed", ms=5000), run(ms=900))
    assert actions == ["fire"]
    assert "took longer than 500 ms (last 900 ms)" in advance(rule, Memory(), [run(ms=800), run(ms=900)])[1][0].reason
    _, actions = feed(rule, run(ms=100), memory=memory)
    assert actions == ["resolve"]


def test_certificate_judged_at_the_time_of_the_run() -> None:
    rule = RuleSpec("certificate", threshold=1, window=1, cert_days=14)
    memory, transitions = advance(rule, Memory(), [run(cert_days=30), run(cert_days=None), run(cert_days=3.5)])
    assert [t.action for t in transitions] == ["fire"]
    assert transitions[0].reason == "the certificate expires in 3 days (1 run under 14 days)"
    _, expired = advance(rule, Memory(), [run(cert_days=-2.5)])
    assert expired[0].reason == "the certificate expired 2 days ago (1 run under 14 days)"
    _, actions = feed(rule, run(cert_days=90), memory=memory)
    assert actions == ["resolve"]


def test_runs_that_say_nothing_leave_the_memory_alone() -> None:
    rule = RuleSpec("certificate", threshold=2, window=2, cert_days=14)
    memory, _ = feed(rule, run(cert_days=2))
    unchanged, actions = feed(rule, run("failed", cert_days=None), run(cert_days=None), memory=memory)
    assert unchanged == memory and actions == []


FLAPPY = RuleSpec(kind="down", threshold=1, window=1, flap_changes=3, flap_window_seconds=300,
                  flap_settle_seconds=120)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_more_changes_than_allowed_within_the_window_is_one_flap_then_silence() -> None:
    memory, actions = feed(FLAPPY, run("failed", at=at(0)), run(at=at(10)), run("failed", at=at(20)),
                           run(at=at(30)), run("failed", at=at(40)), run(at=at(50)))
    # fire, resolve, fire are told; the fourth change makes it flapping; the rest says nothing
    assert actions == ["fire", "resolve", "fire", "flap"]
    assert memory.flapping and not memory.firing


def test_changes_spread_wider_than_the_window_never_flap() -> None:
    results = [run("failed" if i % 2 == 0 else "success", at=at(i * 120)) for i in range(8)]
    memory, actions = feed(FLAPPY, *results)
    assert actions == ["fire", "resolve"] * 4 and not memory.flapping


def test_a_flapping_probe_settles_after_a_quiet_spell_in_its_state_at_that_moment() -> None:
    flapping, _ = feed(FLAPPY, run("failed", at=at(0)), run(at=at(10)), run("failed", at=at(20)), run(at=at(30)))
    assert flapping.flapping
    # up since 30 s: nothing until 120 s have passed since that last change
    memory, actions = feed(FLAPPY, run(at=at(100)), run(at=at(149)), memory=flapping)
    assert actions == [] and memory.flapping
    memory, actions = feed(FLAPPY, run(at=at(150)), memory=memory)
    assert actions == ["settle"] and not memory.flapping and not memory.firing
    # down again since 40 s (the last change): it settles firing
    down, _ = feed(FLAPPY, run("failed", at=at(40)), memory=flapping)
    memory, transitions = advance(FLAPPY, down, [run("failed", at=at(160))])
    assert [(t.action, t.firing) for t in transitions] == [("settle", True)] and memory.firing
    # settled: the next change is told again
    _, actions = feed(FLAPPY, run(at=at(170)), memory=memory)
    assert actions == ["resolve"]


def test_flapping_is_off_with_zero_changes() -> None:
    rule = RuleSpec(kind="down", threshold=1, window=1, flap_changes=0)
    _, actions = feed(rule, *[run("failed" if i % 2 == 0 else "success", at=at(i)) for i in range(10)])
    assert actions == ["fire", "resolve"] * 5
