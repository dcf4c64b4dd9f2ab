"""Success conditions a user attaches to a probe, and their evaluation against an outcome."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.probes.base import ProbeOutcome, ProbeStatus

DEFAULT_OK_STATUS = range(200, 400)
_MISSING = object()


class JsonPathCondition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)  # "a.b.0.c": integer segments index lists
    equals: Any


class Conditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_status: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] | None = None
    body_contains: str | None = Field(default=None, min_length=1)
    body_regex: str | None = None
    json_path: JsonPathCondition | None = None
    max_response_time_ms: float | None = Field(default=None, gt=0)
    min_cert_days: int | None = Field(default=None, ge=0)

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @classmethod
    def parse(cls, data: dict[str, Any] | None) -> Conditions:
        """Build from stored/user JSON; ``ValueError`` with one line naming the bad field(s)."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "conditions"
                problems.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
            raise ValueError("invalid conditions: " + "; ".join(problems)) from None


def _lookup(document: Any, path: str) -> Any:
    """Follow a dot path; integer segments index lists. ``_MISSING`` if the path isn't there."""
    node = document
    for segment in path.split("."):
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdecimal() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _MISSING
    return node


def _json_equal(actual: Any, expected: Any) -> bool:
    # JSON true is not 1: compare the JSON texts, not Python's loose bool/int equality.
    return json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def _check_json(body: str, condition: JsonPathCondition) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return "body is not JSON"
    actual = _lookup(document, condition.path)
    if actual is _MISSING:
        return f"json path {condition.path} not found"
    if not _json_equal(actual, condition.equals):
        return f"json path {condition.path} is {json.dumps(actual)}, expected {json.dumps(condition.equals)}"
    return None


def _failed_checks(outcome: ProbeOutcome, conditions: Conditions) -> list[str]:
    failures: list[str] = []
    code = outcome.status_code
    if conditions.expected_status is not None:
        if code is None:
            failures.append(f"no status code (expected {conditions.expected_status})")
        elif code not in conditions.expected_status:
            failures.append(f"status {code} not in {conditions.expected_status}")
    elif code is not None and code not in DEFAULT_OK_STATUS:
        failures.append(f"status {code} not in 200-399")
    body = outcome.body or ""
    if conditions.body_contains is not None and conditions.body_contains not in body:
        failures.append(f"body does not contain {conditions.body_contains!r}")
    if conditions.body_regex is not None and not re.search(conditions.body_regex, body):
        failures.append(f"body does not match /{conditions.body_regex}/")
    if conditions.json_path is not None and (problem := _check_json(body, conditions.json_path)):
        failures.append(problem)
    limit = conditions.max_response_time_ms
    took = outcome.response_time_ms
    if limit is not None and took is not None and took > limit:
        failures.append(f"response time {took:.1f} ms > {limit:g} ms")
    if conditions.min_cert_days is not None:
        if outcome.cert_expires_at is None:
            failures.append("no certificate to check")
        else:
            seconds = (outcome.cert_expires_at - datetime.now(timezone.utc)).total_seconds()
            days = math.floor(seconds / 86400)
            if days < conditions.min_cert_days:
                failures.append(f"certificate expires in {days} days (< {conditions.min_cert_days})")
    return failures


def evaluate(outcome: ProbeOutcome, conditions: Conditions | None) -> ProbeOutcome:
    """Turn a successful outcome into FAILED if a condition does not hold.

    HTTP status codes outside 200-399 fail unless ``expected_status`` says otherwise;
    only HTTP(S) probers set ``status_code`` on success, so other protocols are unaffected.
    """
    if outcome.status is not ProbeStatus.SUCCESS:
        return outcome
    failures = _failed_checks(outcome, conditions or Conditions())
    if not failures:
        return outcome
    return dataclasses.replace(outcome, status=ProbeStatus.FAILED, error="; ".join(failures))
