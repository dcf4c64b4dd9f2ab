"""Driving the REST API in tests: users with roles, logins, authenticated callers.

Requests go through Flask's test client into the real application, database and Redis.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

PASSWORD = "correct-horse-battery"


@dataclass
class Caller:
    """A client that sends one identity's bearer token with every request."""

    client: FlaskClient
    token: str
    refresh_token: str | None = None
    user_id: int | None = None
    tenant_id: int | None = None
    username: str = ""

    def request(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)


@dataclass
class Api:
    app: Flask
    client: FlaskClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.app.test_client()

    def user(self, tenant_id: int | None, role: str = "admin", username: str | None = None,
             platform_admin: bool = False) -> int:
        from app.extensions import db
        from app.services import users

        created = users.create_user(username or f"user-{uuid.uuid4().hex[:8]}", PASSWORD,
                                    platform_admin=platform_admin)
        if tenant_id is not None:
            users.grant(tenant_id, created, role)
        db.session.commit()
        return created.id

    def login(self, username: str, password: str = PASSWORD, tenant_id: int | None = None) -> TestResponse:
        body: dict[str, Any] = {"username": username, "password": password}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        return self.client.post("/api/v1/auth/login", json=body)

    def caller(self, username: str, tenant_id: int | None = None) -> Caller:
        response = self.login(username, tenant_id=tenant_id)
        assert response.status_code == 200, response.json
        data = response.json
        return Caller(self.client, data["access_token"], data["refresh_token"], tenant_id=data["tenant_id"],
                      username=username)

    def as_role(self, tenant_id: int, role: str) -> Caller:
        """A new user with ``role`` in the tenant, logged in to it."""
        username = f"{role}-{uuid.uuid4().hex[:8]}"
        user_id = self.user(tenant_id, role, username)
        caller = self.caller(username, tenant_id)
        caller.user_id = user_id
        return caller

    def platform_admin(self) -> Caller:
        username = f"root-{uuid.uuid4().hex[:8]}"
        user_id = self.user(None, username=username, platform_admin=True)
        caller = self.caller(username)
        caller.user_id = user_id
        return caller


def assert_error(response: TestResponse, status: int, code: str | None = None, field: str | None = None) -> None:
    """The one error shape: JSON with code, message and details, and the expected status."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.json
    assert set(body) == {"code", "message", "details"}
    assert body["message"] and "\n" not in body["message"]
    if code is not None:
        assert body["code"] == code
    if field is not None:
        assert field in [detail["field"] for detail in body["details"]], body


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One request to a running server: the status and the decoded JSON body (the text if it is not JSON)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, raw.decode(errors="replace")
