"""Tenant isolation: another tenant's id answers exactly like a missing one, for every resource."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from flask import Flask

from sqlalchemy import select

from app.extensions import db
from app.models import ProbeResult
from app.services import alert_evaluation, probe_runs
from tests.api import PASSWORD, Api, Caller, assert_error
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(60)

MISSING_ID = 987654


@dataclass
class Owned:
    """One of each resource, created by tenant A."""

    group_id: int
    probe_id: int
    user_id: int
    token_id: int
    task_id: str
    channel_id: int
    rule_id: int
    alert_id: int
    window_id: int
    silence_id: int
    host_id: int
    ansible_group_id: int
    inventory_id: int
    credential_id: int
    playbook_id: int
    template_id: int
    execution_id: int
    page_id: int
    incident_id: int
    slug: str
    version: int = 1


def _populate(owner: Caller) -> Owned:
    group = owner.post("/api/v1/probe-groups", json={"name": "core"}).json
    probe = owner.post("/api/v1/probes", json={"name": "web", "protocol": "tcp", "target": "127.0.0.1:9",
                                               "group_id": group["id"], "interval_seconds": 60}).json
    channel = owner.post("/api/v1/notification-channels", json={
        "name": "hook", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}}).json
    rule = owner.post("/api/v1/alert-rules", json={"name": "web down", "kind": "down", "probe_id": probe["id"],
                                                   "threshold": 1, "channel_ids": [channel["id"]]}).json
    # A stored (failed) result, so results, stats and the alert it opens have something to leak.
    probe_runs.execute_runs(owner.tenant_id or 0, probe_runs.run_requests([probe["id"]], "manual", "t1"), "manual")
    result_id = db.session.scalar(select(ProbeResult.id).where(ProbeResult.probe_id == probe["id"]))
    (alert_id,) = alert_evaluation.evaluate([(probe["id"], result_id)]).fired
    user = owner.post("/api/v1/users", json={"username": f"member-{uuid.uuid4().hex[:6]}",
                                             "password": PASSWORD, "role": "viewer"}).json
    token = owner.post("/api/v1/tokens", json={"name": "ci"}).json
    task = owner.post(f"/api/v1/probes/{probe['id']}/run").json
    window = owner.post("/api/v1/maintenance-windows", json={
        "name": "upgrade", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T02:00:00Z",
        "probe_ids": [probe["id"]], "group_ids": [group["id"]]}).json
    silence = owner.post("/api/v1/silences", json={
        "comment": "upgrade", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T02:00:00Z",
        "probe_ids": [probe["id"]], "group_ids": [group["id"]], "rule_ids": [rule["id"]]}).json
    ansible = _populate_ansible(owner, probe["id"])
    # A private status page: its public view and badges are "not found" for everyone.
    page = owner.post("/api/v1/status-pages", json={"slug": f"page-{uuid.uuid4().hex[:8]}", "title": "Status",
                                                    "probe_ids": [probe["id"]], "group_ids": [group["id"]]}).json
    incident = owner.post(f"/api/v1/status-pages/{page['id']}/incidents", json={"title": "slow"}).json
    return Owned(group["id"], probe["id"], user["id"], token["id"], task["task_id"], channel["id"], rule["id"],
                 alert_id, window["id"], silence["id"], **ansible, page_id=page["id"], incident_id=incident["id"],
                 slug=page["slug"])


ANSIBLE = "/api/v1/ansible"
PLAYBOOK = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n"


def _populate_ansible(owner: Caller, probe_id: int) -> dict[str, int]:
    host = owner.post(f"{ANSIBLE}/hosts", json={"name": "web1", "probe_ids": [probe_id]}).json
    group = owner.post(f"{ANSIBLE}/groups", json={"name": "web", "host_ids": [host["id"]]}).json
    inventory = owner.post(f"{ANSIBLE}/inventories", json={"name": "prod", "group_ids": [group["id"]]}).json
    credential = owner.post(f"{ANSIBLE}/credentials", json={"name": "ssh", "kind": "ssh_password",
                                                            "password": "s3cret"}).json
    playbook = owner.post(f"{ANSIBLE}/playbooks", json={"name": "ping", "content": PLAYBOOK}).json
    template = owner.post(f"{ANSIBLE}/templates", json={
        "name": "ping", "playbook_id": playbook["id"], "inventory_id": inventory["id"],
        "credential_ids": [credential["id"]]}).json
    # Published to the ansible queue, which no worker consumes here: it stays pending.
    execution = owner.post(f"{ANSIBLE}/templates/{template['id']}/executions").json
    return {"host_id": host["id"], "ansible_group_id": group["id"], "inventory_id": inventory["id"],
            "credential_id": credential["id"], "playbook_id": playbook["id"], "template_id": template["id"],
            "execution_id": execution["id"]}


# Every operation on a tenant's resource by id: (method, path template, JSON body).
BY_ID = [
    ("GET", "/api/v1/probe-groups/{group_id}", None),
    ("PATCH", "/api/v1/probe-groups/{group_id}", {"description": "mine now"}),
    ("DELETE", "/api/v1/probe-groups/{group_id}", None),
    ("GET", "/api/v1/probes/{probe_id}", None),
    ("PATCH", "/api/v1/probes/{probe_id}", {"enabled": False}),
    ("DELETE", "/api/v1/probes/{probe_id}", None),
    ("POST", "/api/v1/probes/{probe_id}/run", None),
    ("GET", "/api/v1/probes/{probe_id}/results", None),
    ("GET", "/api/v1/probes/{probe_id}/stats", None),
    ("GET", "/api/v1/probes/{probe_id}/chart", None),
    ("GET", "/api/v1/probes/{probe_id}/uptime/daily", None),
    ("GET", "/api/v1/users/{user_id}", None),
    ("PATCH", "/api/v1/users/{user_id}", {"role": "admin"}),
    ("DELETE", "/api/v1/users/{user_id}", None),
    ("DELETE", "/api/v1/tokens/{token_id}", None),
    ("GET", "/api/v1/tasks/{task_id}", None),
    ("POST", "/api/v1/tasks/{task_id}/revoke", None),
    ("GET", "/api/v1/notification-channels/{channel_id}", None),
    ("PATCH", "/api/v1/notification-channels/{channel_id}", {"enabled": False}),
    ("DELETE", "/api/v1/notification-channels/{channel_id}", None),
    ("POST", "/api/v1/notification-channels/{channel_id}/test", None),
    ("GET", "/api/v1/alert-rules/{rule_id}", None),
    ("PATCH", "/api/v1/alert-rules/{rule_id}", {"enabled": False}),
    ("DELETE", "/api/v1/alert-rules/{rule_id}", None),
    ("GET", "/api/v1/alerts/{alert_id}", None),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge", {"note": "mine"}),
    ("POST", "/api/v1/alerts/{alert_id}/resolve", {"note": "mine"}),
    ("GET", "/api/v1/alerts/{alert_id}/notifications", None),
    ("GET", "/api/v1/maintenance-windows/{window_id}", None),
    ("PATCH", "/api/v1/maintenance-windows/{window_id}", {"comment": "mine now"}),
    ("DELETE", "/api/v1/maintenance-windows/{window_id}", None),
    ("GET", "/api/v1/silences/{silence_id}", None),
    ("PATCH", "/api/v1/silences/{silence_id}", {"comment": "mine now"}),
    ("DELETE", "/api/v1/silences/{silence_id}", None),
    ("POST", "/api/v1/silences/{silence_id}/expire", None),
    ("GET", "/api/v1/ansible/hosts/{host_id}", None),
    ("PATCH", "/api/v1/ansible/hosts/{host_id}", {"description": "mine now"}),
    ("DELETE", "/api/v1/ansible/hosts/{host_id}", None),
    ("GET", "/api/v1/ansible/groups/{ansible_group_id}", None),
    ("PATCH", "/api/v1/ansible/groups/{ansible_group_id}", {"description": "mine now"}),
    ("DELETE", "/api/v1/ansible/groups/{ansible_group_id}", None),
    ("GET", "/api/v1/ansible/inventories/{inventory_id}", None),
    ("GET", "/api/v1/ansible/inventories/{inventory_id}/rendered", None),
    ("PATCH", "/api/v1/ansible/inventories/{inventory_id}", {"description": "mine now"}),
    ("DELETE", "/api/v1/ansible/inventories/{inventory_id}", None),
    ("GET", "/api/v1/ansible/credentials/{credential_id}", None),
    ("PATCH", "/api/v1/ansible/credentials/{credential_id}", {"description": "mine now"}),
    ("DELETE", "/api/v1/ansible/credentials/{credential_id}", None),
    ("GET", "/api/v1/ansible/playbooks/{playbook_id}", None),
    ("PATCH", "/api/v1/ansible/playbooks/{playbook_id}", {"description": "mine now"}),
    ("DELETE", "/api/v1/ansible/playbooks/{playbook_id}", None),
    ("GET", "/api/v1/ansible/playbooks/{playbook_id}/versions", None),
    ("GET", "/api/v1/ansible/playbooks/{playbook_id}/versions/{version}", None),
    ("GET", "/api/v1/ansible/templates/{template_id}", None),
    ("PATCH", "/api/v1/ansible/templates/{template_id}", {"enabled": False}),
    ("DELETE", "/api/v1/ansible/templates/{template_id}", None),
    ("POST", "/api/v1/ansible/templates/{template_id}/executions", None),
    ("GET", "/api/v1/ansible/executions/{execution_id}", None),
    ("GET", "/api/v1/ansible/executions/{execution_id}/events", None),
    ("GET", "/api/v1/ansible/executions/{execution_id}/stream", None),
    ("POST", "/api/v1/ansible/executions/{execution_id}/cancel", None),
    ("GET", "/api/v1/status-pages/{page_id}", None),
    ("PATCH", "/api/v1/status-pages/{page_id}", {"title": "mine now"}),
    ("DELETE", "/api/v1/status-pages/{page_id}", None),
    ("GET", "/api/v1/status-pages/{page_id}/incidents", None),
    ("POST", "/api/v1/status-pages/{page_id}/incidents", {"title": "mine now"}),
    ("GET", "/api/v1/status-pages/{page_id}/incidents/{incident_id}", None),
    ("PATCH", "/api/v1/status-pages/{page_id}/incidents/{incident_id}", {"title": "mine now"}),
    ("DELETE", "/api/v1/status-pages/{page_id}/incidents/{incident_id}", None),
    ("GET", "/api/v1/public/status/{slug}", None),
    ("GET", "/api/v1/public/status/{slug}/badges/{probe_id}/status.svg", None),
    ("GET", "/api/v1/public/status/{slug}/badges/{probe_id}/uptime.svg", None),
    ("GET", "/api/v1/public/status/{slug}/badges/{probe_id}/response-time.svg", None),
]
# Operations by id that are not tenant resources: the platform administrator's.
PLATFORM_BY_ID = {"/api/v1/tenants/{tenant_id}", "/api/v1/ops/queues/{queue}/purge"}


def _missing() -> dict[str, object]:
    return {"group_id": MISSING_ID, "probe_id": MISSING_ID, "user_id": MISSING_ID, "token_id": MISSING_ID,
            "task_id": str(uuid.uuid4()), "channel_id": MISSING_ID, "rule_id": MISSING_ID, "alert_id": MISSING_ID,
            "window_id": MISSING_ID, "silence_id": MISSING_ID, "host_id": MISSING_ID, "ansible_group_id": MISSING_ID,
            "inventory_id": MISSING_ID, "credential_id": MISSING_ID, "playbook_id": MISSING_ID,
            "template_id": MISSING_ID, "execution_id": MISSING_ID, "version": MISSING_ID, "page_id": MISSING_ID,
            "incident_id": MISSING_ID, "slug": "no-such-page"}


def _call(caller: Caller, method: str, template: str, ids: dict[str, object], body: object) -> object:
    kwargs = {"json": body} if body is not None else {}
    return caller.request(method, template.format(**ids), **kwargs)


@pytest.fixture
def two_tenants(api: Api) -> tuple[Caller, Caller, Owned]:
    owner = api.as_role(make_tenant().id, "admin")
    intruder = api.as_role(make_tenant().id, "admin")
    return owner, intruder, _populate(owner)


@pytest.mark.parametrize("method, template, body", BY_ID, ids=[f"{m} {t}" for m, t, _ in BY_ID])
def test_another_tenants_id_answers_like_a_missing_one_and_changes_nothing(
    api: Api, two_tenants: tuple[Caller, Caller, Owned], method: str, template: str, body: object
) -> None:
    owner, intruder, owned = two_tenants
    missing_ids = _missing()
    foreign = _call(intruder, method, template, vars(owned), body)
    missing = _call(intruder, method, template, missing_ids, body)
    assert_error(foreign, 404, "not_found")
    assert_error(missing, 404, "not_found")
    # Same message but for the id itself: nothing tells "exists elsewhere" from "does not exist".
    ids = {str(value) for value in (*vars(owned).values(), *missing_ids.values())}

    def without_ids(message: str) -> str:
        return " ".join("<id>" if word.strip("'.,") in ids else word for word in message.split())

    assert without_ids(foreign.json["message"]) == without_ids(missing.json["message"])
    # The owner still sees everything as it was.
    assert owner.get(f"/api/v1/probe-groups/{owned.group_id}").json["description"] == ""
    probe = owner.get(f"/api/v1/probes/{owned.probe_id}").json
    assert probe["enabled"] is True and probe["group_id"] == owned.group_id
    assert owner.get(f"/api/v1/users/{owned.user_id}").json["role"] == "viewer"
    assert [t["revoked_at"] for t in owner.get("/api/v1/tokens").json["items"]] == [None]
    assert owner.get(f"/api/v1/tasks/{owned.task_id}").json["state"] != "REVOKED"
    channel = owner.get(f"/api/v1/notification-channels/{owned.channel_id}").json
    assert channel["enabled"] is True and channel["last_success_at"] is None and channel["last_error"] is None
    assert owner.get(f"/api/v1/alert-rules/{owned.rule_id}").json["enabled"] is True
    alert = owner.get(f"/api/v1/alerts/{owned.alert_id}").json
    assert alert["status"] == "firing" and [e["to_status"] for e in alert["history"]] == ["firing"]
    window = owner.get(f"/api/v1/maintenance-windows/{owned.window_id}").json
    assert window["comment"] == "" and window["probe_ids"] == [owned.probe_id]
    silence = owner.get(f"/api/v1/silences/{owned.silence_id}").json
    assert silence["comment"] == "upgrade" and silence["state"] == "pending"
    for path in (f"hosts/{owned.host_id}", f"groups/{owned.ansible_group_id}", f"inventories/{owned.inventory_id}",
                 f"credentials/{owned.credential_id}", f"playbooks/{owned.playbook_id}"):
        assert owner.get(f"{ANSIBLE}/{path}").json["description"] == ""
    assert owner.get(f"{ANSIBLE}/templates/{owned.template_id}").json["enabled"] is True
    execution = owner.get(f"{ANSIBLE}/executions/{owned.execution_id}").json
    assert execution["status"] == "pending" and execution["cancel_requested_at"] is None
    assert len(owner.get(f"{ANSIBLE}/executions").json["items"]) == 1
    page = owner.get(f"/api/v1/status-pages/{owned.page_id}").json
    assert page["title"] == "Status" and page["probe_ids"] == [owned.probe_id] and page["public"] is False
    incidents = owner.get(f"/api/v1/status-pages/{owned.page_id}/incidents").json["items"]
    assert [(item["id"], item["title"]) for item in incidents] == [(owned.incident_id, "slow")]


def test_every_operation_on_an_id_is_covered_above(app: Flask) -> None:
    """A new resource must join the isolation test: compare with the OpenAPI document."""
    covered = {(method, template) for method, template, _ in BY_ID}
    documented = {
        (method.upper(), path)
        for path, item in app.api_doc["paths"].items()
        for method in item
        if "{" in path and path not in PLATFORM_BY_ID
    }
    assert documented == covered


def test_lists_show_only_the_callers_tenant(api: Api, two_tenants: tuple[Caller, Caller, Owned]) -> None:
    owner, intruder, owned = two_tenants
    for path in ("/api/v1/probes", "/api/v1/probe-groups", "/api/v1/tokens", "/api/v1/notification-channels",
                 "/api/v1/alert-rules", "/api/v1/alerts", "/api/v1/maintenance-windows", "/api/v1/silences",
                 "/api/v1/status-pages",
                 *(f"{ANSIBLE}/{kind}" for kind in ("hosts", "groups", "inventories", "credentials", "playbooks",
                                                    "templates", "executions"))):
        assert len(owner.get(path).json["items"]) == 1
        assert intruder.get(path).json["items"] == []
    assert owned.user_id not in [u["id"] for u in intruder.get("/api/v1/users").json["items"]]
    assert [tile["id"] for tile in owner.get("/api/v1/console/overview").json["probes"]] == [owned.probe_id]
    assert intruder.get("/api/v1/console/overview").json["probes"] == []
    status = intruder.get(f"/api/v1/probes/status?ids={owned.probe_id}")
    assert status.status_code == 200 and status.json["items"] == []
    assert owner.get(f"/api/v1/probes/status?ids={owned.probe_id}").json["items"][0]["probe_id"] == owned.probe_id


def test_the_alert_report_counts_only_the_callers_tenant(api: Api, two_tenants: tuple[Caller, Caller, Owned]) -> None:
    owner, intruder, owned = two_tenants
    mine = owner.get("/api/v1/reports/alerts").json
    assert mine["total"]["alerts"] == 1 and [p["probe_id"] for p in mine["probes"]] == [owned.probe_id]
    theirs = intruder.get("/api/v1/reports/alerts").json
    assert theirs["total"]["alerts"] == 0 and theirs["total"]["results"] == 0 and theirs["probes"] == []
    assert_error(intruder.get(f"/api/v1/reports/alerts?probe_id={owned.probe_id}"), 404, "not_found")


def test_a_batch_run_with_another_tenants_probe_is_refused_whole(
    api: Api, two_tenants: tuple[Caller, Caller, Owned]
) -> None:
    _, intruder, owned = two_tenants
    mine = intruder.post("/api/v1/probes", json={"name": "x", "protocol": "tcp", "target": "127.0.0.1:9"}).json
    response = intruder.post("/api/v1/probes/run", json={"probe_ids": [mine["id"], owned.probe_id]})
    assert_error(response, 404, "not_found")


def test_a_probe_cannot_join_another_tenants_group(api: Api, two_tenants: tuple[Caller, Caller, Owned]) -> None:
    _, intruder, owned = two_tenants
    response = intruder.post("/api/v1/probes", json={"name": "x", "protocol": "tcp", "target": "127.0.0.1:9",
                                                     "group_id": owned.group_id})
    assert_error(response, 404, "not_found")
    assert intruder.get("/api/v1/probes").json["meta"]["total"] == 0


def test_a_probe_cannot_depend_on_another_tenants_probe(api: Api, two_tenants: tuple[Caller, Caller, Owned]) -> None:
    owner, intruder, owned = two_tenants
    body = {"name": "x", "protocol": "tcp", "target": "127.0.0.1:9", "depends_on": [owned.probe_id]}
    assert_error(intruder.post("/api/v1/probes", json=body), 404, "not_found")
    assert intruder.get("/api/v1/probes").json["meta"]["total"] == 0
    mine = intruder.post("/api/v1/probes", json={**body, "depends_on": []}).json
    refused = intruder.patch(f"/api/v1/probes/{mine['id']}", json={"depends_on": [owned.probe_id]})
    assert_error(refused, 404, "not_found")
    assert intruder.get(f"/api/v1/probes/{mine['id']}").json["depends_on"] == []
    assert owner.get(f"/api/v1/probes/{owned.probe_id}").json["depends_on"] == []


def test_ids_of_another_tenant_inside_an_ansible_body_answer_like_missing_ones(
    api: Api, two_tenants: tuple[Caller, Caller, Owned]
) -> None:
    _, intruder, owned = two_tenants
    mine = _populate_ansible(intruder, intruder.post("/api/v1/probes", json={
        "name": "x", "protocol": "tcp", "target": "127.0.0.1:9"}).json["id"])
    template = {"name": "t", "playbook_id": mine["playbook_id"], "inventory_id": mine["inventory_id"]}
    run = {"playbook_id": mine["playbook_id"], "inventory_id": mine["inventory_id"]}
    cases = [  # (path, body, the field that names the other tenant's id, that id)
        ("hosts", {"name": "h"}, "probe_ids", [owned.probe_id]),
        ("hosts", {"name": "h"}, "group_ids", [owned.ansible_group_id]),
        ("groups", {"name": "g"}, "host_ids", [owned.host_id]),
        ("groups", {"name": "g"}, "child_ids", [owned.ansible_group_id]),
        ("inventories", {"name": "i"}, "group_ids", [owned.ansible_group_id]),
        ("inventories", {"name": "i"}, "host_ids", [owned.host_id]),
        ("templates", template, "playbook_id", owned.playbook_id),
        ("templates", template, "inventory_id", owned.inventory_id),
        ("templates", template, "credential_ids", [owned.credential_id]),
        ("executions", run, "playbook_id", owned.playbook_id),
        ("executions", run, "inventory_id", owned.inventory_id),
        ("executions", run, "credential_ids", [owned.credential_id]),
    ]
    for path, body, field, foreign_id in cases:
        missing_id = [MISSING_ID] if isinstance(foreign_id, list) else MISSING_ID
        foreign = intruder.post(f"{ANSIBLE}/{path}", json={**body, field: foreign_id})
        missing = intruder.post(f"{ANSIBLE}/{path}", json={**body, field: missing_id})
        assert_error(foreign, 404, "not_found")
        assert_error(missing, 404, "not_found")
        assert foreign.json["message"].replace(str(getattr(owned, _OWNED[field])), "<id>") == \
            missing.json["message"].replace(str(MISSING_ID), "<id>"), (path, field)
    changed = intruder.patch(f"{ANSIBLE}/groups/{mine['ansible_group_id']}",
                             json={"child_ids": [owned.ansible_group_id]})
    assert_error(changed, 404, "not_found")
    assert intruder.get(f"{ANSIBLE}/groups/{mine['ansible_group_id']}").json["child_ids"] == []
    for kind in ("hosts", "groups", "inventories", "templates"):
        assert len(intruder.get(f"{ANSIBLE}/{kind}").json["items"]) == 1
    assert len(intruder.get(f"{ANSIBLE}/executions").json["items"]) == 1  # its own, from _populate_ansible


_OWNED = {"probe_ids": "probe_id", "group_ids": "ansible_group_id", "host_ids": "host_id",
          "child_ids": "ansible_group_id", "playbook_id": "playbook_id", "inventory_id": "inventory_id",
          "credential_ids": "credential_id"}


def test_an_api_token_acts_only_in_its_tenant(api: Api, two_tenants: tuple[Caller, Caller, Owned]) -> None:
    owner, intruder, owned = two_tenants
    secret = intruder.post("/api/v1/tokens", json={"name": "script"}).json["token"]
    script = Caller(api.client, secret)
    assert_error(script.get(f"/api/v1/probes/{owned.probe_id}"), 404)
    assert_error(script.get(f"/api/v1/tasks/{owned.task_id}"), 404)


def test_metrics_show_only_the_callers_tenant(api: Api, two_tenants: tuple[Caller, Caller, Owned]) -> None:
    owner, intruder, owned = two_tenants
    assert f'probe_id="{owned.probe_id}"' in owner.get("/metrics").get_data(as_text=True)
    for caller in (intruder, Caller(api.client, intruder.post("/api/v1/tokens", json={"name": "prom"}).json["token"])):
        body = caller.get("/metrics").get_data(as_text=True)
        assert "probe_success" in body and f'probe_id="{owned.probe_id}"' not in body
