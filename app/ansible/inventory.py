"""Inventories: parsed by ansible-core itself, and written back as ansible YAML.

``parse_inventory`` runs ``ansible-inventory --list --export`` on the text, written to a file
in a private temporary directory, with only the one inventory plugin of the format enabled
(``ini`` or ``yaml``): no inventory script, no ``auto``/``plugin:`` inventory, nothing in the
text is executed. A subprocess keeps ansible's process-wide state (its configuration, read
once at import; its plugin loaders; its display) out of a long-lived API process, and an
inventory that makes ansible misbehave cannot take the API process with it. It costs about
0.35 s of one core per call (an ``ansible-inventory`` start; the parse itself is
milliseconds), so it is meant for saving an inventory, not for every request reading one.

ansible-core 2.19 names no line for INI errors (its ini plugin drops the line number before
it reports), and none for YAML structure errors: YAML syntax errors are found first by a
YAML parser that does name the line; for INI errors the line is the one holding the text
ansible quotes in its message, when exactly one such place is found.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.ansible import yamltext
from app.ansible.environment import ToolTimeout, check_size, clean_env, command, private_dir, run_tool, write_private

FORMATS = ("ini", "yaml")
TIMEOUT_SECONDS = 60.0
_IMPLICIT = ("all", "ungrouped")
_MAX_MESSAGE = 300


class InventoryError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class ParsedGroup:
    hosts: tuple[str, ...]
    children: tuple[str, ...]
    vars: dict[str, Any]


@dataclass(frozen=True)
class ParsedInventory:
    hosts: dict[str, dict[str, Any]]
    groups: dict[str, ParsedGroup]
    vars: dict[str, Any] = field(default_factory=dict)  # the vars of the group 'all'


def parse_inventory(text: str, fmt: str) -> ParsedInventory:
    if fmt not in FORMATS:
        raise InventoryError(f"unknown inventory format {fmt!r} (one of: {', '.join(FORMATS)})")
    if too_big := check_size(text, "inventory"):
        raise InventoryError(too_big)
    if text.startswith("#!"):
        raise InventoryError("inventory scripts are not accepted, only INI or YAML text", 1)
    if fmt == "yaml":
        try:
            yamltext.load(text)
        except yamltext.YamlError as exc:
            raise InventoryError(exc.message, exc.line) from None
    with private_dir(None, "inventory") as directory:
        path = directory / ("hosts.yml" if fmt == "yaml" else "hosts.ini")
        write_private(path, text)
        env = clean_env(directory)
        env["ANSIBLE_INVENTORY_ENABLED"] = fmt
        try:
            result = run_tool([command("ansible-inventory"), "--list", "--export", "-i", str(path)],
                              env, directory, TIMEOUT_SECONDS)
        except ToolTimeout as exc:
            raise InventoryError(str(exc)) from None
        if result.returncode != 0:
            message, line = _failure(result.stderr, path)
            if line is None and fmt == "ini":
                line = _ini_line(text, message)
            raise InventoryError(message, line)
    try:
        listing = json.loads(result.stdout)
    except ValueError:
        raise InventoryError("ansible-inventory printed no inventory") from None
    inventory = _from_listing(listing)
    if not inventory.hosts:
        raise InventoryError("the inventory has no hosts")
    return inventory


def _from_listing(listing: dict[str, Any]) -> ParsedInventory:
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, ParsedGroup] = {}
    for name, entry in listing.items():
        if name == "_meta" or not isinstance(entry, dict):
            continue
        for host in entry.get("hosts", ()):
            hosts.setdefault(host, dict(hostvars.get(host, {})))
        if name not in _IMPLICIT:
            groups[name] = ParsedGroup(
                hosts=tuple(entry.get("hosts", ())),
                children=tuple(c for c in entry.get("children", ()) if c not in _IMPLICIT),
                vars=dict(entry.get("vars", {})),
            )
    for host, values in hostvars.items():
        hosts.setdefault(host, dict(values))
    # Groups listed only as someone's child (no hosts, vars or children of their own).
    for group in list(groups.values()):
        for child in group.children:
            groups.setdefault(child, ParsedGroup((), (), {}))
    return ParsedInventory(hosts=hosts, groups=groups, vars=dict(listing.get("all", {}).get("vars", {})))


def _failure(stderr: str, path: Path) -> tuple[str, int | None]:
    """Ansible's reason (one line) and the line it names, if any, from its error output."""
    text = stderr.replace(str(path), "inventory")
    line = None
    if found := re.search(r"^Origin: inventory:(\d+)", text, re.M) or re.search(r"\binventory:(\d+):", text):
        line = int(found.group(1))
    message = ""
    if "<<< caused by >>>" in text:
        cause = text.split("<<< caused by >>>", 1)[1]
        lines = []
        for item in cause.strip().splitlines():
            if not item.strip() or item.startswith("Origin:"):
                break
            lines.append(item.strip())
        message = " ".join(lines)
    if not message:
        for pattern in (r"Failed to parse inventory with '\w+' plugin: (.+)", r"\[ERROR\]: (.+)", r"ERROR! (.+)"):
            if found := re.search(pattern, text):
                message = found.group(1)
                break
    message = re.sub(r"^Failed to parse inventory: ", "", message.strip()) or "ansible could not parse the inventory"
    message = re.sub(r"<class '(?:[\w.]*\._)?(?:AnsibleTagged)?(\w+)'>", r"\1", message)
    return message[:_MAX_MESSAGE], line


def _ini_line(text: str, message: str) -> int | None:
    """The line of ``text`` that ``message`` quotes, when it quotes one place only."""
    candidates = re.findall(r"includes undefined group '([^']+)'", message)
    candidates += re.findall(r"Section (\[[^\]]+\])", message)
    candidates += re.findall(r"'([^']+)'", message)
    candidates += re.findall(r"got: (.+)$", message)
    lines = [item.strip() for item in text.splitlines()]
    for candidate in candidates:
        candidate = candidate.strip()
        for matches in ([i for i, item in enumerate(lines) if item == candidate],
                        [i for i, item in enumerate(lines) if candidate in item and not item.startswith(("#", ";"))]):
            if len(matches) == 1:
                return matches[0] + 1
    return None


class _Vault(str):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Vault, lambda dumper, value: dumper.represent_scalar("!vault", str(value), style="|"))


def _vault_tags(value: Any) -> Any:
    """Values that ansible listed as ``{"__ansible_vault": ...}`` back to ``!vault`` text."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_vault"} and isinstance(value["__ansible_vault"], str):
            return _Vault(value["__ansible_vault"])
        return {key: _vault_tags(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_vault_tags(item) for item in value]
    return value


def render_inventory_yaml(hosts: dict[str, dict[str, Any]], groups: dict[str, ParsedGroup],
                          all_vars: dict[str, Any] | None = None) -> str:
    """An ansible YAML inventory with these hosts, groups and vars.

    Every group is written once under ``all.children`` with its hosts and vars; a nested
    group is named again (empty) under its parent's ``children``, which is how ansible's
    YAML inventory adds a group to a second parent. A host's vars are written where it is
    first listed; hosts in no group are listed under ``all.hosts``.
    """
    written: set[str] = set()

    def host_entry(name: str) -> dict[str, Any] | None:
        if name in written:
            return None
        written.add(name)
        return _vault_tags(dict(hosts.get(name) or {})) or None

    children: dict[str, Any] = {}
    for name, group in groups.items():
        entry: dict[str, Any] = {}
        if group.hosts:
            entry["hosts"] = {host: host_entry(host) for host in group.hosts}
        if group.vars:
            entry["vars"] = _vault_tags(dict(group.vars))
        if group.children:
            entry["children"] = {child: None for child in group.children}
        children[name] = entry or None
    top: dict[str, Any] = {}
    if all_vars:
        top["vars"] = _vault_tags(dict(all_vars))
    ungrouped = {host: host_entry(host) for host in hosts if host not in written}
    if ungrouped:
        top["hosts"] = ungrouped
    if children:
        top["children"] = children
    return yaml.dump({"all": top or None}, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)
