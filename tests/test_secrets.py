"""Secrets encrypted at rest: the keyring, its configuration, the encrypted column, key rotation,
and probe credential headers kept out of ``probes.spec``.

Keys are generated here (``Fernet.generate_key()``); the database tests run on SQLite and
PostgreSQL, the probes against the loopback targets, ``admin-mit`` as a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import text

from app.cli import secrets_rotate
from app.core import secret_box
from app.core.config import PROJECT_ROOT, ConfigError, SecretsSection, activate, active_settings, load_settings
from app.core.instance_files import create_once
from app.core.secret_box import UndecryptableSecret
from app.extensions import db
from app.models import Probe
from app.models.encrypted import EncryptedJSON
from app.services import probe_runs
from app.services.secret_rotation import encrypted_tables
from tests.api import Api, Caller
from tests.conftest import make_probe, make_tenant, subprocess_environ
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(120)

API = "/api/v1"
MASK = "********"
CREDENTIAL = "Bearer s3cret-credential-value"
SECRET = "s3cret-credential-value"  # must appear in no response, spec, log line or output
# Matches the echoed credential without being it: conditions are shown in clear.
SENT = "Bearer s3cret-credential-valu[e]"


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


@contextmanager
def keyring(*keys: str) -> Iterator[None]:
    """Run with ``secrets.keys`` set to ``keys`` (newest first), then go back to the previous settings."""
    previous = active_settings()
    activate(previous.model_copy(update={"secrets": SecretsSection(keys=list(keys))}))
    try:
        yield
    finally:
        activate(previous)


def raw_probe(probe_id: int) -> tuple[str, str | None]:
    """``probes.spec`` and ``probes.secrets`` as the database holds them (plain SQL, no column types)."""
    db.session.commit()
    spec, secrets = db.session.execute(
        text("SELECT CAST(spec AS TEXT), secrets FROM probes WHERE id = :id"), {"id": probe_id}).one()
    return spec, secrets


def run_now(tenant_id: int, probe_id: int) -> dict[str, Any]:
    return probe_runs.execute_runs(tenant_id, probe_runs.run_requests([probe_id], "manual", os.urandom(6).hex()),
                                   "manual")[0]


def echo_probe(tenant_id: int, targets: LoopbackTargets, **headers: str) -> Probe:
    """An HTTP probe of the echo target that succeeds only if the target received the credential."""
    return make_probe(tenant_id, f"{targets.http_url}/echo", auto_probe=False,
                      spec={"headers": {"Authorization": CREDENTIAL, "X-Trace": "visible", **headers}},
                      conditions={"body_regex": SENT})


# --- the keyring -----------------------------------------------------------------------------

def test_encrypt_decrypt_round_trip() -> None:
    with keyring(new_key()):
        token = secret_box.encrypt("pässword ✓")

        assert "pässword" not in token and token.startswith("gAAAAA")
        assert secret_box.decrypt(token) == "pässword ✓"
        assert secret_box.encrypt("same") != secret_box.encrypt("same")  # a fresh IV every time


def test_a_value_written_under_one_key_reads_after_a_newer_key_is_listed_first() -> None:
    old, new = new_key(), new_key()
    with keyring(old):
        token = secret_box.encrypt("written under the old key")

    with keyring(new, old):
        assert secret_box.decrypt(token) == "written under the old key"
        rotated = secret_box.rotate(token)
        written = secret_box.encrypt("written under the new key")
    with keyring(new):
        assert secret_box.decrypt(rotated) == "written under the old key"
        assert secret_box.decrypt(written) == "written under the new key"
        with pytest.raises(UndecryptableSecret):
            secret_box.decrypt(token)


def test_a_token_no_configured_key_opens_is_a_clear_error() -> None:
    with keyring(new_key()):
        token = secret_box.encrypt("the plaintext")
    with keyring(new_key()):
        for attempt in (secret_box.decrypt, secret_box.rotate):
            with pytest.raises(UndecryptableSecret) as raised:
                attempt(token)
            message = str(raised.value)
            assert "secrets.keys" in message and "missing or was rotated away" in message
            assert "the plaintext" not in message and "\n" not in message
        with pytest.raises(UndecryptableSecret):
            secret_box.decrypt("not a token at all ✗")


def test_the_keyring_follows_the_active_settings() -> None:
    first, second = new_key(), new_key()
    with keyring(first):
        token = secret_box.encrypt("x")
        assert Fernet(first.encode()).decrypt(token.encode()) == b"x"
    with keyring(second):
        assert Fernet(second.encode()).decrypt(secret_box.encrypt("y").encode()) == b"y"


def test_without_keys_one_key_is_generated_per_instance_owner_only(tmp_path: Path) -> None:
    settings = load_settings(environ={**os.environ, "ADMIN_MIT_APP__INSTANCE_PATH": str(tmp_path)})
    previous = active_settings()
    activate(settings)
    try:
        token = secret_box.encrypt("kept")
        key_file = tmp_path / "secrets.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        Fernet(key_file.read_text().strip())  # a valid key
        # Another process (a new settings object over the same instance) uses the same key.
        activate(load_settings(environ={**os.environ, "ADMIN_MIT_APP__INSTANCE_PATH": str(tmp_path)}))
        assert secret_box.decrypt(token) == "kept"
        assert list(tmp_path.iterdir()) == [key_file]  # no temporary file left behind
    finally:
        activate(previous)


def test_processes_creating_the_key_file_at_once_agree_on_one(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    start = threading.Barrier(16)
    seen: list[str] = []

    def create() -> None:
        start.wait()
        seen.append(create_once(path, new_key, "the encryption key"))

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 16 and set(seen) == {path.read_text().strip()}
    assert list(tmp_path.iterdir()) == [path]


def test_an_unusable_generated_key_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "secrets.key").write_text("not a key\n")
    previous = active_settings()
    activate(load_settings(environ={**os.environ, "ADMIN_MIT_APP__INSTANCE_PATH": str(tmp_path)}))
    try:
        with pytest.raises(ConfigError) as raised:
            secret_box.encrypt("x")
    finally:
        activate(previous)
    message = str(raised.value)
    assert message.startswith(str(tmp_path / "secrets.key")) and "no usable Fernet key" in message
    assert "\n" not in message


# --- configuration ---------------------------------------------------------------------------

def test_keys_from_the_environment_are_a_comma_separated_list() -> None:
    first, second = new_key(), new_key()

    settings = load_settings(environ={**os.environ, "ADMIN_MIT_SECRETS__KEYS": f"{first}, {second}"})

    assert settings.secrets.keys == [first, second]
    assert load_settings(environ={**os.environ, "ADMIN_MIT_SECRETS__KEYS": first}).secrets.keys == [first]
    assert load_settings(environ={**os.environ, "ADMIN_MIT_SECRETS__KEYS": f"[{first}]"}).secrets.keys == [first]


@pytest.mark.parametrize("value", ["not-a-fernet-key", "{good},short", "{good},{good}"],
                         ids=["not a key", "second not a key", "listed twice"])
def test_a_malformed_key_in_the_environment_is_one_line_without_the_key(value: str) -> None:
    value = value.replace("{good}", new_key())

    with pytest.raises(ConfigError) as raised:
        load_settings(environ={**os.environ, "ADMIN_MIT_SECRETS__KEYS": value})

    message = str(raised.value)
    assert message.startswith("environment ADMIN_MIT_SECRETS__KEYS: secrets.keys: ")
    assert "\n" not in message
    for part in value.split(","):
        assert part not in message


def test_a_malformed_key_in_app_yaml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    config = Path(shutil.copytree(PROJECT_ROOT / "config", tmp_path / "config"))
    with (config / "app.yaml").open("a", encoding="utf-8") as handle:
        handle.write('\nsecrets:\n  keys: ["tooshort"]\n')
    environ = {name: value for name, value in os.environ.items() if not name.startswith("ADMIN_MIT_")}

    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ=environ)

    message = str(raised.value)
    assert message.startswith(f"{config / 'app.yaml'}: secrets.keys: key 1 of 1 is not a Fernet key")
    assert "tooshort" not in message and "\n" not in message


def test_a_command_started_with_a_malformed_key_stops_in_one_line(tmp_path: Path) -> None:
    env = {**subprocess_environ(tmp_path, f"sqlite:///{tmp_path / 'x.db'}"), "ADMIN_MIT_SECRETS__KEYS": "bad-key"}

    done = subprocess.run([sys.executable, "-m", "app", "tenant", "list"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "admin-mit: error: environment ADMIN_MIT_SECRETS__KEYS: secrets.keys: key 1 of 1 is not a Fernet key "
        "(32 url-safe base64-encoded bytes, e.g. from Fernet.generate_key())"]


# --- the encrypted column --------------------------------------------------------------------

def test_every_encrypted_column_is_found_in_the_metadata() -> None:
    found = {entry.table.name: [column.name for column in entry.columns] for entry in encrypted_tables(db.metadata)}

    assert found["probes"] == ["secrets"]
    assert all(isinstance(column.type, EncryptedJSON) for entry in encrypted_tables(db.metadata)
               for column in entry.columns)


def test_the_database_holds_only_the_token_and_none_stays_null(app: Flask, targets: LoopbackTargets) -> None:
    with keyring(new_key()):
        tenant = make_tenant()
        with_secret = echo_probe(tenant.id, targets)
        without = make_probe(tenant.id, f"{targets.http_url}/ok", spec={"headers": {"X-Trace": "visible"}})

        spec, secrets = raw_probe(with_secret.id)
        assert SECRET not in spec and json.loads(spec)["headers"] == {"Authorization": MASK, "X-Trace": "visible"}
        assert secrets is not None and secrets.startswith("gAAAAA") and SECRET not in secrets
        assert raw_probe(without.id)[1] is None

        db.session.expire_all()
        assert db.session.get(Probe, with_secret.id).secrets == {"headers": {"Authorization": CREDENTIAL}}


# --- probe credential headers ----------------------------------------------------------------

def _operator(api: Api) -> tuple[int, Caller]:
    tenant = make_tenant()
    return tenant.id, api.as_role(tenant.id, "operator")


def test_a_credential_header_is_stored_apart_sent_to_the_target_and_shown_masked(
    api: Api, targets: LoopbackTargets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant_id, op = _operator(api)
    created = op.post(f"{API}/probes", json={
        "name": "api", "protocol": "http", "target": f"{targets.http_url}/echo", "auto_probe": False,
        "spec": {"headers": {"Authorization": CREDENTIAL, "X-Trace": "visible"}}, "conditions": {"body_regex": SENT}})
    assert created.status_code == 201, created.json
    probe_id = created.json["id"]

    assert created.json["spec"]["headers"] == {"Authorization": MASK, "X-Trace": "visible"}
    assert op.get(f"{API}/probes/{probe_id}").json["spec"]["headers"]["Authorization"] == MASK
    assert SECRET not in op.get(f"{API}/probes").get_data(as_text=True)
    spec, secrets = raw_probe(probe_id)
    assert SECRET not in spec and SECRET not in (secrets or "")

    # The body_regex holds only if the echo target received the real value.
    result = run_now(tenant_id, probe_id)
    assert result["status"] == "success", result
    assert SECRET not in caplog.text


def test_a_change_that_sends_the_mask_back_keeps_the_credential(api: Api, targets: LoopbackTargets) -> None:
    tenant_id, op = _operator(api)
    probe = echo_probe(tenant_id, targets, **{"X-Api-Key": "key-1"})
    _, token = raw_probe(probe.id)

    renamed = op.patch(f"{API}/probes/{probe.id}", json={"name": "renamed", "interval_seconds": 120})
    assert renamed.status_code == 200, renamed.json
    assert raw_probe(probe.id)[1] == token  # a change that does not touch the spec leaves the secret as stored

    shown = renamed.json["spec"]["headers"]
    assert shown == {"Authorization": MASK, "X-Trace": "visible", "X-Api-Key": MASK}
    changed = op.patch(f"{API}/probes/{probe.id}",
                       json={"spec": {"headers": {**shown, "X-Api-Key": "key-2", "X-Trace": "changed"}}})
    assert changed.status_code == 200, changed.json
    assert changed.json["spec"]["headers"] == {"Authorization": MASK, "X-Trace": "changed", "X-Api-Key": MASK}

    db.session.expire_all()
    stored = db.session.get(Probe, probe.id)
    assert stored.secrets == {"headers": {"Authorization": CREDENTIAL, "X-Api-Key": "key-2"}}
    assert stored.spec["headers"] == {"Authorization": MASK, "X-Trace": "changed", "X-Api-Key": MASK}
    assert run_now(tenant_id, probe.id)["status"] == "success"

    # Dropping the header drops its value; switching to a protocol without headers drops them all.
    op.patch(f"{API}/probes/{probe.id}", json={"spec": {"headers": {"Authorization": MASK}}})
    db.session.expire_all()
    assert db.session.get(Probe, probe.id).secrets == {"headers": {"Authorization": CREDENTIAL}}
    switched = op.patch(f"{API}/probes/{probe.id}", json={"protocol": "tcp", "target": targets.tcp_echo, "spec": {}})
    assert switched.status_code == 200, switched.json
    assert raw_probe(probe.id)[1] is None


def test_a_probe_whose_credentials_no_key_opens_is_shown_and_its_runs_say_why(
    api: Api, targets: LoopbackTargets
) -> None:
    tenant_id, op = _operator(api)
    with keyring(new_key()):
        probe = echo_probe(tenant_id, targets)

    with keyring(new_key()):
        # Listing, showing and changing anything but the spec never decrypt the credentials.
        assert op.get(f"{API}/probes/{probe.id}").json["spec"]["headers"]["Authorization"] == MASK
        assert op.patch(f"{API}/probes/{probe.id}", json={"enabled": False}).status_code == 200
        result = run_now(tenant_id, probe.id)

    assert result["status"] == "error"
    assert "credentials" in result["error"] and "missing or was rotated away" in result["error"]


# --- rotation --------------------------------------------------------------------------------

def test_rotate_re_encrypts_every_value_with_the_newest_key(app: Flask, targets: LoopbackTargets) -> None:
    old, new = new_key(), new_key()
    with keyring(old):
        tenant = make_tenant()
        probes = [echo_probe(tenant.id, targets) for _ in range(3)]
        make_probe(tenant.id, f"{targets.http_url}/ok")  # no secrets: nothing to rotate
        before = {probe.id: raw_probe(probe.id)[1] for probe in probes}

    with keyring(new, old):
        done = app.test_cli_runner().invoke(secrets_rotate, ["--batch-size", "2"])
    assert done.exit_code == 0, done.output
    assert "probes: 3 values re-encrypted" in done.output.splitlines()

    with keyring(new):
        for probe in probes:
            token = raw_probe(probe.id)[1]
            assert token != before[probe.id] and SECRET not in (token or "")
            assert json.loads(secret_box.decrypt(token or ""))["headers"]["Authorization"] == CREDENTIAL
        assert run_now(tenant.id, probes[0].id)["status"] == "success"


def test_rotate_stops_in_one_line_at_a_value_no_key_opens(app: Flask, targets: LoopbackTargets) -> None:
    with keyring(new_key()):
        tenant = make_tenant()
        probe = echo_probe(tenant.id, targets)
        token = raw_probe(probe.id)[1]

    with keyring(new_key()):
        done = app.test_cli_runner().invoke(secrets_rotate, [])

    assert done.exit_code == 1
    # Tables rotated before it (other encrypted tables, empty here) are reported; the error ends the output.
    *rotated, last = done.output.strip().splitlines()
    assert last == (f"admin-mit: error: probes.secrets (id={probe.id}): a stored secret cannot be decrypted "
                    f"with any key in secrets.keys: the key it was encrypted with is missing or was rotated "
                    f"away (add it back to secrets.keys, after the newest); nothing of that table was changed")
    assert all(line.endswith(" 0 values re-encrypted") for line in rotated), rotated
    assert raw_probe(probe.id)[1] == token


def _admin_mit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert SECRET not in done.stdout + done.stderr
    return done


def test_the_rotation_procedure_with_the_command(tmp_path: Path, targets: LoopbackTargets) -> None:
    """README's procedure: add the new key first, (restart,) rotate, remove the old key."""
    old, new = new_key(), new_key()
    database = tmp_path / "cli.db"
    base = subprocess_environ(tmp_path, f"sqlite:///{database}")
    with_old, both, with_new = ({**base, "ADMIN_MIT_SECRETS__KEYS": keys} for keys in (old, f"{new},{old}", new))
    assert _admin_mit(with_old, "db", "upgrade").returncode == 0
    assert _admin_mit(with_old, "tenant", "add", "acme").returncode == 0
    added = _admin_mit(with_old, "probe", "add", "--tenant", "acme", "--name", "api", "--protocol", "http",
                       "--target", f"{targets.http_url}/echo", "--header", f"Authorization: {CREDENTIAL}",
                       "--conditions", json.dumps({"body_regex": SENT}), "--manual-only")
    assert added.returncode == 0, added.stderr
    with sqlite3.connect(database) as connection:
        spec, token = connection.execute("SELECT spec, secrets FROM probes").fetchone()
    assert SECRET not in spec and token.startswith("gAAAAA")
    assert _admin_mit(with_old, "probe", "run", "1").returncode == 0

    unreadable = _admin_mit(with_new, "probe", "run", "1")  # the old key removed too early
    assert unreadable.returncode == 3 and "missing or was rotated away" in unreadable.stdout

    rotated = _admin_mit(both, "secrets", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "probes: 1 value re-encrypted" in rotated.stdout.splitlines()

    assert _admin_mit(with_new, "probe", "run", "1").returncode == 0, "the new key alone reads the value"
    stale = _admin_mit(with_old, "secrets", "rotate")
    assert stale.returncode == 1 and "probes.secrets (id=1)" in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1
