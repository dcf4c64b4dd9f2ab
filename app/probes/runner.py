"""``run_probe``: the one place that owns a probe's deadline, its clock and its verdict on exceptions."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from urllib.parse import parse_qsl, unquote

from app.probes.base import ProbeError, ProbeOutcome, ProbeRun, ProbeSpec, ProbeStatus
from app.probes.conditions import Conditions, evaluate
from app.probes.net import elapsed_ms
from app.probes.fields import SECRET_NAME
from app.probes.registry import UnknownProtocolError, get_protocol
from app.probes.text import quote, seconds
from app.probes.urls import parse_url

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT = 2.0  # closing what a run left open happens after its clock stopped; don't wait long
_MASK = "***"


async def run_probe(spec: ProbeSpec, conditions: Conditions | None = None) -> ProbeOutcome:
    """Run one probe within ``spec.timeout`` and check ``conditions``; never raises for a probe.

    A target that is down, slow or wrong, a spec that cannot be run and even a bug
    in a prober all come back as an outcome, timed from start to verdict.
    """
    run = ProbeRun(spec)
    started = time.perf_counter()
    try:
        try:
            prober = get_protocol(spec.protocol).probe
            async with asyncio.timeout(spec.timeout):
                outcome = await prober(spec, run)
        except UnknownProtocolError as exc:
            outcome = ProbeOutcome(ProbeStatus.ERROR, error=str(exc))
        except TimeoutError:
            outcome = _timed_out(run)
        except ProbeError as exc:
            outcome = _stopped(run, exc)
        except Exception as exc:
            outcome = _crashed(spec, exc)
        outcome.response_time_ms = elapsed_ms(started)
    finally:
        await _clean_up(run)
    outcome.timings = run.timings
    outcome.cert_expires_at = outcome.cert_expires_at or run.cert_expires_at
    outcome.error = scrub(outcome.error, spec)
    return evaluate(outcome, conditions)


def _stopped(run: ProbeRun, exc: ProbeError) -> ProbeOutcome:
    code = exc.status_code if exc.status_code is not None else run.status_code
    return ProbeOutcome(exc.status, error=str(exc), status_code=code)


def _timed_out(run: ProbeRun) -> ProbeOutcome:
    """What the deadline cut off, said as precisely as what arrived allows."""
    if run.verdict is not None:
        return _stopped(run, run.verdict)
    spec = run.spec
    within = f"within {seconds(spec.timeout)}"
    received = run.received.decode("utf-8", errors="replace")
    expect: str | None = getattr(spec, "expect", None)  # the specs that wait for a reply text
    if expect is not None and received:
        error = f"expected {quote(expect)} not received (got {quote(received)})"
        return ProbeOutcome(ProbeStatus.FAILED, error=error)
    if run.status_code is not None:
        return ProbeOutcome(ProbeStatus.TIMEOUT, error=f"response body not complete {within}", status_code=run.status_code)
    if expect is not None and run.awaiting_reply:
        return ProbeOutcome(ProbeStatus.TIMEOUT, error=f"expected {quote(expect)} not received {within}")
    return ProbeOutcome(ProbeStatus.TIMEOUT, error=f"no response {within}")


def _crashed(spec: ProbeSpec, exc: Exception) -> ProbeOutcome:
    """A bug, not a verdict on the target: logged with its traceback (secrets masked), reported as an error."""
    log.error("%s probe crashed:\n%s", spec.protocol, scrub("".join(traceback.format_exception(exc)), spec))
    detail = str(exc)
    return ProbeOutcome(ProbeStatus.ERROR, error="the probe failed unexpectedly" + (f": {detail}" if detail else ""))


async def _clean_up(run: ProbeRun) -> None:
    if run.closers is None:
        return
    try:
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            await run.closers.aclose()
    except Exception:  # the verdict is in; a peer that will not close properly changes nothing
        log.debug("closing a %s probe's connection failed", run.spec.protocol)


def _secrets(spec: ProbeSpec) -> list[str]:
    """What must never show in a message: the URL's password, credential-like query values and headers."""
    found = spec.secret_values()
    if "://" in spec.target:
        try:
            url = parse_url(spec.target)
        except ValueError:
            return found
        password = url.userinfo.partition(":")[2]
        found += [password, unquote(password)]
        found += [value for name, value in parse_qsl(url.query) if SECRET_NAME.search(name)]
    return sorted({value for value in found if len(value) >= 3}, key=len, reverse=True)


def scrub(text: str | None, spec: ProbeSpec) -> str | None:
    if text:
        for secret in _secrets(spec):
            text = text.replace(secret, _MASK)
    return text


async def run_many(specs: list[tuple[ProbeSpec, Conditions | None]], concurrency: int) -> list[ProbeOutcome]:
    """Run probes concurrently, at most ``concurrency`` at a time; outcomes in input order."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    limit = asyncio.Semaphore(concurrency)

    async def one(spec: ProbeSpec, conditions: Conditions | None) -> ProbeOutcome:
        async with limit:
            return await run_probe(spec, conditions)

    return list(await asyncio.gather(*(one(spec, conditions) for spec, conditions in specs)))
