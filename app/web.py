"""The operator console: the static files under ``web/``, served by the API's Flask app.

``/`` is the console's page (a single-page app on the REST API), ``/status/<slug>`` the
public status page, ``/console/<path>`` their scripts, styles and vendored libraries.
There is no build step: the files are served as they are in the repository. An installed
copy carries them as ``app/webroot`` (pyproject.toml maps ``web/`` there), a checkout
reads ``web/`` beside the package.

Scripts and styles are revalidated on every load (``no-cache`` with an ETag, so an
unchanged file is a 304): their names carry no version, and a console half old and half
new after an upgrade would be worse than a round trip. Vendored libraries, whose
directory names the release, may be cached for a day.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, abort, send_from_directory

VENDOR_MAX_AGE = 86400
# Everything the console loads comes from this origin; uPlot sets element styles from script,
# and the page's own markup uses a few style attributes (bar widths), hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "frame-ancestors 'none'; form-action 'self'")


def web_directory() -> Path:
    package = Path(__file__).resolve().parent
    installed, source = package / "webroot", package.parent / "web"
    return installed if (installed / "index.html").is_file() else source


blueprint = Blueprint("console", __name__)


def _page(name: str) -> Response:
    response = send_from_directory(web_directory(), name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@blueprint.get("/")
def index() -> Response:
    return _page("index.html")


@blueprint.get("/status/<slug>")
def status_page(slug: str) -> Response:
    # The page reads its slug from the address; an unknown one is told by the public API's 404.
    return _page("status.html")


@blueprint.get("/console/<path:name>")
def asset(name: str) -> Response:
    if name.endswith(".html"):
        abort(404)  # the pages are served at their own addresses, with their headers
    vendored = name.startswith("vendor/")
    response = send_from_directory(web_directory(), name, max_age=VENDOR_MAX_AGE if vendored else 0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    if not vendored:
        response.headers["Cache-Control"] = "no-cache"
    return response


def register_console(flask_app: Flask) -> None:
    flask_app.register_blueprint(blueprint)
