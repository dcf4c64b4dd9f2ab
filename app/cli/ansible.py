"""``admin-mit host`` and ``admin-mit playbook``: Ansible hosts and playbooks from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from app.cli import cli
from app.cli.alerts import _tenant_id


def _variables(values: tuple[str, ...]) -> dict[str, Any]:
    """``--var k=v`` pairs; a value that reads as JSON (8080, true, ["a"]) is taken as such, else as text."""
    variables: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--var")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        variables[name.strip()] = value
    return variables


# --- hosts -------------------------------------------------------------------------------------


@cli.group()
def host() -> None:
    """Ansible hosts: what built inventories are made of."""


@host.command("add")
@click.argument("name")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--address", default=None, help="Host name or IP address to connect to (default: NAME).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="SSH port.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A host variable (repeatable); JSON values (8080, true) are read as such.")
@click.option("--group", "groups", multiple=True, metavar="GROUP",
              help="A group to put it in (repeatable); created when it does not exist.")
@click.option("--description", default="", help="What the host is.")
@with_appcontext
def host_add(name: str, tenant_ref: str, address: str | None, port: int | None, variables: tuple[str, ...],
             groups: tuple[str, ...], description: str) -> None:
    """Add a host NAME, in the given groups."""
    from app.services.ansible_hosts import create_host_in_groups

    data: dict[str, Any] = {"name": name, "variables": _variables(variables), "description": description}
    if address is not None:
        data["address"] = address
    if port is not None:
        data["port"] = port
    created, new_groups = create_host_in_groups(_tenant_id(tenant_ref) or 0, data, list(groups))
    joined = f" in {', '.join(dict.fromkeys(groups))}" if groups else ""
    made = f" ({'group' if len(new_groups) == 1 else 'groups'} {', '.join(new_groups)} created)" if new_groups else ""
    click.echo(f"host {created.id} {created.name!r} created{joined}{made}")


@host.command("list")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@with_appcontext
def host_list(tenant_ref: str) -> None:
    """List hosts, newest first, with their groups and linked probes."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import AnsibleGroup
    from app.services import ansible_hosts

    tenant_id = _tenant_id(tenant_ref) or 0
    rows = ansible_hosts.list_hosts(tenant_id, limit=100_000)
    ids = [row.id for row in rows]
    groups = ansible_hosts.host_groups(ids)
    probes = ansible_hosts.host_probes(ids)
    names = dict(db.session.execute(select(AnsibleGroup.id, AnsibleGroup.name)
                                    .where(AnsibleGroup.tenant_id == tenant_id)).tuples().all())
    click.echo("ID\tNAME\tADDRESS\tPORT\tGROUPS\tVARIABLES\tPROBES")
    for row in rows:
        click.echo(f"{row.id}\t{row.name}\t{row.address or '-'}\t{row.port or '-'}\t"
                   f"{','.join(names[group_id] for group_id in groups[row.id]) or '-'}\t"
                   f"{json.dumps(row.variables or {}, ensure_ascii=False, sort_keys=True)}\t"
                   f"{','.join(str(probe_id) for probe_id, _ in probes[row.id]) or '-'}")


# --- playbooks ---------------------------------------------------------------------------------


@cli.group()
def playbook() -> None:
    """Playbooks: stored YAML, syntax-checked and versioned."""


@playbook.command("add")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--description", default="", help="What the playbook does.")
@with_appcontext
def playbook_add(name: str, file: Path, tenant_ref: str, description: str) -> None:
    """Add the playbook in FILE (YAML) as NAME; it is syntax-checked first."""
    from app.services.ansible_playbooks import create_playbook

    try:
        content = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {file}: {exc.__class__.__name__}", param_hint="FILE") from None
    created = create_playbook(_tenant_id(tenant_ref) or 0,
                              {"name": name, "source": "content", "content": content, "description": description})
    click.echo(f"playbook {created.id} {created.name!r} created (version {created.current_version})")


@playbook.command("list")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@with_appcontext
def playbook_list(tenant_ref: str) -> None:
    """List playbooks, newest first, with their current version."""
    from app.services import ansible_playbooks

    rows = ansible_playbooks.list_playbooks(_tenant_id(tenant_ref) or 0, limit=100_000)
    versions = ansible_playbooks.current_versions(rows)
    click.echo("ID\tNAME\tSOURCE\tVERSION\tSHA256\tUPDATED")
    for row in rows:
        source = row.source if row.source == "content" else f"project {row.project_dir}/{row.playbook_file}"
        click.echo(f"{row.id}\t{row.name}\t{source}\t{row.current_version}\t{versions[row.id].sha256[:12]}\t"
                   f"{row.updated_at.isoformat(timespec='seconds')}")


@cli.group()
def inventory() -> None:
    """Inventories: INI or YAML text, parsed and checked by ansible-core when added."""


@inventory.command("add")
@click.argument("name")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--content", default=None, help="The inventory text.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A file holding the inventory text.")
@click.option("--format", "text_format", type=click.Choice(["ini", "yaml"]), default="ini", show_default=True)
@click.option("--description", default="", help="What the inventory is for.")
@with_appcontext
def inventory_add(name: str, tenant_ref: str, content: str | None, file: Path | None, text_format: str,
                  description: str) -> None:
    """Add an inventory given as text (--content or --file)."""
    from app.services.ansible_inventories import create_inventory, resolved

    if (content is None) == (file is None):
        raise click.UsageError("give one of --content or --file")
    if file is not None:
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {file}: {exc.__class__.__name__}", param_hint="--file") from None
    created = create_inventory(_tenant_id(tenant_ref) or 0, {
        "name": name, "kind": "text", "format": text_format, "content": content, "description": description})
    parsed = resolved(created)
    click.echo(f"inventory {created.id} {created.name!r} created: {len(parsed.hosts)} hosts, "
               f"{len(parsed.groups)} groups")


@inventory.command("list")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@with_appcontext
def inventory_list(tenant_ref: str) -> None:
    """List inventories, newest first."""
    from app.services import ansible_inventories

    click.echo("ID\tNAME\tKIND\tHOSTS\tGROUPS")
    for row in ansible_inventories.list_inventories(_tenant_id(tenant_ref) or 0, limit=100_000):
        parsed = ansible_inventories.resolved(row)
        click.echo(f"{row.id}\t{row.name}\t{row.kind if row.kind == 'built' else row.text_format}\t"
                   f"{len(parsed.hosts)}\t{len(parsed.groups)}")
