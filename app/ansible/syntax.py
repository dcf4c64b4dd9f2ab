"""Checking a playbook before it is stored or run: YAML first, then ansible-core's own
``ansible-playbook --syntax-check`` against a localhost-only inventory.

The syntax check runs in a private temporary directory with a clean environment and an
empty ``ansible.cfg`` (about 0.4 s of one core, mostly ansible starting). It runs no task,
but ansible does template some names while it loads a playbook (``import_playbook``,
``vars_files``), so the check is no safer a place than a run for text nobody has looked at.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.ansible import yamltext
from app.ansible.environment import ToolTimeout, check_size, clean_env, command, private_dir, run_tool, write_private

TIMEOUT_SECONDS = 60.0
_LOCALHOST_INVENTORY = "localhost ansible_connection=local\n"
_MAX_MESSAGE = 300


class PlaybookSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


def check_playbook(content: str) -> None:
    """Raise PlaybookSyntaxError unless ``content`` is a playbook ansible accepts."""
    _check_text(content)
    with private_dir(None, "syntax") as directory:
        playbook = directory / "playbook.yml"
        write_private(playbook, content)
        _syntax_check(playbook, directory, directory)


def check_project_playbook(project_root: Path, project_dir: str, playbook: str) -> Path:
    """The playbook ``project_dir/playbook`` of ``project_root``, resolved, once it is known
    to stay inside the project (no ``..``, absolute path or symbolic link leads out of
    it), to exist and to pass the syntax check, which runs from the project's directory so
    its roles and included files are found."""
    root = Path(project_root).resolve()
    for part, what in ((project_dir, "project directory"), (playbook, "playbook")):
        if not part or Path(part).is_absolute():
            raise PlaybookSyntaxError(f"the {what} must be a relative path")
    project = (root / project_dir).resolve()
    if not project.is_relative_to(root):
        raise PlaybookSyntaxError(f"the project directory {project_dir!r} is outside the project")
    path = (project / playbook).resolve()
    if not path.is_relative_to(project):
        raise PlaybookSyntaxError(f"the playbook {playbook!r} is outside the project directory")
    if not path.is_file():
        raise PlaybookSyntaxError(f"the playbook {playbook!r} does not exist in the project")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookSyntaxError(f"the playbook {playbook!r} cannot be read: {exc.__class__.__name__}") from None
    _check_text(content)
    with private_dir(None, "syntax") as directory:
        _syntax_check(path, path.parent, directory)
    return path


def _check_text(content: str) -> None:
    if too_big := check_size(content, "playbook"):
        raise PlaybookSyntaxError(too_big)
    try:
        plays = yamltext.load(content)
    except yamltext.YamlError as exc:
        raise PlaybookSyntaxError(exc.message, exc.line) from None
    if not isinstance(plays, list) or not plays:
        raise PlaybookSyntaxError("a playbook is a list of plays", 1)
    for index, play in enumerate(plays):
        if not isinstance(play, dict):
            raise PlaybookSyntaxError(f"play {index + 1} is not a mapping of play keywords",
                                      yamltext.item_line(content, index))


def _syntax_check(playbook: Path, cwd: Path, directory: Path) -> None:
    inventory = directory / "localhost.ini"
    write_private(inventory, _LOCALHOST_INVENTORY)
    env = clean_env(directory)
    env["ANSIBLE_INVENTORY_ENABLED"] = "ini"
    try:
        result = run_tool([command("ansible-playbook"), "--syntax-check", "-i", str(inventory), str(playbook)],
                          env, cwd, TIMEOUT_SECONDS)
    except ToolTimeout as exc:
        raise PlaybookSyntaxError(str(exc)) from None
    if result.returncode != 0:
        raise PlaybookSyntaxError(*_failure(result.stderr + "\n" + result.stdout, playbook))


def _failure(output: str, playbook: Path) -> tuple[str, int | None]:
    """Ansible's first error (one line) and the line of the playbook it names."""
    text = output.replace(str(playbook.parent) + "/", "")
    name = re.escape(playbook.name)
    line = None
    # ansible-core 2.19 says "Origin: FILE:LINE:COLUMN"; older ones "in 'FILE': line N, column M".
    if found := (re.search(rf"^Origin: {name}:(\d+)", text, re.M)
                 or re.search(rf"'{name}': line (\d+), column \d+", text)
                 or re.search(r"line (\d+), column \d+", text)):
        line = int(found.group(1))
    message = ""
    if found := re.search(r"^(?:\[ERROR\]: |ERROR! )(.*)$", text, re.M):
        lines = [found.group(1).strip()]
        for item in text[found.end():].splitlines()[1:]:
            if not item.strip() or item.startswith(("Origin:", "The error appears", "[")):
                break
            lines.append(item.strip())
        message = " ".join(lines)
    return (message or "ansible-playbook --syntax-check failed")[:_MAX_MESSAGE], line
