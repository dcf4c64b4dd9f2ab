"""Ansible: hosts and groups, inventories, credentials, playbooks and their versions,
execution templates, executions and their events.

An execution keeps what it ran — the playbook version, the inventory text and the
options — so editing or deleting a playbook or an inventory later changes nothing in its
record. Its status moves only by compare-and-set (``pending`` → ``running`` → an ending),
so a redelivered message or two reapers never start or end one twice. Events are keyed
by ``(execution_id, seq)``: the runner's counter, in order, written in bulk.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text,
                        UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime, utcnow
from app.models.encrypted import EncryptedJSON

CREDENTIAL_KINDS = ("ssh_key", "ssh_password", "become_password", "vault_password")
INVENTORY_KINDS = ("built", "text")
INVENTORY_FORMATS = ("ini", "yaml")
PLAYBOOK_SOURCES = ("content", "project")
EXECUTION_STATUSES = ("pending", "running", "successful", "failed", "canceled", "timeout", "lost")
FINISHED_STATUSES = ("successful", "failed", "canceled", "timeout", "lost")

ansible_host_probes = Table(
    "ansible_host_probes", Base.metadata,
    Column("host_id", ForeignKey("ansible_hosts.id", ondelete="CASCADE"), primary_key=True),
    Column("probe_id", ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True, index=True),
)

ansible_group_hosts = Table(
    "ansible_group_hosts", Base.metadata,
    Column("group_id", ForeignKey("ansible_groups.id", ondelete="CASCADE"), primary_key=True),
    Column("host_id", ForeignKey("ansible_hosts.id", ondelete="CASCADE"), primary_key=True, index=True),
)

ansible_group_children = Table(
    "ansible_group_children", Base.metadata,
    Column("parent_id", ForeignKey("ansible_groups.id", ondelete="CASCADE"), primary_key=True),
    Column("child_id", ForeignKey("ansible_groups.id", ondelete="CASCADE"), primary_key=True, index=True),
)

ansible_inventory_groups = Table(
    "ansible_inventory_groups", Base.metadata,
    Column("inventory_id", ForeignKey("ansible_inventories.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("ansible_groups.id", ondelete="CASCADE"), primary_key=True, index=True),
)

ansible_inventory_hosts = Table(
    "ansible_inventory_hosts", Base.metadata,
    Column("inventory_id", ForeignKey("ansible_inventories.id", ondelete="CASCADE"), primary_key=True),
    Column("host_id", ForeignKey("ansible_hosts.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class AnsibleHost(Base):
    """A machine playbooks run on. ``address`` becomes ``ansible_host`` (the name when empty)."""

    __tablename__ = "ansible_hosts"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AnsibleGroup(Base):
    """A named set of hosts and child groups, with variables (Ansible's group)."""

    __tablename__ = "ansible_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    hosts: Mapped[list[AnsibleHost]] = relationship(secondary=ansible_group_hosts, order_by=AnsibleHost.name)
    children: Mapped[list[AnsibleGroup]] = relationship(
        secondary=ansible_group_children,
        primaryjoin=lambda: AnsibleGroup.id == ansible_group_children.c.parent_id,
        secondaryjoin=lambda: AnsibleGroup.id == ansible_group_children.c.child_id,
        order_by=lambda: AnsibleGroup.name,
    )


class AnsibleInventory(Base):
    """What a run targets: chosen groups and hosts (``built``), or an INI/YAML text (``text``)
    parsed and validated when saved."""

    __tablename__ = "ansible_inventories"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16), default="built")
    text_format: Mapped[str | None] = mapped_column(String(8))
    content: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    groups: Mapped[list[AnsibleGroup]] = relationship(secondary=ansible_inventory_groups, order_by=AnsibleGroup.name)
    hosts: Mapped[list[AnsibleHost]] = relationship(secondary=ansible_inventory_hosts, order_by=AnsibleHost.name)


class AnsibleCredential(Base):
    """A secret a run needs: an SSH key (and its passphrase), an SSH, become or vault password.

    ``secret`` is encrypted at rest with the keyring of alert channel secrets and is never
    returned by the API or written to a log; a run gets it only in its private directory.
    """

    __tablename__ = "ansible_credentials"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    username: Mapped[str | None] = mapped_column(String(255))
    secret: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON, deferred=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AnsiblePlaybook(Base):
    """A playbook: stored YAML (each save a new version) or a file of a project directory
    on the workers' disk under ``ansible.projects_root``."""

    __tablename__ = "ansible_playbooks"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16), default="content")
    project_dir: Mapped[str | None] = mapped_column(String(1024))
    playbook_file: Mapped[str | None] = mapped_column(String(1024))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AnsiblePlaybookVersion(Base):
    """One saved content of a playbook (for a project playbook: its path and the file's sha256
    when saved; the run reads the file as it is then)."""

    __tablename__ = "ansible_playbook_versions"
    __table_args__ = (UniqueConstraint("playbook_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    playbook_id: Mapped[int] = mapped_column(ForeignKey("ansible_playbooks.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[str | None] = mapped_column(Text)
    project_dir: Mapped[str | None] = mapped_column(String(1024))
    playbook_file: Mapped[str | None] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnsibleExecutionTemplate(Base):
    """A saved run — playbook, inventory, credentials, options — started by hand or on a cron
    schedule (``next_run_at`` in epoch ms, claimed by compare-and-set like a probe's slot)."""

    __tablename__ = "ansible_execution_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    playbook_id: Mapped[int] = mapped_column(ForeignKey("ansible_playbooks.id", ondelete="CASCADE"), index=True)
    inventory_id: Mapped[int] = mapped_column(ForeignKey("ansible_inventories.id", ondelete="CASCADE"), index=True)
    credential_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cron: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AnsibleExecution(Base):
    """One run of a playbook, from its request to its ending.

    ``worker`` and ``heartbeat_at`` say who runs it and that it is still alive: the
    reaper ends as ``lost`` a running execution whose worker restarted or whose heartbeat
    stopped. ``event_count`` is the last stored event's ``seq``.
    """

    __tablename__ = "ansible_executions"
    __table_args__ = (
        Index("ix_ansible_executions_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_ansible_executions_active", "status",
              postgresql_where=text("status IN ('pending', 'running')"),
              sqlite_where=text("status IN ('pending', 'running')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    playbook_id: Mapped[int | None] = mapped_column(ForeignKey("ansible_playbooks.id", ondelete="SET NULL"))
    playbook_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("ansible_playbook_versions.id", ondelete="SET NULL"))
    playbook_name: Mapped[str] = mapped_column(String(100))
    inventory_id: Mapped[int | None] = mapped_column(ForeignKey("ansible_inventories.id", ondelete="SET NULL"))
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("ansible_execution_templates.id", ondelete="SET NULL"), index=True)
    inventory_text: Mapped[str] = mapped_column(Text)
    credential_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    rc: Mapped[int | None] = mapped_column(Integer)
    host_summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When a message to run it was last published: a pending execution is published again
    # when a slot of its tenant frees up, or by beat when its message was lost.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AnsibleExecutionEvent(Base):
    """One runner event of an execution, in order; ``stdout`` and ``data`` are capped per event."""

    __tablename__ = "ansible_execution_events"

    execution_id: Mapped[int] = mapped_column(
        ForeignKey("ansible_executions.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    event: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    host: Mapped[str | None] = mapped_column(String(255))
    play: Mapped[str | None] = mapped_column(String(1024))
    task: Mapped[str | None] = mapped_column(String(1024))
    stdout: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
