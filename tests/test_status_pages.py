"""Status pages: administrators choose what a page shows; once public, anyone reads it and its badges."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest

from app.models import utcnow
from tests.api import Api, Caller, assert_error
from tests.conftest import make_probe, make_tenant
from tests.test_console_api import row, stored

pytestmark = pytest.mark.timeout(120)

API = "/api/v1"
SVG_NS = "{http://www.w3.org/2000/svg}"


def page_body(**fields: Any) -> dict[str, Any]:
    return {"slug": "acme-status", "title": "Acme", "description": "Our services", **fields}


def public(api: Api, slug: str, suffix: str = "", **kwargs: Any) -> Any:
    return api.client.get(f"{API}/public/status/{slug}{suffix}", **kwargs)


def svg_texts(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "image/svg+xml"
    assert "max-age=" in response.headers["Cache-Control"]
    root = ET.fromstring(response.get_data(as_text=True))
    assert root.tag == f"{SVG_NS}svg" and int(root.get("width")) > 0
    return [element.text or "" for element in root.iter(f"{SVG_NS}text")]


def test_admins_manage_pages_and_viewers_read_them(api: Api) -> None:
    tenant = make_tenant()
    admin, operator, viewer = (api.as_role(tenant.id, name) for name in ("admin", "operator", "viewer"))
    probe = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
    group = admin.post(f"{API}/probe-groups", json={"name": "core"}).json

    created = admin.post(f"{API}/status-pages", json=page_body(probe_ids=[probe.id], group_ids=[group["id"]]))
    assert created.status_code == 201, created.json
    page = created.json
    assert (page["slug"], page["public"], page["probe_ids"], page["group_ids"]) == (
        "acme-status", False, [probe.id], [group["id"]])
    assert viewer.get(f"{API}/status-pages").json["items"] == [page]
    assert viewer.get(f"{API}/status-pages/{page['id']}").json == page
    for caller in (operator, viewer):
        assert_error(caller.post(f"{API}/status-pages", json=page_body(slug="other")), 403, "forbidden")
        assert_error(caller.patch(f"{API}/status-pages/{page['id']}", json={"title": "x"}), 403, "forbidden")
        assert_error(caller.delete(f"{API}/status-pages/{page['id']}"), 403, "forbidden")

    changed = admin.patch(f"{API}/status-pages/{page['id']}", json={"title": "Acme Inc", "probe_ids": []})
    assert changed.status_code == 200 and (changed.json["title"], changed.json["probe_ids"]) == ("Acme Inc", [])
    assert changed.json["group_ids"] == [group["id"]] and changed.json["slug"] == "acme-status"

    assert admin.delete(f"{API}/status-pages/{page['id']}").status_code == 204
    assert_error(viewer.get(f"{API}/status-pages/{page['id']}"), 404, "not_found")


def test_bad_input_is_one_error_naming_the_field(api: Api) -> None:
    tenant, other = make_tenant(), make_tenant()
    admin = api.as_role(tenant.id, "admin")
    stranger = api.as_role(other.id, "admin")
    foreign = make_probe(other.id, "127.0.0.1:9", protocol="tcp")
    foreign_group = stranger.post(f"{API}/probe-groups", json={"name": "theirs"}).json

    for slug in ("UPPER", "no", "has space", "x" * 64, "under_score"):
        assert_error(admin.post(f"{API}/status-pages", json=page_body(slug=slug)), 422, "invalid_input", "slug")
    assert_error(admin.post(f"{API}/status-pages", json=page_body(title=" ")), 422, "invalid_input", "title")
    assert_error(admin.post(f"{API}/status-pages", json=page_body(probe_ids=[1, 1])), 422, "invalid_input",
                 "probe_ids")
    assert_error(admin.post(f"{API}/status-pages", json=page_body(probe_ids=[foreign.id])), 404, "not_found")
    assert_error(admin.post(f"{API}/status-pages", json=page_body(group_ids=[foreign_group["id"]])), 404,
                 "not_found")
    assert admin.get(f"{API}/status-pages").json["items"] == []

    assert stranger.post(f"{API}/status-pages", json=page_body()).status_code == 201
    taken = admin.post(f"{API}/status-pages", json=page_body())  # slugs are unique across tenants
    assert_error(taken, 409, "conflict")
    assert "acme-status" in taken.json["message"]
    mine = admin.post(f"{API}/status-pages", json=page_body(slug="acme-2")).json
    assert_error(admin.patch(f"{API}/status-pages/{mine['id']}", json={"slug": "acme-status"}), 409, "conflict")
    assert_error(admin.patch(f"{API}/status-pages/{mine['id']}", json={"public": "yes"}), 422, "invalid_input",
                 "public")


def test_a_page_is_public_only_once_opted_in_and_then_shows_only_what_was_chosen(api: Api) -> None:
    tenant = make_tenant("hidden-tenant-name")
    admin = api.as_role(tenant.id, "admin")
    group = admin.post(f"{API}/probe-groups", json={"name": "core"}).json
    named = make_probe(tenant.id, "http://127.0.0.1:9/secret-path-a", name="b-website")
    grouped = make_probe(tenant.id, "http://127.0.0.1:9/secret-path-b", name="a-api", group_id=group["id"])
    left_out = make_probe(tenant.id, "http://127.0.0.1:9/secret-path-c", name="internal-db")
    for probe in (named, grouped, left_out):
        stored(row(probe, "success", 20.0, at=utcnow() - timedelta(days=2)))
    stored(row(named, "failed", 30.0, error="secret-error-text"), row(grouped), row(left_out))
    page = admin.post(f"{API}/status-pages", json=page_body(probe_ids=[named.id], group_ids=[group["id"]])).json

    unknown = public(api, "no-such-page")
    assert_error(unknown, 404, "not_found")
    private = public(api, "acme-status")
    assert_error(private, 404, "not_found")
    assert private.json == unknown.json

    admin.patch(f"{API}/status-pages/{page['id']}", json={"public": True})
    answer = public(api, "acme-status")

    assert answer.status_code == 200, answer.json
    view = answer.json
    assert (view["slug"], view["title"], view["description"]) == ("acme-status", "Acme", "Our services")
    assert [(p["id"], p["name"], p["status"]) for p in view["probes"]] == [(grouped.id, "a-api", "success"),
                                                                          (named.id, "b-website", "failed")]
    assert view["overall_status"] == "down"
    text = answer.get_data(as_text=True)
    for secret in ("secret-path", "secret-error-text", "connection refused", "hidden-tenant-name", "internal-db",
                   "127.0.0.1"):
        assert secret not in text
    assert '"tenant' not in text
    # 90 daily bars from the rollups, today last.
    days = view["probes"][1]["days"]
    assert len(days) == 90 and days[-1]["day"] == utcnow().date().isoformat()
    assert (days[-1]["count"], days[-1]["failures"], days[-1]["uptime_percent"]) == (1, 1, 0.0)
    assert (days[-3]["count"], days[-3]["failures"], days[-3]["uptime_percent"]) == (1, 0, 100.0)
    assert days[0] == {"day": (utcnow().date() - timedelta(days=89)).isoformat(), "count": 0, "failures": 0,
                       "uptime_percent": None}
    assert view["probes"][1]["uptime_90d"] == 50.0 and view["probes"][0]["uptime_90d"] == 100.0
    assert "probe_ids" not in view and view["incidents"] == []


def _page(admin: Caller, probe_ids: list[int]) -> dict[str, Any]:
    return admin.post(f"{API}/status-pages", json=page_body(probe_ids=probe_ids, public=True)).json


def test_overall_status(api: Api) -> None:
    tenant = make_tenant()
    admin = api.as_role(tenant.id, "admin")
    first, second = (make_probe(tenant.id, "127.0.0.1:9", protocol="tcp") for _ in range(2))
    _page(admin, [first.id, second.id])

    def overall() -> str:
        return public(api, "acme-status").json["overall_status"]

    assert overall() == "unknown"
    stored(row(first))
    assert overall() == "operational"  # a probe that never ran does not count
    stored(row(second, "timeout", None))
    assert overall() == "down"
    stored(row(second))
    assert overall() == "degraded"  # recovered, but one of its last 5 runs failed
    stored(*(row(second, at=utcnow() + timedelta(seconds=n)) for n in range(1, 5)))
    assert overall() == "operational"


def test_incidents_are_kept_by_admins_and_shown_newest_first(api: Api) -> None:
    tenant = make_tenant()
    admin, viewer = api.as_role(tenant.id, "admin"), api.as_role(tenant.id, "viewer")
    page = _page(admin, [])
    incidents = f"{API}/status-pages/{page['id']}/incidents"

    opened = admin.post(incidents, json={"title": "Slow API", "message": "Looking into it"})
    assert opened.status_code == 201 and opened.json["status"] == "investigating"
    assert opened.json["resolved_at"] is None
    later = admin.post(incidents, json={"title": "DNS", "status": "identified"}).json
    assert_error(viewer.post(incidents, json={"title": "x"}), 403, "forbidden")
    assert_error(admin.post(incidents, json={"title": "x", "status": "fixed"}), 422, "invalid_input", "status")
    assert [item["id"] for item in viewer.get(incidents).json["items"]] == [later["id"], opened.json["id"]]

    resolved = admin.patch(f"{incidents}/{opened.json['id']}", json={"status": "resolved", "message": "Fixed"})
    assert resolved.status_code == 200
    assert resolved.json["resolved_at"] is not None and resolved.json["message"] == "Fixed"
    assert resolved.json["title"] == "Slow API"
    shown = public(api, "acme-status").json["incidents"]
    assert [(item["title"], item["status"]) for item in shown] == [("DNS", "identified"), ("Slow API", "resolved")]
    reopened = admin.patch(f"{incidents}/{opened.json['id']}", json={"status": "monitoring"}).json
    assert reopened["resolved_at"] is None

    assert admin.delete(f"{incidents}/{later['id']}").status_code == 204
    assert_error(viewer.get(f"{incidents}/{later['id']}"), 404, "not_found")
    other = admin.post(f"{API}/status-pages", json=page_body(slug="other-page")).json
    assert_error(viewer.get(f"{API}/status-pages/{other['id']}/incidents/{opened.json['id']}"), 404, "not_found")


def test_badges_are_svg_for_probes_shown_on_a_public_page(api: Api) -> None:
    tenant = make_tenant()
    admin = api.as_role(tenant.id, "admin")
    shown = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp", name="api <edge> & co")
    hidden = make_probe(tenant.id, "127.0.0.1:9", protocol="tcp")
    stored(row(shown, "success", 40.0, at=utcnow() - timedelta(minutes=5)), row(hidden))
    stored(row(shown, "success", 123.4))
    page = _page(admin, [shown.id])
    badges = f"/badges/{shown.id}"

    assert svg_texts(public(api, "acme-status", f"{badges}/status.svg"))[:2] == ["api <edge> & co"] * 2
    assert "up" in svg_texts(public(api, "acme-status", f"{badges}/status.svg"))
    assert set(svg_texts(public(api, "acme-status", f"{badges}/uptime.svg", query_string={"days": 7}))) == {
        "uptime 7d", "100%"}
    assert set(svg_texts(public(api, "acme-status", f"{badges}/uptime.svg"))) == {"uptime 30d", "100%"}
    assert set(svg_texts(public(api, "acme-status", f"{badges}/response-time.svg"))) == {"response time", "123 ms"}
    stored(row(shown, "failed"))
    assert "down" in svg_texts(public(api, "acme-status", f"{badges}/status.svg"))
    assert "66.67%" in svg_texts(public(api, "acme-status", f"{badges}/uptime.svg"))  # 2 of 3 runs

    for path in (f"/badges/{hidden.id}/status.svg", "/badges/987654/uptime.svg", f"/badges/{hidden.id}/response-time.svg"):
        assert_error(public(api, "acme-status", path), 404, "not_found")
    assert_error(public(api, "no-such-page", f"{badges}/status.svg"), 404, "not_found")
    assert_error(public(api, "acme-status", f"{badges}/uptime.svg", query_string={"days": 91}), 422,
                 "invalid_input", "days")
    admin.patch(f"{API}/status-pages/{page['id']}", json={"public": False})
    assert_error(public(api, "acme-status", f"{badges}/status.svg"), 404, "not_found")
