"""What an alert transition tells, and to whom: dependencies, silences, then grouping.

An alert that opens is, in this order:

1. ``suppressed`` when one of its probe's parents is down — it has an open alert from a
   ``down`` rule (firing, acknowledged, or suppressed by its own parent): visible, with
   ``suppressed_by``, nothing sent;
2. ``silenced`` when an active silence matches it: firing, nothing sent until the silence
   ends;
3. otherwise told (``notified``): through its rule's alert group when the rule groups its
   alerts, else one notification per channel at once.

A resolution is told only where the firing was: an alert that was never told (suppressed,
or silenced and still unreleased) resolves without a word, and one that was told is told
it resolved even under a silence, so no receiver is left believing a target is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select

from app.alerting.rules import ResultView
from app.extensions import db
from app.models import Alert, AlertRule, Probe
from app.services import alert_groups, outbox, silences
from app.services.alert_history import system_event as _event

GROUPED_EVENTS = ("firing", "resolved")


class ProbeLike(Protocol):
    id: int
    tenant_id: int
    group_id: int | None
    name: str
    target: str
    protocol: str


@dataclass
class Notices:
    """One pass's view of what may be told (silences active now, parents found down), and
    what it wrote: notification ids to deliver now, and when the groups it touched flush."""

    tenant_ids: set[int]
    notifications: list[str] = field(default_factory=list)
    flush_at: list[datetime] = field(default_factory=list)
    _silences: list[silences.ActiveSilence] | None = None

    def silence_for(self, alert: Alert, rule: AlertRule, group_id: int | None) -> silences.ActiveSilence | None:
        if self._silences is None:
            self._silences = silences.active(self.tenant_ids)
        for silence in self._silences:
            if silence.tenant_id == alert.tenant_id and silences.matches(silence, alert.probe_id, group_id, rule.id):
                return silence
        return None

    def opened(self, alert: Alert, rule: AlertRule, probe: ProbeLike, result: ResultView | None,
               parent_id: int | None) -> None:
        """``alert`` was just opened (flushed, status ``firing``): record it, and suppress,
        silence or tell it."""
        if parent_id is not None:
            alert.status, alert.suppressed_by = "suppressed", parent_id
            _event(alert, None, "suppressed", f"{alert.reason}; suppressed by {probe_name(parent_id)}, "
                                              f"which is down: nothing sent")
            return
        _event(alert, None, "firing", alert.reason)
        self.tell_firing(alert, rule, probe, result)

    def tell_firing(self, alert: Alert, rule: AlertRule, probe: ProbeLike, result: ResultView | None,
                    extra: dict[str, Any] | None = None, event: str = "firing") -> None:
        """Tell that ``alert`` fires (``event``: ``firing``, or ``flapping``) unless a silence
        matches it, in which case it is marked ``silenced`` (told when the silence ends)."""
        silence = self.silence_for(alert, rule, probe.group_id)
        if silence is not None:
            alert.silenced = True
            _event(alert, alert.status, alert.status, f"silenced by silence {silence.id}: nothing sent")
            return
        alert.notified, alert.silenced = True, False
        self.tell(alert, rule, probe, event, result, extra)

    def tell_resolved(self, alert: Alert, rule: AlertRule, probe: ProbeLike, result: ResultView | None,
                      extra: dict[str, Any] | None = None, note: str = "") -> bool:
        """Tell that ``alert`` resolved if its firing was told; returns whether it was."""
        if not (alert.notified and rule.send_resolved):
            return False
        self.tell(alert, rule, probe, "resolved", result, extra, note)
        return True

    def tell(self, alert: Alert, rule: AlertRule, probe: ProbeLike, event: str, result: ResultView | None,
             extra: dict[str, Any] | None = None, note: str = "") -> None:
        if rule.group_by != "none" and event in GROUPED_EVENTS:
            context = {**outbox.context_for(alert, rule, probe, result, note), **(extra or {})}
            self.flush_at += alert_groups.add(alert, rule, probe, event, context)
        else:
            self.notifications += outbox.enqueue(alert, rule, event, result, probe, note=note, extra=extra)


def probe_name(probe_id: int) -> str:
    name = db.session.scalar(select(Probe.name).where(Probe.id == probe_id))
    return f'"{name}"' if name is not None else f"probe {probe_id}"

