"""Helpers for the console's browser tests: Debian's Chromium driven by Playwright, the API
served over real HTTP by gunicorn, screenshots.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (``.ci/run``
installs the package). Without it the tests are skipped with the reason — except in CI
(``CI`` set), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.config import PROJECT_ROOT
from tests.api import PASSWORD, http_json
from tests.targets import free_port

CHROMIUM = Path(os.environ.get("ADMIN_MIT_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 800}


def require_chromium() -> None:
    """Skip (fail in CI) when the system's Chromium or the playwright package is missing."""
    problem = None
    if not CHROMIUM.is_file():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        problem = "the playwright package is missing (pip install '.[test]')"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests need Chromium in CI: {problem}")
        pytest.skip(problem)


def launch(playwright: Any, user_data_dir: Path) -> Any:
    """Headless Chromium with a fresh profile: a persistent context is how Playwright takes a user-data dir."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT)


def screenshots_dir(default: Path) -> Path:
    directory = Path(os.environ.get("ADMIN_MIT_SCREENSHOTS_DIR") or default)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Server:
    """gunicorn serving ``wsgi:app`` — the console and the API, as in production — on a free port."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "gunicorn.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
                 "--worker-class", "gthread", "--threads", "16", "--log-level", "warning", "wsgi:app"],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the API server did not start:\n{self.log()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return http_json(method, self.url + path, body, token)

    def token(self, username: str, tenant_id: int | None = None) -> str:
        body: dict[str, Any] = {"username": username, "password": PASSWORD}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        status, data = self.request("POST", "/api/v1/auth/login", body)
        assert status == 200, data
        return str(data["access_token"])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Rest:
    """One user's calls to the running server (the same API the page uses)."""

    def __init__(self, server: Server, username: str, tenant_id: int | None = None) -> None:
        self.server = server
        self.token = server.token(username, tenant_id)

    def call(self, method: str, path: str, body: Any = None, expect: int | tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        status, data = self.server.request(method, f"/api/v1{path}", body, self.token)
        expected = (expect,) if isinstance(expect, int) else expect
        assert status in expected, (method, path, status, data)
        return data
