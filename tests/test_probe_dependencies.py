"""Probe dependencies as a user configures them: the service, and the ``depends_on`` field of the
probe API, on SQLite and PostgreSQL (the ``app`` and ``api`` fixtures run each test on both)."""

from __future__ import annotations

import threading
import uuid
from typing import Any, Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import event, func, insert, select, text

from app.extensions import db
from app.models import Probe, ProbeDependency
from app.services import probe_dependencies, probes
from app.services.errors import InvalidInputError, NotFoundError
from app.services.probe_dependencies import children_of, parents_of, set_parents
from tests.api import Api, Caller, assert_error
from tests.conftest import make_probe, make_tenant, wait_for

pytestmark = pytest.mark.timeout(120)

API = "/api/v1"
UNREACHABLE = "http://127.0.0.1:9/"  # only validated, never run


def named(tenant_id: int, *names: str) -> list[int]:
    """New probes of the tenant with these names; their ids in the same order."""
    return [make_probe(tenant_id, UNREACHABLE, name=name).id for name in names]


def edges() -> int:
    """Dependency rows stored (read fresh)."""
    db.session.commit()
    return db.session.scalar(select(func.count()).select_from(ProbeDependency)) or 0


def refused_cycle(tenant_id: int, probe_id: int, parent_ids: list[int]) -> str:
    """``set_parents`` refuses with an error on ``depends_on``; its message."""
    with pytest.raises(InvalidInputError) as refused:
        set_parents(tenant_id, probe_id, parent_ids)
    assert refused.value.field == "depends_on"
    return str(refused.value)


# --- the service -----------------------------------------------------------------------------

class TestSetParents:
    def test_set_replace_and_clear(self, app: Flask) -> None:
        tenant = make_tenant()
        db_id, net_id, app_id = named(tenant.id, "db", "net", "app")

        assert set_parents(tenant.id, app_id, [net_id, db_id]) == [db_id, net_id]
        assert parents_of([app_id]) == {app_id: [db_id, net_id]}

        assert set_parents(tenant.id, app_id, [net_id]) == [net_id]
        assert parents_of([app_id]) == {app_id: [net_id]}
        assert children_of([db_id, net_id]) == {db_id: [], net_id: [app_id]}

        assert set_parents(tenant.id, app_id, []) == []
        assert parents_of([app_id]) == {app_id: []} and edges() == 0

    def test_a_probe_cannot_depend_on_itself(self, app: Flask) -> None:
        tenant = make_tenant()
        (web_id,) = named(tenant.id, "web")

        assert "itself" in refused_cycle(tenant.id, web_id, [web_id])
        assert edges() == 0

    def test_a_direct_cycle_is_refused_by_name_and_nothing_changes(self, app: Flask) -> None:
        tenant = make_tenant()
        db_id, app_id, cache_id = named(tenant.id, "db", "app", "cache")
        set_parents(tenant.id, db_id, [app_id])
        set_parents(tenant.id, app_id, [cache_id])

        message = refused_cycle(tenant.id, app_id, [db_id])

        assert message == "depends_on: would make a cycle: app → db → app"
        assert parents_of([db_id, app_id]) == {db_id: [app_id], app_id: [cache_id]}  # the old parents stay

    def test_an_indirect_cycle_is_refused_with_its_whole_path(self, app: Flask) -> None:
        tenant = make_tenant()
        a, b, c, d = named(tenant.id, "a", "b", "c", "d")
        set_parents(tenant.id, a, [b])
        set_parents(tenant.id, b, [c])

        message = refused_cycle(tenant.id, c, [d, a])

        assert message == "depends_on: would make a cycle: c → a → b → c"
        assert parents_of([a, b, c]) == {a: [b], b: [c], c: []}
        set_parents(tenant.id, c, [d])  # without the probe that closed it, the rest is taken
        assert parents_of([c]) == {c: [d]}

    def test_a_shared_parent_is_not_a_cycle(self, app: Flask) -> None:
        tenant = make_tenant()
        net, db_, app_ = named(tenant.id, "net", "db", "app")
        set_parents(tenant.id, db_, [net])

        assert set_parents(tenant.id, app_, [db_, net]) == [net, db_]  # a diamond, not a loop

    def test_another_tenants_or_a_missing_probe_is_not_found_and_nothing_changes(self, app: Flask) -> None:
        tenant, stranger = make_tenant(), make_tenant()
        mine, parent = named(tenant.id, "mine", "parent")
        (theirs,) = named(stranger.id, "theirs")
        set_parents(tenant.id, mine, [parent])

        for foreign in (theirs, 987654):
            with pytest.raises(NotFoundError, match=f"^probe {foreign} not found$"):
                set_parents(tenant.id, mine, [parent, foreign])
        with pytest.raises(NotFoundError, match=f"^probe {theirs} not found$"):
            set_parents(tenant.id, theirs, [])  # nor can another tenant's probe be given parents
        assert parents_of([mine, theirs]) == {mine: [parent], theirs: []}

    def test_a_parent_twice_or_too_many_parents_are_refused(self, app: Flask) -> None:
        tenant = make_tenant()
        child, *parents = named(tenant.id, *(f"p{n}" for n in range(22)))

        assert refused_cycle(tenant.id, child, [parents[0], parents[1], parents[0]]) == (
            f"depends_on: lists probe {parents[0]} twice")
        assert refused_cycle(tenant.id, child, parents) == "depends_on: at most 20 parents"
        assert set_parents(tenant.id, child, parents[:20]) == sorted(parents[:20])

    def test_parents_and_children_of_a_batch(self, app: Flask) -> None:
        tenant = make_tenant()
        net, db_, cache, app_, lone = named(tenant.id, "net", "db", "cache", "app", "lone")
        set_parents(tenant.id, db_, [net])
        set_parents(tenant.id, cache, [net])
        set_parents(tenant.id, app_, [db_, cache])

        assert parents_of([app_, db_, cache, net, lone, app_]) == {
            app_: [db_, cache], db_: [net], cache: [net], net: [], lone: []}
        assert children_of([net, db_, app_, lone]) == {net: [db_, cache], db_: [app_], app_: [], lone: []}
        assert parents_of([]) == {} and children_of([]) == {}


class TestDeletingProbes:
    def test_deleting_a_parent_removes_its_dependencies(self, app: Flask) -> None:
        tenant = make_tenant()
        db_, net, app_ = named(tenant.id, "db", "net", "app")
        set_parents(tenant.id, app_, [db_, net])

        probes.delete_probe(tenant.id, db_)

        assert parents_of([app_]) == {app_: [net]} and edges() == 1

    def test_deleting_a_child_removes_its_dependencies(self, app: Flask) -> None:
        tenant = make_tenant()
        db_, app_ = named(tenant.id, "db", "app")
        set_parents(tenant.id, app_, [db_])

        probes.delete_probe(tenant.id, app_)

        assert children_of([db_]) == {db_: []} and edges() == 0


@pytest.fixture
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL statements the session's engine runs from now on."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def chain(tenant_id: int, length: int) -> list[int]:
    """``length`` probes, each depending on the next, written in bulk; their ids in chain order."""
    ids = list(db.session.scalars(insert(Probe).returning(Probe.id), [
        {"tenant_id": tenant_id, "name": f"link-{n:05d}", "protocol": "tcp", "target": "127.0.0.1:9",
         "spec": {}, "conditions": {}} for n in range(length)]))
    db.session.execute(insert(ProbeDependency), [
        {"probe_id": child, "parent_id": parent, "tenant_id": tenant_id} for child, parent in zip(ids, ids[1:])])
    db.session.commit()
    return ids


def test_a_cycle_through_thousands_of_probes_is_found_in_a_few_statements(
    app: Flask, statements: list[str]
) -> None:
    tenant = make_tenant()
    links = chain(tenant.id, 3000)
    statements.clear()

    message = refused_cycle(tenant.id, links[-1], [links[0]])

    # The whole path walked, from one read of the tenant's edges: not one query per hop.
    assert message == ("depends_on: would make a cycle: link-02999 → link-00000 → link-00001 → link-00002 → "
                       "link-00003 → … 2991 more … → link-02995 → link-02996 → link-02997 → link-02998 → link-02999")
    assert len(statements) < 12, statements
    assert parents_of([links[-1]]) == {links[-1]: []}


def test_two_changes_that_close_a_cycle_together_cannot_both_pass(pg_app: Flask) -> None:
    """The second change waits for the first (a per-tenant lock), then sees its edge and is refused."""
    tenant = make_tenant()
    a, b = named(tenant.id, "a", "b")
    probe_dependencies.replace_parents(tenant.id, a, [b])  # a → b, not committed yet
    outcome: list[str] = []

    def the_other_change() -> None:
        with pg_app.app_context():
            try:
                set_parents(tenant.id, b, [a])
                outcome.append("accepted")
            except InvalidInputError as exc:
                outcome.append(str(exc))
            finally:
                db.session.remove()

    other = threading.Thread(target=the_other_change)
    other.start()
    wait_for(lambda: db.session.scalar(text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")), what="the second change to wait")
    db.session.commit()
    other.join(30)

    assert outcome == ["depends_on: would make a cycle: b → a → b"]
    assert parents_of([a, b]) == {a: [b], b: []}


# --- the API ---------------------------------------------------------------------------------

def operator(api: Api) -> tuple[int, Caller]:
    tenant = make_tenant()
    return tenant.id, api.as_role(tenant.id, "operator")


def create(caller: Caller, name: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": name or f"probe-{uuid.uuid4().hex[:8]}", "protocol": "http", "target": UNREACHABLE, **fields}
    response = caller.post(f"{API}/probes", json=body)
    assert response.status_code == 201, response.json
    return response.json


def shown(caller: Caller, probe_id: int) -> dict[str, Any]:
    response = caller.get(f"{API}/probes/{probe_id}")
    assert response.status_code == 200, response.json
    return response.json


def listed_parents(caller: Caller) -> dict[int, list[int]]:
    response = caller.get(f"{API}/probes", query_string={"per_page": 500})
    assert response.status_code == 200, response.json
    return {item["id"]: item["depends_on"] for item in response.json["items"]}


class TestApi:
    def test_create_patch_and_clear_depends_on(self, api: Api) -> None:
        _, op = operator(api)
        db_, net = create(op, "db")["id"], create(op, "net")["id"]

        child = create(op, "app", depends_on=[net, db_])

        assert child["depends_on"] == [db_, net]
        assert shown(op, child["id"])["depends_on"] == [db_, net]
        assert listed_parents(op) == {db_: [], net: [], child["id"]: [db_, net]}

        renamed = op.patch(f"{API}/probes/{child['id']}", json={"name": "app-1"})
        assert renamed.status_code == 200 and renamed.json["depends_on"] == [db_, net]  # omitted: kept

        replaced = op.patch(f"{API}/probes/{child['id']}", json={"depends_on": [net]})
        assert replaced.status_code == 200 and replaced.json["depends_on"] == [net]
        assert shown(op, child["id"])["depends_on"] == [net]

        cleared = op.patch(f"{API}/probes/{child['id']}", json={"depends_on": []})
        assert cleared.status_code == 200 and cleared.json["depends_on"] == []
        assert listed_parents(op)[child["id"]] == []

    def test_self_and_cycles_are_422_on_depends_on_and_change_nothing(self, api: Api) -> None:
        _, op = operator(api)
        a = create(op, "a")["id"]
        b = create(op, "b", depends_on=[a])["id"]
        c = create(op, "c", depends_on=[b])["id"]

        itself = op.patch(f"{API}/probes/{a}", json={"depends_on": [a]})
        assert_error(itself, 422, "invalid_input", "depends_on")

        direct = op.patch(f"{API}/probes/{a}", json={"depends_on": [b], "name": "renamed"})
        assert_error(direct, 422, "invalid_input", "depends_on")
        assert direct.json["message"] == "depends_on: would make a cycle: a → b → a"

        indirect = op.patch(f"{API}/probes/{a}", json={"depends_on": [c], "interval_seconds": 300})
        assert_error(indirect, 422, "invalid_input", "depends_on")
        assert indirect.json["details"] == [{"field": "depends_on", "message": "would make a cycle: a → c → b → a"}]

        probe = shown(op, a)  # neither the parents nor the other fields of the refused changes
        assert (probe["name"], probe["interval_seconds"], probe["depends_on"]) == ("a", 60, [])
        assert listed_parents(op) == {a: [], b: [a], c: [b]}

    @pytest.mark.parametrize("depends_on, field", [
        pytest.param(lambda parent: [parent, parent], "depends_on", id="a-parent-twice"),
        pytest.param(lambda parent: list(range(parent, parent + 21)), "depends_on", id="21-parents"),
        pytest.param(lambda parent: [0], "depends_on.0", id="id-zero"),
        pytest.param(lambda parent: None, "depends_on", id="null"),
        pytest.param(lambda parent: "db", "depends_on", id="not-a-list"),
    ])
    def test_malformed_depends_on_is_422_naming_it(self, api: Api, depends_on: Callable[[int], Any],
                                                   field: str) -> None:
        _, op = operator(api)
        parent = create(op)["id"]
        sent = depends_on(parent)
        before = listed_parents(op)

        assert_error(op.post(f"{API}/probes", json={"name": "x", "protocol": "http", "target": UNREACHABLE,
                                                    "depends_on": sent}), 422, "invalid_input", field)
        assert_error(op.patch(f"{API}/probes/{parent}", json={"depends_on": sent}), 422, "invalid_input", field)
        assert listed_parents(op) == before

    def test_another_tenants_probe_as_parent_is_404_like_a_missing_one(self, api: Api) -> None:
        _, op = operator(api)
        _, stranger = operator(api)
        theirs = create(stranger)["id"]
        mine = create(op)["id"]

        for foreign in (theirs, 987654):
            created = op.post(f"{API}/probes", json={"name": "x", "protocol": "http", "target": UNREACHABLE,
                                                     "depends_on": [foreign]})
            assert_error(created, 404, "not_found")
            assert created.json["message"] == f"probe {foreign} not found"
            assert_error(op.patch(f"{API}/probes/{mine}", json={"depends_on": [foreign]}), 404, "not_found")
        assert listed_parents(op) == {mine: []}  # no probe created, none changed
        assert listed_parents(stranger) == {theirs: []}

    def test_deleting_a_parent_drops_it_from_its_childrens_depends_on(self, api: Api) -> None:
        _, op = operator(api)
        db_, net = create(op, "db")["id"], create(op, "net")["id"]
        child = create(op, "app", depends_on=[db_, net])["id"]

        assert op.delete(f"{API}/probes/{db_}").status_code == 204

        assert shown(op, child)["depends_on"] == [net]
        assert edges() == 1


def test_probes_created_with_parents_read_back_as_a_batch(app: Flask) -> None:
    tenant, stranger = make_tenant(), make_tenant()
    parent = make_probe(tenant.id, UNREACHABLE, name="gateway")
    children = [make_probe(tenant.id, UNREACHABLE, name=f"host-{n}", depends_on=[parent.id]) for n in range(3)]
    ids = [child.id for child in children]

    assert parents_of(ids) == {child_id: [parent.id] for child_id in ids}
    assert children_of([parent.id]) == {parent.id: ids}
    with pytest.raises(NotFoundError):  # another tenant's probe cannot be named at creation either
        make_probe(stranger.id, UNREACHABLE, name="sneaky", depends_on=[parent.id])
    assert children_of([parent.id]) == {parent.id: ids}
    assert db.session.scalar(select(func.count()).select_from(Probe).where(Probe.tenant_id == stranger.id)) == 0
