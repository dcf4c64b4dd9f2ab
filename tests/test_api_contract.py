"""The OpenAPI document is the contract: every operation, driven by generated valid and malformed
input (schemathesis, property-based), answers without a server error and as documented."""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings

from app import create_app
from tests.api import Api
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(600)

OPENAPI_PATH = "/api/v1/openapi.json"

# The document does not depend on the database: read it from an app built at import, then send
# every generated request to the PostgreSQL app of the test (``app=`` on each call).
schema = schemathesis.openapi.from_wsgi(OPENAPI_PATH, create_app())


# Where a case carries the login, schemathesis puts this; the test swaps in its own token.
# Applying the login through schemathesis (not as headers added to every call) lets the
# negative cases that test a missing or broken token be sent without it.
LOGIN_PLACEHOLDER = "the-test-login"


@schema.auth(retry_on=[])
class _TestLogin:
    def get(self, case: schemathesis.Case, context: object) -> str:
        return LOGIN_PLACEHOLDER

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def login(pg_app: Flask) -> str:
    """A platform administrator logged in to a fresh tenant: every operation is allowed,
    so the generated input, not the role, decides the answer. A fresh one per operation,
    since some operations (logout, deleting the tenant) end the login."""
    api = Api(pg_app)
    root = api.platform_admin()
    return api.caller(root.username, make_tenant().id).token


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: schemathesis.Case, pg_app: Flask, login: str) -> None:
    if case.headers and case.headers.get("Authorization") == f"Bearer {LOGIN_PLACEHOLDER}":
        case.headers["Authorization"] = f"Bearer {login}"
    # Schemathesis asks for gzip like an HTTP client, but its WSGI transport does not unpack
    # answers (tests/test_compression.py checks those): ask for them as they are.
    case.call_and_validate(app=pg_app, headers={"Accept-Encoding": "identity"})


def test_the_document_and_its_docs_page_are_served_without_credentials(api: Api) -> None:
    document = api.client.get(OPENAPI_PATH)
    assert document.status_code == 200 and document.json["openapi"].startswith("3.")
    assert "/api/v1/probes" in document.json["paths"]
    assert document.json["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    page = api.client.get("/api/v1/swagger")
    assert page.status_code == 200 and page.mimetype == "text/html"
    # Its scripts are served by this server, so the page works without internet access.
    for asset in re.findall(r'src="(swagger/[^"]+\.js)"', page.get_data(as_text=True)):
        assert api.client.get(f"/api/v1/{asset}").status_code == 200


def test_every_error_the_document_declares_has_the_one_error_shape(app: Flask) -> None:
    document = app.api_doc
    shapes = {
        json.dumps(response["content"]["application/json"]["schema"])
        for item in document["paths"].values()
        for operation in item.values()
        for status, response in operation["responses"].items()
        if status.startswith(("4", "5")) and "content" in response and status != "503"
    }
    assert shapes == {json.dumps({"$ref": "#/components/schemas/ErrorBody"})}
