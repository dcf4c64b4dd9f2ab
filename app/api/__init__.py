"""The REST API under ``/api/v1``, documented by OpenAPI from the same pydantic models
that validate requests (flask-openapi3). Views are thin: they call the service layer
the CLI and the tasks use, and turn its objects into response models."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, OpenAPI, Tag

from app.api.errors import ErrorBody, register_error_handlers
from app.api.input_guard import reject_nul_characters
from app.api.security import BEARER, enforce_access

PREFIX = "/api/v1"
ERRORS: dict[int, Any] = {
    400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 415: ErrorBody, 422: ErrorBody,
}
NOT_FOUND: dict[int, Any] = {404: ErrorBody}
CONFLICT: dict[int, Any] = {409: ErrorBody}


def api_blueprint(name: str, description: str, *, secured: bool = True, prefix: str = PREFIX) -> APIBlueprint:
    blueprint = APIBlueprint(
        name, __name__, url_prefix=prefix,
        abp_tags=[Tag(name=name, description=description)],
        abp_security=BEARER if secured else [],
        # flask-openapi3 documents a 422 for every operation that declares none, in its own
        # shape; declaring ours keeps the document to the one error shape.
        abp_responses=ERRORS if secured else {422: ErrorBody},
    )
    blueprint.before_request(enforce_access)
    blueprint.before_request(reject_nul_characters)
    return blueprint


def register_api(app: OpenAPI) -> None:
    from app.api import (alert_reports, alert_rules, alerts, ansible_credentials, ansible_executions, ansible_groups,
                         ansible_hosts, ansible_inventories, ansible_playbooks, ansible_templates, auth, health,
                         maintenance_windows, metrics, notification_channels, operations, probe_groups, probes, results,
                         silences, tasks, tenants, tokens, users)

    for module in (health, auth, tenants, users, tokens, probe_groups, probes, results, tasks, operations,
                   notification_channels, alert_rules, alerts, maintenance_windows, silences, alert_reports,
                   ansible_hosts, ansible_groups, ansible_inventories, ansible_credentials, ansible_playbooks,
                   ansible_templates, ansible_executions, metrics):
        app.register_api(module.blueprint)
    from app.api import console, status_pages

    for blueprint in (console.blueprint, status_pages.blueprint, status_pages.public_blueprint):
        app.register_api(blueprint)
    register_error_handlers(app)
