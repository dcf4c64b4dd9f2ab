"""The probe engine against real loopback servers (tests/targets.py, the ``targets`` fixture in conftest)."""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import logging
import re
import socket
import sys
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from app.probes import (
    PROTOCOLS,
    REGISTRY,
    Conditions,
    ProbeOutcome,
    ProbeRun,
    ProbeSpec,
    ProbeStatus,
    Protocol,
    UnknownProtocolError,
    build_spec,
    evaluate,
    get_protocol,
    new_event_loop,
    run_many,
    run_probe,
    validate_target,
)
from app.probes.tls import ssl_context
from tests.targets import BOMB_INFLATED, LoopbackTargets, free_port, gzip_bomb

pytestmark = pytest.mark.timeout(30)

SHORT = 0.5  # timeout for probes that are meant to time out
MEMORY_BOUND = 5_000_000  # what one hostile target may cost a probe, in bytes


def run(spec: ProbeSpec, conditions: dict[str, Any] | None = None) -> ProbeOutcome:
    return asyncio.run(run_probe(spec, Conditions.parse(conditions)))


def localhost(url: str) -> str:
    """The same target by name, so the probe has a DNS phase."""
    return url.replace("127.0.0.1", "localhost")


# --- HTTP ----------------------------------------------------------------------------


def test_http_ok_reports_status_body_and_phases(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/ok"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert (outcome.status_code, outcome.body, outcome.bytes_read) == (200, "ok", 2)
    assert outcome.headers["content-type"] == "text/plain"
    timings = outcome.timings
    assert timings.dns_ms is None  # an IP literal is not resolved
    assert timings.tls_ms is None
    assert None not in (timings.connect_ms, timings.processing_ms, timings.transfer_ms)
    assert outcome.response_time_ms is not None and outcome.response_time_ms > 0


def test_http_by_name_times_dns_and_keeps_host_header(targets: LoopbackTargets) -> None:
    url = localhost(targets.http_url) + "/echo"
    outcome = run(build_spec("http", url, method="POST", headers={"X-Probe": "1"}, body="payload"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.timings.dns_ms is not None
    echo = json.loads(outcome.body)
    assert echo["method"] == "POST"
    assert echo["body"] == "payload"
    assert echo["headers"]["Host"] == f"localhost:{targets.http_port}"
    assert echo["headers"]["X-Probe"] == "1"


def test_http_connection_refused(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", f"http://127.0.0.1:{free_port()}/ok"))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "connection refused"


def test_http_no_answer_times_out(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/hang", timeout=SHORT))

    assert outcome.status is ProbeStatus.TIMEOUT
    assert outcome.error == "no response within 0.5 s"
    assert outcome.timings.connect_ms is not None  # it got as far as connecting


def test_http_error_status_fails_by_default(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/status/503"))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.status_code == 503
    assert outcome.error == "status 503 not in 200-399"


def test_http_expected_status(targets: LoopbackTargets) -> None:
    expected_503 = run(build_spec("http", targets.http_url + "/status/503"), {"expected_status": [503]})
    wrong = run(build_spec("http", targets.http_url + "/status/500"), {"expected_status": [200]})

    assert expected_503.status is ProbeStatus.SUCCESS
    assert wrong.status is ProbeStatus.FAILED
    assert wrong.error == "status 500 not in [200]"


def test_body_contains(targets: LoopbackTargets) -> None:
    spec = build_spec("http", targets.http_url + "/ok")

    assert run(spec, {"body_contains": "ok"}).status is ProbeStatus.SUCCESS
    missing = run(spec, {"body_contains": "hello"})
    assert missing.status is ProbeStatus.FAILED
    assert missing.error == "body does not contain “hello”"


def test_body_regex(targets: LoopbackTargets) -> None:
    spec = build_spec("http", targets.http_url + "/json")

    assert run(spec, {"body_regex": r'"status":\s*"ok"'}).status is ProbeStatus.SUCCESS
    mismatch = run(spec, {"body_regex": r'"status":\s*"down"'})
    assert mismatch.status is ProbeStatus.FAILED
    assert mismatch.error == 'body does not match /"status":\\s*"down"/'


@pytest.mark.parametrize(
    ("path", "equals", "error"),
    [
        ("items.1", 2, None),
        ("status", "ok", None),
        ("status", "down", 'json path status is "ok", expected "down"'),
        ("items.0", True, "json path items.0 is 1, expected true"),
        ("items.5", 1, "json path items.5 not found"),
        ("status.deeper", 1, "json path status.deeper not found"),
    ],
)
def test_json_path(targets: LoopbackTargets, path: str, equals: Any, error: str | None) -> None:
    outcome = run(build_spec("http", targets.http_url + "/json"), {"json_path": {"path": path, "equals": equals}})

    assert outcome.error == error
    assert outcome.status is (ProbeStatus.SUCCESS if error is None else ProbeStatus.FAILED)


def test_json_path_on_a_non_json_body(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/ok"), {"json_path": {"path": "a", "equals": 1}})

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "body is not JSON"


def test_max_response_time(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/slow?ms=300"), {"max_response_time_ms": 100})

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error.startswith("response time ")
    assert outcome.error.endswith(" ms > 100 ms")


def test_several_failed_checks_are_all_reported(targets: LoopbackTargets) -> None:
    outcome = run(
        build_spec("http", targets.http_url + "/status/500"),
        {"expected_status": [200], "body_contains": "ok"},
    )

    assert outcome.error == "status 500 not in [200]; body does not contain “ok”"


def test_redirect_followed(targets: LoopbackTargets) -> None:
    before = targets.hits("/json")
    outcome = run(build_spec("http", targets.http_url + "/redirect?to=/json"))

    assert outcome.status is ProbeStatus.SUCCESS
    assert outcome.status_code == 200
    assert '"items"' in outcome.body
    assert targets.hits("/json") == before + 1


def test_redirect_not_followed(targets: LoopbackTargets) -> None:
    before = targets.hits("/json")
    outcome = run(build_spec("http", targets.http_url + "/redirect?to=/json", follow_redirects=False))

    assert outcome.status is ProbeStatus.SUCCESS  # 3xx is fine by default
    assert outcome.status_code == 302
    assert outcome.headers["location"] == "/json"
    assert targets.hits("/json") == before


def test_post_redirected_with_302_becomes_get(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/redirect?to=/echo", method="POST", body="x"))

    echo = json.loads(outcome.body)
    assert (echo["method"], echo["body"]) == ("GET", "")


def test_redirect_loop_fails(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/loop"))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "more than 10 redirects"


def test_body_read_is_capped(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/json", max_body_bytes=5))

    assert outcome.status is ProbeStatus.SUCCESS
    assert (outcome.bytes_read, outcome.body) == (5, '{"sta')
    assert outcome.body_truncated == outcome.to_dict()["body_truncated"] == "body cut at 5 bytes"


def test_a_whole_body_is_not_marked_truncated(targets: LoopbackTargets) -> None:
    exact = run(build_spec("http", targets.http_url + "/ok", max_body_bytes=2))
    gzip_exact = run(build_spec("http", targets.http_url + "/gzip", max_body_bytes=33))

    assert (exact.body, exact.body_truncated) == ("ok", None)
    assert (gzip_exact.bytes_read, gzip_exact.body_truncated) == (33, None)


def test_a_body_check_on_a_cut_body_says_it_was_cut(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/json", max_body_bytes=5), {"body_contains": "items"})

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "body does not contain “items” (body cut at 5 bytes)"


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/chunked", "/until-close", "/early-hints"])
def test_compressed_and_differently_framed_bodies_are_read_whole(targets: LoopbackTargets, path: str) -> None:
    outcome = run(build_spec("http", targets.http_url + path))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.status_code == 200
    if path == "/early-hints":  # the 103 before it is skipped, its Link header not kept
        assert (outcome.body, "link" in outcome.headers) == ("ok", False)
    else:
        assert json.loads(outcome.body) == {"status": "ok", "items": [1, 2]}
        assert outcome.body_truncated is None
    assert outcome.timings.transfer_ms is not None


def test_head_request_ends_with_the_headers(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/ok", method="HEAD", timeout=5))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert (outcome.body, outcome.headers["content-length"]) == ("", "2")


def test_expect_on_http_is_a_body_check(targets: LoopbackTargets) -> None:
    found = run(build_spec("http", targets.http_url + "/json", expect='"status": "ok"'))
    missing = run(build_spec("http", targets.http_url + "/json", expect="down"))

    assert found.status is ProbeStatus.SUCCESS, found.error
    assert missing.status is ProbeStatus.FAILED
    assert missing.status_code == 200
    assert missing.error == "body does not contain “down”"


def test_a_body_that_stops_coming_times_out_with_its_status(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/slow-body", timeout=SHORT))

    assert outcome.status is ProbeStatus.TIMEOUT
    assert outcome.status_code == 200
    assert outcome.error == "response body not complete within 0.5 s"
    assert outcome.timings.connect_ms is not None and outcome.timings.transfer_ms is None


def test_dns_failure_is_an_error(targets: LoopbackTargets, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # no real DNS query leaves the machine
    outcome = run(build_spec("http", "http://nowhere.example/"))

    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error == "could not resolve host nowhere.example: Name or service not known"
    assert outcome.timings.dns_ms is not None


# --- hostile HTTP targets: bounded memory, no stalled event loop -----------------------


async def _with_peak_memory(probe: Awaitable[ProbeOutcome]) -> tuple[ProbeOutcome, int]:
    """The outcome, and the most memory the process held above its level before the probe.

    The targets run in this process too, so whatever they allocate meanwhile counts
    against the probe: the bound holds with room to spare.
    """
    tracemalloc.start()
    try:
        outcome = await probe
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/gzip-bomb", ProbeStatus.SUCCESS, None),
        ("/endless-body", ProbeStatus.SUCCESS, None),
        ("/endless-headers", ProbeStatus.FAILED, re.compile(r"response (has more than 100 headers|headers larger than 64 KiB)")),
        ("/endless-header-value", ProbeStatus.FAILED, "response headers larger than 64 KiB"),
        ("/many-headers", ProbeStatus.FAILED, "response has more than 100 headers"),
        ("/endless-trailer", ProbeStatus.FAILED, "response trailers larger than 64 KiB"),
    ],
)
def test_a_hostile_server_costs_a_probe_little_memory(
    targets: LoopbackTargets, path: str, status: ProbeStatus, message: str | re.Pattern[str] | None
) -> None:
    gzip_bomb()  # built once, before measuring: it is the server's memory, not the probe's
    outcome, peak = asyncio.run(_with_peak_memory(run_probe(build_spec("http", targets.http_url + path, timeout=10))))

    assert outcome.status is status, outcome.error
    if isinstance(message, re.Pattern):
        assert message.fullmatch(outcome.error or ""), outcome.error
    else:
        assert outcome.error == message
    assert peak < MEMORY_BOUND, f"{path} cost {peak / 1e6:.1f} MB"


def test_a_gzip_bomb_is_cut_after_decompression(targets: LoopbackTargets) -> None:
    wire = len(gzip_bomb())
    outcome = run(build_spec("http", targets.http_url + "/gzip-bomb"))

    assert wire < 600_000 and BOMB_INFLATED >= 500 << 20  # half a megabyte that inflates to 512 MiB
    assert outcome.status is ProbeStatus.SUCCESS
    assert outcome.bytes_read == len(outcome.body or "") == 1 << 20
    assert outcome.body_truncated == "body cut at 1 MiB (decompressed)"


def test_an_endless_body_is_cut_at_the_limit(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("http", targets.http_url + "/endless-body", max_body_bytes=100_000))

    assert outcome.status is ProbeStatus.SUCCESS
    assert (outcome.bytes_read, outcome.body_truncated) == (100_000, "body cut at 97.7 KiB")


def test_hostile_targets_do_not_hold_up_a_healthy_probe_beside_them(targets: LoopbackTargets) -> None:
    hostile = ["/gzip-bomb", "/endless-body", "/endless-headers", "/endless-header-value", "/endless-trailer"]
    gzip_bomb()

    async def scenario() -> tuple[list[ProbeOutcome], list[ProbeOutcome], ProbeOutcome]:
        bad = [asyncio.create_task(run_probe(build_spec("http", targets.http_url + p))) for p in hostile * 4]
        # A pattern that backtracks for ever on the endless body: evaluated under a time limit.
        regex_bomb = asyncio.create_task(
            run_probe(build_spec("http", targets.http_url + "/endless-body"), Conditions(body_regex=r"(x+x+)+y"))
        )
        healthy = [await run_probe(build_spec("http", targets.http_url + "/ok")) for _ in range(5)]
        return list(await asyncio.gather(*bad)), healthy, await regex_bomb

    bad, healthy, regex_bomb = asyncio.run(scenario())

    assert all(o.status in (ProbeStatus.SUCCESS, ProbeStatus.FAILED) for o in bad)
    assert [o.status for o in healthy] == [ProbeStatus.SUCCESS] * 5
    # Each healthy run shares the loop with 21 hostile ones; none waits for them by seconds.
    assert max(o.response_time_ms or 0 for o in healthy) < 2000
    assert regex_bomb.status is ProbeStatus.FAILED
    assert regex_bomb.error == (
        "body_regex /(x+x+)+y/ took longer than 0.1 s on this body (simplify the pattern) (body cut at 1 MiB)"
    )


# --- credentials -------------------------------------------------------------------------

PASSWORD = "s3cret-Pa55"
TOKEN = "tok-8f1e2d"


def test_url_credentials_are_sent_as_basic_auth_and_never_logged(
    targets: LoopbackTargets, caplog: pytest.LogCaptureFixture
) -> None:
    host = targets.http_url.removeprefix("http://")
    ws_host = targets.ws_url.removeprefix("ws://")
    with caplog.at_level(logging.DEBUG):
        ok = run(build_spec("http", f"http://probe:{PASSWORD}@{host}/echo?token={TOKEN}"))
        ws = run(build_spec("websocket", f"ws://probe:{PASSWORD}@{ws_host}?token={TOKEN}", body="x", expect="x"))
        refused = run(build_spec("http", f"http://probe:{PASSWORD}@127.0.0.1:{free_port()}/?token={TOKEN}"))
        redirect = f"ftp://probe:{PASSWORD}@files.invalid/x?token={TOKEN}"
        unfollowable = run(build_spec("http", f"http://probe:{PASSWORD}@{host}/redirect?to={redirect}"))

    assert ok.status is ProbeStatus.SUCCESS, ok.error
    sent = json.loads(ok.body)["headers"]["Authorization"]
    assert sent == "Basic " + base64.b64encode(f"probe:{PASSWORD}".encode()).decode()
    assert ws.status is ProbeStatus.SUCCESS, ws.error
    assert refused.error == "connection refused"
    assert unfollowable.error == "cannot follow a redirect to ftp://files.invalid/x"
    assert caplog.records  # DEBUG logging was on (asyncio logs at DEBUG)
    for record in caplog.records:
        text = record.getMessage()
        assert PASSWORD not in text and TOKEN not in text, f"{record.name}: {text}"
        assert base64.b64encode(f"probe:{PASSWORD}".encode()).decode() not in text


def test_a_crash_never_reports_or_logs_the_urls_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def leaky(spec: ProbeSpec, run: ProbeRun) -> ProbeOutcome:
        raise RuntimeError(f"could not handle {spec.target}")

    monkeypatch.setitem(REGISTRY, "http", Protocol(REGISTRY["http"].spec, leaky))
    with caplog.at_level(logging.DEBUG):
        outcome = run(build_spec("http", f"http://probe:{PASSWORD}@example.invalid/?api_key={TOKEN}"))

    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error == "the probe failed unexpectedly: could not handle http://probe:***@example.invalid/?api_key=***"
    assert any(record.levelno == logging.ERROR for record in caplog.records)  # the traceback, for the developer
    assert not any(PASSWORD in r.getMessage() or TOKEN in r.getMessage() for r in caplog.records)


def test_a_spec_shows_no_secrets_when_printed() -> None:
    spec = build_spec("http", f"http://probe:{PASSWORD}@example.invalid/?token={TOKEN}", headers={"X-Api-Key": TOKEN})

    assert PASSWORD not in repr(spec) and TOKEN not in repr(spec)
    assert "example.invalid" in repr(spec) and "X-Api-Key" in repr(spec)


# --- HTTPS ---------------------------------------------------------------------------


def test_https_self_signed_with_verification_is_an_error(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("https", targets.https_url + "/ok"))

    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error == "certificate not trusted: self-signed certificate"
    assert outcome.cert_expires_at == targets.cert_not_after  # a second, non-verifying look


def test_https_without_verification_succeeds_with_all_phases(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("https", localhost(targets.https_url) + "/ok", verify_tls=False))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.body == "ok"
    assert outcome.cert_expires_at == targets.cert_not_after
    timings = outcome.timings
    assert None not in (timings.dns_ms, timings.connect_ms, timings.tls_ms, timings.processing_ms, timings.transfer_ms)


def test_min_cert_days(targets: LoopbackTargets) -> None:
    spec = build_spec("https", targets.https_url + "/ok", verify_tls=False)

    assert run(spec, {"min_cert_days": 14}).status is ProbeStatus.SUCCESS  # 30-day certificate
    too_few = run(spec, {"min_cert_days": 60})
    assert too_few.status is ProbeStatus.FAILED
    assert too_few.error == "certificate expires in 29 days (minimum 60)"


def test_min_cert_days_with_a_short_lived_certificate() -> None:
    with LoopbackTargets(cert_days=3) as short_lived:
        outcome = run(
            build_spec("https", short_lived.https_url + "/ok", verify_tls=False), {"min_cert_days": 14}
        )

    assert outcome.cert_expires_at == short_lived.cert_not_after
    assert outcome.error == "certificate expires in 2 days (minimum 14)"


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Make the verifying TLS context trust a test CA, the way an operator would (SSL_CERT_FILE)."""

    def trust_ca(path: Path) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", str(path))
        ssl_context.cache_clear()

    yield trust_ca
    ssl_context.cache_clear()  # before monkeypatch restores the variable: the next context is the system's


def _expired_message(not_after: datetime, days: int) -> str:
    return f"certificate expired on {not_after:%Y-%m-%d} ({days} days ago)"


def test_an_expired_certificate_is_reported_as_expired_with_verification(
    trust: Callable[[Path], None],
) -> None:
    with LoopbackTargets(signed_by_ca=True) as valid, LoopbackTargets(cert_days=-2, signed_by_ca=True) as expired:
        trust(valid.ca_path)
        control = run(build_spec("https", localhost(valid.https_url) + "/ok"))
        trust(expired.ca_path)
        https = run(build_spec("https", localhost(expired.https_url) + "/ok"))
        wss = run(build_spec("websocket", localhost(expired.wss_url)))

    assert control.status is ProbeStatus.SUCCESS, control.error  # the CA is trusted: only the date is wrong
    for outcome in (https, wss):
        assert outcome.status is ProbeStatus.ERROR
        assert outcome.error == _expired_message(expired.cert_not_after, 2)
        assert outcome.cert_expires_at == expired.cert_not_after


def test_an_expired_certificate_fails_without_verification_too() -> None:
    with LoopbackTargets(cert_days=-2) as expired:
        https = run(build_spec("https", expired.https_url + "/ok", verify_tls=False))
        wss = run(build_spec("websocket", expired.wss_url, verify_tls=False))
        before = expired.hits("/ok")

    for outcome in (https, wss):
        assert outcome.status is ProbeStatus.FAILED
        assert outcome.error == _expired_message(expired.cert_not_after, 2)
        assert outcome.cert_expires_at == expired.cert_not_after
        assert outcome.timings.tls_ms is not None
    assert before == 0  # the verdict came from the handshake; no request was sent


def test_min_cert_days_on_an_expired_certificate_never_says_minus_days() -> None:
    now = datetime.now(timezone.utc)
    expired = ProbeOutcome(ProbeStatus.SUCCESS, cert_expires_at=now - timedelta(days=2, hours=1))
    soon = ProbeOutcome(ProbeStatus.SUCCESS, cert_expires_at=now + timedelta(days=3, hours=1))
    today = ProbeOutcome(ProbeStatus.SUCCESS, cert_expires_at=now + timedelta(hours=5, minutes=1))

    assert evaluate(expired, Conditions(min_cert_days=14)).error == _expired_message(expired.cert_expires_at, 2)
    assert evaluate(soon, Conditions(min_cert_days=14)).error == "certificate expires in 3 days (minimum 14)"
    assert evaluate(today, Conditions(min_cert_days=1)).error == "certificate expires in 5 hours (minimum 1)"


# --- WebSocket -----------------------------------------------------------------------


def test_websocket_echo(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("websocket", targets.ws_url, body="hello", expect="hell"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert (outcome.body, outcome.bytes_read) == ("hello", 5)
    timings = outcome.timings
    assert timings.dns_ms is None and timings.tls_ms is None
    assert None not in (timings.connect_ms, timings.processing_ms, timings.transfer_ms)


def test_websocket_connect_only(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("websocket", targets.ws_url))

    assert outcome.status is ProbeStatus.SUCCESS
    assert outcome.body is None
    assert outcome.timings.transfer_ms is None


def test_wss_verification(targets: LoopbackTargets) -> None:
    trusted = run(build_spec("websocket", targets.wss_url))
    untrusted_ok = run(build_spec("websocket", localhost(targets.wss_url), verify_tls=False, body="x", expect="x"))

    assert trusted.status is ProbeStatus.ERROR
    assert trusted.error == "certificate not trusted: self-signed certificate"
    assert untrusted_ok.status is ProbeStatus.SUCCESS, untrusted_ok.error
    assert untrusted_ok.timings.dns_ms is not None
    assert untrusted_ok.timings.tls_ms is not None


def test_websocket_handshake_rejected(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("websocket", targets.ws_reject_url))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.status_code == 403
    assert outcome.error == "handshake rejected with HTTP 403"


def test_websocket_refused() -> None:
    outcome = run(build_spec("websocket", f"ws://127.0.0.1:{free_port()}/"))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "connection refused"


def test_websocket_expected_message_never_comes(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("websocket", targets.ws_url, expect="bye", timeout=SHORT))

    assert outcome.status is ProbeStatus.TIMEOUT
    assert outcome.error == "expected “bye” not received within 0.5 s"


def test_websocket_other_message_than_expected(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("websocket", targets.ws_url, body="hello", expect="bye", timeout=SHORT))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "expected “bye” not received (got “hello”)"


# --- TCP -----------------------------------------------------------------------------


def test_tcp_banner_expected(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("tcp", targets.tcp_banner, expect="READY"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.body == "READY\n"
    assert outcome.timings.connect_ms is not None
    assert outcome.timings.processing_ms is not None


def test_tcp_echo_with_payload(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("tcp", targets.tcp_echo, body="ping\n", expect="ping"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.body == "ping\n"


def test_tcp_connect_only(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("tcp", localhost(targets.tcp_silent)))

    assert outcome.status is ProbeStatus.SUCCESS
    assert outcome.timings.dns_ms is not None
    assert outcome.timings.connect_ms is not None
    assert outcome.timings.processing_ms is None  # nothing was awaited


def test_tcp_silent_server_times_out(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("tcp", targets.tcp_silent, expect="READY", timeout=SHORT))

    assert outcome.status is ProbeStatus.TIMEOUT
    assert outcome.error == "expected “READY” not received within 0.5 s"


def test_tcp_wrong_banner_fails(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("tcp", targets.tcp_banner, expect="220 ", timeout=SHORT))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "expected “220 ” not received (got “READY\\n”)"


def test_tcp_payload_and_expect_keep_their_whitespace(targets: LoopbackTargets) -> None:
    pong = run(build_spec("tcp", targets.tcp_resp, body="PING\r\n", expect="+PONG"))
    pong_line = run(build_spec("tcp", targets.tcp_resp, body="PING\r\n", expect="+PONG\r\n"))
    no_line_end = run(build_spec("tcp", targets.tcp_resp, body="PING", expect="+PONG", timeout=SHORT))
    wrong = run(build_spec("tcp", targets.tcp_resp, body="HELLO\r\n", expect="+PONG", timeout=SHORT))

    assert pong.status is ProbeStatus.SUCCESS, pong.error
    assert pong.body == "+PONG\r\n"
    assert pong_line.status is ProbeStatus.SUCCESS, pong_line.error
    # Redis answers a command only at its line end: "PING" must go out as given, not with one added.
    assert no_line_end.status is ProbeStatus.TIMEOUT
    assert no_line_end.error == "expected “+PONG” not received within 0.5 s"
    assert wrong.status is ProbeStatus.FAILED
    assert wrong.error == "expected “+PONG” not received (got “-ERR unknown command\\r\\n”)"  # shown escaped


def test_tcp_reply_that_ends_without_the_expected_text(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("tcp", targets.tcp_banner, expect="220 ", max_body_bytes=3))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "expected “220 ” not received (got “REA”)"


def test_tcp_refused() -> None:
    outcome = run(build_spec("tcp", f"127.0.0.1:{free_port()}"))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "connection refused"


# --- UDP -----------------------------------------------------------------------------


def test_udp_echo(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("udp", targets.udp_echo, body="ping", expect="ping"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert (outcome.body, outcome.bytes_read) == ("ping", 4)
    assert outcome.timings.processing_ms is not None


def test_udp_reply_without_expected_text(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("udp", targets.udp_echo, body="ping", expect="pong"))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "expected “pong” not received (got “ping”)"


def test_udp_silent_times_out(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("udp", targets.udp_silent, timeout=SHORT))

    assert outcome.status is ProbeStatus.TIMEOUT
    assert outcome.error == "no response within 0.5 s"


def test_udp_port_unreachable() -> None:
    outcome = run(build_spec("udp", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", timeout=5))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "port unreachable"


# --- messages ----------------------------------------------------------------------

_NOT_FOR_A_PERSON = re.compile(r"'|\[Errno|\[SSL|_ssl\.c|\b[A-Z][a-z]+(Error|Exception)\b|\bb\"|Traceback|0x[0-9a-f]{6}")


def test_error_messages_read_as_sentences_without_python_reprs(targets: LoopbackTargets) -> None:
    http_host, https_host = targets.http_url.removeprefix("http://"), targets.https_url.removeprefix("https://")
    specs = [
        build_spec("https", f"https://{http_host}/ok"),  # TLS to a plain HTTP port
        build_spec("http", f"http://{https_host}/ok", timeout=2),  # plain HTTP to a TLS port
        build_spec("https", localhost(targets.https_url) + "/ok"),
        build_spec("websocket", targets.ws_reject_url),
        build_spec("websocket", f"ws://{http_host}/redirect"),
        build_spec("websocket", targets.wss_url.replace("wss://", "ws://"), timeout=2),
        build_spec("websocket", "ws://"),
        build_spec("http", "http://exa%mple/"),
        build_spec("http", targets.http_url + "/redirect?to=http://[::zz]/"),
        build_spec("http", targets.http_url + "/hang", timeout=SHORT),
        build_spec("http", targets.http_url + "/gzip-bomb", expect="never"),
        build_spec("tcp", "no-port"),
        build_spec("tcp", targets.tcp_banner, expect="x", max_body_bytes=2),
        build_spec("tcp", f"127.0.0.1:{free_port()}"),
        build_spec("udp", targets.udp_silent, timeout=SHORT),
        build_spec("udp", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", timeout=5),
        build_spec("websocket", targets.ws_url, body="a", expect="zzz", max_body_bytes=3, timeout=2),
        ProbeSpec(protocol="gopher", target="x:1"),
    ]

    async def scenario() -> list[ProbeOutcome]:
        return list(await asyncio.gather(*(run_probe(spec) for spec in specs)))

    for spec, outcome in zip(specs, asyncio.run(scenario())):
        assert outcome.status is not ProbeStatus.SUCCESS, spec
        assert outcome.error and not _NOT_FOR_A_PERSON.search(outcome.error), f"{spec.target}: {outcome.error}"
        assert not outcome.error.startswith("the probe failed unexpectedly"), f"{spec.target}: {outcome.error}"


def test_tls_spoken_to_a_plain_port_says_so(targets: LoopbackTargets) -> None:
    outcome = run(build_spec("https", targets.http_url.replace("http://", "https://") + "/ok"))

    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error == "TLS handshake failed: wrong version number"


# --- uvloop -------------------------------------------------------------------------


def test_every_protocol_on_the_engines_own_loop(targets: LoopbackTargets) -> None:
    specs = [
        build_spec("http", localhost(targets.http_url) + "/gzip"),
        build_spec("https", localhost(targets.https_url) + "/chunked", verify_tls=False),
        build_spec("websocket", targets.wss_url, body="hi", expect="hi", verify_tls=False),
        build_spec("tcp", targets.tcp_resp, body="PING\r\n", expect="+PONG"),
        build_spec("udp", targets.udp_echo, body="u", expect="u"),
    ]

    async def scenario() -> list[ProbeOutcome]:
        return list(await asyncio.gather(*(run_probe(spec) for spec in specs)))

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        outcomes = runner.run(scenario())
        loop_module = type(runner.get_loop()).__module__

    assert loop_module.startswith("uvloop")
    assert [o.status for o in outcomes] == [ProbeStatus.SUCCESS] * 5, [o.error for o in outcomes]
    http, https, wss, tcp, udp = outcomes
    assert json.loads(http.body)["items"] == [1, 2] and json.loads(https.body)["items"] == [1, 2]
    assert None not in (http.timings.dns_ms, http.timings.connect_ms, http.timings.processing_ms)
    assert None not in (https.timings.tls_ms, https.timings.transfer_ms) and https.cert_expires_at is not None
    assert wss.timings.tls_ms is not None and wss.cert_expires_at == targets.cert_not_after
    assert tcp.body == "+PONG\r\n" and udp.body == "u"


# --- targets, conditions, registry -------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "target", "normalised"),
    [
        ("http", "http://Example.COM:8080/health?x=1", "http://example.com:8080/health?x=1"),
        ("https", "  https://example.com/  ", "https://example.com/"),
        ("websocket", "ws://example.com/socket", "ws://example.com/socket"),
        ("websocket", "wss://example.com", "wss://example.com"),
        ("tcp", "DB.internal:5432", "db.internal:5432"),
        ("udp", "[::1]:53", "[::1]:53"),
        ("udp", "10.0.0.1:161", "10.0.0.1:161"),
    ],
)
def test_validate_target_accepts(protocol: str, target: str, normalised: str) -> None:
    assert validate_target(protocol, target) == normalised


@pytest.mark.parametrize(
    ("protocol", "target", "message"),
    [
        ("http", "https://example.com", "http targets must start with http://"),
        ("https", "example.com", "https targets must start with https://"),
        ("websocket", "http://example.com", "websocket targets must start with ws:// or wss://"),
        ("http", "http:///path", "the URL has no host"),
        ("https", "https://example.com:70000/", "port must be a number from 1 to 65535, got “70000”"),
        ("http", "http://exa mple.com/", "target must not contain whitespace"),
        ("tcp", "", "target is empty"),
        ("tcp", "example.com", "expected host:port, got “example.com”"),
        ("tcp", ":80", "host is empty"),
        ("tcp", "example.com:0", "port must be a number from 1 to 65535, got “0”"),
        ("tcp", "example.com:http", "port must be a number from 1 to 65535, got “http”"),
        ("udp", "::1:53", "write IPv6 addresses in brackets, e.g. [::1]:53"),
        ("udp", "[::zz]:53", "“::zz” is not an IPv6 address"),
        ("tcp", "tcp://example.com:80", "expected host:port without a scheme or path, got “tcp://example.com:80”"),
    ],
)
def test_validate_target_rejects(protocol: str, target: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        validate_target(protocol, target)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"expected_status": [99]}, "expected_status.0"),
        ({"expected_status": []}, "expected_status"),
        ({"expected_status": "200"}, "expected_status"),
        ({"body_regex": "(unclosed"}, "body_regex"),
        ({"json_path": {"path": "a"}}, "json_path.equals"),
        ({"json_path": {"path": "", "equals": 1}}, "json_path.path"),
        ({"max_response_time_ms": 0}, "max_response_time_ms"),
        ({"min_cert_days": -1}, "min_cert_days"),
        ({"body_contains": "x", "bogus": 1}, "bogus"),
    ],
)
def test_conditions_parse_names_the_bad_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as error:
        Conditions.parse(data)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"invalid conditions: {field}: ")


def test_conditions_parse_accepts_empty_and_full() -> None:
    assert Conditions.parse(None) == Conditions()
    full = Conditions.parse(
        {
            "expected_status": [200, 204],
            "body_contains": "ok",
            "body_regex": "o+k",
            "json_path": {"path": "a.0", "equals": None},
            "max_response_time_ms": 250.5,
            "min_cert_days": 0,
        }
    )
    assert full.json_path is not None and full.json_path.equals is None


def test_conditions_leave_unsuccessful_outcomes_alone() -> None:
    timeout = ProbeOutcome(ProbeStatus.TIMEOUT, error="no response within 1s")

    assert evaluate(timeout, Conditions(body_contains="ok")) is timeout


def test_registry_and_unknown_protocol() -> None:
    assert set(REGISTRY) == set(PROTOCOLS) >= {"http", "https", "websocket", "tcp", "udp", "dns", "icmp"}
    with pytest.raises(UnknownProtocolError) as error:
        get_protocol("gopher")
    assert str(error.value) == f"unknown protocol “gopher”; expected one of: {', '.join(PROTOCOLS)}"
    with pytest.raises(UnknownProtocolError):
        validate_target("gopher", "x:1")
    with pytest.raises(UnknownProtocolError):
        build_spec("gopher", "x:1")

    outcome = run(ProbeSpec(protocol="gopher", target="x:1"))
    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error.startswith("unknown protocol “gopher”")


def _swap_prober(monkeypatch: pytest.MonkeyPatch, prober: Callable[[ProbeSpec, ProbeRun], Any]) -> None:
    monkeypatch.setitem(REGISTRY, "tcp", Protocol(REGISTRY["tcp"].spec, prober))


def test_run_probe_turns_a_crash_into_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def crashing(spec: ProbeSpec, run: ProbeRun) -> ProbeOutcome:
        raise RuntimeError("prober bug")

    _swap_prober(monkeypatch, crashing)
    outcome = run(build_spec("tcp", "127.0.0.1:1"))

    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error == "the probe failed unexpectedly: prober bug"


def test_run_probe_stops_a_prober_that_overruns(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hanging(spec: ProbeSpec, run: ProbeRun) -> ProbeOutcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    _swap_prober(monkeypatch, hanging)
    outcome = run(build_spec("tcp", "127.0.0.1:1", timeout=0.2))

    assert outcome.status is ProbeStatus.TIMEOUT
    assert outcome.error == "no response within 0.2 s"


def test_run_many_keeps_input_order(targets: LoopbackTargets) -> None:
    specs = [
        (build_spec("http", targets.http_url + "/slow?ms=200"), None),
        (build_spec("udp", targets.udp_echo, body="u"), None),
        (build_spec("http", targets.http_url + "/status/500"), None),
        (build_spec("tcp", targets.tcp_banner, expect="READY"), Conditions(body_contains="nope")),
        (build_spec("websocket", targets.ws_url), None),
    ]
    outcomes = asyncio.run(run_many(specs, concurrency=5))

    assert [o.status for o in outcomes] == [
        ProbeStatus.SUCCESS,
        ProbeStatus.SUCCESS,
        ProbeStatus.FAILED,
        ProbeStatus.FAILED,
        ProbeStatus.SUCCESS,
    ]
    assert outcomes[0].body == "ok" and outcomes[1].body == "u" and outcomes[2].status_code == 500
    assert outcomes[3].error == "body does not contain “nope”"


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_run_many_bounds_concurrency(targets: LoopbackTargets) -> None:
    targets.reset()
    specs = [(build_spec("http", targets.http_url + "/hold"), None) for _ in range(5)]

    async def scenario() -> tuple[int, list[ProbeOutcome]]:
        batch = asyncio.create_task(run_many(specs, concurrency=2))
        await _until(lambda: targets.hits("/hold") == 2)
        await asyncio.sleep(0.3)  # room for a third request to arrive, if the bound leaked
        in_flight = targets.hits("/hold")
        targets.release_hold()
        return in_flight, await batch

    in_flight, outcomes = asyncio.run(scenario())

    assert in_flight == 2
    assert [o.body for o in outcomes] == ["released"] * 5
    assert targets.hits("/hold") == 5


def test_targets_stop_while_clients_hold_connections() -> None:
    held = LoopbackTargets().start()
    host, port = held.tcp_silent.split(":")
    tcp = socket.create_connection((host, int(port)))
    hang = socket.create_connection(("127.0.0.1", held.http_port))
    hang.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    hold = socket.create_connection(("127.0.0.1", held.http_port))
    hold.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    asyncio.run(_until(lambda: held.hits("/hang") == 1 and held.hits("/hold") == 1))

    held.stop()

    for sock in (tcp, hang, hold):
        sock.settimeout(5)
        with sock:
            sock.recv(1024)  # answered or closed, not left hanging


def test_probe_package_imports_only_its_allowed_dependencies() -> None:
    allowed = set(sys.stdlib_module_names) | {"httptools", "uvloop", "regex", "websockets", "cryptography", "pydantic",
               "dns", "icmplib"}
    package = Path(__file__).resolve().parent.parent / "app" / "probes"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                own = name == "app.probes" or name.startswith("app.probes.")
                assert own or name.split(".")[0] in allowed, f"{source.name} imports {name}"
