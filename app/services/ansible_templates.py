"""Execution templates of a tenant: a saved run — playbook, inventory, credentials, options —
started by hand or on a cron schedule.

A template with a cron expression and ``enabled`` has ``next_run_at``, the epoch ms of
the expression's next time in its time zone, set when it is created and again whenever
its cron, time zone or enabled flag changes (another change keeps the slot, so a due run
is not skipped); beat claims due templates elsewhere. The playbooks, inventories, hosts,
groups and credentials a template uses cannot be deleted while it does (``refuse_if_used``).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from sqlalchemy import select

from app.core.config import active_settings
from app.extensions import db
from app.models import AnsibleExecutionTemplate, AnsibleInventory, AnsiblePlaybook
from app.services import ansible_credentials
from app.services.ansible_hosts import Id, Variables, children_edges
from app.services.errors import ConflictError, broken_rule, validated
from app.services.tenant_rows import owned
from app.services.unique_names import commit_unique

WHAT = "execution template"

Tag = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^,\s]+$")]


class RunOptions(BaseModel):
    """How a playbook runs: what ``ansible-playbook`` is told besides the playbook and inventory."""

    model_config = ConfigDict(extra="forbid", strict=True)

    limit: str | None = Field(None, min_length=1, max_length=1000, pattern=r"^[^\r\n]*\S[^\r\n]*$",
                              description="A host pattern (`--limit`): only these hosts of the inventory.")
    extra_vars: Variables = Field(default_factory=dict, description=(
        "Extra variables (`-e`), shown as given: no secrets (`ansible_password` …), use a credential."))
    tags: list[Tag] = Field(default_factory=list, max_length=100, description="Only tasks with these tags.")
    skip_tags: list[Tag] = Field(default_factory=list, max_length=100, description="Not tasks with these tags.")
    check: bool = Field(False, description="Dry run (`--check`): report what would change.")
    diff: bool = Field(False, description="Show the changes made to files and templates (`--diff`).")
    forks: int = Field(5, ge=1, le=100, description="Hosts run in parallel.")
    verbosity: int = Field(0, ge=0, le=4, description="0-4, as -v … -vvvv.")
    timeout_seconds: int | None = Field(None, ge=1, description=(
        "The run is ended (timeout) after this long; omitted: ansible.default_timeout_seconds. "
        "At most ansible.max_timeout_seconds."))
    idle_timeout_seconds: int | None = Field(None, ge=1, description=(
        "The run is ended (timeout) when it prints nothing for this long; omitted: "
        "ansible.default_idle_timeout_seconds."))

    @field_validator("timeout_seconds", "idle_timeout_seconds")
    @classmethod
    def _within_the_maximum(cls, value: int | None) -> int | None:
        most = active_settings().ansible.max_timeout_seconds
        if value is not None and value > most:
            raise ValueError(f"must be at most {most} (ansible.max_timeout_seconds)")
        return value


def valid_zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def next_cron_ms(cron: str, tz: str, after_ms: int) -> int:
    """The epoch ms of the first time after ``after_ms`` that the five-field ``cron`` names in
    the IANA zone ``tz``. ``croniter.CroniterBadDateError`` for one that never comes."""
    start = datetime.fromtimestamp(after_ms / 1000, timezone.utc).astimezone(ZoneInfo(tz))
    following = croniter(cron, start, ret_type=datetime).get_next(datetime)
    return int(following.timestamp() * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


class ExecutionTemplateInput(BaseModel):
    """An execution template as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"\S", description="Unique within the tenant.")
    description: str = Field("", max_length=2000)
    playbook_id: Id
    inventory_id: Id
    credential_ids: list[Id] = Field(default_factory=list, max_length=ansible_credentials.MAX_IDS,
                                     description="At most one credential of each kind.")
    options: RunOptions = Field(default_factory=RunOptions)
    cron: str | None = Field(None, min_length=1, max_length=100, description=(
        "Runs on this schedule: a five-field cron expression (minute hour day month weekday) in `timezone`; "
        "omitted: started by hand only."))
    timezone: str = Field("UTC", min_length=1, max_length=64, description="IANA time zone of the cron expression.")
    enabled: bool = Field(True, description="Scheduled runs happen only while enabled.")

    @model_validator(mode="after")
    def _consistent(self) -> "ExecutionTemplateInput":
        if valid_zone(self.timezone) is None:
            raise _broken("timezone", f"unknown time zone {self.timezone!r}")
        if self.cron is not None:
            if len(self.cron.split()) != 5 or not croniter.is_valid(self.cron):
                raise _broken("cron", "not a five-field cron expression (minute hour day month weekday)")
            try:
                next_cron_ms(self.cron, self.timezone, _now_ms())
            except CroniterError:
                raise _broken("cron", "names no time that ever comes") from None
        if len(set(self.credential_ids)) != len(self.credential_ids):
            raise _broken("credential_ids", "lists an id twice")
        return self


def _broken(field: str, message: str) -> Any:
    return broken_rule("template_rule", field, message)


def _apply(template: AnsibleExecutionTemplate, tenant_id: int, fields: ExecutionTemplateInput,
           reschedule: bool) -> None:
    owned(AnsiblePlaybook, tenant_id, fields.playbook_id, "playbook")
    owned(AnsibleInventory, tenant_id, fields.inventory_id, "inventory")
    ansible_credentials.check_ids(tenant_id, fields.credential_ids)
    template.name, template.description = fields.name, fields.description
    template.playbook_id, template.inventory_id = fields.playbook_id, fields.inventory_id
    template.credential_ids = list(fields.credential_ids)
    template.options = fields.options.model_dump(mode="json")
    template.cron, template.timezone, template.enabled = fields.cron, fields.timezone, fields.enabled
    if fields.cron is None or not fields.enabled:
        template.next_run_at = None
    elif reschedule or template.next_run_at is None:
        template.next_run_at = next_cron_ms(fields.cron, fields.timezone, _now_ms())


def create_template(tenant_id: int, data: dict[str, Any]) -> AnsibleExecutionTemplate:
    fields = validated(ExecutionTemplateInput, data)
    template = AnsibleExecutionTemplate(tenant_id=tenant_id)
    _apply(template, tenant_id, fields, reschedule=True)
    db.session.add(template)
    commit_unique("an execution template", fields.name)
    return template


def get_template(tenant_id: int, template_id: int) -> AnsibleExecutionTemplate:
    template: AnsibleExecutionTemplate = owned(AnsibleExecutionTemplate, tenant_id, template_id, WHAT)
    return template


def list_templates(tenant_id: int, limit: int = 100, before_id: int | None = None) -> list[AnsibleExecutionTemplate]:
    """The tenant's templates, newest first."""
    query = select(AnsibleExecutionTemplate).where(AnsibleExecutionTemplate.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AnsibleExecutionTemplate.id < before_id)
    return list(db.session.scalars(query.order_by(AnsibleExecutionTemplate.id.desc()).limit(limit)))


def template_fields(template: AnsibleExecutionTemplate) -> dict[str, Any]:
    """The template as ``ExecutionTemplateInput`` fields (what an update starts from)."""
    return {name: getattr(template, name) for name in ExecutionTemplateInput.model_fields}


def update_template(tenant_id: int, template_id: int, changes: dict[str, Any]) -> AnsibleExecutionTemplate:
    """Change some fields; ``options`` replaces the options as a whole. A new cron, time zone or
    enabled flag computes the next run again."""
    template = get_template(tenant_id, template_id)
    fields = validated(ExecutionTemplateInput, {**template_fields(template), **changes})
    reschedule = (fields.cron, fields.timezone, fields.enabled) != (template.cron, template.timezone, template.enabled)
    _apply(template, tenant_id, fields, reschedule)
    commit_unique("an execution template", fields.name)
    return template


def delete_template(tenant_id: int, template_id: int) -> None:
    """Delete a template; its executions stay (without it)."""
    db.session.delete(get_template(tenant_id, template_id))
    db.session.commit()


def refuse_if_used(tenant_id: int, what: str, *, playbook_id: int | None = None, inventory_id: int | None = None,
                   credential_id: int | None = None, host_id: int | None = None, group_id: int | None = None) -> None:
    """``ConflictError`` naming the first of the tenant's templates that uses the given playbook,
    inventory or credential, or runs on the host or group (through a built inventory);
    ``what`` names the thing in the message (``playbook 'deploy'``)."""
    from app.services.ansible_inventories import built_members

    templates = db.session.scalars(select(AnsibleExecutionTemplate)
                                   .where(AnsibleExecutionTemplate.tenant_id == tenant_id)
                                   .order_by(AnsibleExecutionTemplate.id))
    edges: dict[int, list[int]] | None = None
    for template in templates:
        uses = ((playbook_id is not None and template.playbook_id == playbook_id)
                or (inventory_id is not None and template.inventory_id == inventory_id)
                or (credential_id is not None and credential_id in (template.credential_ids or [])))
        if not uses and (host_id is not None or group_id is not None):
            inventory = db.session.get(AnsibleInventory, template.inventory_id)
            if inventory is not None and inventory.kind == "built":
                edges = children_edges(tenant_id) if edges is None else edges
                groups, hosts = built_members(inventory, edges)
                uses = (group_id in {group.id for group in groups}) or (host_id in {host.id for host in hosts})
        if uses:
            raise ConflictError(f"{what} is used by execution template {template.name!r}: "
                                f"change or delete the template first")
