"""Files a process creates once in the instance directory and every process then shares.

The generated signing key and the generated encryption key are such files: the first
process to need one writes it, owner-only, and every later process (on this machine,
in this instance directory) reads the same value. The file is written under a temporary
name and then hard-linked to its final name, which fails if the name exists: two
processes starting at once agree on one value, and none ever reads a half-written file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

from app.core.config import ConfigError

# Where hard links are not supported (some network or FUSE file systems), the file is
# created with O_EXCL and written in place instead.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


def create_once(path: Path, generate: Callable[[], str], what: str) -> str:
    """The stripped text of ``path``; if it does not exist, ``generate()`` is written there first.

    ``what`` names the value in error messages ("the secret key"). Every problem is a
    one-line ``ConfigError`` naming the file.
    """
    if path.exists():
        return read_instance_file(path, what)
    value = generate()
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create {what}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="ascii") as stream:  # mkstemp: mode 0600
            stream.write(value + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return read_instance_file(path, what)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise ConfigError(f"{path}: cannot create {what}: {exc.strerror}") from None
        return _create_in_place(path, value, what)
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
    return value


def _create_in_place(path: Path, value: str, what: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_instance_file(path, what)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create {what}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as stream:
        stream.write(value + "\n")
    return value


def read_instance_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ConfigError(f"{path}: cannot read {what}: {reason}") from None
