"""The console's files are served from web/ and nothing else: no way out of the directory."""

from __future__ import annotations

import pytest

from tests.api import Api


@pytest.mark.parametrize("path", [
    "/console/../pyproject.toml", "/console/..%2Fpyproject.toml", "/console/%2e%2e/pyproject.toml",
    "/console/js/../../app/web.py", "/console//etc/passwd", "/console/index.html", "/console/nothing-here.js",
])
def test_a_path_outside_the_consoles_files_is_a_404(api: Api, path: str) -> None:
    response = api.client.get(path, follow_redirects=True)  # "//" is merged into "/" by a redirect
    assert response.status_code == 404
    assert b"[tool.setuptools]" not in response.data and b"root:" not in response.data


def test_the_consoles_page_and_a_script_are_served(api: Api) -> None:
    page = api.client.get("/")
    script = api.client.get("/console/js/main.js")
    assert page.status_code == 200 and page.mimetype == "text/html" and b"js/main.js" in page.data
    assert script.status_code == 200 and script.mimetype in ("text/javascript", "application/javascript")
