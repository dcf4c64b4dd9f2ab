"""The Ansible resources of the API — hosts, groups, inventories, credentials, playbooks and
execution templates: their life cycle, roles, refusals with the field, secrets never shown,
versions, and deletes refused while a template uses a resource.

Inventories are parsed and playbooks checked by the real ansible-core (a process each).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from sqlalchemy import text

from app.ansible.inventory import parse_inventory
from app.core.config import activate, active_settings
from app.extensions import db
from app.models import AnsibleCredential, Probe
from app.services import ansible_credentials, ansible_playbooks
from app.services.errors import InvalidInputError, NotFoundError
from tests.api import Api, Caller, assert_error
from tests.conftest import make_tenant
from tests.test_alerting import stored

pytestmark = pytest.mark.timeout(120)

API = "/api/v1/ansible"
PLAYBOOK = """- name: ping everything
  hosts: all
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
"""
PASSPHRASE = "correct horse"


@pytest.fixture
def team(api: Api) -> dict[str, Caller]:
    tenant_id = make_tenant().id
    return {role: api.as_role(tenant_id, role) for role in ("viewer", "operator", "admin")}


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json  # type: ignore[no-any-return]


def private_key(passphrase: str | None = None) -> str:
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption).decode()


@contextmanager
def projects_root(path: Path | None) -> Iterator[None]:
    previous = active_settings()
    ansible = previous.ansible.model_copy(update={"projects_root": str(path) if path else ""})
    activate(previous.model_copy(update={"ansible": ansible}))
    try:
        yield
    finally:
        activate(previous)


# --- hosts and groups ---------------------------------------------------------------------------


def test_hosts_and_groups_live_and_die_and_a_host_shows_its_probes(team: dict[str, Caller]) -> None:
    operator, viewer = team["operator"], team["viewer"]
    probe = created(operator.post("/api/v1/probes", json={"name": "ssh", "protocol": "tcp",
                                                           "target": "10.0.0.1:22"}))
    stored(db.session.get(Probe, probe["id"]), "success")
    body = {"name": "web1.example", "address": "10.0.0.1", "port": 2222, "variables": {"http_port": 8080},
            "probe_ids": [probe["id"]]}
    assert_error(viewer.post(f"{API}/hosts", json=body), 403)

    host = created(operator.post(f"{API}/hosts", json=body))
    shown = viewer.get(f"{API}/hosts/{host['id']}").json
    assert {k: shown[k] for k in ("name", "address", "port", "variables", "probe_ids", "group_ids")} == {
        "name": "web1.example", "address": "10.0.0.1", "port": 2222, "variables": {"http_port": 8080},
        "probe_ids": [probe["id"]], "group_ids": []}
    (linked,) = shown["probes"]
    assert (linked["id"], linked["name"], linked["latest"]["status"]) == (probe["id"], "ssh", "success")
    other = created(operator.post(f"{API}/hosts", json={"name": "db1"}))
    assert other["probes"] == [] and other["address"] is None

    web = created(operator.post(f"{API}/groups", json={"name": "web", "host_ids": [host["id"]],
                                                         "variables": {"tier": "front"}}))
    everything = created(operator.post(f"{API}/groups", json={"name": "prod", "child_ids": [web["id"]],
                                                                "host_ids": [other["id"]]}))
    assert viewer.get(f"{API}/hosts/{host['id']}").json["group_ids"] == [web["id"]]
    assert viewer.get(f"{API}/groups/{everything['id']}").json["child_ids"] == [web["id"]]

    first = viewer.get(f"{API}/hosts?limit=1").json
    assert [item["name"] for item in first["items"]] == ["db1"] and first["next_cursor"] == other["id"]
    second = viewer.get(f"{API}/hosts?limit=1&cursor={first['next_cursor']}").json
    assert [item["name"] for item in second["items"]] == ["web1.example"] and second["next_cursor"] is None

    changed = operator.patch(f"{API}/hosts/{host['id']}", json={"port": None, "description": "front end"})
    assert changed.status_code == 200, changed.json
    assert (changed.json["port"], changed.json["description"], changed.json["probe_ids"]) == (
        None, "front end", [probe["id"]])
    assert operator.patch(f"{API}/groups/{web['id']}", json={"host_ids": []}).json["host_ids"] == []
    assert_error(operator.post(f"{API}/hosts", json={"name": "db1"}), 409, "conflict")

    assert operator.delete(f"{API}/groups/{everything['id']}").status_code == 204
    assert operator.delete(f"{API}/hosts/{host['id']}").status_code == 204
    assert_error(viewer.get(f"{API}/hosts/{host['id']}"), 404, "not_found")
    assert [item["name"] for item in viewer.get(f"{API}/groups").json["items"]] == ["web"]


def test_a_cycle_of_groups_is_refused_naming_its_path(team: dict[str, Caller]) -> None:
    operator = team["operator"]
    a = created(operator.post(f"{API}/groups", json={"name": "a"}))
    b = created(operator.post(f"{API}/groups", json={"name": "b", "child_ids": [a["id"]]}))
    c = created(operator.post(f"{API}/groups", json={"name": "c", "child_ids": [b["id"]]}))

    refused = operator.patch(f"{API}/groups/{a['id']}", json={"child_ids": [c["id"]], "description": "x"})
    assert_error(refused, 422, "invalid_input", field="child_ids")
    assert refused.json["message"] == "child_ids: would make a cycle: a → c → b → a"
    itself = operator.patch(f"{API}/groups/{a['id']}", json={"child_ids": [a["id"]]})
    assert_error(itself, 422, field="child_ids")
    assert operator.get(f"{API}/groups/{a['id']}").json["child_ids"] == []
    assert operator.get(f"{API}/groups/{a['id']}").json["description"] == ""


def test_variables_may_be_given_as_yaml_text(team: dict[str, Caller]) -> None:
    host = created(team["operator"].post(f"{API}/hosts", json={
        "name": "web1", "variables": "http_port: 8080\ntiers: [front, edge]\nsince: 2024-01-01\n"}))
    assert host["variables"] == {"http_port": 8080, "tiers": ["front", "edge"], "since": "2024-01-01"}
    group = created(team["operator"].post(f"{API}/groups", json={"name": "web", "variables": '{"proxy": "on"}'}))
    assert group["variables"] == {"proxy": "on"}


@pytest.mark.parametrize(("path", "body", "field", "says"), [
    ("hosts", {"name": "web 1"}, "name", "no spaces"),
    ("hosts", {"name": "w", "variables": {"http-port": 80}}, "variables", "not a valid Ansible variable name"),
    ("hosts", {"name": "w", "variables": {"ansible_password": "hunter2"}}, "variables", "store it in a credential"),
    ("hosts", {"name": "w", "variables": {"ansible_ssh_private_key_file": "/k"}}, "variables", "credential"),
    ("hosts", {"name": "w", "variables": {"ansible_host": "10.0.0.9"}}, "variables", "address"),
    ("hosts", {"name": "w", "address": "not an address"}, "address", "host name or an IP address"),
    ("hosts", {"name": "w", "port": 0}, "port", "greater than or equal to 1"),
    ("hosts", {"name": "w", "variables": []}, "variables", "valid dictionary"),
    ("groups", {"name": "all"}, "name", "Ansible's own group"),
    ("groups", {"name": "web-servers"}, "name", "letters, digits and _"),
    ("groups", {"name": "g", "variables": {"ansible_become_pass": "x"}}, "variables", "credential"),
    ("hosts", {"name": "w", "variables": "http_port: [80,\n"}, "variables", "line 2: not YAML"),
    ("hosts", {"name": "w", "variables": "- 80\n"}, "variables", "must hold a mapping"),
    ("groups", {"name": "g", "variables": "ansible_password: hunter2\n"}, "variables", "credential"),
])
def test_bad_hosts_and_groups_are_refused_with_the_field(team: dict[str, Caller], path: str, body: dict[str, Any],
                                                         field: str, says: str) -> None:
    response = team["operator"].post(f"{API}/{path}", json=body)
    assert_error(response, 422, "invalid_input", field=field)
    assert says in response.json["message"]
    assert team["operator"].get(f"{API}/{path}").json["items"] == []


# --- inventories --------------------------------------------------------------------------------


def test_a_built_inventory_resolves_nested_groups_and_renders_yaml_that_parses_back(
        team: dict[str, Caller]) -> None:
    operator, viewer = team["operator"], team["viewer"]
    web1 = created(operator.post(f"{API}/hosts", json={"name": "web1", "address": "10.0.0.1", "port": 2222,
                                                         "variables": {"http_port": 8080}}))
    db1 = created(operator.post(f"{API}/hosts", json={"name": "db1"}))
    lone = created(operator.post(f"{API}/hosts", json={"name": "bastion", "address": "192.0.2.7"}))
    web = created(operator.post(f"{API}/groups", json={"name": "web", "host_ids": [web1["id"]],
                                                         "variables": {"tier": "front"}}))
    dbs = created(operator.post(f"{API}/groups", json={"name": "dbs", "host_ids": [db1["id"]]}))
    prod = created(operator.post(f"{API}/groups", json={"name": "prod", "child_ids": [web["id"], dbs["id"]],
                                                          "variables": {"env": "prod"}}))
    assert_error(viewer.post(f"{API}/inventories", json={"name": "x", "group_ids": [prod["id"]]}), 403)

    inventory = created(operator.post(f"{API}/inventories", json={
        "name": "production", "group_ids": [prod["id"]], "host_ids": [lone["id"]]}))
    shown = viewer.get(f"{API}/inventories/{inventory['id']}").json
    assert (shown["kind"], shown["group_ids"], shown["host_ids"], shown["format"]) == (
        "built", [prod["id"]], [lone["id"]], None)
    hosts = {host["name"]: host["vars"] for host in shown["hosts"]}
    assert hosts == {"bastion": {"ansible_host": "192.0.2.7"}, "db1": {},
                     "web1": {"http_port": 8080, "ansible_host": "10.0.0.1", "ansible_port": 2222}}
    groups = {group["name"]: group for group in shown["groups"]}
    assert set(groups) == {"prod", "web", "dbs"}
    assert groups["prod"]["children"] == ["dbs", "web"] and groups["prod"]["vars"] == {"env": "prod"}
    assert groups["web"]["hosts"] == ["web1"] and groups["web"]["vars"] == {"tier": "front"}

    rendered = viewer.get(f"{API}/inventories/{inventory['id']}/rendered").json
    assert rendered["format"] == "yaml"
    parsed = parse_inventory(rendered["content"], "yaml")
    assert parsed.hosts == hosts
    assert {name: (sorted(group.hosts), sorted(group.children), group.vars) for name, group in parsed.groups.items()} \
        == {name: (sorted(group["hosts"]), sorted(group["children"]), group["vars"]) for name, group in groups.items()}

    listed = viewer.get(f"{API}/inventories").json["items"]
    assert [item["name"] for item in listed] == ["production"] and "hosts" not in listed[0]
    assert_error(operator.post(f"{API}/inventories", json={"name": "empty"}), 422, field="group_ids")
    assert operator.delete(f"{API}/inventories/{inventory['id']}").status_code == 204
    assert viewer.get(f"{API}/groups/{prod['id']}").status_code == 200  # its groups stay


def test_a_text_inventory_is_parsed_when_saved_and_a_mistake_names_its_line(team: dict[str, Caller]) -> None:
    operator = team["operator"]
    ini = "[web]\nweb1 ansible_host=10.0.0.1 http_port=80\nweb2\n\n[web:vars]\ntier=front\n"
    inventory = created(operator.post(f"{API}/inventories", json={"name": "t", "kind": "text", "format": "ini",
                                                                    "content": ini}))
    assert {host["name"] for host in inventory["hosts"]} == {"web1", "web2"}
    (web,) = inventory["groups"]
    assert (web["name"], sorted(web["hosts"]), web["vars"]) == ("web", ["web1", "web2"], {"tier": "front"})
    rendered = operator.get(f"{API}/inventories/{inventory['id']}/rendered").json
    assert rendered == {"format": "ini", "content": ini}

    bad_ini = "[web]\nweb1\n[web:vars]\nthis is not a variable\n"
    refused = operator.patch(f"{API}/inventories/{inventory['id']}", json={"content": bad_ini})
    assert_error(refused, 422, "invalid_input", field="content")
    assert refused.json["message"].startswith("content: line 4: ")
    bad_yaml = "all:\n  hosts:\n    web1:\n   bad: [\n"
    refused = operator.post(f"{API}/inventories", json={"name": "y", "kind": "text", "format": "yaml",
                                                         "content": bad_yaml})
    assert_error(refused, 422, field="content")
    assert refused.json["message"].startswith("content: line 4: ")
    secret = operator.post(f"{API}/inventories", json={"name": "s", "kind": "text", "format": "ini",
                                                        "content": "web1 ansible_password=hunter2\n"})
    assert_error(secret, 422, field="content")
    assert "hunter2" not in secret.get_data(as_text=True) and "credential" in secret.json["message"]
    assert_error(operator.post(f"{API}/inventories", json={"name": "z", "kind": "text", "content": ini}), 422,
                 field="format")

    to_built = operator.patch(f"{API}/inventories/{inventory['id']}", json={
        "kind": "built", "host_ids": [created(operator.post(f"{API}/hosts", json={"name": "h"}))["id"]]})
    assert to_built.status_code == 200, to_built.json
    assert (to_built.json["kind"], to_built.json["content"], [h["name"] for h in to_built.json["hosts"]]) == (
        "built", None, ["h"])


# --- credentials --------------------------------------------------------------------------------


def _raw_secret(credential_id: int) -> str:
    db.session.commit()
    return db.session.execute(text("SELECT secret FROM ansible_credentials WHERE id = :id"),
                              {"id": credential_id}).scalar_one()


def test_credentials_are_for_admins_and_no_response_ever_holds_a_secret(team: dict[str, Caller]) -> None:
    admin, operator, viewer = team["admin"], team["operator"], team["viewer"]
    key = private_key(PASSPHRASE)
    body = {"name": "deploy key", "kind": "ssh_key", "username": "deploy", "private_key": key,
            "passphrase": PASSPHRASE}
    assert_error(operator.post(f"{API}/credentials", json=body), 403)
    responses = [admin.post(f"{API}/credentials", json=body)]
    ssh_key = created(responses[0])
    sudo = created(admin.post(f"{API}/credentials", json={"name": "sudo", "kind": "become_password",
                                                            "password": "s3cret-sudo", "become_user": "app"}))
    responses += [viewer.get(f"{API}/credentials"), viewer.get(f"{API}/credentials/{ssh_key['id']}"),
                  viewer.get(f"{API}/credentials/{sudo['id']}")]
    for response in responses:
        body_text = response.get_data(as_text=True)
        for secret in (key.strip().splitlines()[1], PASSPHRASE, "s3cret-sudo"):
            assert secret not in body_text
    shown = responses[2].json
    assert {k: shown[k] for k in ("name", "kind", "username", "has_passphrase", "readable")} == {
        "name": "deploy key", "kind": "ssh_key", "username": "deploy", "has_passphrase": True, "readable": True}
    assert "private_key" not in shown and "passphrase" not in shown
    assert responses[3].json["become_user"] == "app" and responses[3].json["has_passphrase"] is None
    for credential_id in (ssh_key["id"], sudo["id"]):
        raw = _raw_secret(credential_id)
        assert raw.startswith("gAAAAA") and PASSPHRASE not in raw and "s3cret-sudo" not in raw and "BEGIN" not in raw

    assert_error(operator.patch(f"{API}/credentials/{sudo['id']}", json={"password": "x"}), 403)
    renamed = admin.patch(f"{API}/credentials/{sudo['id']}", json={"name": "sudo app", "become_method": "su"})
    assert renamed.status_code == 200 and renamed.json["become_method"] == "su"
    tenant_id = viewer.tenant_id or 0
    run = ansible_credentials.for_run(tenant_id, [ssh_key["id"], sudo["id"]])
    assert (run.username, run.ssh_key, run.ssh_key_passphrase, run.become_password, run.become_method,
            run.become_user) == ("deploy", key.strip() + "\n", PASSPHRASE, "s3cret-sudo", "su", "app")
    assert PASSPHRASE not in repr(run) and "s3cret-sudo" not in repr(run) and "BEGIN" not in repr(run)
    replaced = admin.patch(f"{API}/credentials/{sudo['id']}", json={"password": "n3w-sudo"})
    assert replaced.status_code == 200
    assert ansible_credentials.for_run(tenant_id, [sudo["id"]]).become_password == "n3w-sudo"

    other_sudo = created(admin.post(f"{API}/credentials", json={"name": "sudo 2", "kind": "become_password",
                                                                  "password": "x"}))
    with pytest.raises(InvalidInputError, match="two become_password credentials"):
        ansible_credentials.check_ids(tenant_id, [sudo["id"], other_sudo["id"]])
    with pytest.raises(NotFoundError, match="credential 987654 not found"):
        ansible_credentials.for_run(tenant_id, [987654])
    assert admin.delete(f"{API}/credentials/{other_sudo['id']}").status_code == 204


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"private_key": "PASSPHRASE-PROTECTED", "passphrase": "wrong horse"}, "passphrase", "wrong passphrase"),
    ({"private_key": "PASSPHRASE-PROTECTED"}, "passphrase", "give its passphrase"),
    ({"private_key": "PLAIN", "passphrase": "x"}, "passphrase", "not encrypted"),
    ({"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nbm9wZQ==\n-----END OPENSSH PRIVATE KEY-----\n"},
     "private_key", "not a readable"),
    ({"private_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9w user@host"}, "private_key", "not an OpenSSH or PEM"),
    ({}, "private_key", "required"),
    ({"private_key": "PLAIN", "password": "x"}, "password", "not a field of a ssh_key credential"),
])
def test_a_bad_ssh_key_is_refused_without_repeating_it(team: dict[str, Caller], body: dict[str, Any], field: str,
                                                       says: str) -> None:
    key = {"PASSPHRASE-PROTECTED": private_key(PASSPHRASE), "PLAIN": private_key()}.get(body.get("private_key", ""))
    sent = {"name": "k", "kind": "ssh_key", **body, **({"private_key": key} if key else {})}
    response = team["admin"].post(f"{API}/credentials", json=sent)
    assert_error(response, 422, "invalid_input", field=field)
    assert says in response.json["message"]
    body_text = response.get_data(as_text=True)
    for secret in (sent.get("private_key") or "").strip().splitlines()[1:2] + [PASSPHRASE, "wrong horse"]:
        assert secret not in body_text


# --- playbooks ----------------------------------------------------------------------------------


def test_playbook_versions_move_only_when_the_content_changes(team: dict[str, Caller]) -> None:
    operator, viewer = team["operator"], team["viewer"]
    assert_error(viewer.post(f"{API}/playbooks", json={"name": "ping", "content": PLAYBOOK}), 403)
    playbook = created(operator.post(f"{API}/playbooks", json={"name": "ping", "content": PLAYBOOK}))
    assert (playbook["current_version"], playbook["content"], playbook["sha256"]) == (
        1, PLAYBOOK, hashlib.sha256(PLAYBOOK.encode()).hexdigest())
    same = operator.patch(f"{API}/playbooks/{playbook['id']}", json={"content": PLAYBOOK, "description": "d"})
    assert same.status_code == 200 and same.json["current_version"] == 1 and same.json["description"] == "d"
    changed_text = PLAYBOOK.replace("ping everything", "ping them all")
    changed = operator.patch(f"{API}/playbooks/{playbook['id']}", json={"content": changed_text})
    assert changed.status_code == 200, changed.json
    assert changed.json["current_version"] == 2

    versions = viewer.get(f"{API}/playbooks/{playbook['id']}/versions").json
    assert [item["version"] for item in versions["items"]] == [2, 1] and "content" not in versions["items"][0]
    page = viewer.get(f"{API}/playbooks/{playbook['id']}/versions?limit=1").json
    assert [item["version"] for item in page["items"]] == [2] and page["next_cursor"] == 2
    assert viewer.get(f"{API}/playbooks/{playbook['id']}/versions/1").json["content"] == PLAYBOOK
    assert_error(viewer.get(f"{API}/playbooks/{playbook['id']}/versions/3"), 404, "not_found")
    found, version = ansible_playbooks.for_run(viewer.tenant_id or 0, playbook["id"])
    assert (found.name, version.version, version.content) == ("ping", 2, changed_text)
    listed = viewer.get(f"{API}/playbooks").json["items"]
    assert [(item["name"], item["current_version"]) for item in listed] == [("ping", 2)]
    assert "content" not in listed[0]
    assert operator.delete(f"{API}/playbooks/{playbook['id']}").status_code == 204
    assert_error(viewer.get(f"{API}/playbooks/{playbook['id']}/versions"), 404)


@pytest.mark.parametrize(("content", "line", "says"), [
    ("- hosts: all\n  tasks:\n    - name: x\n      debug: msg: hi\n", 4, "mapping values"),
    ("- hosts: all\n  tasks:\n    - name: bad\n      no_such.collection.module:\n        x: 1\n", 3,
     "no_such.collection.module"),
])
def test_a_bad_playbook_is_refused_naming_its_line(team: dict[str, Caller], content: str, line: int,
                                                   says: str) -> None:
    response = team["operator"].post(f"{API}/playbooks", json={"name": "bad", "content": content})
    assert_error(response, 422, "invalid_input", field="content")
    assert response.json["message"].startswith(f"content: line {line}: ") and says in response.json["message"]
    assert team["operator"].get(f"{API}/playbooks").json["items"] == []


def test_project_playbooks_need_the_root_and_stay_inside_it(team: dict[str, Caller], tmp_path: Path) -> None:
    operator = team["operator"]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "deploy.yml").write_text(PLAYBOOK)
    (tmp_path / "secret.yml").write_text(PLAYBOOK)
    body = {"name": "deploy", "source": "project", "project_dir": "site", "playbook_file": "deploy.yml"}
    with projects_root(None):
        off = operator.post(f"{API}/playbooks", json=body)
    assert_error(off, 422, field="source")
    assert "ansible.projects_root" in off.json["message"]

    with projects_root(tmp_path):
        escape = operator.post(f"{API}/playbooks", json={**body, "playbook_file": "../secret.yml"})
        assert_error(escape, 422, field="playbook_file")
        assert "outside the project" in escape.json["message"]
        assert_error(operator.post(f"{API}/playbooks", json={**body, "project_dir": "/etc"}), 422)
        playbook = created(operator.post(f"{API}/playbooks", json=body))
    assert (playbook["source"], playbook["content"], playbook["current_version"], playbook["sha256"]) == (
        "project", None, 1, hashlib.sha256(PLAYBOOK.encode()).hexdigest())
    assert operator.get(f"{API}/playbooks/{playbook['id']}/versions/1").json["content"] is None


# --- execution templates ------------------------------------------------------------------------


def _a_run(operator: Caller, admin: Caller) -> dict[str, Any]:
    host = created(operator.post(f"{API}/hosts", json={"name": "web1"}))
    group = created(operator.post(f"{API}/groups", json={"name": "web", "host_ids": [host["id"]]}))
    parent = created(operator.post(f"{API}/groups", json={"name": "prod", "child_ids": [group["id"]]}))
    inventory = created(operator.post(f"{API}/inventories", json={"name": "prod", "group_ids": [parent["id"]]}))
    playbook = created(operator.post(f"{API}/playbooks", json={"name": "ping", "content": PLAYBOOK}))
    credential = created(admin.post(f"{API}/credentials", json={"name": "ssh", "kind": "ssh_password",
                                                                  "username": "deploy", "password": "pw"}))
    return {"host": host, "group": group, "parent": parent, "inventory": inventory, "playbook": playbook,
            "credential": credential}


def test_templates_schedule_by_cron_and_block_deleting_what_they_use(team: dict[str, Caller]) -> None:
    operator, admin, viewer = team["operator"], team["admin"], team["viewer"]
    parts = _a_run(operator, admin)
    body = {"name": "nightly ping", "playbook_id": parts["playbook"]["id"], "inventory_id": parts["inventory"]["id"],
            "credential_ids": [parts["credential"]["id"]], "options": {"forks": 10, "tags": ["web"], "check": True},
            "cron": "0 2 * * *", "timezone": "Europe/Berlin"}
    assert_error(viewer.post(f"{API}/templates", json=body), 403)
    template = created(operator.post(f"{API}/templates", json=body))
    assert template["options"] == {"limit": None, "extra_vars": {}, "tags": ["web"], "skip_tags": [], "check": True,
                                   "diff": False, "forks": 10, "verbosity": 0, "timeout_seconds": None,
                                   "idle_timeout_seconds": None}
    assert template["next_run_at"] is not None
    from datetime import datetime
    from zoneinfo import ZoneInfo
    next_run = datetime.fromisoformat(template["next_run_at"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (next_run.hour, next_run.minute) == (2, 0)

    disabled = operator.patch(f"{API}/templates/{template['id']}", json={"enabled": False})
    assert disabled.json["next_run_at"] is None and disabled.json["cron"] == "0 2 * * *"
    enabled = operator.patch(f"{API}/templates/{template['id']}", json={"enabled": True})
    assert enabled.json["next_run_at"] == template["next_run_at"]
    manual = operator.patch(f"{API}/templates/{template['id']}", json={"cron": None})
    assert manual.json["next_run_at"] is None

    for kind, path in (("playbook", "playbooks"), ("inventory", "inventories"), ("host", "hosts"),
                       ("group", "groups"), ("parent", "groups")):
        refused = operator.delete(f"{API}/{path}/{parts[kind]['id']}")
        assert_error(refused, 409, "conflict")
        assert "'nightly ping'" in refused.json["message"]
    assert_error(admin.delete(f"{API}/credentials/{parts['credential']['id']}"), 409, "conflict")

    assert viewer.get(f"{API}/templates").json["items"][0]["name"] == "nightly ping"
    assert operator.delete(f"{API}/templates/{template['id']}").status_code == 204
    assert operator.delete(f"{API}/hosts/{parts['host']['id']}").status_code == 204
    assert admin.delete(f"{API}/credentials/{parts['credential']['id']}").status_code == 204
    assert operator.delete(f"{API}/playbooks/{parts['playbook']['id']}").status_code == 204


@pytest.mark.parametrize(("change", "field"), [
    ({"options": {"forks": 0}}, "options.forks"),
    ({"options": {"verbosity": 5}}, "options.verbosity"),
    ({"options": {"timeout_seconds": 10**9}}, "options.timeout_seconds"),
    ({"options": {"colour": "red"}}, "options.colour"),
    ({"options": {"extra_vars": {"ansible_become_password": "x"}}}, "options.extra_vars"),
    ({"options": {"tags": ["a,b"]}}, "options.tags.0"),
    ({"cron": "0 2 * *"}, "cron"),
    ({"cron": "0 0 30 2 *"}, "cron"),
    ({"timezone": "Nowhere/City"}, "timezone"),
    ({"playbook_id": 987654}, None),
])
def test_a_bad_template_is_refused_with_its_field(team: dict[str, Caller], change: dict[str, Any],
                                                  field: str | None) -> None:
    operator = team["operator"]
    parts = _a_run(operator, team["admin"])
    body = {"name": "t", "playbook_id": parts["playbook"]["id"], "inventory_id": parts["inventory"]["id"], **change}
    response = operator.post(f"{API}/templates", json=body)
    if field is None:
        assert_error(response, 404, "not_found")
        assert response.json["message"] == "playbook 987654 not found"
    else:
        assert_error(response, 422, "invalid_input", field=field)
    assert operator.get(f"{API}/templates").json["items"] == []


def test_two_credentials_of_one_kind_are_refused_in_a_template(team: dict[str, Caller]) -> None:
    operator, admin = team["operator"], team["admin"]
    parts = _a_run(operator, admin)
    second = created(admin.post(f"{API}/credentials", json={"name": "ssh2", "kind": "ssh_password",
                                                              "password": "pw2"}))
    response = operator.post(f"{API}/templates", json={
        "name": "t", "playbook_id": parts["playbook"]["id"], "inventory_id": parts["inventory"]["id"],
        "credential_ids": [parts["credential"]["id"], second["id"]]})
    assert_error(response, 422, field="credential_ids")
    assert "two ssh_password credentials" in response.json["message"]


# --- key rotation ---------------------------------------------------------------------------------


def test_secrets_rotate_re_encrypts_credentials(app: Flask) -> None:
    from app.cli import secrets_rotate
    from app.services.secret_rotation import encrypted_tables
    from tests.test_secrets import keyring, new_key

    found = {entry.table.name: [column.name for column in entry.columns] for entry in encrypted_tables(db.metadata)}
    assert found["ansible_credentials"] == ["secret"]
    old, new = new_key(), new_key()
    with keyring(old):
        tenant_id = make_tenant().id
        credential = ansible_credentials.create_credential(tenant_id, {"name": "vault", "kind": "vault_password",
                                                                       "password": "v4ult", "vault_id": "prod"})
        before = _raw_secret(credential.id)
    with keyring(new, old):
        done = app.test_cli_runner().invoke(secrets_rotate, [])
    assert done.exit_code == 0, done.output
    assert "ansible_credentials: 1 value re-encrypted" in done.output.splitlines()
    with keyring(new):
        after = _raw_secret(credential.id)
        assert after != before and "v4ult" not in after
        db.session.expire_all()
        run = ansible_credentials.for_run(tenant_id, [credential.id])
        assert (run.vault_password, run.vault_id) == ("v4ult", "prod")
        row = db.session.get(AnsibleCredential, credential.id)
        assert ansible_credentials.shown([row])[credential.id].vault_id == "prod"
