"""The DNS prober against a real DNS server on loopback (``DnsServer``: UDP and TCP, answering from ``ZONE``)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
from pydantic import ValidationError

from app.probes import (
    ProbeOutcome,
    ProbeSpec,
    ProbeStatus,
    build_spec,
    new_event_loop,
    run_probe,
    validate_target,
)
from app.probes.dns import DnsSpec
from tests.targets import free_port

pytestmark = pytest.mark.timeout(30)

SHORT = 0.5  # timeout for probes that are meant to time out
ZONE: dict[str, dict[str, list[str]]] = {
    "example.test": {
        "A": ["10.0.0.2", "10.0.0.1"],
        "AAAA": ["2001:db8::1"],
        "MX": ["10 mail.example.test."],
        "TXT": ['"v=spf1 " "-all"', '"hello"'],
        "NS": ["ns1.example.test."],
    },
    "mail.example.test": {"A": ["10.0.0.3"]},
    "www.example.test": {"CNAME": ["example.test."]},
    "big.example.test": {"A": [f"10.1.{i // 250}.{i % 250}" for i in range(120)]},
    "1.0.0.10.in-addr.arpa": {"PTR": ["example.test."]},
}
MODES = ("answer", "silent", "servfail", "truncate", "wrong-id", "garbage")


class DnsServer:
    """A DNS server on one loopback port (UDP and TCP), in a thread with its own event loop.

    Modes: ``answer`` (from ``ZONE``, NXDOMAIN for names not in it), ``silent`` (reads,
    never answers), ``servfail`` (SERVFAIL to everything), ``truncate`` (over UDP an
    empty reply with TC set, over TCP the answer), ``wrong-id`` (an answer with another
    message ID), ``garbage`` (bytes that are no DNS message). ``queries`` lists what came
    in, as ``(transport, name, type)``; ``sizes`` the size of every reply sent.
    """

    def __init__(self, mode: str = "answer", host: str = "127.0.0.1") -> None:
        assert mode in MODES
        self.mode = mode
        self.host = host
        self.queries: list[tuple[str, str, str]] = []
        self.sizes: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"dns-{mode}", daemon=True)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(50):  # a UDP port whose TCP twin is free too
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, 0))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
            except OSError:
                self._udp.close()
                continue
            return
        raise RuntimeError("no free port for the DNS server")

    async def _stop(self) -> None:
        self._udp.close()
        self._tcp.close()
        await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = self.respond(await reader.readexactly(size), "tcp")
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def respond(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True)
        kind = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((transport, name, kind))
        if self.mode == "silent":
            return None
        if self.mode == "garbage":
            return b"\x00\x01 this is no DNS message"
        reply = dns.message.make_response(query)
        if self.mode == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif self.mode == "truncate" and transport == "udp":
            reply.flags |= dns.flags.TC
        elif name not in ZONE:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        else:
            records = ZONE[name]
            if kind not in records and "CNAME" in records:  # follow the alias, as a recursive resolver does
                reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", "CNAME", *records["CNAME"]))
                name = records["CNAME"][0].removesuffix(".")
                records = ZONE[name]
            if kind in records:
                reply.answer.append(dns.rrset.from_text(name + ".", 300, "IN", kind, *records[kind]))
        if self.mode == "wrong-id":
            reply.id = (query.id + 1) % 65536
        # Over UDP, what does not fit the query's EDNS size is cut, with TC set (dnspython does that).
        wire = reply.to_wire(prefer_truncation=True) if transport == "udp" else reply.to_wire(max_size=65535)
        self.sizes.append(len(wire))
        return wire


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        reply = self.server.respond(data, "udp")
        if reply is not None:
            self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@pytest.fixture(params=[asyncio.new_event_loop, new_event_loop], ids=["asyncio", "uvloop"])
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    return request.param


@pytest.fixture
def run(loop_factory: LoopFactory) -> Callable[[ProbeSpec], ProbeOutcome]:
    def run(spec: ProbeSpec) -> ProbeOutcome:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(run_probe(spec))

    return run


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer() as running:
        yield running


def dns_spec(name: str, server: DnsServer | str, **fields: object) -> ProbeSpec:
    resolver = server.address if isinstance(server, DnsServer) else server
    return build_spec("dns", name, resolver=resolver, **fields)


# --- answers -------------------------------------------------------------------------


def test_a_records_with_expected_answers(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("example.test", server, expected_answers=["10.0.0.1", "10.0.0.2."]))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.details == {"rcode": "NOERROR", "answers": ["10.0.0.1", "10.0.0.2"],
                               "resolver": server.address, "transport": "udp"}
    assert outcome.body == "10.0.0.1\n10.0.0.2"  # for body_contains / body_regex conditions
    assert outcome.bytes_read == server.sizes[-1]
    assert outcome.timings.processing_ms is not None and outcome.timings.connect_ms is None
    assert outcome.timings.dns_ms is None  # the resolver is an IP address
    assert server.queries == [("udp", "example.test", "A")]


def test_expected_answer_missing(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("example.test", server, expected_answers=["10.0.0.1", "10.0.0.9"]))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "expected answer “10.0.0.9” not among 10.0.0.1, 10.0.0.2"
    assert outcome.details is not None and outcome.details["answers"] == ["10.0.0.1", "10.0.0.2"]


def test_several_expected_answers_missing(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("example.test", server, expected_answers=["10.0.0.8", "10.0.0.9"]))

    assert outcome.error == "expected answers “10.0.0.8”, “10.0.0.9” not among 10.0.0.1, 10.0.0.2"


def test_aaaa_compares_addresses_not_spellings(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    ok = run(dns_spec("example.test", server, record_type="aaaa", expected_answers=["2001:DB8:0:0::1"]))
    wrong = run(dns_spec("example.test", server, record_type="AAAA", expected_answers=["2001:db8::2"]))

    assert ok.status is ProbeStatus.SUCCESS, ok.error
    assert ok.details is not None and ok.details["answers"] == ["2001:db8::1"]
    assert wrong.status is ProbeStatus.FAILED
    assert wrong.error == "expected answer “2001:db8::2” not among 2001:db8::1"


def test_mx_answers(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    ok = run(dns_spec("example.test", server, record_type="MX", expected_answers=["10 MAIL.example.test."]))
    wrong = run(dns_spec("example.test", server, record_type="MX", expected_answers=["20 mail.example.test"]))

    assert ok.status is ProbeStatus.SUCCESS, ok.error
    assert ok.details is not None and ok.details["answers"] == ["10 mail.example.test"]
    assert wrong.error == "expected answer “20 mail.example.test” not among 10 mail.example.test"


def test_txt_answers_are_their_text(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    ok = run(dns_spec("example.test", server, record_type="TXT", expected_answers=["V=SPF1 -all"]))
    wrong = run(dns_spec("example.test", server, record_type="TXT", expected_answers=["v=spf1 ~all"]))

    assert ok.status is ProbeStatus.SUCCESS, ok.error
    assert ok.details is not None and ok.details["answers"] == ["hello", "v=spf1 -all"]  # strings joined, unquoted
    assert wrong.error == "expected answer “v=spf1 ~all” not among “hello”, “v=spf1 -all”"


def test_cname_chain_answers_are_the_type_asked(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("www.example.test", server, expected_answers=["10.0.0.1"]))
    alias = run(dns_spec("www.example.test", server, record_type="CNAME"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.details is not None and outcome.details["answers"] == ["10.0.0.1", "10.0.0.2"]
    assert alias.status is ProbeStatus.SUCCESS, alias.error
    assert alias.details is not None and alias.details["answers"] == ["example.test"]


def test_long_answer_lists_are_cut_in_messages(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("big.example.test", server, transport="tcp", expected_answers=["10.9.9.9"]))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.details is not None and len(outcome.details["answers"]) == 120
    assert outcome.error is not None and outcome.error.endswith(" … (120 in all)")
    assert outcome.error.count(",") == 9


def test_no_records_of_the_type(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("mail.example.test", server, record_type="AAAA"))
    with_expected = run(dns_spec("mail.example.test", server, record_type="MX", expected_answers=["10 x.test"]))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "no AAAA records for mail.example.test"
    assert outcome.details is not None and outcome.details["rcode"] == "NOERROR"
    assert with_expected.error == "no MX records for mail.example.test"


def test_ptr_of_an_ip_address_target(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("10.0.0.1", server, record_type="PTR", expected_answers=["example.test"]))
    not_ptr = run(dns_spec("10.0.0.1", server, record_type="A"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert server.queries[0] == ("udp", "1.0.0.10.in-addr.arpa", "PTR")
    assert not_ptr.status is ProbeStatus.ERROR
    assert not_ptr.error == "an IP address is looked up with record type PTR, not A"


# --- rcodes ----------------------------------------------------------------------------


def test_nxdomain_fails_unless_expected(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    failed = run(dns_spec("nowhere.example.test", server))
    expected = run(dns_spec("nowhere.example.test", server, expected_rcode="nxdomain"))
    not_expected = run(dns_spec("example.test", server, expected_rcode="NXDOMAIN"))

    assert failed.status is ProbeStatus.FAILED
    assert failed.error == "rcode NXDOMAIN (expected NOERROR)"
    assert failed.details is not None and failed.details["rcode"] == "NXDOMAIN" and failed.details["answers"] == []
    assert expected.status is ProbeStatus.SUCCESS, expected.error
    assert not_expected.error == "rcode NOERROR (expected NXDOMAIN)"


def test_servfail(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    with DnsServer("servfail") as server:
        outcome = run(dns_spec("example.test", server))
        expected = run(dns_spec("example.test", server, expected_rcode="SERVFAIL"))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == "rcode SERVFAIL (expected NOERROR)"
    assert expected.status is ProbeStatus.SUCCESS, expected.error


# --- transports and failures -------------------------------------------------------------


def test_tcp_transport(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("example.test", server, transport="TCP", record_type="MX"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert server.queries == [("tcp", "example.test", "MX")]
    assert outcome.details is not None and outcome.details["transport"] == "tcp"
    assert outcome.timings.connect_ms is not None and outcome.timings.processing_ms is not None
    assert outcome.bytes_read == server.sizes[-1]  # the message, not its 2-byte length prefix


def test_truncated_udp_reply_is_asked_again_over_tcp(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    with DnsServer("truncate") as server:
        outcome = run(dns_spec("example.test", server, expected_answers=["10.0.0.1"]))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert [query[0] for query in server.queries] == ["udp", "tcp"]
    assert outcome.details is not None and outcome.details["transport"] == "tcp"
    assert outcome.timings.connect_ms is not None


def test_answer_too_big_for_a_datagram_comes_over_tcp(server: DnsServer,
                                                       run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    outcome = run(dns_spec("big.example.test", server, expected_answers=["10.1.0.119"]))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert [query[0] for query in server.queries] == ["udp", "tcp"]
    assert outcome.details is not None and len(outcome.details["answers"]) == 120
    assert outcome.bytes_read == server.sizes[-1] > 1232


def test_silent_resolver_times_out(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    with DnsServer("silent") as server:
        outcome = run(dns_spec("example.test", server, timeout=SHORT))
        over_tcp = run(dns_spec("example.test", server, timeout=SHORT, transport="tcp"))

    for result in (outcome, over_tcp):
        assert result.status is ProbeStatus.TIMEOUT
        assert result.error == f"no answer from resolver {server.address} within 0.5 s"
        assert result.response_time_ms is not None and SHORT * 900 <= result.response_time_ms < SHORT * 1000 + 400


def test_nothing_listening(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    udp_port = free_port(socket.SOCK_DGRAM)
    tcp_port = free_port()
    over_udp = run(dns_spec("example.test", f"127.0.0.1:{udp_port}"))
    over_tcp = run(dns_spec("example.test", f"127.0.0.1:{tcp_port}", transport="tcp"))

    assert over_udp.status is ProbeStatus.FAILED
    assert over_udp.error == f"no DNS server at 127.0.0.1:{udp_port} (port unreachable)"
    assert over_tcp.status is ProbeStatus.FAILED
    assert over_tcp.error == f"no DNS server at 127.0.0.1:{tcp_port} (connection refused)"


@pytest.mark.parametrize(("mode", "message"), [
    ("wrong-id", "resolver {} sent a reply that does not match the query"),
    ("garbage", "resolver {} sent a reply that is not a valid DNS message"),
])
def test_bad_replies(mode: str, message: str, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    with DnsServer(mode) as server:
        outcome = run(dns_spec("example.test", server))

    assert outcome.status is ProbeStatus.FAILED
    assert outcome.error == message.format(server.address)


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_resolver(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    with DnsServer(host="::1") as server:
        outcome = run(dns_spec("example.test", f"[::1]:{server.port}"))
        over_tcp = run(dns_spec("example.test", server, transport="tcp"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.details is not None and outcome.details["resolver"] == f"[::1]:{server.port}"
    assert over_tcp.status is ProbeStatus.SUCCESS, over_tcp.error


def test_resolver_by_name_times_its_lookup(run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    host = socket.getaddrinfo("localhost", None, type=socket.SOCK_DGRAM)[0][4][0]
    with DnsServer(host=host) as server:
        outcome = run(dns_spec("example.test", f"LocalHost:{server.port}"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.timings.dns_ms is not None
    assert outcome.details is not None and outcome.details["resolver"] == server.address


def test_default_resolver_is_the_systems_first(server: DnsServer, monkeypatch: pytest.MonkeyPatch,
                                               run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    system = dns.resolver.Resolver(configure=False)
    system.nameservers = ["127.0.0.1", "127.0.0.2"]
    system.port = server.port
    monkeypatch.setattr(dns.resolver, "get_default_resolver", lambda: system)

    outcome = run(build_spec("dns", "example.test"))

    assert outcome.status is ProbeStatus.SUCCESS, outcome.error
    assert outcome.details is not None and outcome.details["resolver"] == server.address


def test_no_system_resolver_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unconfigured() -> dns.resolver.Resolver:
        raise dns.resolver.NoResolverConfiguration("no nameservers")

    monkeypatch.setattr(dns.resolver, "get_default_resolver", unconfigured)
    outcome = asyncio.run(run_probe(build_spec("dns", "example.test")))

    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error == "no DNS resolver is configured on this machine; set resolver"


def test_invalid_stored_target_is_an_error() -> None:
    outcome = asyncio.run(run_probe(build_spec("dns", "a..example.test", resolver="127.0.0.1")))

    assert outcome.status is ProbeStatus.ERROR
    assert outcome.error == "“a..example.test” is not a valid domain name (empty label between dots)"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_runs_leave_no_file_descriptors_open(server: DnsServer, run: Callable[[ProbeSpec], ProbeOutcome]) -> None:
    with DnsServer("silent") as silent:
        run(dns_spec("example.test", server))  # the loop's own first-use descriptors (uvloop) are not the probe's
        before = _open_fds()
        run(dns_spec("example.test", server))
        run(dns_spec("example.test", server, transport="tcp"))
        run(dns_spec("example.test", silent, timeout=0.1))
        run(dns_spec("example.test", silent, timeout=0.1, transport="tcp"))
        # The servers' ends of the TCP connections close in their own thread, a moment later.
        for _ in range(100):
            if _open_fds() <= before:
                break
            time.sleep(0.02)

        assert _open_fds() <= before


# --- the spec ------------------------------------------------------------------------


def _one_error(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    errors = exc.value.errors()
    assert len(errors) == 1
    message = errors[0]["msg"]
    assert "\n" not in message
    return message


def test_spec_defaults_and_normalised_fields() -> None:
    spec = build_spec("dns", "example.com")
    assert spec.stored() == {"record_type": "A", "resolver": None, "transport": "udp",
                             "expected_rcode": "NOERROR", "expected_answers": []}
    assert isinstance(spec, DnsSpec)

    spec = build_spec("dns", "example.com", record_type="mx", transport="TCP", expected_rcode="nxdomain")
    assert (spec.record_type, spec.transport, spec.expected_rcode) == ("MX", "tcp", "NXDOMAIN")


@pytest.mark.parametrize(("given", "stored"), [
    ("127.0.0.1", "127.0.0.1:53"),
    ("127.0.0.1:5353", "127.0.0.1:5353"),
    ("::1", "[::1]:53"),
    ("[::1]", "[::1]:53"),
    ("[0:0::1]:5353", "[::1]:5353"),
    ("DNS.Example.com", "dns.example.com:53"),
    ("dns.example.com:5353", "dns.example.com:5353"),
])
def test_resolver_is_normalised(given: str, stored: str) -> None:
    assert build_spec("dns", "example.com", resolver=given).stored()["resolver"] == stored


@pytest.mark.parametrize(("fields", "message"), [
    ({"record_type": "AXFR"}, "Input should be 'A', 'AAAA', 'CNAME', 'MX', 'NS', 'TXT', 'SOA', 'SRV', 'PTR' or 'CAA'"),
    ({"record_type": 1}, "Input should be 'A', 'AAAA', 'CNAME', 'MX', 'NS', 'TXT', 'SOA', 'SRV', 'PTR' or 'CAA'"),
    ({"transport": "quic"}, "Input should be 'udp' or 'tcp'"),
    ({"expected_rcode": "OK"}, "Input should be 'NOERROR', 'NXDOMAIN', 'SERVFAIL', 'REFUSED', 'FORMERR' or 'NOTIMP'"),
    ({"resolver": "127.0.0.1:99999"}, "Value error, port must be a number from 1 to 65535, got “99999”"),
    ({"resolver": "dns server"}, "Value error, resolver must not contain whitespace"),
    ({"resolver": ""}, "Value error, resolver is empty"),
    ({"resolver": "a..b:53"}, "Value error, “a..b” is not a valid host name (empty label between dots)"),
    ({"resolver": "1.2.3.4.5:53"}, "Value error, “1.2.3.4.5” is not a valid host name"),
    ({"resolver": "[::1"}, "Value error, expected [IPv6 address]:port, got “[::1”"),
    ({"expected_answers": [""]}, "String should have at least 1 character"),
    ({"expected_answer": ["x"]}, "Extra inputs are not permitted"),
])
def test_invalid_spec_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        build_spec("dns", "example.com", **fields)

    assert _one_error(exc) == message


@pytest.mark.parametrize(("target", "stored"), [
    ("Example.COM.", "example.com"),
    ("_sip._tcp.example.com", "_sip._tcp.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("localhost", "localhost"),
    ("10.0.0.1", "10.0.0.1"),
    ("2001:DB8::0001", "2001:db8::1"),
])
def test_target_is_normalised(target: str, stored: str) -> None:
    assert validate_target("dns", target) == stored


@pytest.mark.parametrize(("target", "message"), [
    ("", "target is empty"),
    ("exa mple.com", "target must not contain whitespace"),
    ("a..example.com", "“a..example.com” is not a valid domain name (empty label between dots)"),
    (".", "the root “.” is not a domain name"),
    ("-bad.example.com", "“-bad.example.com” is not a valid domain name"),
    ("example.com:53", "“example.com:53” is not a valid domain name"),
    ("https://example.com/", "“https://example.com/” is not a valid domain name"),
    ("x" * 64 + ".com", f"“{'x' * 60}…” is not a valid domain name (a label is longer than 63 characters)"),
    ("a." * 127 + "com", f"“{'a.' * 30}…” is not a valid domain name (longer than 253 characters)"),
])
def test_invalid_targets(target: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        validate_target("dns", target)

    assert str(exc.value) == message


def test_every_own_field_is_described_for_the_api() -> None:
    schema = DnsSpec.model_json_schema()
    own = set(DnsSpec.model_fields) - set(DnsSpec.COMMON)

    assert own == {"record_type", "resolver", "transport", "expected_rcode", "expected_answers"}
    assert all(schema["properties"][name].get("description") for name in own)
    assert DnsSpec.TARGET_HELP
