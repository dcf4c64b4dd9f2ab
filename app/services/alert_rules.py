"""Alert rules: create, change, list and delete, always within one tenant."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from app.extensions import db
from app.models import AlertRule, NotificationChannel, Probe, ProbeGroup
from app.models.base import MAX_ID
from app.probes import PROTOCOLS
from app.services import alert_triggers, escalation
from app.services.errors import broken_rule, validated
from app.services.tenant_rows import owned
from app.services.unique_names import commit_unique

MAX_WINDOW = 100  # alert_states.recent holds this many verdicts
MAX_REMINDER_SECONDS = 7 * 86400

Id = Field(ge=1, le=MAX_ID)
ChannelId = Annotated[int, Field(ge=1, le=MAX_ID)]
MAX_ESCALATION_STEPS = 5
DAY = 86400


class EscalationStep(BaseModel):
    """Not acknowledged ``after_seconds`` after it fired: notify these channels too (once)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    after_seconds: int = Field(ge=1, le=7 * DAY, description="Seconds after the alert fired.")
    channel_ids: list[ChannelId] = Field(min_length=1, max_length=20, description="Channels of the tenant to notify.")


class RuleInput(BaseModel):
    """An alert rule as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"\S", description="Unique within the tenant.")
    description: str = Field("", max_length=2000)
    kind: Literal["down", "slow", "certificate"] = Field(
        description="down: runs that fail; slow: successful runs slower than slow_ms; "
                    "certificate: fewer than cert_days days left on the TLS certificate.")
    probe_id: int | None = Field(None, ge=1, le=MAX_ID, description="One probe; omitted: every probe of the tenant "
                                                                    "that matches group_id and protocol.")
    group_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only probes of this group.")
    protocol: Literal[PROTOCOLS] | None = Field(None, description="Only probes of this protocol.")  # type: ignore[valid-type]
    threshold: int = Field(3, ge=1, le=MAX_WINDOW, description="Bad runs that open the alert ...")
    window: int | None = Field(None, ge=1, le=MAX_WINDOW,
                               description="... among the last this many counted runs (default: threshold, "
                                           "i.e. that many in a row).")
    recovery: int = Field(1, ge=1, le=MAX_WINDOW, description="Good runs in a row that resolve it.")
    slow_ms: float | None = Field(None, gt=0, le=3_600_000, description="kind slow: response time limit in ms.")
    cert_days: int | None = Field(None, ge=1, le=3650, description="kind certificate: days left under which it fires.")
    reminder_seconds: int = Field(0, ge=0, le=MAX_REMINDER_SECONDS,
                                  description="Notify again this often while firing and not acknowledged; 0: never.")
    send_resolved: bool = Field(True, description="Notify when the alert resolves.")
    enabled: bool = True
    channel_ids: list[ChannelId] = Field(default_factory=list, max_length=20,
                                   description="Notification channels of the tenant to notify.")
    group_by: Literal["none", "tenant", "group", "rule"] = Field(
        "none", description="Send alerts that open together as one message per channel: all of the tenant's "
                            "(tenant), of the probe's group (group) or of this rule (rule); none: one each.")
    group_wait_seconds: int = Field(30, ge=0, le=3600, description="Grouped: how long the first alerts of a "
                                                                   "group are gathered before its message goes out.")
    group_interval_seconds: int = Field(300, ge=1, le=DAY, description="Grouped: how long later alerts and "
                                                                       "recoveries of a running group are gathered.")
    flap_changes: int = Field(5, ge=0, le=50, description="More changes (fired, resolved) than this within "
                                                          "flap_window_seconds mark the probe flapping; 0: never.")
    flap_window_seconds: int = Field(600, ge=1, le=DAY)
    flap_settle_seconds: int = Field(600, ge=1, le=DAY, description="A flapping probe is told again once its "
                                                                    "state has not changed for this long.")
    escalation: list[EscalationStep] = Field(
        default_factory=list, max_length=MAX_ESCALATION_STEPS,
        description="Steps taken while the alert is firing and not acknowledged, each at most once.")

    @model_validator(mode="after")
    def _consistent(self) -> "RuleInput":
        if self.window is None:
            self.window = self.threshold
        if self.window < self.threshold:
            raise _broken("window", f"must be at least threshold ({self.threshold})")
        if self.kind == "slow" and self.slow_ms is None:
            raise _broken("slow_ms", "required for a slow rule")
        if self.kind == "certificate" and self.cert_days is None:
            raise _broken("cert_days", "required for a certificate rule")
        if self.kind != "slow" and self.slow_ms is not None:
            raise _broken("slow_ms", "only for a slow rule")
        if self.kind != "certificate" and self.cert_days is not None:
            raise _broken("cert_days", "only for a certificate rule")
        if self.probe_id is not None and (self.group_id is not None or self.protocol is not None):
            raise _broken("probe_id", "a rule for one probe takes no group_id or protocol filter")
        if 0 < self.reminder_seconds < 60:
            raise _broken("reminder_seconds", "must be 0 (never) or at least 60")
        if len(set(self.channel_ids)) != len(self.channel_ids):
            raise _broken("channel_ids", "lists a channel twice")
        waits = [step.after_seconds for step in self.escalation]
        if waits != sorted(set(waits)):
            raise _broken("escalation", "steps must come in increasing after_seconds")
        return self


def _broken(field: str, message: str) -> PydanticCustomError:
    return broken_rule("rule_rule", field, message)


def _validated(data: dict[str, Any]) -> RuleInput:
    return validated(RuleInput, data)


def _apply(rule: AlertRule, tenant_id: int, fields: RuleInput) -> None:
    owned(Probe, tenant_id, fields.probe_id, "probe")
    owned(ProbeGroup, tenant_id, fields.group_id, "probe group")
    channels = [owned(NotificationChannel, tenant_id, channel_id, "notification channel")
                for channel_id in fields.channel_ids]
    for step in fields.escalation:
        for channel_id in step.channel_ids:
            owned(NotificationChannel, tenant_id, channel_id, "notification channel")
    for name, value in fields.model_dump(exclude={"channel_ids"}).items():
        setattr(rule, name, value)
    rule.channels = channels


def _commit(name: str) -> None:
    commit_unique("an alert rule", name)
    alert_triggers.forget_rule_tenants()


def create_rule(tenant_id: int, data: dict[str, Any]) -> AlertRule:
    fields = _validated(data)
    rule = AlertRule(tenant_id=tenant_id)
    _apply(rule, tenant_id, fields)
    db.session.add(rule)
    _commit(fields.name)
    return rule


def get_rule(tenant_id: int, rule_id: int) -> AlertRule:
    rule = owned(AlertRule, tenant_id, rule_id, "alert rule")
    assert rule is not None
    return rule


def list_rules(tenant_id: int | None) -> list[AlertRule]:
    """The tenant's rules (``None``: every tenant's, for the platform's CLI)."""
    query = select(AlertRule).order_by(AlertRule.id)
    if tenant_id is not None:
        query = query.where(AlertRule.tenant_id == tenant_id)
    return list(db.session.scalars(query))


def rule_fields(rule: AlertRule) -> dict[str, Any]:
    """The rule as ``RuleInput`` fields (what an update starts from)."""
    return {name: getattr(rule, name) for name in RuleInput.model_fields if name != "channel_ids"} | {
        "channel_ids": [channel.id for channel in rule.channels]}


def update_rule(tenant_id: int, rule_id: int, changes: dict[str, Any]) -> AlertRule:
    """Change some fields; the whole rule is validated again. Changing what the rule counts
    (kind, thresholds, scope) keeps open alerts; they resolve by the new rule."""
    rule = get_rule(tenant_id, rule_id)
    current = rule_fields(rule)
    if "threshold" in changes and "window" not in changes and current["window"] == current["threshold"]:
        current["window"] = None  # "that many in a row" stays so
    fields = _validated({**current, **changes})
    _apply(rule, tenant_id, fields)
    if rule.escalation != current["escalation"]:  # open alerts' next step is due by the new steps
        escalation.reschedule(rule)
    _commit(fields.name)
    return rule


def delete_rule(tenant_id: int, rule_id: int) -> None:
    """Delete a rule with its alerts, their history and notifications."""
    db.session.delete(get_rule(tenant_id, rule_id))
    db.session.commit()
    alert_triggers.forget_rule_tenants()
