"""The ICMP prober: real echo requests to 127.0.0.1 and ::1, and its verdicts, parsing and socket choice on their own.

Loopback always answers, and the machine's networking is not ours to change, so loss
is exercised through the deadline (a timeout shorter than the run) and through
``outcome`` with made-up tallies.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from icmplib.exceptions import SocketPermissionError
from pydantic import ValidationError

from app.probes import (
    ProbeOutcome,
    ProbeSpec,
    ProbeStatus,
    build_spec,
    icmp,
    new_event_loop,
    run_many,
    run_probe,
    validate_target,
)
from app.probes.icmp import (
    NO_PERMISSION,
    Echoes,
    IcmpSpec,
    loss_message,
    outcome,
    parse,
    ping_groups_admit,
    socket_modes,
)

pytestmark = pytest.mark.timeout(30)

FAST = {"send_interval_seconds": 0.05}
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(params=[asyncio.new_event_loop, new_event_loop], ids=["asyncio", "uvloop"])
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    return request.param


@pytest.fixture
def run(loop_factory: LoopFactory) -> Callable[[ProbeSpec], ProbeOutcome]:
    def run(spec: ProbeSpec) -> ProbeOutcome:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(run_probe(spec))

    return run


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --- real echo requests ------------------------------------------------------------------


def _assert_all_answered(result: ProbeOutcome, count: int, address: str) -> None:
    assert result.status is ProbeStatus.SUCCESS, result.error
    details = result.details
    assert details is not None
    assert (details["address"], details["sent"], details["received"], details["packet_loss_percent"]) == (
        address, count, count, 0.0)
    assert 0 < details["rtt_min_ms"] <= details["rtt_avg_ms"] <= details["rtt_max_ms"]
    assert result.timings.processing_ms == details["rtt_avg_ms"]
    assert result.timings.connect_ms is None and result.timings.dns_ms is None


def test_ping_ipv4_loopback(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    result = run(build_spec("icmp", "127.0.0.1", count=4, **FAST))

    _assert_all_answered(result, 4, "127.0.0.1")
    assert result.bytes_read == 4 * (8 + 56)  # ICMP header and payload, without the IP header
    assert result.response_time_ms is not None and result.response_time_ms >= 3 * 50 * 0.9


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ping_ipv6_loopback(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    result = run(build_spec("icmp", "::1", count=3, payload_size=0, **FAST))

    _assert_all_answered(result, 3, "::1")
    assert result.bytes_read == 3 * 8


def test_ping_by_name_times_the_lookup() -> None:
    result = asyncio.run(run_probe(build_spec("icmp", "localhost", count=2, payload_size=1472, **FAST)))

    assert result.status is ProbeStatus.SUCCESS, result.error
    assert result.timings.dns_ms is not None
    assert result.details is not None and result.details["received"] == 2
    assert result.bytes_read == 2 * (8 + 1472)


def test_concurrent_runs_take_only_their_own_replies() -> None:
    """A raw socket sees every run's replies; identifiers keep them apart."""
    specs = [(build_spec("icmp", "127.0.0.1", count=5, send_interval_seconds=0.05), None) for _ in range(6)]

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        results = runner.run(run_many(specs, concurrency=6))

    assert [r.status for r in results] == [ProbeStatus.SUCCESS] * 6, [r.error for r in results]
    assert all(r.details is not None and r.details["received"] == 5 for r in results)


def test_name_that_does_not_resolve_is_an_error() -> None:
    result = asyncio.run(run_probe(build_spec("icmp", "nowhere.invalid")))

    assert result.status is ProbeStatus.ERROR
    assert result.error is not None and result.error.startswith("could not resolve host nowhere.invalid: ")
    assert result.timings.dns_ms is not None


def test_deadline_before_the_last_request_times_out_and_closes_the_socket(
        run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    run(build_spec("icmp", "127.0.0.1", count=1))  # the loop's own first-use descriptors (uvloop) are not the probe's
    before = _open_fds()
    started = time.perf_counter()
    result = run(build_spec("icmp", "127.0.0.1", count=5, send_interval_seconds=0.2, timeout=0.3))
    took = time.perf_counter() - started

    assert result.status is ProbeStatus.TIMEOUT
    assert result.error == "timed out after 2 of 5 echo requests (2 answered); the run needs up to 1.8 s"
    assert took < 0.3 + 0.4
    assert _open_fds() <= before


def test_deadline_while_waiting_for_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request sent, some reply outstanding when the deadline comes (loopback answers, so: hide replies)."""
    take = Echoes.take

    def drop_second(self: Echoes, packet: bytes, source: str, arrived: float) -> None:
        parsed = parse(packet, self.family)
        if parsed is not None and parsed.sequence in list(self.sent)[1:2]:
            return
        take(self, packet, source, arrived)

    monkeypatch.setattr(Echoes, "take", drop_second)
    result = asyncio.run(run_probe(build_spec("icmp", "127.0.0.1", count=3, timeout=0.5, **FAST)))

    assert result.status is ProbeStatus.TIMEOUT
    assert result.error == "timed out waiting for replies to 3 echo requests (2 answered)"


def test_unanswered_requests_fail_after_the_reply_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    take = Echoes.take

    def drop_first(self: Echoes, packet: bytes, source: str, arrived: float) -> None:
        parsed = parse(packet, self.family)
        if parsed is not None and parsed.sequence == next(iter(self.sent)):
            return
        take(self, packet, source, arrived)

    monkeypatch.setattr(icmp, "REPLY_WAIT", 0.2)
    monkeypatch.setattr(Echoes, "take", drop_first)
    spec = build_spec("icmp", "127.0.0.1", count=3, **FAST)
    failed = asyncio.run(run_probe(spec))
    tolerated = asyncio.run(run_probe(spec.model_copy(update={"max_packet_loss_percent": 34})))

    assert failed.status is ProbeStatus.FAILED
    assert failed.error == "1 of 3 echo requests unanswered (33 % loss)"
    assert failed.details is not None and failed.details["received"] == 2
    assert failed.details["packet_loss_percent"] == 33.33
    assert tolerated.status is ProbeStatus.SUCCESS, tolerated.error


def test_datagram_socket_refused_falls_back_to_raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ping_group_range that admits everyone: the datagram socket is tried first (the kernel may still refuse)."""
    admits_all = tmp_path / "ping_group_range"
    admits_all.write_text("0\t2147483647\n")
    monkeypatch.setattr(icmp, "PING_GROUP_RANGE", admits_all)

    result = asyncio.run(run_probe(build_spec("icmp", "127.0.0.1", count=2, **FAST)))

    assert result.status is ProbeStatus.SUCCESS, result.error


def test_no_permission_for_either_socket_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[bool] = []

    class Refused:
        def __init__(self, address: str | None, privileged: bool) -> None:
            tried.append(privileged)
            raise SocketPermissionError(privileged)

    monkeypatch.setattr(icmp, "ICMPv4Socket", Refused)
    monkeypatch.setattr(icmp, "_own_modes", lambda: (False, True))
    result = asyncio.run(run_probe(build_spec("icmp", "127.0.0.1")))

    assert result.status is ProbeStatus.ERROR
    assert result.error == NO_PERMISSION
    assert tried == [False, True]


# --- the socket choice ------------------------------------------------------------------


@pytest.mark.parametrize(("range_text", "groups", "admitted"), [
    ("1\t0\n", [0], False),  # the kernel's default: nobody
    ("0\t2147483647\n", [0], True),
    ("0 2147483647", [1000, 1001], True),
    ("100 200", [50, 150], True),
    ("100 200", [50, 250], False),
    ("100 100", [100], True),
    ("", [0], False),
    ("garbage", [0], False),
])
def test_ping_group_range(range_text: str, groups: list[int], admitted: bool) -> None:
    assert ping_groups_admit(range_text, groups) is admitted


def test_socket_modes() -> None:
    assert socket_modes("1\t0\n", [0]) == (True,)  # raw only: root or CAP_NET_RAW
    assert socket_modes("0 10", [5]) == (False, True)  # datagram first, raw if the kernel refuses anyway
    assert socket_modes(None, [5]) == (False, True)  # no ping_group_range (not Linux)


def test_this_machines_choice_follows_its_ping_group_range() -> None:
    range_text = icmp.PING_GROUP_RANGE.read_text()
    groups = {os.getegid(), *os.getgroups()}

    assert icmp._own_modes() == socket_modes(range_text, groups)


# --- verdicts ------------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "received", "message"), [
    (3, 1, "2 of 3 echo requests unanswered (67 % loss)"),
    (3, 2, "1 of 3 echo requests unanswered (33 % loss)"),
    (3, 0, "3 of 3 echo requests unanswered (100 % loss)"),
    (1, 0, "1 of 1 echo request unanswered (100 % loss)"),
    (20, 19, "1 of 20 echo requests unanswered (5 % loss)"),
])
def test_loss_message(sent: int, received: int, message: str) -> None:
    assert loss_message(sent, received) == message


def _echoes(sent: int, rtts: list[float], errors: tuple[str, ...] = ()) -> Echoes:
    echoes = Echoes(sent)
    echoes.sent = {sequence: 0.0 for sequence in range(sent)}
    echoes.rtts = dict(enumerate(rtts))
    echoes.errors = list(errors)
    return echoes


def test_outcome_all_answered() -> None:
    result = outcome(build_spec("icmp", "10.0.0.1"), "10.0.0.1", _echoes(3, [1.0, 2.0, 4.5]))

    assert result.status is ProbeStatus.SUCCESS
    assert result.details == {"address": "10.0.0.1", "sent": 3, "received": 3, "packet_loss_percent": 0.0,
                              "rtt_min_ms": 1.0, "rtt_avg_ms": 2.5, "rtt_max_ms": 4.5}


def test_outcome_loss_beyond_the_limit_fails() -> None:
    spec = build_spec("icmp", "10.0.0.1")
    result = outcome(spec, "10.0.0.1", _echoes(3, [2.0]))

    assert result.status is ProbeStatus.FAILED
    assert result.error == "2 of 3 echo requests unanswered (67 % loss)"
    assert result.details is not None and result.details["packet_loss_percent"] == 66.67
    assert result.details["rtt_avg_ms"] == 2.0


def test_outcome_loss_within_the_limit_passes() -> None:
    spec = build_spec("icmp", "10.0.0.1", max_packet_loss_percent=70)
    result = outcome(spec, "10.0.0.1", _echoes(3, [2.0]))

    assert result.status is ProbeStatus.SUCCESS
    assert result.error is None


def test_outcome_nothing_answered_is_a_timeout_whatever_the_limit() -> None:
    for limit in (0, 100):
        spec = build_spec("icmp", "10.0.0.1", max_packet_loss_percent=limit)
        result = outcome(spec, "10.0.0.1", _echoes(3, []))

        assert result.status is ProbeStatus.TIMEOUT
        assert result.error == "3 of 3 echo requests unanswered (100 % loss)"
        assert result.details is not None
        assert (result.details["received"], result.details["rtt_avg_ms"]) == (0, None)


def test_outcome_reported_errors_fail() -> None:
    echoes = _echoes(3, [], ("destination unreachable (reported by 192.0.2.1)",))
    result = outcome(build_spec("icmp", "10.0.0.1"), "10.0.0.1", echoes)

    assert result.status is ProbeStatus.FAILED
    assert result.error == "3 of 3 echo requests unanswered (100 % loss): destination unreachable (reported by 192.0.2.1)"


# --- parsing what arrives ------------------------------------------------------------------


def _icmp(kind: int, ident: int, sequence: int, payload: bytes = b"") -> bytes:
    return struct.pack("!BBHHH", kind, 0, 0, ident, sequence) + payload


def _ipv4(payload: bytes) -> bytes:
    return bytes([0x45]) + bytes(19) + payload  # version 4, header of 5 words; the rest does not matter here


def test_parse_ipv4_reply_with_and_without_ip_header() -> None:
    reply = _icmp(0, 0x1234, 7, b"x" * 56)

    assert parse(_ipv4(reply), socket.AF_INET) == (0, 0, 0x1234, 7, 64)  # raw socket
    assert parse(reply, socket.AF_INET) == (0, 0, 0x1234, 7, 64)  # datagram socket


def test_parse_ipv4_error_quoting_our_request() -> None:
    unreachable = _icmp(3, 0, 0) + _ipv4(_icmp(8, 0x1234, 9))

    assert parse(_ipv4(unreachable), socket.AF_INET) == (3, 0, 0x1234, 9, len(unreachable))


def test_parse_ipv6() -> None:
    assert parse(_icmp(129, 42, 1), socket.AF_INET6) == (129, 0, 42, 1, 8)
    time_exceeded = _icmp(3, 0, 0) + bytes(40) + _icmp(128, 42, 2)
    assert parse(time_exceeded, socket.AF_INET6) == (3, 0, 42, 2, len(time_exceeded))


@pytest.mark.parametrize(("packet", "family"), [
    (_ipv4(_icmp(8, 1, 1)), socket.AF_INET),  # an echo request (ours, seen on loopback)
    (_icmp(128, 1, 1), socket.AF_INET6),
    (_icmp(135, 0, 0), socket.AF_INET6),  # neighbour solicitation
    (_ipv4(b"\x00\x00"), socket.AF_INET),  # too short
    (b"", socket.AF_INET),
    (_ipv4(_icmp(3, 0, 0) + _ipv4(b"")), socket.AF_INET),  # an error quoting too little
    (_ipv4(_icmp(3, 0, 0) + _ipv4(_icmp(0, 1, 1))), socket.AF_INET),  # an error about a reply, not a request
])
def test_parse_ignores_what_is_not_about_an_echo_request(packet: bytes, family: int) -> None:
    assert parse(packet, family) is None


def test_replies_for_other_runs_and_duplicates_are_ignored() -> None:
    echoes = Echoes(2, socket.AF_INET, ident=7, sent={100: time.perf_counter(), 101: time.perf_counter()})

    echoes.take(_icmp(0, 8, 100), "127.0.0.1", time.perf_counter())  # another identifier
    echoes.take(_icmp(0, 7, 102), "127.0.0.1", time.perf_counter())  # not sent by this run
    echoes.take(_icmp(0, 7, 100), "127.0.0.1", time.perf_counter())
    echoes.take(_icmp(0, 7, 100), "127.0.0.1", time.perf_counter())  # a duplicate

    assert list(echoes.rtts) == [100]
    assert echoes.bytes_read == 8
    assert not echoes.all_answered.is_set()
    echoes.take(_icmp(3, 0, 0) + _ipv4(_icmp(8, 7, 101)), "192.0.2.1", time.perf_counter())
    assert echoes.errors == ["destination unreachable (reported by 192.0.2.1)"]
    echoes.take(_icmp(0, 7, 101), "127.0.0.1", time.perf_counter())
    assert echoes.all_answered.is_set()


# --- the spec ------------------------------------------------------------------------


def test_spec_defaults() -> None:
    spec = build_spec("icmp", "10.0.0.1")

    assert isinstance(spec, IcmpSpec)
    assert spec.stored() == {"count": 3, "send_interval_seconds": 0.2, "payload_size": 56, "max_packet_loss_percent": 0.0}
    schema = IcmpSpec.model_json_schema()
    assert all(schema["properties"][name].get("description") for name in spec.stored())


@pytest.mark.parametrize(("fields", "message"), [
    ({"count": 0}, "Input should be greater than or equal to 1"),
    ({"count": 21}, "Input should be less than or equal to 20"),
    ({"send_interval_seconds": 0.01}, "Input should be greater than or equal to 0.05"),
    ({"send_interval_seconds": 6}, "Input should be less than or equal to 5"),
    ({"payload_size": -1}, "Input should be greater than or equal to 0"),
    ({"payload_size": 1473}, "Input should be less than or equal to 1472"),
    ({"max_packet_loss_percent": 101}, "Input should be less than or equal to 100"),
    ({"port": 7}, "Extra inputs are not permitted"),
])
def test_invalid_spec_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        build_spec("icmp", "10.0.0.1", **fields)

    errors = exc.value.errors()
    assert len(errors) == 1 and errors[0]["msg"] == message


@pytest.mark.parametrize(("target", "stored"), [
    ("10.0.0.1", "10.0.0.1"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("2001:DB8::0001", "2001:db8::1"),
    ("Router.Example.COM.", "router.example.com"),
    ("localhost", "localhost"),
])
def test_target_is_normalised(target: str, stored: str) -> None:
    assert validate_target("icmp", target) == stored


@pytest.mark.parametrize(("target", "message"), [
    ("", "target is empty"),
    ("10.0.0.1 ", "target must not contain whitespace"),
    ("10.0.0.1:80", "expected a host name or IP address without a port or scheme, got “10.0.0.1:80”"),
    ("example.com:80", "expected a host name or IP address without a port or scheme, got “example.com:80”"),
    ("http://example.com/", "expected a host name or IP address without a port or scheme, got “http://example.com/”"),
    ("a..b", "“a..b” is not a valid host name (empty label between dots)"),
    ("10.0.0.256", "“10.0.0.256” is not a valid host name"),
    ("-router", "“-router” is not a valid host name"),
])
def test_invalid_targets(target: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        IcmpSpec.normalise_target("icmp", target)

    assert str(exc.value) == message


def test_invalid_stored_target_is_an_error() -> None:
    result = asyncio.run(run_probe(build_spec("icmp", "10.0.0.1:80")))

    assert result.status is ProbeStatus.ERROR
    assert result.error == "expected a host name or IP address without a port or scheme, got “10.0.0.1:80”"
