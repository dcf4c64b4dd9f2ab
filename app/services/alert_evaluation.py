"""Evaluate stored probe results against the alert rules that cover their probes.

One call handles one stored batch (the ``alerts`` task's message: the batch's
``(probe_id, result_id)`` pairs). For every (rule, probe) pair it reads the pair's memory
(locked, in key order, on PostgreSQL) and the results the pair has not seen, moves the
memory forward (``app.alerting.rules``) and writes the new memories — one statement for
the batch — by compare-and-set on their ``version``. Only a pair whose write succeeded has
its transitions applied — the alert opened or resolved, the event recorded, the
notifications written — in the same transaction. A pair another evaluator moved meanwhile
is read again and goes on from there; a redelivered message finds nothing unseen.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, NamedTuple

from sqlalchemy import BigInteger, Select, String, bindparam, func, select, text, update

from app.alerting.rules import Memory, ResultView, RuleSpec, Transition, advance
from app.core.config import active_settings
from app.extensions import db
from app.models import Alert, AlertRule, AlertState, Probe, ProbeDependency, ProbeResult, utcnow
from app.services import alert_release, escalation
from app.services.alert_history import system_event
from app.services.alert_notices import Notices
from app.services.suppression import down_parents
from app.models.base import UTCDateTime
from app.services.bulk import KeyList, dialect_name, insert_new, per_dialect

log = logging.getLogger(__name__)

# A pair whose compare-and-set keeps losing is left to the next evaluation after this many tries.
CAS_ATTEMPTS = 5


@dataclass
class EvaluationReport:
    pairs: int = 0
    results: int = 0
    fired: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)  # probes whose rule fired in maintenance
    suppressed: list[int] = field(default_factory=list)  # alerts opened suppressed (a parent is down)
    notifications: list[str] = field(default_factory=list)
    flush_at: list[datetime] = field(default_factory=list)  # when the alert groups this touched flush


@dataclass(frozen=True)
class ProbeView:
    id: int
    tenant_id: int
    group_id: int | None
    protocol: str
    name: str
    target: str


Pair = tuple[int, int]  # (rule_id, probe_id)


class _State(NamedTuple):
    rule_id: int
    probe_id: int
    last_result_id: int
    recent: str
    good_streak: int
    bad_since: datetime | None
    version: int
    alert_id: int | None
    held: bool
    firing: bool
    flapping: bool
    changes: list[float] | None


class _Decision(NamedTuple):
    state: _State
    memory: Memory
    transitions: list[Transition]
    unseen: list[ResultView]


_STATES = AlertState.__table__
_STATE_COLUMNS = [_STATES.c[name] for name in _State._fields]


def rule_spec(rule: AlertRule) -> RuleSpec:
    return RuleSpec(kind=rule.kind, threshold=rule.threshold, window=rule.window, recovery=rule.recovery,  # type: ignore[arg-type]
                    slow_ms=rule.slow_ms, cert_days=rule.cert_days, flap_changes=rule.flap_changes,
                    flap_window_seconds=rule.flap_window_seconds, flap_settle_seconds=rule.flap_settle_seconds)


def covers(rule: AlertRule, probe: ProbeView) -> bool:
    if rule.tenant_id != probe.tenant_id:
        return False
    if rule.probe_id is not None:
        return rule.probe_id == probe.id
    return ((rule.group_id is None or rule.group_id == probe.group_id)
            and (rule.protocol is None or rule.protocol == probe.protocol))


def evaluate(stored: Iterable[tuple[int, int]]) -> EvaluationReport:
    """Evaluate the results ``stored`` names ((probe_id, result_id) pairs) and commit."""
    first_new: dict[int, int] = {}
    for probe_id, result_id in stored:
        first_new[probe_id] = min(result_id, first_new.get(probe_id, result_id))
    report = EvaluationReport()
    if not first_new:
        return report
    try:
        _evaluate(first_new, report)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return report


def _evaluate(first_new: dict[int, int], report: EvaluationReport) -> None:
    dialect = dialect_name()
    probes = {row.id: ProbeView(*row) for row in db.session.execute(
        _probes_statement(), _PROBE_IDS.bind(dialect, sorted(first_new)))}
    if not probes:
        return
    rules = db.session.scalars(
        select(AlertRule).where(AlertRule.tenant_id.in_({probe.tenant_id for probe in probes.values()}),
                                AlertRule.enabled.is_(True))).all()
    pairs = sorted((rule.id, probe.id) for rule in rules for probe in probes.values() if covers(rule, probe))
    if not pairs:
        return
    rules_by_id = {rule.id: rule for rule in rules}
    states = _states(pairs, probes, first_new)
    since = utcnow() - timedelta(seconds=active_settings().alerts.evaluation_lookback_seconds)
    results = _unseen_results(sorted({probe_id for _, probe_id in pairs}),
                              min(state.last_result_id for state in states.values()), since)
    report.pairs = len(pairs)
    decided: dict[Pair, _Decision] = {}
    for pair in pairs:
        unseen = [result for result in results.get(pair[1], []) if result.id > states[pair].last_result_id]
        if unseen:
            memory, transitions = advance(rule_spec(rules_by_id[pair[0]]), _memory(states[pair]), unseen)
            decided[pair] = _Decision(states[pair], memory, transitions, unseen)
    written = _compare_and_set_all(list(decided.values()))
    applying = _Pass(report, Notices({probe.tenant_id for probe in probes.values()}),
                     _parents_among(decided, probes))
    for pair in applying.parents_first(decided):
        rule, probe, decision = rules_by_id[pair[0]], probes[pair[1]], decided[pair]
        if pair in written:
            _record(rule, probe, decision, applying)
        else:  # another evaluator moved this state meanwhile (SQLite: no row locks): go on from its state
            _evaluate_pair(rule, probe, results.get(pair[1], []), applying)
    applying.finish()


def _parents_among(decided: dict[Pair, _Decision], probes: dict[int, ProbeView]) -> dict[int, list[int]]:
    """The parents of the probes that open an alert in this pass (one query; none when nothing opens)."""
    opening = {pair[1] for pair, decision in decided.items()
               if any(t.action in ("fire", "flap") for t in decision.transitions)}
    if not opening:
        return {}
    parents: dict[int, list[int]] = defaultdict(list)
    for probe_id, parent_id in db.session.execute(
            select(ProbeDependency.probe_id, ProbeDependency.parent_id)
            .where(ProbeDependency.probe_id.in_(sorted(opening)))):
        parents[probe_id].append(parent_id)
    return parents


class _Pass:
    """What one evaluation applies its transitions with: the report, what may be told, and
    which probes are down — before this pass, or by an alert it opened."""

    def __init__(self, report: EvaluationReport, notices: Notices, parents: dict[int, list[int]]) -> None:
        self.report, self.notices, self.parents = report, notices, parents
        self.down_before = down_parents(parents)
        self.opened_down: set[int] = set()  # probes that opened a ``down`` alert in this pass
        self.still_failing: set[int] = set()  # open alerts whose probe's last counted result failed

    def parents_first(self, decided: dict[Pair, _Decision]) -> list[Pair]:
        """The pairs in key order, but a probe after its parents that are in the pass, so a
        parent's alert opened here is down by the time its child's is decided."""
        depth: dict[int, int] = {}

        def depth_of(probe_id: int, seen: frozenset[int] = frozenset()) -> int:
            if probe_id not in depth:
                above = [p for p in self.parents.get(probe_id, ()) if p not in seen]
                depth[probe_id] = 1 + max((depth_of(p, seen | {probe_id}) for p in above), default=-1)
            return depth[probe_id]

        return sorted(decided, key=lambda pair: (depth_of(pair[1]), pair))

    def down_parent(self, probe_id: int) -> int | None:
        if probe_id in self.down_before:
            return self.down_before[probe_id]
        return next((p for p in sorted(self.parents.get(probe_id, ())) if p in self.opened_down), None)

    def finish(self) -> None:
        """Suppressed alerts whose parent recovered and whose probe still fails are told now."""
        alert_release.release_failing(self.still_failing, self.notices)
        self.report.notifications += self.notices.notifications
        self.report.flush_at += self.notices.flush_at


def _states(pairs: list[Pair], probes: dict[int, ProbeView], first_new: dict[int, int]) -> dict[Pair, _State]:
    """The pairs' memories, locked (PostgreSQL) in key order so two evaluators never deadlock and
    the second reads what the first wrote. A pair seen for the first time starts just before
    this batch (a new rule does not judge a probe's history)."""
    existing = _read_states(pairs)
    missing = [pair for pair in pairs if pair not in existing]
    if missing:
        insert_new(_STATES,
                   [{"rule_id": rule_id, "probe_id": probe_id, "tenant_id": probes[probe_id].tenant_id,
                     "last_result_id": first_new[probe_id] - 1, "recent": "", "good_streak": 0, "version": 0,
                     "firing": False, "flapping": False, "held": False, "changes": [], "updated_at": utcnow()} for rule_id, probe_id in missing],
                   unique=("rule_id", "probe_id"))
        existing = _read_states(pairs)
    return existing


# The statements every evaluation runs, built once per dialect with their id lists as
# parameters (``bulk.KeyList``): a statement compiled anew for each batch size costs more
# than the rows it reads.
_PAIRS = KeyList("pairs", _STATES.c.rule_id, _STATES.c.probe_id)
_PROBE_IDS = KeyList("probe_ids", Probe.__table__.c.id)
_RESULT_PROBES = KeyList("result_probes", ProbeResult.__table__.c.probe_id)


@per_dialect
def _probes_statement(dialect: str) -> Select[Any]:
    return select(Probe.id, Probe.tenant_id, Probe.group_id, Probe.protocol, Probe.name,
                  Probe.target).where(_PROBE_IDS.condition(dialect))


@per_dialect
def _states_statement(dialect: str) -> Select[Any]:
    query = select(*_STATE_COLUMNS).where(_PAIRS.condition(dialect)).order_by(_STATES.c.rule_id, _STATES.c.probe_id)
    return query.with_for_update() if dialect == "postgresql" else query


@per_dialect
def _results_statement(dialect: str) -> Select[Any]:
    results = ProbeResult.__table__.c
    return (select(results.probe_id, results.id, results.status, results.created_at, results.response_time_ms,
                   results.cert_expires_at, results.error, results.status_code, results.in_maintenance)
            .where(_RESULT_PROBES.condition(dialect), results.id > bindparam("after_id", type_=BigInteger),
                   results.created_at >= bindparam("since", type_=UTCDateTime))
            .order_by(results.id))


def _read_states(pairs: list[Pair]) -> dict[Pair, _State]:
    rows = db.session.execute(_states_statement(), _PAIRS.bind(dialect_name(), pairs))
    return {(row.rule_id, row.probe_id): _State(*row) for row in rows}


def _unseen_results(probe_ids: list[int], after_id: int, since: datetime) -> dict[int, list[ResultView]]:
    by_probe: dict[int, list[ResultView]] = defaultdict(list)
    rows = db.session.execute(_results_statement(), {"after_id": after_id, "since": since,
                                                     **_RESULT_PROBES.bind(dialect_name(), probe_ids)})
    for probe_id, *fields in rows:
        by_probe[probe_id].append(ResultView(*fields))
    return by_probe


def _new_values(decision: _Decision) -> dict[str, Any]:
    memory = decision.memory
    return {"recent": memory.recent, "good_streak": memory.good_streak, "bad_since": memory.bad_since,
            "held": memory.held, "firing": memory.firing, "flapping": memory.flapping,
            "changes": list(memory.changes), "last_result_id": decision.unseen[-1].id, "updated_at": utcnow()}


def _compare_and_set_all(decisions: list[_Decision]) -> set[Pair]:
    """Write every decision whose state is still the version it was read at; the pairs written.

    PostgreSQL: one statement for the batch (the rows as one JSON recordset). SQLite: one
    statement per pair.
    """
    if not decisions:
        return set()
    if dialect_name() != "postgresql":
        return {(d.state.rule_id, d.state.probe_id) for d in decisions if _compare_and_set(d.state, d)}
    rows = [{"rule_id": d.state.rule_id, "probe_id": d.state.probe_id, "version": d.state.version,
             **_new_values(d)} for d in decisions]
    written = db.session.execute(_BATCH_COMPARE_AND_SET, {"rows": json.dumps(rows, default=_iso)})
    return {(row.rule_id, row.probe_id) for row in written}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a state value")


_BATCH_COMPARE_AND_SET = text(
    "UPDATE alert_states AS s SET recent = v.recent, good_streak = v.good_streak, bad_since = v.bad_since, "
    "held = v.held, firing = v.firing, flapping = v.flapping, changes = v.changes, last_result_id = v.last_result_id, updated_at = v.updated_at, version = s.version + 1 "
    "FROM json_populate_recordset(NULL::alert_states, CAST(:rows AS json)) AS v "
    "WHERE s.rule_id = v.rule_id AND s.probe_id = v.probe_id AND s.version = v.version "
    "RETURNING s.rule_id, s.probe_id"
).bindparams(bindparam("rows", type_=String))


def _compare_and_set(state: _State, decision: _Decision) -> bool:
    changed = db.session.execute(
        update(AlertState)
        .where(AlertState.rule_id == state.rule_id, AlertState.probe_id == state.probe_id,
               AlertState.version == state.version)
        .values(**_new_values(decision), version=state.version + 1)
        .execution_options(synchronize_session=False))
    return changed.rowcount == 1  # type: ignore[attr-defined]


def _evaluate_pair(rule: AlertRule, probe: ProbeView, results: list[ResultView], applying: _Pass) -> None:
    """One pair whose batch write lost: re-read its state and try again, a few times."""
    for _ in range(CAS_ATTEMPTS):
        state = _read_states([(rule.id, probe.id)])[(rule.id, probe.id)]
        unseen = [result for result in results if result.id > state.last_result_id]
        if not unseen:
            return
        memory, transitions = advance(rule_spec(rule), _memory(state), unseen)
        decision = _Decision(state, memory, transitions, unseen)
        if _compare_and_set(state, decision):
            _record(rule, probe, decision, applying)
            return
    log.warning("alert rule %s, probe %s: the state kept changing under the evaluator; the next "
                "evaluation goes on from there", rule.id, probe.id)


def _record(rule: AlertRule, probe: ProbeView, decision: _Decision, applying: _Pass) -> None:
    """The decision was written: apply its transitions and point the state at the open alert."""
    applying.report.results += len(decision.unseen)
    alert_id = decision.state.alert_id
    for transition in decision.transitions:
        alert_id = _apply(rule, probe, alert_id, transition, applying)
    if alert_id is not None and decision.memory.firing and decision.memory.good_streak == 0:
        applying.still_failing.add(alert_id)
    if alert_id != decision.state.alert_id:
        db.session.execute(update(AlertState).where(AlertState.rule_id == rule.id, AlertState.probe_id == probe.id)
                           .values(alert_id=alert_id).execution_options(synchronize_session=False))


def _memory(state: _State) -> Memory:
    return Memory(recent=state.recent, good_streak=state.good_streak, bad_since=state.bad_since,
                  firing=state.firing, held=state.held, flapping=state.flapping,
                  changes=tuple(state.changes or ()))


def _apply(rule: AlertRule, probe: ProbeView, alert_id: int | None, transition: Transition,
           applying: _Pass) -> int | None:
    """Apply one transition; returns the pair's open alert afterwards."""
    report, notices = applying.report, applying.notices
    if transition.action in ("hold", "drop"):  # fired in maintenance: no alert, nothing sent
        if transition.action == "hold":
            report.held.append(probe.id)
        return None
    alert = _open_alert(alert_id)
    opened_here = alert is None
    if transition.action == "fire" or (transition.action == "flap" and alert is None):
        alert = _new_alert(rule, probe, transition)
        report.fired.append(alert.id)
        if rule.kind == "down":
            applying.opened_down.add(probe.id)
        if transition.action == "fire":
            notices.opened(alert, rule, probe, transition.result, applying.down_parent(probe.id))
            if alert.status == "suppressed":
                report.suppressed.append(alert.id)
            return alert.id
    if alert is None:
        return None
    if transition.action == "flap":
        alert.flapping = True
        _event(alert, None if opened_here else alert.status, transition.reason)
        if alert.status != "suppressed":
            notices.tell_firing(alert, rule, probe, transition.result, _flapping(rule, transition, settled=False),
                                event="flapping")
        return alert.id
    if transition.action == "settle" and transition.firing:
        alert.flapping = False
        _event(alert, alert.status, transition.reason)
        if alert.status != "suppressed":
            notices.tell_firing(alert, rule, probe, transition.result, _flapping(rule, transition, settled=True))
        return alert.id
    return _resolve(rule, probe, alert, transition, applying)


def _open_alert(alert_id: int | None) -> Alert | None:
    if alert_id is None:
        return None
    alert = db.session.get(Alert, alert_id, populate_existing=True)
    return alert if alert is not None and alert.status != "resolved" else None


def _new_alert(rule: AlertRule, probe: ProbeView, transition: Transition) -> Alert:
    now = utcnow()
    alert = Alert(tenant_id=rule.tenant_id, rule_id=rule.id, probe_id=probe.id, status="firing",
                  reason=transition.reason, opened_at=now, since=transition.since,
                  last_result_id=transition.result.id, flapping=transition.action == "flap",
                  next_reminder_at=now + timedelta(seconds=rule.reminder_seconds) if rule.reminder_seconds else None,
                  next_escalation_at=escalation.due_at(rule, now, 0))
    db.session.add(alert)
    db.session.flush()
    return alert


def _resolve(rule: AlertRule, probe: ProbeView, alert: Alert, transition: Transition, applying: _Pass) -> None:
    """Resolve ``alert`` (the condition stopped holding, or the probe settled up) and tell it
    where its firing was told, unless it resolved in maintenance."""
    now = utcnow()
    previous = alert.status
    alert.status, alert.resolved_at, alert.next_reminder_at, alert.next_escalation_at = "resolved", now, None, None
    alert.flapping = False
    alert.last_result_id = transition.result.id
    settled = transition.action == "settle"
    extra = _flapping(rule, transition, settled=True) if settled else None
    if transition.result.in_maintenance:  # resolved in maintenance: nothing is told
        told, why = False, " (in maintenance: no notice sent)"
    else:
        told = applying.notices.tell_resolved(alert, rule, probe, transition.result, extra)
        why = "" if told or not rule.send_resolved else " (its firing was never told: no notice sent)"
    _event(alert, previous, transition.reason + why, to="resolved")
    applying.report.resolved.append(alert.id)
    return None


def _flapping(rule: AlertRule, transition: Transition, settled: bool) -> dict[str, Any]:
    return {"flapping": {"changes": transition.changes, "window_seconds": rule.flap_window_seconds,
                         "settle_seconds": rule.flap_settle_seconds, "settled": settled}}


def _event(alert: Alert, frm: str | None, note: str, to: str | None = None) -> None:
    system_event(alert, frm, to or alert.status, note)


def catch_up(limit: int = 1000) -> EvaluationReport:
    """Evaluate results no evaluation message announced (the broker was down when they were
    stored, or an alerts worker died holding the message): every (rule, probe) pair with
    results after its ``last_result_id``, within the look-back."""
    since = utcnow() - timedelta(seconds=active_settings().alerts.evaluation_lookback_seconds)
    try:
        behind = db.session.execute(
            select(ProbeResult.probe_id, func.min(ProbeResult.id))
            .join(AlertState, AlertState.probe_id == ProbeResult.probe_id)
            .where(ProbeResult.id > AlertState.last_result_id, ProbeResult.created_at >= since)
            .group_by(ProbeResult.probe_id)
            .limit(limit)).all()
        db.session.rollback()
    except BaseException:
        db.session.rollback()
        raise
    return evaluate((probe_id, first_id) for probe_id, first_id in behind)
