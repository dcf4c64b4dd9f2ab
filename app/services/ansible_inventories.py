"""Inventories of a tenant: what a run targets.

A ``built`` inventory names groups and hosts of the tenant; a run gets them as YAML with
nested children, group and host variables, and ``ansible_host``/``ansible_port`` from
each host's address and port. A ``text`` inventory is INI or YAML content, parsed when
saved so that a mistake is refused then, naming its line, not found by a run.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import select

from app.ansible.inventory import InventoryError, ParsedGroup, ParsedInventory, parse_inventory, render_inventory_yaml
from app.extensions import db
from app.models import AnsibleGroup, AnsibleHost, AnsibleInventory
from app.services.ansible_hosts import MAX_IDS, Id, children_edges, descendants, get_group, get_host, variables_error
from app.services.errors import InvalidInputError, broken_rule, validated
from app.services.tenant_rows import owned
from app.services.unique_names import commit_unique

MAX_CONTENT = 512 * 1024
WHAT = "inventory"
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"\S")]
# Text inventories parsed lately, by (format, sha256 of the text).
_PARSED_SIZE = 64
_parsed_texts: OrderedDict[tuple[str, str], ParsedInventory] = OrderedDict()
_parsed_lock = threading.Lock()


class InventoryInput(BaseModel):
    """An inventory as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = Field(description="Unique within the tenant.")
    description: str = Field("", max_length=2000)
    kind: Literal["built", "text"] = Field("built", description=(
        "`built`: the groups and hosts named in group_ids and host_ids; `text`: `content` in `format`."))
    group_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                                description="built: its groups (with their nested children).")
    host_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                               description="built: hosts outside those groups.")
    format: Literal["ini", "yaml"] | None = Field(None, description="text: the format of content.")
    content: str | None = Field(None, min_length=1, max_length=MAX_CONTENT,
                                description="text: an Ansible inventory, checked when saved.")

    @model_validator(mode="after")
    def _consistent(self) -> "InventoryInput":
        if self.kind == "built":
            for field in ("format", "content"):
                if getattr(self, field) is not None:
                    raise _broken(field, "only for a text inventory")
            if not (self.group_ids or self.host_ids):
                raise _broken("group_ids", "name at least one group or host (group_ids, host_ids)")
        else:
            for field in ("group_ids", "host_ids"):
                if getattr(self, field):
                    raise _broken(field, "only for a built inventory")
            for field in ("format", "content"):
                if getattr(self, field) is None:
                    raise _broken(field, "required for a text inventory")
        for field in ("group_ids", "host_ids"):
            ids = getattr(self, field)
            if len(set(ids)) != len(ids):
                raise _broken(field, "lists an id twice")
        return self


def _broken(field: str, message: str) -> Any:
    return broken_rule("inventory_rule", field, message)


def _parsed(content: str, fmt: str) -> ParsedInventory:
    """A text inventory parsed (by ``ansible-inventory``, a process per new text; the same text
    again is answered from memory); its mistakes as ``content: line N: …``."""
    key = (fmt, hashlib.sha256(content.encode("utf-8")).hexdigest())
    with _parsed_lock:
        if key in _parsed_texts:
            _parsed_texts.move_to_end(key)
            return _parsed_texts[key]
    try:
        parsed = parse_inventory(content, fmt)
    except InventoryError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise InvalidInputError(f"{where}{exc.message}", field="content") from None
    for where, variables in [*((f"host {name}", values) for name, values in parsed.hosts.items()),
                             *((f"group {name}", group.vars) for name, group in parsed.groups.items()),
                             ("group all", parsed.vars)]:
        if error := variables_error("content", variables, where):
            raise error
    with _parsed_lock:
        _parsed_texts[key] = parsed
        while len(_parsed_texts) > _PARSED_SIZE:
            _parsed_texts.popitem(last=False)
    return parsed


def _apply(inventory: AnsibleInventory, tenant_id: int, fields: InventoryInput) -> None:
    if fields.kind == "text":
        assert fields.content is not None and fields.format is not None
        _parsed(fields.content, fields.format)
    inventory.groups = sorted((get_group(tenant_id, group_id) for group_id in fields.group_ids),
                              key=lambda group: group.name)
    inventory.hosts = sorted((get_host(tenant_id, host_id) for host_id in fields.host_ids),
                             key=lambda host: host.name)
    inventory.name, inventory.description, inventory.kind = fields.name, fields.description, fields.kind
    inventory.text_format, inventory.content = fields.format, fields.content


def create_inventory(tenant_id: int, data: dict[str, Any]) -> AnsibleInventory:
    fields = validated(InventoryInput, data)
    inventory = AnsibleInventory(tenant_id=tenant_id)
    _apply(inventory, tenant_id, fields)
    db.session.add(inventory)
    commit_unique("an inventory", fields.name)
    return inventory


def get_inventory(tenant_id: int, inventory_id: int) -> AnsibleInventory:
    inventory: AnsibleInventory = owned(AnsibleInventory, tenant_id, inventory_id, WHAT)
    return inventory


def list_inventories(tenant_id: int, limit: int = 100, before_id: int | None = None) -> list[AnsibleInventory]:
    """The tenant's inventories, newest first."""
    query = select(AnsibleInventory).where(AnsibleInventory.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AnsibleInventory.id < before_id)
    return list(db.session.scalars(query.order_by(AnsibleInventory.id.desc()).limit(limit)))


def inventory_fields(inventory: AnsibleInventory) -> dict[str, Any]:
    """The inventory as ``InventoryInput`` fields (what an update starts from)."""
    return {"name": inventory.name, "description": inventory.description, "kind": inventory.kind,
            "group_ids": [group.id for group in inventory.groups], "host_ids": [host.id for host in inventory.hosts],
            "format": inventory.text_format, "content": inventory.content}


_BUILT_ONLY = ("group_ids", "host_ids")
_TEXT_ONLY = ("format", "content")


def update_inventory(tenant_id: int, inventory_id: int, changes: dict[str, Any]) -> AnsibleInventory:
    """Change some fields; a change of kind drops what only the old kind had."""
    inventory = get_inventory(tenant_id, inventory_id)
    current = inventory_fields(inventory)
    kind = changes.get("kind", inventory.kind)
    if kind != inventory.kind:
        for field in _TEXT_ONLY if kind == "built" else _BUILT_ONLY:
            current[field] = None if field in _TEXT_ONLY else []
    fields = validated(InventoryInput, {**current, **changes})
    _apply(inventory, tenant_id, fields)
    commit_unique("an inventory", fields.name)
    return inventory


def delete_inventory(tenant_id: int, inventory_id: int) -> None:
    """Delete an inventory (its groups and hosts stay); refused while an execution template uses it."""
    from app.services.ansible_templates import refuse_if_used

    inventory = get_inventory(tenant_id, inventory_id)
    refuse_if_used(tenant_id, f"inventory {inventory.name!r}", inventory_id=inventory.id)
    db.session.delete(inventory)
    db.session.commit()


# --- what an inventory holds ----------------------------------------------------------------------


def built_members(inventory: AnsibleInventory, edges: dict[int, list[int]] | None = None) -> tuple[
        list[AnsibleGroup], list[AnsibleHost]]:
    """A built inventory's groups (with every nested child) and hosts (its own and its groups'),
    by name. ``edges``: the tenant's ``children_edges``, when the caller has them."""
    edges = children_edges(inventory.tenant_id) if edges is None else edges
    group_ids = descendants(edges, [group.id for group in inventory.groups])
    groups = [group for group in (db.session.get(AnsibleGroup, group_id) for group_id in group_ids)
              if group is not None]
    hosts = {host.id: host for host in inventory.hosts}
    for group in groups:
        hosts.update((host.id, host) for host in group.hosts)
    return sorted(groups, key=lambda group: group.name), sorted(hosts.values(), key=lambda host: host.name)


def host_vars(host: AnsibleHost) -> dict[str, Any]:
    """A host's variables as a run gets them: ``ansible_host``/``ansible_port`` from its address and port."""
    variables = dict(host.variables or {})
    if host.address:
        variables["ansible_host"] = host.address
    if host.port:
        variables["ansible_port"] = host.port
    return variables


def resolved(inventory: AnsibleInventory) -> ParsedInventory:
    """Every host (with its variables) and group of the inventory, by name, and the vars of ``all``."""
    if inventory.kind == "text":
        return _parsed(inventory.content or "", inventory.text_format or "ini")
    groups, hosts = built_members(inventory)
    return ParsedInventory(
        hosts={host.name: host_vars(host) for host in hosts},
        groups={group.name: ParsedGroup(hosts=tuple(host.name for host in group.hosts),
                                        children=tuple(child.name for child in group.children),
                                        vars=dict(group.variables or {}))
                for group in groups})


def inventory_text(inventory: AnsibleInventory) -> tuple[str, str]:
    """(text, format) a run is given: a text inventory's content as stored, a built one as YAML."""
    if inventory.kind == "text":
        return inventory.content or "", inventory.text_format or "ini"
    found = resolved(inventory)
    return render_inventory_yaml(found.hosts, found.groups), "yaml"
