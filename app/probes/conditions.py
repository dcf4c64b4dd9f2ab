"""Success conditions a user attaches to a probe, and their evaluation against an outcome.

``body_regex`` runs on the ``regex`` package with a time limit (``REGEX_TIMEOUT``):
Python's ``re`` cannot be interrupted, and a pattern that backtracks badly over
a 1 MiB body would hold the event loop, and every other probe in it, for minutes.
A pattern that needs longer fails its check with a message saying so.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone
from typing import Annotated, Any

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.probes.base import ProbeOutcome, ProbeStatus
from app.probes.text import cert_expiry, quote, seconds

DEFAULT_OK_STATUS = range(200, 400)
REGEX_TIMEOUT = 0.1  # seconds one body_regex check may take
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
                regex.compile(value)
            except regex.error as exc:
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


_NO_CONDITIONS = Conditions()


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


def _regex_problem(pattern: str, body: str) -> str | None:
    try:
        if regex.search(pattern, body, timeout=REGEX_TIMEOUT):
            return None
    except TimeoutError:
        return f"body_regex /{pattern}/ took longer than {seconds(REGEX_TIMEOUT)} on this body (simplify the pattern)"
    return f"body does not match /{pattern}/"


def _body_problems(body: str, conditions: Conditions) -> list[str]:
    problems: list[str] = []
    if conditions.body_contains is not None and conditions.body_contains not in body:
        problems.append(f"body does not contain {quote(conditions.body_contains)}")
    if conditions.body_regex is not None and (problem := _regex_problem(conditions.body_regex, body)):
        problems.append(problem)
    if conditions.json_path is not None and (problem := _check_json(body, conditions.json_path)):
        problems.append(problem)
    return problems


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
    body_problems = _body_problems(outcome.body or "", conditions)
    if body_problems and outcome.body_truncated:
        body_problems[-1] += f" ({outcome.body_truncated})"
    failures += body_problems
    limit = conditions.max_response_time_ms
    took = outcome.response_time_ms
    if limit is not None and took is not None and took > limit:
        failures.append(f"response time {took:.1f} ms > {limit:g} ms")
    if conditions.min_cert_days is not None:
        if outcome.cert_expires_at is None:
            failures.append("no certificate to check")
        else:
            now = datetime.now(timezone.utc)
            left = (outcome.cert_expires_at - now).total_seconds()
            if left < 0:
                failures.append(cert_expiry(outcome.cert_expires_at, now))
            elif math.floor(left / 86400) < conditions.min_cert_days:
                failures.append(f"{cert_expiry(outcome.cert_expires_at, now)} (minimum {conditions.min_cert_days})")
    return failures


def evaluate(outcome: ProbeOutcome, conditions: Conditions | None) -> ProbeOutcome:
    """Turn a successful outcome into FAILED if a condition does not hold.

    HTTP status codes outside 200-399 fail unless ``expected_status`` says otherwise;
    only HTTP(S) probers set ``status_code`` on success, so other protocols are unaffected.
    """
    if outcome.status is not ProbeStatus.SUCCESS:
        return outcome
    failures = _failed_checks(outcome, conditions or _NO_CONDITIONS)
    if not failures:
        return outcome
    return dataclasses.replace(outcome, status=ProbeStatus.FAILED, error="; ".join(failures))
