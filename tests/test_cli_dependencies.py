"""``admin-mit probe add --depends-on`` and ``probe depend``, run as a user runs them (a subprocess
on a SQLite file migrated by ``db upgrade``), and the parents ``probe list`` shows."""

from __future__ import annotations

import os
import re
import sqlite3
import uuid

import pytest
import redis

from tests.conftest import SUBPROCESS_REDIS_DB, subprocess_environ
from tests.test_cli import admin_mit, one_error_line, run_all

pytestmark = pytest.mark.timeout(300)

UNREACHABLE = "http://127.0.0.1:9/"  # only validated, never run


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated SQLite database with tenants acme and globex."""
    instance = tmp_path_factory.mktemp("cli-dependencies")
    redis.Redis(host=os.environ["ADMIN_MIT_REDIS__HOST"], port=int(os.environ["ADMIN_MIT_REDIS__PORT"]),
                db=int(SUBPROCESS_REDIS_DB)).flushdb()
    env = subprocess_environ(instance, f"sqlite:///{instance / 'cli.db'}")
    assert admin_mit(env, "db", "upgrade").returncode == 0
    for tenant in ("acme", "globex"):
        assert admin_mit(env, "tenant", "add", tenant).returncode == 0
    return env


def add(env: dict[str, str], name: str, *options: str, tenant: str = "acme") -> int:
    done = admin_mit(env, "probe", "add", "--tenant", tenant, "--name", name, "--protocol", "http",
                     "--target", UNREACHABLE, *options)
    assert done.returncode == 0, done.stderr
    found = re.match(rf"probe (\d+) '{name}' created", done.stdout)
    assert found, done.stdout
    return int(found.group(1))


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def parents_listed(env: dict[str, str]) -> dict[int, str]:
    """``probe list``'s DEPENDS_ON column by probe id."""
    done = admin_mit(env, "probe", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = [line.split("\t") for line in done.stdout.strip().splitlines()]
    column = header.index("DEPENDS_ON")
    return {int(row[0]): row[column] for row in rows}


def stored_probes(env: dict[str, str]) -> int:
    with sqlite3.connect(env["ADMIN_MIT_DATABASE__URL"].removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT count(*) FROM probes").fetchone()[0]


def test_add_with_parents_and_the_list_shows_them(cli_env: dict[str, str]) -> None:
    db_, net = add(cli_env, unique("db")), add(cli_env, unique("net"))

    child = add(cli_env, unique("app"), "--depends-on", str(net), "--depends-on", str(db_))

    listed = parents_listed(cli_env)
    assert listed[child] == f"{db_},{net}"
    assert listed[db_] == listed[net] == "-"


def test_depend_replaces_the_parents_and_none_clears_them(cli_env: dict[str, str]) -> None:
    db_, net = add(cli_env, unique("db")), add(cli_env, unique("net"))
    child = add(cli_env, unique("app"), "--depends-on", str(db_))

    done = admin_mit(cli_env, "probe", "depend", str(child), "--on", str(net), "--on", str(db_))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"probe {child} depends on {db_}, {net}"
    assert parents_listed(cli_env)[child] == f"{db_},{net}"

    cleared = admin_mit(cli_env, "probe", "depend", str(child), "--none", "--tenant", "acme")
    assert cleared.stdout.strip() == f"probe {child} depends on no probe"
    assert parents_listed(cli_env)[child] == "-"


def test_a_cycle_or_the_probe_itself_is_one_error_line_and_changes_nothing(cli_env: dict[str, str]) -> None:
    a_name, b_name, c_name = unique("a"), unique("b"), unique("c")
    c = add(cli_env, c_name)
    b = add(cli_env, b_name, "--depends-on", str(c))
    a = add(cli_env, a_name, "--depends-on", str(b))

    results = run_all(cli_env, {
        "direct": ["probe", "depend", str(b), "--on", str(a)],
        "indirect": ["probe", "depend", str(c), "--on", str(a)],
        "itself": ["probe", "depend", str(a), "--on", str(a)],
    })

    assert one_error_line(results["direct"]).endswith(f"depends_on: would make a cycle: {b_name} → {a_name} → {b_name}")
    assert one_error_line(results["indirect"]).endswith(
        f"would make a cycle: {c_name} → {a_name} → {b_name} → {c_name}")
    assert "cannot depend on itself" in one_error_line(results["itself"])
    listed = parents_listed(cli_env)
    assert (listed[a], listed[b], listed[c]) == (str(b), str(c), "-")


def test_another_tenants_probe_is_not_found_and_nothing_is_created(cli_env: dict[str, str]) -> None:
    theirs = add(cli_env, unique("theirs"), tenant="globex")
    mine = add(cli_env, unique("mine"))
    before = stored_probes(cli_env)

    results = run_all(cli_env, {
        "add": ["probe", "add", "--tenant", "acme", "--name", unique("x"), "--protocol", "http",
                "--target", UNREACHABLE, "--depends-on", str(theirs)],
        "depend": ["probe", "depend", str(mine), "--on", str(theirs)],
        "missing": ["probe", "depend", str(mine), "--on", "424242"],
        "wrong tenant": ["probe", "depend", str(theirs), "--none", "--tenant", "acme"],
    })

    assert one_error_line(results["add"]).endswith(f"probe {theirs} not found")
    assert one_error_line(results["depend"]).endswith(f"probe {theirs} not found")
    assert one_error_line(results["missing"]).endswith("probe 424242 not found")
    assert one_error_line(results["wrong tenant"]).endswith(f"probe {theirs} not found")
    assert stored_probes(cli_env) == before
    assert parents_listed(cli_env)[mine] == "-"


def test_depend_needs_either_parents_or_none(cli_env: dict[str, str]) -> None:
    results = run_all(cli_env, {
        "neither": ["probe", "depend", "1"],
        "both": ["probe", "depend", "1", "--on", "2", "--none"],
        "not an id": ["probe", "depend", "1", "--on", "db"],
    })

    assert "give --on PARENT_ID (repeatable) or --none" in one_error_line(results["neither"])
    assert "give --on PARENT_ID (repeatable) or --none" in one_error_line(results["both"])
    assert "'db' is not a valid integer" in one_error_line(results["not an id"])


def test_deleting_a_parent_drops_it_from_the_list(cli_env: dict[str, str]) -> None:
    db_, net = add(cli_env, unique("db")), add(cli_env, unique("net"))
    child = add(cli_env, unique("app"), "--depends-on", str(db_), "--depends-on", str(net))

    assert admin_mit(cli_env, "probe", "delete", str(db_)).returncode == 0

    assert parents_listed(cli_env)[child] == str(net)
