"""Silences: which alerts one matches, when it is open, what is refused, and how the API shows them.

Matching is checked as a function; the rest runs against the real databases (SQLite and
PostgreSQL), with alerts written directly as rows so each test decides exactly which are open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

import pytest
from flask import Flask
from sqlalchemy import event, func, select

from app.extensions import db
from app.models import Alert, Silence, utcnow
from app.services import alert_rules, probe_groups, probes, silences, users
from app.services.errors import ConflictError, InvalidInputError, NotFoundError
from tests.api import PASSWORD, Api, Caller, assert_error
from tests.conftest import make_probe, make_tenant

pytestmark = pytest.mark.timeout(60)

SILENCES = "/api/v1/silences"
ALERTS = "/api/v1/alerts"


@pytest.fixture(autouse=True)
def _no_cached_silences() -> Iterator[None]:
    """Each test's tables start empty and ids start again at 1: no silence read before may linger."""
    silences.forget()
    yield
    silences.forget()


@dataclass
class World:
    """One tenant: groups g1 (probes p1, p2) and g2 (p3), an ungrouped p4, tenant-wide rules r1 and r2."""

    tenant_id: int
    g1: int
    g2: int
    p1: int
    p2: int
    p3: int
    p4: int
    r1: int
    r2: int


def make_world() -> World:
    tenant = make_tenant()
    g1 = probe_groups.create_group(tenant.id, f"g1-{uuid.uuid4().hex[:6]}").id
    g2 = probe_groups.create_group(tenant.id, f"g2-{uuid.uuid4().hex[:6]}").id
    p1, p2 = (make_probe(tenant.id, "127.0.0.1:9", "tcp", group_id=g1).id for _ in range(2))
    p3 = make_probe(tenant.id, "127.0.0.1:9", "tcp", group_id=g2).id
    p4 = make_probe(tenant.id, "127.0.0.1:9", "tcp").id
    r1, r2 = (alert_rules.create_rule(tenant.id, {"name": f"rule-{uuid.uuid4().hex[:6]}", "kind": "down"}).id
              for _ in range(2))
    return World(tenant.id, g1, g2, p1, p2, p3, p4, r1, r2)


def open_alert(world: World, rule_id: int, probe_id: int, status: str = "firing") -> Alert:
    now = utcnow()
    alert = Alert(tenant_id=world.tenant_id, rule_id=rule_id, probe_id=probe_id, status=status, reason="down",
                  since=now, resolved_at=now if status == "resolved" else None)
    db.session.add(alert)
    db.session.commit()
    return alert


def silence(world: World, **fields: Any) -> Silence:
    data = {"comment": "deploying", "ends_at": utcnow() + timedelta(hours=2), **fields}
    return silences.create_silence(world.tenant_id, data, None, "alice")


def loaded(alerts: list[Alert]) -> list[Alert]:
    """The alerts read again, as a page of the API holds them (nothing left to load)."""
    db.session.expire_all()
    return list(db.session.scalars(select(Alert).where(Alert.id.in_([alert.id for alert in alerts]))))


def stored_silences() -> int:
    return db.session.scalar(select(func.count()).select_from(Silence)) or 0


class Statements:
    """Counts the statements the application sends while it is entered."""

    def __init__(self) -> None:
        self.count = 0

    def _seen(self, *args: Any) -> None:
        self.count += 1

    def __enter__(self) -> Statements:
        event.listen(db.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(db.engine, "before_cursor_execute", self._seen)


# --- matching ------------------------------------------------------------------------------------


def _matcher(probe_ids: tuple[int, ...] = (), group_ids: tuple[int, ...] = (), rule_ids: tuple[int, ...] = ()
             ) -> Silence:
    return Silence(probe_ids=list(probe_ids), group_ids=list(group_ids), rule_ids=list(rule_ids))


def test_every_kind_named_must_match_and_any_id_of_a_kind_will_do() -> None:
    probes_and_rule = _matcher(probe_ids=(1, 2), rule_ids=(7,))
    assert silences.matches(probes_and_rule, 1, None, 7)
    assert silences.matches(probes_and_rule, 2, 5, 7)
    assert not silences.matches(probes_and_rule, 3, 5, 7)  # another probe
    assert not silences.matches(probes_and_rule, 1, None, 8)  # another rule

    group = _matcher(group_ids=(5, 6))
    assert silences.matches(group, 10, 5, 1) and silences.matches(group, 11, 6, 2)
    assert not silences.matches(group, 10, 4, 1)
    assert not silences.matches(group, 10, None, 1)  # an ungrouped probe is in none of its groups

    everything = _matcher(probe_ids=(1,), group_ids=(5,), rule_ids=(7,))
    assert silences.matches(everything, 1, 5, 7)
    assert not silences.matches(everything, 1, 6, 7) and not silences.matches(everything, 1, 5, 8)


def test_a_silence_naming_nothing_matches_nothing() -> None:
    assert not silences.matches(_matcher(), 1, 5, 7)


# --- when it is open ------------------------------------------------------------------------------


def test_a_silence_is_pending_then_active_then_expired(app: Flask) -> None:
    world = make_world()
    now = utcnow()
    later = silence(world, probe_ids=[world.p1], starts_at=now + timedelta(hours=1),
                    ends_at=now + timedelta(hours=3))
    running = silence(world, rule_ids=[world.r1], starts_at=now - timedelta(minutes=5))

    assert silences.state_of(later) == "pending" and silences.state_of(running) == "active"
    assert [s.id for s in silences.active([world.tenant_id])] == [running.id]
    in_an_hour = now + timedelta(hours=1, minutes=1)
    assert [s.id for s in silences.active([world.tenant_id], at=in_an_hour)] == [later.id, running.id]
    after_both = now + timedelta(hours=3)
    assert silences.active([world.tenant_id], at=after_both) == []
    assert silences.state_of(later, at=after_both) == "expired"
    far_back = now - timedelta(days=2)  # outside what the cache holds: read directly
    assert silences.active([world.tenant_id], at=far_back) == []
    assert silences.active([make_tenant().id]) == []

    assert [s.id for s in silences.list_silences(world.tenant_id, "pending")] == [later.id]
    assert [s.id for s in silences.list_silences(world.tenant_id, "active")] == [running.id]
    assert [s.id for s in silences.list_silences(world.tenant_id)] == [running.id, later.id]  # newest first
    assert silences.list_silences(world.tenant_id, "expired") == []


def test_expiring_ends_a_silence_now_keeps_it_and_refuses_a_second_time(app: Flask) -> None:
    world = make_world()
    running = silence(world, rule_ids=[world.r1])
    later = silence(world, rule_ids=[world.r2], starts_at=utcnow() + timedelta(hours=1))

    expired = silences.expire_silence(world.tenant_id, running.id)
    assert silences.state_of(expired) == "expired" and expired.ends_at <= utcnow()
    assert silences.active([world.tenant_id]) == []
    with pytest.raises(ConflictError, match=f"silence {running.id} has already expired"):
        silences.expire_silence(world.tenant_id, running.id)
    never = silences.expire_silence(world.tenant_id, later.id)  # a pending one never starts
    assert never.starts_at == never.ends_at and silences.state_of(never) == "expired"
    assert silences.active([world.tenant_id], at=utcnow() + timedelta(hours=1, minutes=1)) == []
    assert {s.id for s in silences.list_silences(world.tenant_id, "expired")} == {running.id, later.id}
    assert silences.list_silences(world.tenant_id, "current") == []
    with pytest.raises(ConflictError, match="has expired; create a new one"):
        silences.update_silence(world.tenant_id, running.id, {"comment": "more"})


def test_the_evaluators_path_reads_once_and_sees_a_change_made_here_at_once(app: Flask) -> None:
    world = make_world()
    first = silence(world, probe_ids=[world.p1]).id
    with Statements() as statements:
        for _ in range(20):
            assert [s.id for s in silences.active([world.tenant_id])] == [first]
    assert statements.count == 1
    second = silence(world, group_ids=[world.g2]).id
    assert [s.id for s in silences.active([world.tenant_id])] == [first, second]
    silences.expire_silence(world.tenant_id, first)
    assert [s.id for s in silences.active([world.tenant_id])] == [second]
    silences.delete_silence(world.tenant_id, second)
    assert silences.active([world.tenant_id]) == []


# --- the alerts a silence covers --------------------------------------------------------------------


def test_covering_gives_each_open_alert_the_silences_that_match_it(app: Flask) -> None:
    world = make_world()
    by_group = silence(world, group_ids=[world.g1])
    by_rule = silence(world, rule_ids=[world.r2])
    both = silence(world, probe_ids=[world.p3, world.p4], rule_ids=[world.r2])
    silence(world, probe_ids=[world.p1], starts_at=utcnow() + timedelta(hours=1))  # pending: covers nothing yet
    p1_r1, p3_r1, p4_r2, p2_r2 = (open_alert(world, world.r1, world.p1), open_alert(world, world.r1, world.p3),
                                  open_alert(world, world.r2, world.p4), open_alert(world, world.r2, world.p2))

    covered = silences.covering(world.tenant_id, [p1_r1, p3_r1, p4_r2, p2_r2])
    assert covered == {p1_r1.id: [by_group.id], p3_r1.id: [], p4_r2.id: [by_rule.id, both.id],
                       p2_r2.id: [by_group.id, by_rule.id]}
    assert silences.covering(world.tenant_id, [p1_r1], fresh=True) == {p1_r1.id: [by_group.id]}
    assert silences.covering(make_tenant().id, [p1_r1]) == {}  # another tenant's alerts are not its to cover

    listed = silences.list_silences(world.tenant_id)
    assert silences.covered_alerts(world.tenant_id, listed) == {
        listed[0].id: [], by_group.id: [p1_r1.id, p2_r2.id], by_rule.id: [p4_r2.id, p2_r2.id],
        both.id: [p4_r2.id]}


def test_covering_a_page_of_alerts_costs_the_same_statements_however_many_alerts(app: Flask) -> None:
    world = make_world()
    silence(world, group_ids=[world.g1, world.g2])
    few = [open_alert(world, world.r1, world.p1)]
    many = few + [open_alert(world, rule, probe) for rule in (world.r1, world.r2)
                  for probe in (world.p2, world.p3, world.p4)] + [open_alert(world, world.r2, world.p1)]
    counts = []
    for alerts in (loaded(few), loaded(many)):
        with Statements() as statements:
            silences.covering(world.tenant_id, alerts, fresh=True)
        counts.append(statements.count)
    assert counts[0] == counts[1] <= 2


def test_a_deleted_probe_or_group_never_widens_a_silence(app: Flask) -> None:
    world = make_world()
    narrow = silence(world, probe_ids=[world.p1], rule_ids=[world.r1])
    grouped = silence(world, group_ids=[world.g2], rule_ids=[world.r2])
    other_probe = open_alert(world, world.r1, world.p2)
    p3_r2 = open_alert(world, world.r2, world.p3)
    assert silences.covering(world.tenant_id, [p3_r2])[p3_r2.id] == [grouped.id]

    probes.delete_probe(world.tenant_id, world.p1)
    probe_groups.delete_group(world.tenant_id, world.g2)
    db.session.expire_all()
    newcomer = open_alert(world, world.r1, make_probe(world.tenant_id, "127.0.0.1:9", "tcp").id)

    assert silences.get_silence(world.tenant_id, narrow.id).probe_ids == [world.p1]
    assert silences.covering(world.tenant_id, [other_probe, newcomer, p3_r2]) == {
        other_probe.id: [], newcomer.id: [], p3_r2.id: []}
    # The ids it held stay as they are; a comment can still be changed, a new missing id is refused.
    changed = silences.update_silence(world.tenant_id, narrow.id, {"comment": "probe gone"})
    assert changed.comment == "probe gone" and changed.probe_ids == [world.p1]
    with pytest.raises(NotFoundError, match=f"probe group {world.g2} not found"):
        silences.update_silence(world.tenant_id, narrow.id, {"group_ids": [world.g2]})


# --- what is refused -------------------------------------------------------------------------------


def _hours(hours: float) -> datetime:
    return utcnow() + timedelta(hours=hours)


@pytest.mark.parametrize(("fields", "field", "message"), [
    (lambda w: {"probe_ids": []}, "probe_ids", "name at least one probe, group or rule"),
    (lambda w: {"ends_at": "2020-01-01T00:00:00Z"}, "ends_at", "must be in the future"),
    (lambda w: {"starts_at": _hours(3), "ends_at": _hours(2)}, "ends_at", "must be after starts_at"),
    (lambda w: {"ends_at": _hours(9000)}, "ends_at", "at most 365 days"),
    (lambda w: {"ends_at": "2030-01-01T00:00:00"}, "ends_at", "timezone"),
    (lambda w: {"ends_at": 1900000000}, "ends_at", "expected an ISO 8601 time"),
    (lambda w: {"ends_at": "1900000000"}, "ends_at", "expected an ISO 8601 time"),
    (lambda w: {"starts_at": "2149-06-01T00:00:00Z", "ends_at": "2150-01-01T00:00:00Z"}, "starts_at",
     "between 2000 and 2100"),
    (lambda w: {"comment": "   "}, "comment", "at least 1 character"),
    (lambda w: {"comment": "x" * 2001}, "comment", "at most 2000 characters"),
    (lambda w: {"probe_ids": [w.p1, w.p1]}, "probe_ids", "lists an id twice"),
    (lambda w: {"rule_ids": list(range(1, 102))}, "rule_ids", "at most 100 items"),
    (lambda w: {"group_ids": [0]}, "group_ids.0", "greater than or equal to 1"),
    (lambda w: {"matchers": {"probe": 1}}, "matchers", "unknown field"),
], ids=["no matcher", "ended", "ends before it starts", "over a year", "no zone", "number", "numeric text",
        "year 2149", "blank comment", "long comment", "twice", "too many", "id 0", "unknown field"])
def test_a_malformed_silence_is_refused_with_its_field_and_nothing_is_written(
        app: Flask, fields: Any, field: str, message: str) -> None:
    world = make_world()
    data = {"comment": "deploying", "ends_at": _hours(1), "probe_ids": [world.p1], **fields(world)}
    with pytest.raises(InvalidInputError) as refused:
        silences.create_silence(world.tenant_id, data)
    assert refused.value.field == field and message in str(refused.value)
    assert stored_silences() == 0


@pytest.mark.parametrize("kind, what", [("probe_ids", "probe"), ("group_ids", "probe group"),
                                        ("rule_ids", "alert rule")])
def test_another_tenants_or_a_missing_id_is_not_found_by_name_and_nothing_is_written(
        app: Flask, kind: str, what: str) -> None:
    mine, theirs = make_world(), make_world()
    foreign = {"probe_ids": theirs.p1, "group_ids": theirs.g1, "rule_ids": theirs.r1}[kind]
    for item_id in (foreign, 987654):
        with pytest.raises(NotFoundError, match=f"^{what} {item_id} not found$"):
            silences.create_silence(mine.tenant_id, {"comment": "x", "ends_at": utcnow() + timedelta(hours=1),
                                                     kind: [item_id]})
    assert stored_silences() == 0
    their_silence = silence(theirs, probe_ids=[theirs.p1]).id
    with pytest.raises(NotFoundError, match=f"^silence {their_silence} not found$"):
        silences.get_silence(mine.tenant_id, their_silence)


def test_a_change_is_validated_with_the_whole_silence_and_a_refused_one_changes_nothing(app: Flask) -> None:
    world = make_world()
    bob = users.create_user(f"bob-{uuid.uuid4().hex[:6]}", PASSWORD)
    db.session.commit()
    now = utcnow()
    created = silences.create_silence(world.tenant_id, {"comment": "db upgrade", "probe_ids": [world.p1],
                                                        "starts_at": now - timedelta(minutes=1),
                                                        "ends_at": now + timedelta(hours=1)}, bob.id, bob.username)
    assert (created.created_by, created.created_by_name) == (bob.id, bob.username)

    changed = silences.update_silence(world.tenant_id, created.id, {
        "ends_at": now + timedelta(hours=4), "probe_ids": [], "group_ids": [world.g1], "rule_ids": [world.r1]})
    assert (changed.probe_ids, changed.group_ids, changed.rule_ids) == ([], [world.g1], [world.r1])
    assert changed.ends_at == now + timedelta(hours=4) and changed.comment == "db upgrade"

    for changes, field in (({"ends_at": now - timedelta(hours=1)}, "ends_at"),
                           ({"group_ids": [], "rule_ids": []}, "probe_ids"),
                           ({"starts_at": now}, "starts_at"),
                           ({"comment": ""}, "comment")):
        with pytest.raises(InvalidInputError) as refused:
            silences.update_silence(world.tenant_id, created.id, changes)
        assert refused.value.field == field
    db.session.expire_all()
    kept = silences.get_silence(world.tenant_id, created.id)
    assert (kept.group_ids, kept.rule_ids, kept.ends_at, kept.comment) == (
        [world.g1], [world.r1], now + timedelta(hours=4), "db upgrade")


# --- the API ---------------------------------------------------------------------------------------


@pytest.fixture
def team(api: Api) -> tuple[World, dict[str, Caller]]:
    world = make_world()
    return world, {role: api.as_role(world.tenant_id, role) for role in ("viewer", "operator")}


def _in(hours: float) -> str:
    return (utcnow() + timedelta(hours=hours)).isoformat()


def test_an_operator_silences_a_viewer_reads_and_the_silence_ends(team: tuple[World, dict[str, Caller]]) -> None:
    world, callers = team
    viewer, operator = callers["viewer"], callers["operator"]
    body = {"comment": "replacing the switch", "ends_at": _in(2), "group_ids": [world.g1]}
    assert_error(viewer.post(SILENCES, json=body), 403, "forbidden")

    created = operator.post(SILENCES, json=body)
    assert created.status_code == 201, created.json
    shown = viewer.get(f"{SILENCES}/{created.json['id']}").json
    assert {k: shown[k] for k in ("comment", "probe_ids", "group_ids", "rule_ids", "state", "created_by",
                                  "created_by_name", "alert_ids")} == {
        "comment": "replacing the switch", "probe_ids": [], "group_ids": [world.g1], "rule_ids": [], "state": "active",
        "created_by": operator.user_id, "created_by_name": operator.username, "alert_ids": []}
    assert datetime.fromisoformat(shown["starts_at"]) <= utcnow() < datetime.fromisoformat(shown["ends_at"])

    path = f"{SILENCES}/{shown['id']}"
    assert_error(viewer.patch(path, json={"comment": "mine"}), 403, "forbidden")
    assert_error(viewer.post(f"{path}/expire"), 403, "forbidden")
    assert_error(viewer.delete(path), 403, "forbidden")
    changed = operator.patch(path, json={"comment": "replacing the core switch", "rule_ids": [world.r1]})
    assert changed.status_code == 200, changed.json
    assert (changed.json["comment"], changed.json["group_ids"], changed.json["rule_ids"]) == (
        "replacing the core switch", [world.g1], [world.r1])

    expired = operator.post(f"{path}/expire")
    assert expired.status_code == 200 and expired.json["state"] == "expired"
    assert_error(operator.post(f"{path}/expire"), 409, "conflict")
    assert_error(operator.patch(path, json={"ends_at": _in(5)}), 409, "conflict")
    assert [s["id"] for s in viewer.get(f"{SILENCES}?state=expired").json["items"]] == [shown["id"]]
    assert viewer.get(f"{SILENCES}?state=current").json["items"] == []
    assert operator.delete(path).status_code == 204
    assert_error(viewer.get(path), 404, "not_found")


def test_the_alerts_a_silence_covers_show_it_until_it_ends(team: tuple[World, dict[str, Caller]]) -> None:
    world, callers = team
    viewer, operator = callers["viewer"], callers["operator"]
    covered = open_alert(world, world.r1, world.p1)
    acknowledged = open_alert(world, world.r1, world.p2, status="acknowledged")
    other_rule = open_alert(world, world.r2, world.p1)
    resolved = open_alert(world, world.r1, world.p3, status="resolved")
    created = operator.post(SILENCES, json={"comment": "known outage", "ends_at": _in(1),
                                            "rule_ids": [world.r1]}).json
    assert created["alert_ids"] == [covered.id, acknowledged.id]

    listed = {a["id"]: a["silenced_by"] for a in viewer.get(ALERTS).json["items"]}
    assert listed == {covered.id: [created["id"]], acknowledged.id: [created["id"]], other_rule.id: [],
                      resolved.id: []}
    detail = viewer.get(f"{ALERTS}/{covered.id}").json
    assert detail["silenced_by"] == [created["id"]]
    assert "suppressed_by" in detail and "flapping" in detail

    operator.post(f"{SILENCES}/{created['id']}/expire")
    assert viewer.get(f"{ALERTS}/{covered.id}").json["silenced_by"] == []
    assert viewer.get(f"{SILENCES}/{created['id']}").json["alert_ids"] == []


def test_a_bad_silence_is_a_422_naming_the_field_and_another_tenants_probe_a_404(
        team: tuple[World, dict[str, Caller]]) -> None:
    world, callers = team
    operator = callers["operator"]
    for body, field in (({"comment": "x", "ends_at": _in(1)}, "probe_ids"),
                        ({"comment": "x", "ends_at": "tomorrow", "probe_ids": [world.p1]}, "ends_at"),
                        ({"comment": "x", "ends_at": _in(-1), "probe_ids": [world.p1]}, "ends_at"),
                        ({"ends_at": _in(1), "probe_ids": [world.p1]}, "comment")):
        assert_error(operator.post(SILENCES, json=body), 422, field=field)
    theirs = make_world()
    refused = operator.post(SILENCES, json={"comment": "x", "ends_at": _in(1), "probe_ids": [theirs.p1]})
    assert_error(refused, 404, "not_found")
    assert refused.json["message"] == f"probe {theirs.p1} not found"
    assert operator.get(SILENCES).json["items"] == []


def test_the_list_pages_newest_first(team: tuple[World, dict[str, Caller]]) -> None:
    world, callers = team
    ids = [callers["operator"].post(SILENCES, json={"comment": f"s{n}", "ends_at": _in(1),
                                                    "probe_ids": [world.p1]}).json["id"] for n in range(3)]
    first = callers["viewer"].get(f"{SILENCES}?limit=2").json
    assert [s["id"] for s in first["items"]] == ids[:0:-1]
    second = callers["viewer"].get(f"{SILENCES}?limit=2&cursor={first['next_cursor']}").json
    assert [s["id"] for s in second["items"]] == [ids[0]] and second["next_cursor"] is None
