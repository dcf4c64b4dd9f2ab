"""Alerts held back that are told once what held them back is gone.

- A ``suppressed`` alert whose parents are no longer down turns ``firing`` and is told
  once its probe's next result after the parent's recovery still fails (the parent
  recovered while the child is still down). Waiting for that result keeps children that
  come back with their parent quiet: they have not been probed since the parent's
  recovery, and their next run resolves them without a word. The evaluator releases the
  alerts it sees fail; beat's housekeeping sweeps the rest (a parent resolved by hand,
  its rule deleted or disabled, the dependency removed).
- A ``silenced`` alert no active silence matches any more (it ended or was expired) is
  told once if it is still firing.

Either way its escalation steps count from the moment it is told.

Each alert changes by compare-and-set on its status, in a transaction of its own in the
sweeps, so two beats, or a sweep and an evaluator, tell it once.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from sqlalchemy import Select, func, select, update

from app.extensions import db
from app.models import Alert, AlertRule, AlertState, Probe, ProbeResult, utcnow
from app.services import escalation, outbox
from app.services.alert_history import system_event
from app.services.alert_notices import Notices, probe_name
from app.services.suppression import down_parents

SWEEP_BATCH = 500


def release_failing(alert_ids: Iterable[int], notices: Notices) -> None:
    """Release those of ``alert_ids`` (alerts whose probe just failed again) that are
    suppressed and may be told now, in the caller's transaction."""
    ids = sorted(set(alert_ids))
    if not ids:
        return
    suppressed = db.session.scalars(select(Alert).where(Alert.id.in_(ids), Alert.status == "suppressed")
                                    .order_by(Alert.id)).all()
    down = down_parents(alert.probe_id for alert in suppressed)  # one question for the common case
    for alert in suppressed:
        if alert.probe_id not in down:
            _release(alert, notices)


def _failing_since_parent_recovered(alert: Alert) -> bool:
    """Whether the rule's last counted result for the alert's probe failed, and came after
    the suppressing parent's last ``down`` alert resolved (after the alert opened, if the
    parent is gone)."""
    recovered = alert.opened_at
    if alert.suppressed_by is not None:
        recovered = db.session.scalar(
            select(func.max(Alert.resolved_at)).join(AlertRule, AlertRule.id == Alert.rule_id)
            .where(Alert.probe_id == alert.suppressed_by, AlertRule.kind == "down")) or alert.opened_at
    row = db.session.execute(
        select(AlertState.firing, AlertState.good_streak, ProbeResult.created_at)
        .join(ProbeResult, ProbeResult.id == AlertState.last_result_id)
        .where(AlertState.rule_id == alert.rule_id, AlertState.probe_id == alert.probe_id)).first()
    return row is not None and row.firing and row.good_streak == 0 and row.created_at > recovered


def _release(alert: Alert, notices: Notices) -> bool:
    """Point ``alert`` at a parent still down, or turn it firing and tell it if its probe
    failed since the parent recovered; True if told."""
    still_down = down_parents([alert.probe_id]).get(alert.probe_id)
    if still_down is not None:
        if still_down != alert.suppressed_by:
            alert.suppressed_by = still_down
        return False
    if not _failing_since_parent_recovered(alert):
        return False
    former = alert.suppressed_by
    changed = db.session.execute(update(Alert).where(Alert.id == alert.id, Alert.status == "suppressed")
                                 .values(status="firing", suppressed_by=None)
                                 .execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    db.session.refresh(alert)
    parent = f"its parent {probe_name(former)} recovered" if former is not None else "no parent is down any more"
    system_event(alert, "suppressed", "firing", f"{parent}; still down")
    rule, probe = db.session.get(AlertRule, alert.rule_id), db.session.get(Probe, alert.probe_id)
    assert rule is not None and probe is not None
    _told_now(alert, rule)
    notices.tell_firing(alert, rule, probe, None)
    return True


def _told_now(alert: Alert, rule: AlertRule) -> None:
    """An alert held back is told from now: its escalation counts from now, not from when it opened."""
    alert.next_escalation_at = escalation.due_at(rule, utcnow(), alert.escalation_step)


def release_suppressed(limit: int = SWEEP_BATCH) -> Notices:
    """Housekeeping: release every suppressed alert none of whose parents is down now and
    whose probe failed since."""
    return _sweep(select(Alert.id, Alert.tenant_id).where(Alert.status == "suppressed").order_by(Alert.id)
                  .limit(limit), _release_one)


def release_unsilenced(limit: int = SWEEP_BATCH) -> Notices:
    """Housekeeping: tell the firing alerts a silence withheld that no silence matches now."""
    return _sweep(select(Alert.id, Alert.tenant_id).where(Alert.status == "firing", Alert.silenced.is_(True))
                  .order_by(Alert.id).limit(limit), _unsilence_one)


def _sweep(query: Select[Any], act: Callable[[int, Notices], None]) -> Notices:
    try:
        rows = db.session.execute(query).all()
        db.session.rollback()
    except BaseException:
        db.session.rollback()
        raise
    notices = Notices({tenant_id for _, tenant_id in rows})
    for alert_id, _ in rows:
        try:
            act(alert_id, notices)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    outbox.deliver_soon(notices.notifications)
    return notices


def _release_one(alert_id: int, notices: Notices) -> None:
    alert = db.session.get(Alert, alert_id, populate_existing=True)
    if alert is not None and alert.status == "suppressed":
        _release(alert, notices)


def _unsilence_one(alert_id: int, notices: Notices) -> None:
    alert = db.session.get(Alert, alert_id, populate_existing=True)
    if alert is None or alert.status != "firing" or not alert.silenced:
        return
    rule, probe = db.session.get(AlertRule, alert.rule_id), db.session.get(Probe, alert.probe_id)
    assert rule is not None and probe is not None
    if notices.silence_for(alert, rule, probe.group_id) is not None:
        return
    changed = db.session.execute(update(Alert).where(Alert.id == alert.id, Alert.status == "firing",
                                                     Alert.silenced.is_(True))
                                 .values(silenced=False).execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return
    db.session.refresh(alert)
    system_event(alert, "firing", "firing", "no silence matches it any more; still firing")
    _told_now(alert, rule)
    notices.tell_firing(alert, rule, probe, None)

