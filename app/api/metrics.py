"""``GET /metrics`` for Prometheus: the caller's tenant; every tenant and the platform's series for
the scrape credential (``metrics.token``) or a platform administrator's login.

The scrape credential is recognised here, in this blueprint's first ``before_request``, and
nowhere else: on any other route it is an unknown bearer token (401).
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, request
from flask_openapi3 import APIBlueprint, Tag

from app.api import ERRORS
from app.api.input_guard import reject_nul_characters
from app.api.security import BEARER, enforce_access, role
from app.api.tasks import visible_tenant
from app.services import metrics

blueprint = APIBlueprint("metrics", __name__, url_prefix="", abp_tags=[Tag(name="metrics",
                         description="Prometheus metrics.")], abp_security=BEARER, abp_responses=ERRORS)


@blueprint.before_request
def _scrape_credential_or_access_rule() -> None:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    g.metrics_scrape = (request.endpoint == "metrics.scrape" and scheme.lower() == "bearer"
                        and metrics.is_scrape_token(credential.strip()))
    if not g.metrics_scrape:
        enforce_access()


blueprint.before_request(reject_nul_characters)

TEXT_FORMAT = {"description": "The Prometheus text exposition format (version 0.0.4); gzip-compressed "
                              "(`Content-Encoding: gzip`) when the request accepts it.",
               "content": {"text/plain": {"schema": {"type": "string"}}}}


@blueprint.get("/metrics", summary="Probes' latest results and pipeline, alert and queue counts for Prometheus",
               description="Per probe, blackbox_exporter's series (`probe_success`, `probe_duration_seconds`, "
                           "`probe_http_duration_seconds{phase}`, `probe_phase_duration_seconds{phase}`, "
                           "`probe_http_status_code`, "
                           "`probe_ssl_earliest_cert_expiry`) labelled tenant, probe, probe_id, group and "
                           "protocol, and `admin_mit_probe_info` with the target (a URL without credentials or "
                           "query); the tenant's pipeline totals and alert, notification and execution counts. "
                           "An API token or login of a tenant sees that tenant; the scrape credential "
                           "(`metrics.token`, valid here only) and a platform administrator's login see every "
                           "tenant and the queues.",
               responses={200: TEXT_FORMAT})
@role("viewer", platform=True)
def scrape() -> Any:
    # gzip, when the request accepts it, is the app's (Flask-Compress, level 1: docs/api.md).
    return Response(metrics.render(None if g.metrics_scrape else visible_tenant()),
                    content_type=metrics.CONTENT_TYPE)
