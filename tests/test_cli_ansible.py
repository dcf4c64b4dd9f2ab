"""``admin-mit host`` and ``admin-mit playbook``, run as a user runs them: add and list, and a
mistake in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_cli
from tests.test_cli import _created_id, one_error_line, run_all

cli_env = test_cli.cli_env  # the migrated database and tenant "acme", once for this module

pytestmark = pytest.mark.timeout(300)

PLAYBOOK = "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: ping\n      ansible.builtin.ping:\n"
BROKEN = "- hosts: all\n  tasks:\n    - name: x\n      debug: msg: hi\n"


def _rows(done: object, header: list[str]) -> dict[str, list[str]]:
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    first, *rows = done.stdout.strip().splitlines()  # type: ignore[attr-defined]
    assert first.split("\t") == header
    return {row.split("\t")[1]: row.split("\t") for row in rows}


def test_hosts_and_playbooks_are_added_and_listed(cli_env: dict[str, str], tmp_path: Path) -> None:
    good, bad = tmp_path / "site.yml", tmp_path / "broken.yml"
    good.write_text(PLAYBOOK)
    bad.write_text(BROKEN)
    added = run_all(cli_env, {
        "host": ["host", "add", "web1", "--tenant", "acme", "--address", "10.0.0.1", "--port", "2222",
                 "--var", "http_port=8080", "--var", "tier=front", "--group", "web", "--group", "prod"],
        "secret": ["host", "add", "web2", "--tenant", "acme", "--var", "ansible_password=hunter2"],
        "playbook": ["playbook", "add", "site", str(good), "--tenant", "acme"],
        "broken": ["playbook", "add", "broken", str(bad), "--tenant", "acme"],
    })
    host_id = _created_id(added["host"], "host")
    assert added["host"].stdout.strip() == (f"host {host_id} 'web1' created in web, prod "
                                            f"(groups web, prod created)")
    secret = one_error_line(added["secret"])
    assert "ansible_password is a secret" in secret and "hunter2" not in secret
    playbook_id = _created_id(added["playbook"], "playbook")
    assert added["playbook"].stdout.strip() == f"playbook {playbook_id} 'site' created (version 1)"
    assert one_error_line(added["broken"]).startswith("admin-mit: error: content: line 4: ")

    listed = run_all(cli_env, {"hosts": ["host", "list", "--tenant", "acme"],
                               "playbooks": ["playbook", "list", "--tenant", "acme"]})
    hosts = _rows(listed["hosts"], ["ID", "NAME", "ADDRESS", "PORT", "GROUPS", "VARIABLES", "PROBES"])
    assert list(hosts) == ["web1"]
    assert hosts["web1"][2:] == ["10.0.0.1", "2222", "web,prod", '{"http_port": 8080, "tier": "front"}', "-"]
    playbooks = _rows(listed["playbooks"], ["ID", "NAME", "SOURCE", "VERSION", "SHA256", "UPDATED"])
    assert list(playbooks) == ["site"] and playbooks["site"][2:4] == ["content", "1"]
