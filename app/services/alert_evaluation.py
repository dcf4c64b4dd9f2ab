"""Evaluate stored probe results against the alert rules that cover their probes.

One call handles one stored batch (the ``alerts`` task's message: the batch's
``(probe_id, result_id)`` pairs). For every (rule, probe) pair it reads the results the
pair has not seen, moves the pair's memory forward (``app.alerting.rules``) and writes
the new memory by compare-and-set on its ``version``; only the evaluator whose write
succeeds applies the transitions — opens or resolves the alert, records the event and
writes the notifications, in the same transaction. A second evaluator that raced it
re-reads the memory and goes on from there; a redelivered message finds nothing unseen.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import func, select, update

from app.alerting.rules import Memory, ResultView, RuleSpec, Transition, advance
from app.core.config import active_settings
from app.extensions import db
from app.models import Alert, AlertEvent, AlertRule, AlertState, Probe, ProbeResult, utcnow
from app.services import outbox
from app.services.bulk import insert_new

log = logging.getLogger(__name__)

# A pair whose compare-and-set keeps losing is left to the next evaluation after this many tries.
CAS_ATTEMPTS = 5
SYSTEM = "system"


@dataclass
class EvaluationReport:
    pairs: int = 0
    results: int = 0
    fired: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProbeView:
    id: int
    tenant_id: int
    group_id: int | None
    protocol: str
    name: str
    target: str


def rule_spec(rule: AlertRule) -> RuleSpec:
    return RuleSpec(kind=rule.kind, threshold=rule.threshold, window=rule.window, recovery=rule.recovery,  # type: ignore[arg-type]
                    slow_ms=rule.slow_ms, cert_days=rule.cert_days)


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
    probes = {row.id: ProbeView(*row) for row in db.session.execute(
        select(Probe.id, Probe.tenant_id, Probe.group_id, Probe.protocol, Probe.name, Probe.target)
        .where(Probe.id.in_(sorted(first_new))))}
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
    for rule_id, probe_id in pairs:  # in key order: two evaluators lock pairs in the same order
        _evaluate_pair(rules_by_id[rule_id], probes[probe_id], states[(rule_id, probe_id)],
                       results.get(probe_id, []), report)


def _states(pairs: list[tuple[int, int]], probes: dict[int, ProbeView],
            first_new: dict[int, int]) -> dict[tuple[int, int], AlertState]:
    """The pairs' memories; a pair seen for the first time starts just before this batch
    (a new rule does not judge a probe's history)."""
    states = _read_states(pairs)
    missing = [pair for pair in pairs if pair not in states]
    if missing:
        insert_new(AlertState.__table__,
                   [{"rule_id": rule_id, "probe_id": probe_id, "tenant_id": probes[probe_id].tenant_id,
                     "last_result_id": first_new[probe_id] - 1, "recent": "", "good_streak": 0, "version": 0,
                     "updated_at": utcnow()} for rule_id, probe_id in missing],
                   unique=("rule_id", "probe_id"))
        states.update(_read_states(missing))
    return states


def _read_states(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], AlertState]:
    found: dict[tuple[int, int], AlertState] = {}
    rule_ids = {rule_id for rule_id, _ in pairs}
    probe_ids = {probe_id for _, probe_id in pairs}
    wanted = set(pairs)
    for state in db.session.scalars(select(AlertState).where(AlertState.rule_id.in_(rule_ids),
                                                             AlertState.probe_id.in_(probe_ids))
                                    .execution_options(populate_existing=True)):
        if (state.rule_id, state.probe_id) in wanted:
            found[(state.rule_id, state.probe_id)] = state
    return found


def _unseen_results(probe_ids: list[int], after_id: int, since: datetime) -> dict[int, list[ResultView]]:
    by_probe: dict[int, list[ResultView]] = defaultdict(list)
    rows = db.session.execute(
        select(ProbeResult.probe_id, ProbeResult.id, ProbeResult.status, ProbeResult.created_at,
               ProbeResult.response_time_ms, ProbeResult.cert_expires_at, ProbeResult.error,
               ProbeResult.status_code)
        .where(ProbeResult.probe_id.in_(probe_ids), ProbeResult.id > after_id, ProbeResult.created_at >= since)
        .order_by(ProbeResult.id))
    for probe_id, *fields in rows:
        by_probe[probe_id].append(ResultView(*fields))
    return by_probe


def _evaluate_pair(rule: AlertRule, probe: ProbeView, state: AlertState, results: list[ResultView],
                   report: EvaluationReport) -> None:
    spec = rule_spec(rule)
    for _ in range(CAS_ATTEMPTS):
        unseen = [result for result in results if result.id > state.last_result_id]
        if not unseen:
            return
        memory, transitions = advance(spec, _memory(state), unseen)
        if _compare_and_set(state, memory, unseen[-1].id):
            report.results += len(unseen)
            alert_id = state.alert_id
            for transition in transitions:
                alert_id = _apply(rule, probe, alert_id, transition, report)
            if alert_id != state.alert_id:
                db.session.execute(update(AlertState).where(AlertState.rule_id == rule.id,
                                                            AlertState.probe_id == probe.id)
                                   .values(alert_id=alert_id).execution_options(synchronize_session=False))
            return
        state = _read_states([(rule.id, probe.id)])[(rule.id, probe.id)]
    log.warning("alert rule %s, probe %s: the state kept changing under the evaluator; the next "
                "evaluation goes on from there", rule.id, probe.id)


def _memory(state: AlertState) -> Memory:
    return Memory(recent=state.recent, good_streak=state.good_streak, bad_since=state.bad_since,
                  firing=state.alert_id is not None)


def _compare_and_set(state: AlertState, memory: Memory, last_result_id: int) -> bool:
    changed = db.session.execute(
        update(AlertState)
        .where(AlertState.rule_id == state.rule_id, AlertState.probe_id == state.probe_id,
               AlertState.version == state.version)
        .values(recent=memory.recent, good_streak=memory.good_streak, bad_since=memory.bad_since,
                last_result_id=last_result_id, version=state.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False))
    return changed.rowcount == 1  # type: ignore[attr-defined]


def _apply(rule: AlertRule, probe: ProbeView, alert_id: int | None, transition: Transition,
           report: EvaluationReport) -> int | None:
    """Apply one transition; returns the pair's open alert afterwards."""
    now = utcnow()
    if transition.action == "fire":
        alert = Alert(tenant_id=rule.tenant_id, rule_id=rule.id, probe_id=probe.id, status="firing",
                      reason=transition.reason, opened_at=now, since=transition.since,
                      last_result_id=transition.result.id,
                      next_reminder_at=now + timedelta(seconds=rule.reminder_seconds) if rule.reminder_seconds else None)
        db.session.add(alert)
        db.session.flush()
        db.session.add(AlertEvent(alert_id=alert.id, tenant_id=rule.tenant_id, from_status=None, to_status="firing",
                                  actor=SYSTEM, note=transition.reason, at=now))
        report.fired.append(alert.id)
        report.notifications += outbox.enqueue(alert, rule, "firing", transition.result, probe)
        return alert.id
    if alert_id is None:
        return None
    alert = db.session.get(Alert, alert_id, populate_existing=True)
    if alert is None or alert.status == "resolved":
        return None
    previous = alert.status
    alert.status, alert.resolved_at, alert.next_reminder_at = "resolved", now, None
    alert.last_result_id = transition.result.id
    db.session.add(AlertEvent(alert_id=alert.id, tenant_id=rule.tenant_id, from_status=previous,
                              to_status="resolved", actor=SYSTEM, note=transition.reason, at=now))
    db.session.flush()
    report.resolved.append(alert.id)
    if rule.send_resolved:
        report.notifications += outbox.enqueue(alert, rule, "resolved", transition.result, probe)
    return None


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
