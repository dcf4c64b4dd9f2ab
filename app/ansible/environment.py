"""What every ansible process of ours starts with: a private directory and a clean environment.

The environment is built, not inherited: of the worker's own variables only the few below
pass (the worker's may hold database URLs, keys, ``SSH_AUTH_SOCK`` of an agent, ``DISPLAY``
or ``SSH_ASKPASS`` that would answer prompts, ``ANSIBLE_*`` settings...). A playbook can read
its environment (``lookup('env', ...)``), and whatever it reads can end up in its output.

``ANSIBLE_CONFIG`` names an empty file in the private directory, so no ``ansible.cfg`` of the
current directory, the home directory or the system changes what runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
             # Where the machine keeps its CA certificates (paths, not secrets).
             "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
INHERITED_PREFIXES = ("LC_",)
# Both inventory and playbook text is refused above this size (UTF-8 bytes).
MAX_TEXT_BYTES = 1024 * 1024


def scripts_dir() -> str:
    """Where this Python's console scripts live: the ``ansible-*`` commands of the
    ansible-core this process imports, whatever PATH the worker was started with."""
    return sysconfig.get_path("scripts")


def command(name: str) -> str:
    path = Path(scripts_dir()) / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def clean_env(private_dir: Path) -> dict[str, str]:
    """The environment for an ansible process whose private directory is ``private_dir``."""
    env = {key: value for key, value in os.environ.items()
           if key in INHERITED or key.startswith(INHERITED_PREFIXES)}
    env["PATH"] = os.pathsep.join(p for p in (scripts_dir(), env.get("PATH", os.defpath)) if p)
    if not any(key in env for key in ("LANG", "LC_ALL", "LC_CTYPE")):
        env["LANG"] = "C.UTF-8"  # ansible-core refuses to start without a UTF-8 locale
    config = private_dir / "ansible.cfg"
    if not config.exists():
        write_private(config, "")
    local_temp = private_dir / "tmp"
    local_temp.mkdir(mode=0o700, exist_ok=True)
    env.update({
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_LOCAL_TEMP": str(local_temp),
        # Modules run on this machine (ansible_connection=local) unpack themselves in the
        # system's temporary directory and leave that behind when they are killed.
        "TMPDIR": str(local_temp),
        "ANSIBLE_NOCOLOR": "1",
        # Python's own warnings (a library's deprecation notice at import, such as cryptography's
        # about DSA) are not the playbook's output; ansible's warnings go through its display.
        "PYTHONWARNINGS": "ignore",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # An inventory source ansible cannot parse is an error, never an empty inventory.
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
    })
    return env


def write_private(path: Path, text: str) -> None:
    """Create ``path`` (it must not exist) readable by us alone, then write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def check_size(text: str, what: str) -> str | None:
    """A message when ``text`` is over ``MAX_TEXT_BYTES``, else None."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        return f"the {what} is {size} bytes, more than the {MAX_TEXT_BYTES} allowed"
    return None


@contextmanager
def private_dir(parent: Path | None, name: str) -> Iterator[Path]:
    """A new directory (mode 0700) inside ``parent`` (the system's temporary directory when
    None), removed with everything in it when the block ends, however it ends."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:40] or "run"
    path = Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=parent))
    try:
        yield path
    finally:
        remove_tree(path)


def remove_tree(path: Path) -> None:
    """Remove ``path`` entirely; what cannot be removed is logged, never raised (the caller's
    own exception matters more)."""
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        _make_writable(path)
    log.warning("could not remove the private directory %s", path)


def _make_writable(path: Path) -> None:
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            try:
                os.chmod(os.path.join(root, name), 0o700)
            except OSError:
                pass
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str


class ToolTimeout(Exception):
    pass


def run_tool(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float) -> ToolResult:
    """Run an ansible command to its end (its own session: on timeout its whole process
    group is killed, not only the first process)."""
    process = subprocess.Popen(args, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise ToolTimeout(f"{Path(args[0]).name} took longer than {timeout:g} s") from None
    except BaseException:
        _kill(process)
        raise
    return ToolResult(process.returncode, stdout, stderr)


def _kill(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()
