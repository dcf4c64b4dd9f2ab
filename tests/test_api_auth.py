"""Logging in, tokens, roles and their revocation, through the REST API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jwt
import pytest
import redis
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import ApiToken, AuthSession, User
from app.services import users
from tests.api import PASSWORD, Api, Caller, assert_error
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(60)


class TestLogin:
    def test_login_returns_access_and_refresh_tokens_for_the_users_tenant(self, api: Api) -> None:
        tenant = make_tenant()
        api.user(tenant.id, "operator", "ann")
        response = api.login("ANN", PASSWORD)  # usernames are case-insensitive
        assert response.status_code == 200
        body = response.json
        assert body["tenant_id"] == tenant.id and body["role"] == "operator"
        assert body["token_type"] == "bearer" and body["expires_in"] == 15 * 60
        me = Caller(api.client, body["access_token"]).get("/api/v1/auth/me").json
        assert me["username"] == "ann" and me["role"] == "operator" and me["via"] == "session"

    def test_password_is_stored_as_a_slow_hash(self, api: Api) -> None:
        api.user(make_tenant().id, username="bob")
        stored = db.session.scalar(select(User.password_hash).where(User.username == "bob"))
        assert PASSWORD not in stored and stored.startswith("$argon2id$v=19$m=8192,t=1,")

    def test_a_hash_made_at_another_cost_still_verifies_and_is_upgraded_at_login(self, api: Api) -> None:
        from argon2 import PasswordHasher

        user_id = api.user(make_tenant().id, username="ann")
        user = db.session.get(User, user_id)
        user.password_hash = PasswordHasher(time_cost=2, memory_cost=16384).hash(PASSWORD)
        db.session.commit()
        assert api.login("ann").status_code == 200
        db.session.expire_all()
        assert db.session.get(User, user_id).password_hash.startswith("$argon2id$v=19$m=8192,t=1,")

    @pytest.mark.parametrize("username, password", [("ann", "wrong-password"), ("nobody", PASSWORD)])
    def test_wrong_username_or_password_is_401_with_the_same_message(
        self, api: Api, username: str, password: str
    ) -> None:
        api.user(make_tenant().id, username="ann")
        response = api.login(username, password)
        assert_error(response, 401, "unauthenticated")
        assert response.json["message"] == "wrong username or password"

    def test_repeated_failures_lock_the_username_out_for_a_while(self, api: Api, clean_redis: redis.Redis) -> None:
        api.user(make_tenant().id, username="ann")
        for _ in range(5):
            assert api.login("ann", "guess").status_code == 401
        locked = api.login("ann", PASSWORD)  # even the right password, while locked
        assert_error(locked, 429, "rate_limited")
        assert 0 < int(locked.headers["Retry-After"]) <= 900
        # The counters are keyed by hashes, not by the username in clear.
        assert not [key for key in clean_redis.keys("admin_mit:login-failures:*") if "ann" in key]

    def test_one_address_guessing_many_usernames_is_locked_out_and_cannot_forge_another(self, api: Api) -> None:
        api.user(make_tenant().id, username="ann")
        for attempt in range(20):
            forged = {"X-Forwarded-For": f"198.51.100.{attempt}"}  # ignored: no proxy is trusted
            response = api.client.post("/api/v1/auth/login", headers=forged,
                                       json={"username": f"guess-{attempt}", "password": "guess"})
            assert response.status_code == 401
        assert_error(api.login("ann"), 429, "rate_limited")

    def test_a_success_before_the_limit_forgives_earlier_failures(self, api: Api) -> None:
        api.user(make_tenant().id, username="ann")
        for _ in range(4):
            api.login("ann", "guess")
        assert api.login("ann", PASSWORD).status_code == 200
        for _ in range(4):
            assert api.login("ann", "guess").status_code == 401
        assert api.login("ann", PASSWORD).status_code == 200

    def test_a_user_of_several_tenants_must_choose_one(self, api: Api) -> None:
        first, second = make_tenant(), make_tenant()
        user_id = api.user(first.id, "viewer", "ann")
        users.grant(second.id, db.session.get(User, user_id), "admin")
        assert_error(api.login("ann"), 422, "invalid_input", field="tenant_id")
        response = api.login("ann", tenant_id=second.id)
        assert response.status_code == 200 and response.json["role"] == "admin"

    def test_login_to_a_tenant_the_user_is_not_in_is_404(self, api: Api) -> None:
        mine, other = make_tenant(), make_tenant()
        api.user(mine.id, username="ann")
        assert_error(api.login("ann", tenant_id=other.id), 404)
        assert_error(api.login("ann", tenant_id=999999), 404)

    def test_deactivated_user_cannot_log_in_and_loses_open_sessions(self, api: Api) -> None:
        tenant = make_tenant()
        admin = api.as_role(tenant.id, "admin")
        viewer = api.as_role(tenant.id, "viewer")
        assert admin.patch(f"/api/v1/users/{viewer.user_id}", json={"is_active": False}).status_code == 200
        assert_error(viewer.get("/api/v1/probes"), 401)


class TestTokens:
    def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(self, api: Api) -> None:
        caller = api.as_role(make_tenant().id, "viewer")
        first = api.client.post("/api/v1/auth/refresh", json={"refresh_token": caller.refresh_token})
        assert first.status_code == 200
        new_access = first.json["access_token"]
        assert Caller(api.client, new_access).get("/api/v1/probes").status_code == 200
        # The old refresh token was rotated away: presenting it again looks like theft.
        replay = api.client.post("/api/v1/auth/refresh", json={"refresh_token": caller.refresh_token})
        assert_error(replay, 401)
        assert_error(Caller(api.client, new_access).get("/api/v1/probes"), 401)
        assert_error(api.client.post("/api/v1/auth/refresh", json={"refresh_token": first.json["refresh_token"]}), 401)

    def test_a_login_drops_the_users_dead_sessions(self, api: Api) -> None:
        api.user(make_tenant().id, "viewer", "ann")
        expired, revoked_long_ago, revoked_now, live = (api.caller("ann") for _ in range(4))

        def session(caller: Caller) -> AuthSession:
            sid = jwt.decode(caller.token, options={"verify_signature": False})["sid"]
            return db.session.get(AuthSession, sid)

        now = datetime.now(timezone.utc)
        session(expired).expires_at = now - timedelta(seconds=1)
        session(revoked_long_ago).revoked_at = now - timedelta(days=2)
        session(revoked_now).revoked_at = now
        kept = {session(revoked_now).id, session(live).id}
        db.session.commit()

        api.caller("ann")
        remaining = set(db.session.scalars(select(AuthSession.id)))
        assert kept < remaining and len(remaining) == 3
        # A refresh with the recently revoked session still says so.
        assert_error(api.client.post("/api/v1/auth/refresh", json={"refresh_token": revoked_now.refresh_token}), 401)

    def test_an_access_token_is_not_a_refresh_token(self, api: Api) -> None:
        caller = api.as_role(make_tenant().id, "viewer")
        assert_error(api.client.post("/api/v1/auth/refresh", json={"refresh_token": caller.token}), 401)
        assert_error(Caller(api.client, caller.refresh_token or "").get("/api/v1/probes"), 401)

    def test_logout_revokes_the_access_token_at_once(self, api: Api) -> None:
        caller = api.as_role(make_tenant().id, "viewer")
        assert caller.post("/api/v1/auth/logout").status_code == 204
        assert_error(caller.get("/api/v1/probes"), 401)
        assert_error(api.client.post("/api/v1/auth/refresh", json={"refresh_token": caller.refresh_token}), 401)

    @pytest.mark.parametrize("header", ["", "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "Bearer amt_forged"])
    def test_missing_or_malformed_credentials_are_401(self, api: Api, header: str) -> None:
        headers = {"Authorization": header} if header else {}
        response = api.client.get("/api/v1/probes", headers=headers)
        assert_error(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"] == "Bearer"

    def test_a_token_signed_with_another_key_is_refused(self, api: Api, app: Flask) -> None:
        caller = api.as_role(make_tenant().id, "admin")
        claims = jwt.decode(caller.token, options={"verify_signature": False})
        forged = jwt.encode(claims, "x" * 48, algorithm="HS256")
        assert_error(Caller(api.client, forged).get("/api/v1/probes"), 401)

    def test_api_token_is_shown_once_stored_hashed_and_revocable(self, api: Api) -> None:
        tenant = make_tenant()
        operator = api.as_role(tenant.id, "operator")
        created = operator.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"})
        assert created.status_code == 201
        secret = created.json["token"]
        assert secret.startswith("amt_") and created.json["prefix"] == secret[:12]
        stored = db.session.scalar(select(ApiToken).where(ApiToken.id == created.json["id"]))
        assert stored is not None and secret not in (stored.token_hash, stored.prefix)
        listed = operator.get("/api/v1/tokens").json["items"]
        assert [item["id"] for item in listed] == [created.json["id"]]
        assert "token" not in listed[0]

        script = Caller(api.client, secret)
        me = script.get("/api/v1/auth/me").json
        assert me["via"] == "api_token" and me["role"] == "viewer" and me["tenant_id"] == tenant.id
        assert_error(script.post("/api/v1/probes", json={}), 403)  # a viewer token cannot write

        assert operator.delete(f"/api/v1/tokens/{created.json['id']}").status_code == 204
        assert_error(script.get("/api/v1/probes"), 401)

    def test_a_token_lifetime_must_be_a_number_of_days(self, api: Api) -> None:
        operator = api.as_role(make_tenant().id, "operator")
        for days in (True, "30", 0, 3651):
            assert_error(operator.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": days}), 422)
        assert operator.get("/api/v1/tokens").json["items"] == []
        assert operator.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": 30}).status_code == 201

    def test_a_token_cannot_outrank_its_creator_or_mint_tokens(self, api: Api) -> None:
        operator = api.as_role(make_tenant().id, "operator")
        assert_error(operator.post("/api/v1/tokens", json={"name": "x", "role": "admin"}), 403)
        secret = operator.post("/api/v1/tokens", json={"name": "ci"}).json["token"]
        assert_error(Caller(api.client, secret).post("/api/v1/tokens", json={"name": "child"}), 403)

    def test_demoting_the_creator_weakens_the_token(self, api: Api) -> None:
        tenant = make_tenant()
        admin = api.as_role(tenant.id, "admin")
        operator = api.as_role(tenant.id, "operator")
        secret = operator.post("/api/v1/tokens", json={"name": "ci"}).json["token"]
        assert Caller(api.client, secret).get("/api/v1/auth/me").json["role"] == "operator"
        admin.patch(f"/api/v1/users/{operator.user_id}", json={"role": "viewer"})
        assert Caller(api.client, secret).get("/api/v1/auth/me").json["role"] == "viewer"
        admin.delete(f"/api/v1/users/{operator.user_id}")
        assert_error(Caller(api.client, secret).get("/api/v1/auth/me"), 401)

    def test_changing_the_password_ends_every_session(self, api: Api) -> None:
        tenant = make_tenant()
        api.user(tenant.id, "viewer", "ann")
        first, second = api.caller("ann"), api.caller("ann")
        assert_error(first.post("/api/v1/auth/password", json={"current_password": "wrong",
                                                               "new_password": "another-long-one"}),
                     422, field="current_password")
        assert first.post("/api/v1/auth/password", json={"current_password": PASSWORD,
                                                         "new_password": "another-long-one"}).status_code == 204
        assert_error(second.get("/api/v1/probes"), 401)
        assert api.login("ann", "another-long-one").status_code == 200


class TestRoles:
    @pytest.mark.parametrize("role, can_write, can_manage_users", [
        ("viewer", False, False), ("operator", True, False), ("admin", True, True),
    ])
    def test_what_each_role_may_do(self, api: Api, role: str, can_write: bool, can_manage_users: bool) -> None:
        caller = api.as_role(make_tenant().id, role)
        assert caller.get("/api/v1/probes").status_code == 200
        write = caller.post("/api/v1/probe-groups", json={"name": "edge"})
        assert write.status_code == (201 if can_write else 403)
        members = caller.get("/api/v1/users")
        assert members.status_code == (200 if can_manage_users else 403)
        if not can_write:
            assert_error(write, 403, "forbidden")

    def test_tenant_admin_is_not_a_platform_admin(self, api: Api) -> None:
        admin = api.as_role(make_tenant().id, "admin")
        for path in ("/api/v1/tenants", "/api/v1/ops/workers", "/api/v1/ops/queues"):
            assert_error(admin.get(path), 403, "forbidden")
        assert_error(admin.post("/api/v1/ops/queues/all/purge"), 403)

    def test_platform_admin_manages_tenants(self, api: Api) -> None:
        root = api.platform_admin()
        created = root.post("/api/v1/tenants", json={"name": "globex"})
        assert created.status_code == 201
        assert_error(root.post("/api/v1/tenants", json={"name": "globex"}), 409, "conflict")
        assert "globex" in [t["name"] for t in root.get("/api/v1/tenants").json["items"]]
        # Without a tenant selected, tenant resources need one.
        assert_error(root.get("/api/v1/probes"), 403)
        in_tenant = api.caller(root.username, created.json["id"])
        assert in_tenant.get("/api/v1/probes").status_code == 200
        assert root.delete(f"/api/v1/tenants/{created.json['id']}").status_code == 204
        assert_error(root.get(f"/api/v1/tenants/{created.json['id']}"), 404)

    def test_a_tenant_admin_cannot_take_over_a_user_of_other_tenants(self, api: Api) -> None:
        mine, theirs = make_tenant(), make_tenant()
        admin = api.as_role(mine.id, "admin")
        shared_id = api.user(mine.id, "viewer", "shared")
        users.grant(theirs.id, db.session.get(User, shared_id), "admin")

        for change in ({"password": "taken-over-now"}, {"is_active": False}):
            assert_error(admin.patch(f"/api/v1/users/{shared_id}", json=change), 403, "forbidden")
        assert api.login("shared", tenant_id=theirs.id).status_code == 200
        # Their role here is this tenant's business.
        assert admin.patch(f"/api/v1/users/{shared_id}", json={"role": "operator"}).json["role"] == "operator"
        # A platform administrator may reset it.
        root = api.platform_admin()
        in_mine = api.caller(root.username, mine.id)
        assert in_mine.patch(f"/api/v1/users/{shared_id}", json={"password": "reset-by-root"}).status_code == 200
        assert api.login("shared", "reset-by-root", tenant_id=theirs.id).status_code == 200

    def test_an_admin_manages_members_but_not_themselves(self, api: Api) -> None:
        tenant = make_tenant()
        admin = api.as_role(tenant.id, "admin")
        created = admin.post("/api/v1/users", json={"username": "carol", "password": PASSWORD, "role": "operator"})
        assert created.status_code == 201 and created.json["role"] == "operator"
        assert_error(admin.post("/api/v1/users", json={"username": "carol", "password": PASSWORD}), 409)
        assert_error(admin.post("/api/v1/users", json={"username": "dave", "password": "short"}), 422,
                     field="password")
        assert api.login("carol").json["role"] == "operator"
        assert_error(admin.patch(f"/api/v1/users/{admin.user_id}", json={"role": "viewer"}), 422)
        assert_error(admin.delete(f"/api/v1/users/{admin.user_id}"), 422)
        assert admin.delete(f"/api/v1/users/{created.json['id']}").status_code == 204
        assert_error(api.login("carol"), 401)


class TestSwitchTenant:
    def _member_of_two(self, api: Api) -> tuple[int, int, Caller]:
        first, second = make_tenant(), make_tenant()
        user_id = api.user(first.id, "viewer", "ann")
        users.grant(second.id, db.session.get(User, user_id), "operator")
        db.session.commit()
        return first.id, second.id, api.caller("ann", first.id)

    def test_switching_returns_a_pair_for_the_other_tenant_and_ends_the_old_session(self, api: Api) -> None:
        first, second, caller = self._member_of_two(api)
        response = caller.post("/api/v1/auth/switch", json={"tenant_id": second})
        assert response.status_code == 200, response.json
        body = response.json
        assert set(body) == set(api.login("ann", tenant_id=first).json)
        assert body["tenant_id"] == second and body["role"] == "operator" and body["token_type"] == "bearer"
        switched = Caller(api.client, body["access_token"])
        me = switched.get("/api/v1/auth/me").json
        assert me["tenant_id"] == second and me["role"] == "operator" and me["via"] == "session"
        assert switched.post("/api/v1/probe-groups", json={"name": "edge"}).status_code == 201
        # The session switched from is over: its access and refresh tokens are refused.
        assert_error(caller.get("/api/v1/auth/me"), 401)
        assert_error(api.client.post("/api/v1/auth/refresh", json={"refresh_token": caller.refresh_token}), 401)
        # The new refresh token works and stays in the new tenant.
        refreshed = api.client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert refreshed.status_code == 200 and refreshed.json["tenant_id"] == second

    def test_the_new_session_ends_when_the_old_one_would_have(self, api: Api) -> None:
        _, second, caller = self._member_of_two(api)
        old_id = jwt.decode(caller.token, options={"verify_signature": False})["sid"]
        old_expiry = db.session.get(AuthSession, old_id).expires_at
        body = caller.post("/api/v1/auth/switch", json={"tenant_id": second}).json
        new_id = jwt.decode(body["access_token"], options={"verify_signature": False})["sid"]
        db.session.expire_all()
        assert new_id != old_id and db.session.get(AuthSession, new_id).expires_at == old_expiry

    def test_a_tenant_the_user_is_not_in_is_the_same_404_as_a_missing_one(self, api: Api) -> None:
        _, _, caller = self._member_of_two(api)
        other = make_tenant()
        foreign = caller.post("/api/v1/auth/switch", json={"tenant_id": other.id})
        missing = caller.post("/api/v1/auth/switch", json={"tenant_id": 2_000_000_000})
        assert_error(foreign, 404, "not_found")
        assert_error(missing, 404, "not_found")
        assert foreign.json["message"].replace(str(other.id), "N") == missing.json["message"].replace("2000000000", "N")
        # Nothing ended: the caller's session still works.
        assert caller.get("/api/v1/auth/me").json["role"] == "viewer"

    def test_bad_bodies_are_one_422(self, api: Api) -> None:
        _, _, caller = self._member_of_two(api)
        for body in ({}, {"tenant_id": "two"}, {"tenant_id": 0}, {"tenant_id": 1, "role": "admin"}):
            assert_error(caller.post("/api/v1/auth/switch", json=body), 422)
        assert caller.get("/api/v1/auth/me").status_code == 200

    def test_an_api_token_cannot_switch(self, api: Api) -> None:
        _, second, caller = self._member_of_two(api)
        switched = Caller(api.client, caller.post("/api/v1/auth/switch", json={"tenant_id": second}).json["access_token"])
        secret = switched.post("/api/v1/tokens", json={"name": "ci"}).json["token"]
        response = Caller(api.client, secret).post("/api/v1/auth/switch", json={"tenant_id": second})
        assert_error(response, 403, "forbidden")
        assert "API token" in response.json["message"]

    def test_anonymous_is_401(self, api: Api) -> None:
        assert_error(api.client.post("/api/v1/auth/switch", json={"tenant_id": 1}), 401)
