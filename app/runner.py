"""``admin-mit up``: every part of the system as child processes of one command.

After the CLI has applied migrations, starts the embedded Redis (when
configured and not already running), a worker on every queue but ``ansible``, a
playbook worker on ``ansible``, beat, and the REST API (gunicorn on ``api.host:api.port``). Children get their own session,
so Ctrl-C reaches only this process, which stops them in order — the API (no
new requests), beat, then the workers (a warm shutdown: running tasks finish),
then Redis (which saves its data) — and exits. If a child dies on its own, the
rest are stopped too. A Redis that was already running is left running.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from app.celery_app import QUEUES
from app.core import embedded_redis
from app.core.config import Settings

log = logging.getLogger("admin_mit.up")

STOP_TIMEOUT_SECONDS = 60


def configure_logging() -> None:
    """Log lines of ``up`` itself, in Celery's format; independent of the root logger,
    which the Alembic migration's logging configuration resets."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/up] %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "celery_worker.celery", *args]


# Playbook runs get a worker of their own: each holds a pool process for its whole length,
# which would otherwise leave no process for probes and alerts.
PLAYBOOK_QUEUE = "ansible"
PLAYBOOK_CONCURRENCY = 2


def worker_command(loglevel: str, concurrency: int | None = None) -> list[str]:
    queues = [queue for queue in QUEUES if queue != PLAYBOOK_QUEUE]
    command = celery_command("worker", f"--loglevel={loglevel}", "-Q", ",".join(queues))
    if concurrency:
        command.append(f"--concurrency={concurrency}")
    return command


def playbook_worker_command(loglevel: str) -> list[str]:
    return celery_command("worker", f"--loglevel={loglevel}", "-Q", PLAYBOOK_QUEUE, "-n", "ansible@%h",
                          f"--concurrency={PLAYBOOK_CONCURRENCY}", "-O", "fair")


def beat_command(loglevel: str) -> list[str]:
    return celery_command("beat", f"--loglevel={loglevel}")


def api_command(settings: Settings) -> list[str]:
    """gunicorn serving ``wsgi:app``: each worker process builds its own app (no preload),
    so no database or Redis connection is shared across a fork. Threaded workers, so a
    client following an execution's live output holds a thread, not a whole process."""
    api = settings.api
    return [sys.executable, "-m", "gunicorn", "--bind", f"{api.host}:{api.port}", "--workers", str(api.workers),
            "--worker-class", "gthread", "--threads", str(api.threads), "--log-level", settings.app.log_level.lower(), "--access-logfile", "-", "--graceful-timeout", "30",
            "wsgi:app"]


def api_address(settings: Settings) -> str:
    host = settings.api.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.api.port}"


@dataclass
class Supervisor:
    """Runs Redis (embedded default), the workers, beat and the API as children; stops them in order."""

    settings: Settings
    concurrency: int | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stopping: bool = False

    def run(self) -> int:
        """Start everything, block until Ctrl-C/SIGTERM or a child exits, stop everything.

        Returns the exit code: 0 after a requested stop, 1 if a part died on its own.
        """
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self._start()
            return self._wait()
        finally:
            self.stop()

    def _start(self) -> None:
        if self.settings.uses_embedded_redis:
            process = embedded_redis.start_foreground(self.settings)
            if process is None:
                log.info("embedded Redis already running at %s; leaving it running",
                         self.settings.embedded_redis_socket)
            else:
                self.children["redis"] = process
                log.info("embedded Redis started (pid %d) at %s", process.pid, self.settings.embedded_redis_socket)
        level = self.settings.app.log_level.lower()
        self._spawn("worker", worker_command(level, self.concurrency))
        self._spawn("ansible-worker", playbook_worker_command(level))
        self._spawn("beat", beat_command(level))
        self._spawn("api", api_command(self.settings))
        address = api_address(self.settings)
        log.info("API on %s — documentation at %s/api/v1/, health at %s/readyz", address, address, address)

    def _spawn(self, name: str, command: list[str]) -> None:
        if self._stopping:
            return
        # A session of its own: Ctrl-C in the terminal reaches only this process,
        # which then stops the children in order. They inherit the working directory,
        # so they read the same config/ and resolve relative paths the same way.
        process = subprocess.Popen(command, start_new_session=True)
        self.children[name] = process
        log.info("%s started (pid %d): %s", name, process.pid, " ".join(command[1:]))

    def _wait(self) -> int:
        while not self._stopping:
            for name, process in self.children.items():
                if process.poll() is not None:
                    log.error("%s exited with code %s; stopping the rest", name, process.returncode)
                    return 1
            time.sleep(0.2)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            log.warning("second signal: killing children")
            for process in self.children.values():
                if process.poll() is None:
                    process.kill()
        self._stopping = True

    def stop(self) -> None:
        """The API and beat first (no new work), then the workers (running tasks finish), then Redis (saves)."""
        self._stopping = True
        for name in ("api", "beat", "worker", "ansible-worker", "redis"):
            process = self.children.get(name)
            if process is None or process.poll() is not None:
                continue
            log.info("stopping %s (pid %d)", name, process.pid)
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %d s; killing it", name, STOP_TIMEOUT_SECONDS)
                process.kill()
                process.wait()
        log.info("all parts stopped")
