"""Entry point for the Celery command line: ``celery -A celery_worker.celery worker|beat|flower``.

Creates the Flask app once per process (tasks run in its context). On the
embedded default it starts the private Redis server, detached, if none is running
yet; that server keeps running after the command ends (``admin-mit redis --stop``
stops it). Every start-up problem ends the command with one line on stderr and a
non-zero exit code: broken configuration, an unusable instance directory or
database URL, and — for ``worker`` and ``beat`` — a broker that still does not
answer after a few attempts.

A worker started without ``-n/--hostname`` is named ``worker-<pid>@<host>``, so
several workers on one host stay distinguishable to ``inspect``, ``control`` and
Flower; a ``-n`` given on the command line wins.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from app.core.config import ConfigError, active_settings
from app.core.embedded_redis import EmbeddedRedisError, ensure_running
from app.core.redis_client import STARTUP_BROKER_ATTEMPTS, BrokerUnavailable, check_broker

# Options of the `celery` command itself that take a value as the next word.
_CELERY_VALUE_OPTIONS = frozenset({"-A", "--app", "-b", "--broker", "--result-backend", "--loader",
                                   "--config", "--workdir"})
_NEEDS_BROKER_AT_START = frozenset({"worker", "beat"})


def celery_subcommand(argv: list[str]) -> str | None:
    """The subcommand of a ``celery …`` command line (``worker`` in ``celery -A x worker -l info``)."""
    words = iter(argv[1:])
    for word in words:
        if word in _CELERY_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _fail(message: str) -> NoReturn:
    print(f"admin-mit: error: {message}", file=sys.stderr)
    sys.exit(2)


def _default_worker_nodename() -> None:
    """Make ``worker-<pid>@%h`` the default of ``celery worker -n``.

    This module is imported while ``celery`` parses its own options (``-A``), before
    the ``worker`` subcommand parses its options, so the default set here is the one
    an absent ``-n`` takes; Celery expands ``%h`` to the host name as it does for ``-n``.
    """
    from celery.bin.worker import worker as worker_command

    for param in worker_command.params:
        if param.name == "hostname":
            param.default = f"worker-{os.getpid()}@%h"


_subcommand = celery_subcommand(sys.argv)
_starting = _subcommand in _NEEDS_BROKER_AT_START and not {"-h", "--help"} & set(sys.argv)

try:
    settings = active_settings()
    if settings.uses_embedded_redis:
        ensure_running(settings)

    from app import create_app

    flask_app = create_app(settings, serve_api=False)  # workers, beat and Flower serve no API
    if _starting:
        check_broker(flask_app.extensions["celery"], attempts=STARTUP_BROKER_ATTEMPTS)
except (ConfigError, EmbeddedRedisError, BrokerUnavailable) as exc:
    _fail(str(exc))

celery = flask_app.extensions["celery"]
if _subcommand == "worker":
    _default_worker_nodename()
