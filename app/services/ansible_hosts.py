"""Ansible hosts and groups of a tenant: what built inventories are made of.

A host has a name (its Ansible inventory name), an optional address and port (its
``ansible_host`` and ``ansible_port``), variables, and may be linked to the tenant's
probes so that its page shows how they are doing. A group holds hosts and child groups,
never itself through its children: a change that would close such a cycle is refused
with the path it would make. Secrets never go into variables (they are stored in plain
text): a password or key variable is refused with a pointer to credentials.
"""

from __future__ import annotations

import ipaddress
import json
import keyword
import re
from collections import deque
from typing import Annotated, Any

import yaml

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from sqlalchemy import Integer, cast, delete, func, insert, literal, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import (AnsibleGroup, AnsibleHost, Probe, ansible_group_children, ansible_group_hosts,
                        ansible_host_probes)
from app.models.base import MAX_ID
from app.services.bulk import dialect_name
from app.services.errors import ConflictError, InvalidInputError, broken_rule, validated
from app.services.tenant_rows import owned
from app.services.unique_names import commit_unique

MAX_IDS = 500
MAX_VARIABLES = 200
MAX_VARIABLES_BYTES = 64 * 1024
RESERVED_GROUPS = ("all", "ungrouped")
# The first key of the PostgreSQL advisory lock that serializes changes of group children, per tenant.
_LOCK_SPACE = 0x61677270  # "agrp"
_NAMED = 10  # groups a cycle's message names at most

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_GROUP_NAME = _VARIABLE_NAME
_DNS_NAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")
# After ``ansible_``: a password, passphrase or private key (``ansible_ssh_pass``,
# ``ansible_become_password``, ``ansible_ssh_private_key_file`` …), not e.g. ``…_bypass``.
_SECRET_PART = re.compile(r"(^|_)(pass|password|passwd|passphrase|private_key)(_|$)")

Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def is_secret_variable(name: str) -> bool:
    """A connection or become secret that Ansible reads from a variable (``ansible_password`` …)."""
    lowered = name.lower()
    return lowered.startswith("ansible_") and bool(_SECRET_PART.search(lowered[len("ansible_"):]))


def is_vaulted(value: Any) -> bool:
    """A value encrypted with ansible-vault, as ansible lists it (``{"__ansible_vault": "$ANSIBLE_VAULT;…"}``)."""
    return isinstance(value, dict) and set(value) == {"__ansible_vault"} and isinstance(value["__ansible_vault"], str)


def _secret_message(name: str, where: str) -> str:
    return (f"{name} is a secret: store it in a credential (/ansible/credentials) or vault-encrypt it, "
            f"not in {where}")


def variable_problem(name: str, value: Any) -> str | None:
    """Why ``name`` may not be a variable here, or None."""
    if not _VARIABLE_NAME.fullmatch(name) or keyword.iskeyword(name) or name in ("True", "False", "None"):
        return (f"{name!r} is not a valid Ansible variable name "
                f"(letters, digits and _, not starting with a digit, not a Python keyword)")
    if is_secret_variable(name) and not is_vaulted(value):
        return _secret_message(name, "variables")
    return None


def check_variables(value: dict[str, Any]) -> dict[str, Any]:
    """Variables as Ansible takes them: valid names, no secrets in clear, of a reasonable size."""
    if not isinstance(value, dict):  # an optional field's None
        return value
    if len(value) > MAX_VARIABLES:
        raise ValueError(f"at most {MAX_VARIABLES} variables")
    for name, item in value.items():
        problem = variable_problem(name, item)
        if problem:
            raise ValueError(problem)
    if len(json.dumps(value, ensure_ascii=False)) > MAX_VARIABLES_BYTES:
        raise ValueError(f"at most {MAX_VARIABLES_BYTES // 1024} KiB of variables (as JSON)")
    return value


def _variables_from_text(value: Any) -> Any:
    """Variables may also be given as YAML (or JSON) text holding a mapping, as in host_vars files."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_VARIABLES_BYTES:
        raise ValueError(f"at most {MAX_VARIABLES_BYTES // 1024} KiB of variables")
    try:
        loaded = yaml.safe_load(value) if value.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ValueError(f"{where}not YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError("YAML text must hold a mapping of variable names to values")
    # YAML's dates and times become text, as JSON (what the variables are stored as) has none.
    return json.loads(json.dumps(loaded, default=str))


Variables = Annotated[
    dict[str, Any], BeforeValidator(_variables_from_text), AfterValidator(check_variables),
    WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "string", "description": "YAML or JSON text of a mapping"}]},
                   mode="validation"),
]


def _host_name(value: str) -> str:
    if not isinstance(value, str):  # an optional field's None
        return value
    if not _HOST_NAME.fullmatch(value):
        raise ValueError("an Ansible host name: letters, digits, '.', '-' and '_', no spaces")
    return value


def _group_name(value: str) -> str:
    if not isinstance(value, str):
        return value
    if value in RESERVED_GROUPS:
        raise ValueError(f"{value!r} is Ansible's own group: choose another name")
    if not _GROUP_NAME.fullmatch(value) or keyword.iskeyword(value):
        raise ValueError("an Ansible group name: letters, digits and _, not starting with a digit")
    return value


def _address(value: str) -> str:
    if not isinstance(value, str):
        return value
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(value):
        raise ValueError("a host name or an IP address")
    return value


def _distinct(field: str, ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        raise broken_rule("ansible_rule", field, "lists an id twice")


class HostInput(BaseModel):
    """An Ansible host as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_host_name)] = Field(
        description="Its inventory name: letters, digits, `.`, `-` and `_`. Unique within the tenant.")
    address: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_address)] | None = Field(
        None, description="Host name or IP address to connect to (`ansible_host`); omitted: the name.")
    port: int | None = Field(None, ge=1, le=65535, description="SSH port (`ansible_port`); omitted: Ansible's default.")
    variables: Variables = Field(default_factory=dict, description=(
        "Host variables. No secrets (`ansible_password`, `ansible_ssh_private_key_file` …): use a credential."))
    description: str = Field("", max_length=2000)
    probe_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                                description="The tenant's probes that watch this host.")
    group_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS, description="The groups it belongs to.")

    @model_validator(mode="after")
    def _consistent(self) -> "HostInput":
        for name, field in (("ansible_host", "address"), ("ansible_port", "port")):
            if name in self.variables:
                raise broken_rule("ansible_rule", "variables", f"{name}: set the host's {field} instead")
        _distinct("probe_ids", self.probe_ids)
        _distinct("group_ids", self.group_ids)
        return self


class GroupInput(BaseModel):
    """An Ansible group as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_group_name)] = Field(
        description="Letters, digits and `_`, not starting with a digit; not `all` or `ungrouped`. "
                    "Unique within the tenant.")
    variables: Variables = Field(default_factory=dict, description="Group variables (no secrets: use a credential).")
    description: str = Field("", max_length=2000)
    host_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS, description="Its hosts.")
    child_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS,
                                description="Its child groups (their hosts are its hosts too); never itself.")

    @model_validator(mode="after")
    def _consistent(self) -> "GroupInput":
        _distinct("host_ids", self.host_ids)
        _distinct("child_ids", self.child_ids)
        return self


def flush_unique(a_thing: str, name: str) -> None:
    """Flush (to get an id); a (tenant, name) clash is the same conflict ``commit_unique`` reports."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"{a_thing} named {name!r} already exists in this tenant") from None


# --- hosts -------------------------------------------------------------------------------------


def get_host(tenant_id: int, host_id: int) -> AnsibleHost:
    host: AnsibleHost = owned(AnsibleHost, tenant_id, host_id, "ansible host")
    return host


def list_hosts(tenant_id: int, limit: int = 100, before_id: int | None = None) -> list[AnsibleHost]:
    """The tenant's hosts, newest first."""
    query = select(AnsibleHost).where(AnsibleHost.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AnsibleHost.id < before_id)
    return list(db.session.scalars(query.order_by(AnsibleHost.id.desc()).limit(limit)))


def host_probes(host_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    """Each host's linked probes as (id, name), in id order: every id asked for is a key."""
    linked: dict[int, list[tuple[int, str]]] = {host_id: [] for host_id in host_ids}
    if host_ids:
        rows = db.session.execute(
            select(ansible_host_probes.c.host_id, Probe.id, Probe.name)
            .join(Probe, Probe.id == ansible_host_probes.c.probe_id)
            .where(ansible_host_probes.c.host_id.in_(host_ids)).order_by(Probe.id))
        for host_id, probe_id, name in rows:
            linked[host_id].append((probe_id, name))
    return linked


def host_groups(host_ids: list[int]) -> dict[int, list[int]]:
    """The groups each host belongs to, in id order: every id asked for is a key."""
    groups: dict[int, list[int]] = {host_id: [] for host_id in host_ids}
    if host_ids:
        rows = db.session.execute(
            select(ansible_group_hosts.c.host_id, ansible_group_hosts.c.group_id)
            .where(ansible_group_hosts.c.host_id.in_(host_ids)).order_by(ansible_group_hosts.c.group_id))
        for host_id, group_id in rows:
            groups[host_id].append(group_id)
    return groups


def host_fields(host: AnsibleHost) -> dict[str, Any]:
    """The host as ``HostInput`` fields (what an update starts from)."""
    fields = {name: getattr(host, name) for name in ("name", "address", "port", "variables", "description")}
    return fields | {"probe_ids": [probe_id for probe_id, _ in host_probes([host.id])[host.id]],
                     "group_ids": host_groups([host.id])[host.id]}


def _apply_host(host: AnsibleHost, tenant_id: int, fields: HostInput) -> None:
    """Write the fields, the probe links and the group memberships (the caller commits)."""
    for probe_id in fields.probe_ids:
        owned(Probe, tenant_id, probe_id, "probe")
    groups = [get_group(tenant_id, group_id) for group_id in fields.group_ids]
    host.name, host.address, host.port = fields.name, fields.address, fields.port
    host.variables, host.description = fields.variables, fields.description
    db.session.add(host)
    flush_unique("an ansible host", fields.name)
    db.session.execute(delete(ansible_host_probes).where(ansible_host_probes.c.host_id == host.id))
    db.session.execute(delete(ansible_group_hosts).where(ansible_group_hosts.c.host_id == host.id))
    if fields.probe_ids:
        db.session.execute(insert(ansible_host_probes),
                           [{"host_id": host.id, "probe_id": probe_id} for probe_id in fields.probe_ids])
    if groups:
        db.session.execute(insert(ansible_group_hosts),
                           [{"group_id": group.id, "host_id": host.id} for group in groups])
    for group in groups:
        db.session.expire(group, ["hosts"])


def create_host(tenant_id: int, data: dict[str, Any]) -> AnsibleHost:
    fields = validated(HostInput, data)
    host = AnsibleHost(tenant_id=tenant_id)
    _apply_host(host, tenant_id, fields)
    commit_unique("an ansible host", fields.name)
    return host


def update_host(tenant_id: int, host_id: int, changes: dict[str, Any]) -> AnsibleHost:
    host = get_host(tenant_id, host_id)
    fields = validated(HostInput, {**host_fields(host), **changes})
    _apply_host(host, tenant_id, fields)
    commit_unique("an ansible host", fields.name)
    return host


def delete_host(tenant_id: int, host_id: int) -> None:
    """Delete a host (its probe links and group memberships go with it); refused while an
    execution template runs on it."""
    from app.services.ansible_templates import refuse_if_used

    host = get_host(tenant_id, host_id)
    refuse_if_used(tenant_id, f"ansible host {host.name!r}", host_id=host.id)
    db.session.delete(host)
    db.session.commit()


# --- groups ------------------------------------------------------------------------------------


def get_group(tenant_id: int, group_id: int) -> AnsibleGroup:
    group: AnsibleGroup = owned(AnsibleGroup, tenant_id, group_id, "ansible group")
    return group


def find_group(tenant_id: int, name: str) -> AnsibleGroup | None:
    return db.session.scalar(select(AnsibleGroup).where(AnsibleGroup.tenant_id == tenant_id,
                                                        AnsibleGroup.name == name))


def list_groups(tenant_id: int, limit: int = 100, before_id: int | None = None) -> list[AnsibleGroup]:
    """The tenant's groups, newest first."""
    query = select(AnsibleGroup).where(AnsibleGroup.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AnsibleGroup.id < before_id)
    return list(db.session.scalars(query.order_by(AnsibleGroup.id.desc()).limit(limit)))


def group_fields(group: AnsibleGroup) -> dict[str, Any]:
    """The group as ``GroupInput`` fields (what an update starts from)."""
    return {"name": group.name, "variables": group.variables, "description": group.description,
            "host_ids": [host.id for host in group.hosts], "child_ids": [child.id for child in group.children]}


def children_edges(tenant_id: int) -> dict[int, list[int]]:
    """The tenant's group nesting as {parent: [children]}, read in one query."""
    edges: dict[int, list[int]] = {}
    rows = db.session.execute(
        select(ansible_group_children.c.parent_id, ansible_group_children.c.child_id)
        .join(AnsibleGroup, AnsibleGroup.id == ansible_group_children.c.parent_id)
        .where(AnsibleGroup.tenant_id == tenant_id)
        .order_by(ansible_group_children.c.parent_id, ansible_group_children.c.child_id))
    for parent, child in rows:
        edges.setdefault(parent, []).append(child)
    return edges


def descendants(edges: dict[int, list[int]], group_ids: list[int]) -> list[int]:
    """``group_ids`` and every group nested below them, each once, in the order reached."""
    seen = dict.fromkeys(group_ids)
    queue = deque(group_ids)
    while queue:
        for child in edges.get(queue.popleft(), ()):
            if child not in seen:
                seen[child] = None
                queue.append(child)
    return list(seen)


def _lock_tenant(tenant_id: int) -> None:
    """Serialize changes of group nesting of one tenant until the transaction ends (PostgreSQL;
    on SQLite the transaction's first write holds the database's write lock)."""
    if dialect_name() == "postgresql":
        keys = (cast(literal(_LOCK_SPACE), Integer), cast(literal(tenant_id), Integer))
        db.session.execute(select(func.pg_advisory_xact_lock(*keys)))


def _cycle_through(edges: dict[int, list[int]], group_id: int, child_ids: list[int]) -> list[int]:
    """The shortest cycle that ``group_id`` containing ``child_ids`` would close, as the groups
    along it (``group_id`` first and last), or ``[]``."""
    came_from = {child: group_id for child in child_ids}
    queue = deque(child_ids)
    while queue:
        current = queue.popleft()
        if current == group_id:
            path = [group_id]
            step = came_from[group_id]
            while step != group_id:
                path.append(step)
                step = came_from[step]
            return [group_id, *reversed(path[1:]), group_id]
        for child in edges.get(current, ()):
            if child not in came_from:
                came_from[child] = current
                queue.append(child)
    return []


def _named_path(path: list[int], names: dict[int, str]) -> str:
    """``web → app → web``; a long cycle shows its ends and how many lie between."""
    half = _NAMED // 2
    shown: list[int | None] = list(path) if len(path) <= _NAMED else [*path[:half], None, *path[-half:]]
    between = f"… {len(path) - 2 * half} more …"
    return " → ".join(between if group_id is None else names.get(group_id, str(group_id)) for group_id in shown)


def _apply_group(group: AnsibleGroup, tenant_id: int, fields: GroupInput) -> None:
    """Write the fields, hosts and children (the caller commits); a cycle is refused, rolled back."""
    hosts = [get_host(tenant_id, host_id) for host_id in fields.host_ids]
    children = [get_group(tenant_id, child_id) for child_id in fields.child_ids]
    group.name, group.variables, group.description = fields.name, fields.variables, fields.description
    group.hosts = sorted(hosts, key=lambda host: host.name)
    db.session.add(group)
    flush_unique("an ansible group", fields.name)
    if group.id in fields.child_ids:
        db.session.rollback()
        raise InvalidInputError("a group cannot contain itself", field="child_ids")
    if children:
        _lock_tenant(tenant_id)
        edges = children_edges(tenant_id)
        edges[group.id] = list(fields.child_ids)
        cycle = _cycle_through(edges, group.id, fields.child_ids)
        if cycle:
            names = dict(db.session.execute(select(AnsibleGroup.id, AnsibleGroup.name)
                                            .where(AnsibleGroup.id.in_(set(cycle)))).tuples().all())
            db.session.rollback()
            raise InvalidInputError(f"would make a cycle: {_named_path(cycle, names)}", field="child_ids")
    group.children = sorted(children, key=lambda child: child.name)


def create_group(tenant_id: int, data: dict[str, Any]) -> AnsibleGroup:
    fields = validated(GroupInput, data)
    group = AnsibleGroup(tenant_id=tenant_id)
    _apply_group(group, tenant_id, fields)
    commit_unique("an ansible group", fields.name)
    return group


def update_group(tenant_id: int, group_id: int, changes: dict[str, Any]) -> AnsibleGroup:
    group = get_group(tenant_id, group_id)
    fields = validated(GroupInput, {**group_fields(group), **changes})
    _apply_group(group, tenant_id, fields)
    commit_unique("an ansible group", fields.name)
    return group


def delete_group(tenant_id: int, group_id: int) -> None:
    """Delete a group (its hosts stay; parents lose it as a child); refused while an execution
    template runs on it."""
    from app.services.ansible_templates import refuse_if_used

    group = get_group(tenant_id, group_id)
    refuse_if_used(tenant_id, f"ansible group {group.name!r}", group_id=group.id)
    db.session.delete(group)
    db.session.commit()


def create_host_in_groups(tenant_id: int, data: dict[str, Any],
                          group_names: list[str]) -> tuple[AnsibleHost, list[str]]:
    """A new host in the named groups, creating those that do not exist yet (the CLI's ``--group``),
    in one transaction; returns the host and the names of the groups created."""
    fields = validated(HostInput, data)
    group_ids = list(fields.group_ids)
    created = []
    for name in dict.fromkeys(group_names):
        group = find_group(tenant_id, name)
        if group is None:
            try:
                new_group = validated(GroupInput, {"name": name})
            except InvalidInputError as exc:
                raise InvalidInputError(f"group {name!r}: {str(exc).removeprefix('name: ')}") from None
            group = AnsibleGroup(tenant_id=tenant_id)
            _apply_group(group, tenant_id, new_group)
            created.append(name)
        if group.id not in group_ids:
            group_ids.append(group.id)
    host = AnsibleHost(tenant_id=tenant_id)
    _apply_host(host, tenant_id, validated(HostInput, {**data, "group_ids": group_ids}))
    commit_unique("an ansible host", fields.name)
    return host, created


def variables_error(field: str, variables: dict[str, Any], where: str) -> InvalidInputError | None:
    """The refusal of a secret in clear among variables read from elsewhere (a text inventory)."""
    for name, value in variables.items():
        if isinstance(name, str) and is_secret_variable(name) and not is_vaulted(value):
            return InvalidInputError(f"{where}: {_secret_message(name, 'the inventory')}", field=field)
    return None
