"""DNS probe: one query to a resolver over UDP (TCP if the reply is truncated) or TCP, checked for rcode and answers."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from typing import Annotated, Any, Literal

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
from pydantic import BeforeValidator, Field, field_validator

from app.probes.base import (
    PhaseTimings,
    ProbeError,
    ProbeOutcome,
    ProbeRun,
    ProbeSpec,
    ProbeStatus,
    Protocol,
)
from app.probes.net import elapsed_ms, is_ip, join_host_port, resolve, split_host_port
from app.probes.text import check_plain, os_error, quote, seconds

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "SRV", "PTR", "CAA")
RCODES = ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "FORMERR", "NOTIMP")
DNS_PORT = 53
EDNS_PAYLOAD = 1232  # what a reply over UDP may carry (the DNS flag day 2020 size: no IP fragmentation)
SHOWN_ANSWERS = 10  # answers listed in a message; the rest are counted
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")  # letters, digits, hyphens; underscores for _srv._tcp names
_BACKEND = dns.asyncbackend.get_backend("asyncio")  # named: sniffing for the async library needs sniffio


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def domain_name(text: str, kind: str = "domain name") -> str:
    """``text`` as a name to look up: lower case, IDNA (``xn--``) form, no trailing dot; ``ValueError`` otherwise."""
    check_plain(text)
    if text == ".":
        raise ValueError(f"the root “.” is not a {kind}")
    try:
        name = dns.name.from_text(text).to_text(omit_final_dot=True).lower()
    except dns.name.EmptyLabel:
        raise ValueError(f"{quote(text)} is not a valid {kind} (empty label between dots)") from None
    except dns.name.LabelTooLong:
        raise ValueError(f"{quote(text)} is not a valid {kind} (a label is longer than 63 characters)") from None
    except dns.name.NameTooLong:
        raise ValueError(f"{quote(text)} is not a valid {kind} (longer than 253 characters)") from None
    except dns.exception.DNSException:  # IDNA: characters no domain name may hold
        raise ValueError(f"{quote(text)} is not a valid {kind}") from None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():  # no top-level domain is a number
        raise ValueError(f"{quote(text)} is not a valid {kind}")
    return name


def _resolver_address(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, an IP address, ``ip:port`` or ``[ipv6]:port``; port 53 if none is given."""
    if not value:
        raise ValueError("resolver is empty")
    if any(char.isspace() for char in value):
        raise ValueError("resolver must not contain whitespace")
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if is_ip(bare):
        return ipaddress.ip_address(bare).compressed, DNS_PORT
    if ":" not in value:
        return domain_name(value, "host name"), DNS_PORT
    host, port = split_host_port(value)
    return (ipaddress.ip_address(host).compressed if is_ip(host) else domain_name(host, "host name")), port


class DnsSpec(ProbeSpec):
    """One DNS query: the reply must carry ``expected_rcode`` and, if listed, every one of ``expected_answers``."""

    TARGET_HELP = "the domain name to query (e.g. example.com; an IP address for record type PTR)"

    protocol: Literal["dns"]
    record_type: Annotated[Literal[RECORD_TYPES], BeforeValidator(_upper)] = Field(  # type: ignore[valid-type]
        "A", description="The record type asked for.")
    resolver: str | None = Field(
        None, max_length=300,
        description="The DNS server asked: host, IP address or host:port (IPv6 as [::1]:53), port 53 by default; "
                    "unset: the first nameserver of the machine running the probe (/etc/resolv.conf).")
    transport: Annotated[Literal["udp", "tcp"], BeforeValidator(_lower)] = Field(
        "udp", description="udp (retried over tcp when the reply is truncated) or tcp.")
    expected_rcode: Annotated[Literal[RCODES], BeforeValidator(_upper)] = Field(  # type: ignore[valid-type]
        "NOERROR", description="The response code the reply must carry; NOERROR also needs at least one record.")
    expected_answers: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=50,
        description="Records that must all be among the answers, written as the record reads "
                    "(“127.0.0.1”, “10 mail.example.com”, a TXT record's text); case and a trailing dot "
                    "do not matter. Empty: any answer.")

    @field_validator("resolver")
    @classmethod
    def _valid_resolver(cls, value: str | None) -> str | None:
        return None if value is None else join_host_port(*_resolver_address(value))

    @classmethod
    def normalise_target(cls, protocol: str, target: str) -> str:
        check_plain(target)
        if is_ip(target):
            return ipaddress.ip_address(target).compressed
        return domain_name(target)


class _Metered:
    """A dnspython socket passed through, counting what the reply took: dnspython returns only the parsed message."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.received = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    async def recvfrom(self, size: int, timeout: float | None) -> tuple[bytes, Any]:
        data, address = await self.sock.recvfrom(size, timeout)
        self.received = len(data)  # one datagram is one message
        return data, address

    async def recv(self, size: int, timeout: float | None) -> bytes:
        data = await self.sock.recv(size, timeout)
        self.received += len(data)
        return data


def _query_name(spec: DnsSpec) -> dns.name.Name:
    """The name asked for; an IP address target is looked up as its reverse (``in-addr.arpa``) name."""
    if is_ip(spec.target):
        if spec.record_type != "PTR":
            raise ProbeError(ProbeStatus.ERROR, f"an IP address is looked up with record type PTR, not {spec.record_type}")
        return dns.reversename.from_address(spec.target)
    try:
        return dns.name.from_text(domain_name(spec.target))
    except ValueError as exc:
        raise ProbeError(ProbeStatus.ERROR, str(exc)) from None


def _configured_resolver() -> tuple[str, int]:
    """The machine's first nameserver (read once per process, by dnspython)."""
    try:
        system = dns.resolver.get_default_resolver()
    except dns.resolver.NoResolverConfiguration:
        raise ProbeError(ProbeStatus.ERROR, "no DNS resolver is configured on this machine; set resolver") from None
    first = system.nameservers[0]
    if isinstance(first, str):
        return first, system.port
    raise ProbeError(ProbeStatus.ERROR, f"the machine's first resolver ({first}) is not plain DNS; set resolver")


async def _over_udp(query: dns.message.Message, address: str, port: int, family: int,
                    timings: PhaseTimings) -> tuple[dns.message.Message, int]:
    # A connected socket, so that an ICMP port-unreachable comes back as ConnectionRefusedError.
    async with await _BACKEND.make_socket(family, socket.SOCK_DGRAM, 0, None, (address, port)) as sock:
        metered = _Metered(sock)
        started = time.perf_counter()
        try:
            reply = await dns.asyncquery.udp(query, address, port=port, raise_on_truncation=True, sock=metered)
        except dns.message.Truncated:
            timings.add("processing_ms", elapsed_ms(started))  # a round trip too, before the one over TCP
            raise
        timings.add("processing_ms", elapsed_ms(started))
        return reply, metered.received


async def _over_tcp(query: dns.message.Message, address: str, port: int, family: int,
                    timings: PhaseTimings) -> tuple[dns.message.Message, int]:
    started = time.perf_counter()
    sock = await _BACKEND.make_socket(family, socket.SOCK_STREAM, 0, None, (address, port))
    timings.add("connect_ms", elapsed_ms(started))
    async with sock:
        metered = _Metered(sock)
        started = time.perf_counter()
        reply = await dns.asyncquery.tcp(query, address, port=port, sock=metered)
        timings.add("processing_ms", elapsed_ms(started))
        return reply, max(metered.received - 2, 0)  # the 2-byte length in front of a message over TCP


def _text(rdata: Any) -> str:
    """A record as a person writes it: a TXT record's text unquoted, names without the root's dot."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    return rdata.to_text().removesuffix(".")


def _canonical(text: str) -> str:
    """What two spellings of one record share: case, a trailing dot and IPv6 spelling do not matter."""
    text = text.strip().removesuffix(".").lower()
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def _answers(reply: dns.message.Message, rdtype: dns.rdatatype.RdataType) -> list[str]:
    """The records of the type asked for, of every name in the answer (a CNAME chain ends in them)."""
    return sorted({_text(rdata) for rrset in reply.answer if rrset.rdtype == rdtype for rdata in rrset})


def _listed(answers: list[str], record_type: str) -> str:
    shown = [quote(answer) if record_type == "TXT" else answer for answer in answers[:SHOWN_ANSWERS]]
    more = f" … ({len(answers)} in all)" if len(answers) > SHOWN_ANSWERS else ""
    return ", ".join(shown) + more


def problem(spec: DnsSpec, name: str, rcode: str, answers: list[str]) -> str | None:
    """Why the reply fails the spec (one line for the user), or ``None`` if it passes."""
    if rcode != spec.expected_rcode:
        return f"rcode {rcode} (expected {spec.expected_rcode})"
    if rcode == "NOERROR" and not answers:
        return f"no {spec.record_type} records for {name}"
    have = {_canonical(answer) for answer in answers}
    missing = [expected for expected in spec.expected_answers if _canonical(expected) not in have]
    if not missing:
        return None
    expected = f"expected answer{'s' if len(missing) > 1 else ''} {', '.join(quote(text) for text in missing)}"
    if not answers:
        return f"{expected} not received (no {spec.record_type} records)"
    return f"{expected} not among {_listed(answers, spec.record_type)}"


def _query_failed(exc: Exception, resolver: str) -> ProbeError:
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError(ProbeStatus.FAILED, f"no DNS server at {resolver} (port unreachable)")
    if isinstance(exc, EOFError):
        return ProbeError(ProbeStatus.FAILED, f"resolver {resolver} closed the connection without answering")
    if isinstance(exc, dns.asyncquery.BadResponse):
        return ProbeError(ProbeStatus.FAILED, f"resolver {resolver} sent a reply that does not match the query")
    if isinstance(exc, dns.exception.DNSException):
        return ProbeError(ProbeStatus.FAILED, f"resolver {resolver} sent a reply that is not a valid DNS message")
    assert isinstance(exc, OSError)
    return ProbeError(ProbeStatus.FAILED, f"could not reach resolver {resolver}: {os_error(exc)}")


async def probe(spec: DnsSpec, run: ProbeRun) -> ProbeOutcome:
    qname = _query_name(spec)
    host, port = _resolver_address(spec.resolver) if spec.resolver is not None else _configured_resolver()
    family, sockaddr = (await resolve(host, port, run.timings, socket.SOCK_DGRAM))[0]
    address = sockaddr[0]
    resolver = join_host_port(address, port)
    run.verdict = ProbeError(ProbeStatus.TIMEOUT, f"no answer from resolver {resolver} within {seconds(spec.timeout)}")
    rdtype = dns.rdatatype.from_text(spec.record_type)
    query = dns.message.make_query(qname, rdtype, use_edns=0, payload=EDNS_PAYLOAD)
    transport = spec.transport
    try:
        if transport == "udp":
            try:
                reply, size = await _over_udp(query, address, port, family, run.timings)
            except dns.message.Truncated:  # the answer does not fit a datagram: ask again over TCP
                transport = "tcp"
                reply, size = await _over_tcp(query, address, port, family, run.timings)
        else:
            reply, size = await _over_tcp(query, address, port, family, run.timings)
    except ConnectionRefusedError as exc:
        if transport == "tcp":
            raise ProbeError(ProbeStatus.FAILED, f"no DNS server at {resolver} (connection refused)") from exc
        raise _query_failed(exc, resolver) from exc
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        raise _query_failed(exc, resolver) from exc
    rcode = dns.rcode.to_text(reply.rcode())
    answers = _answers(reply, rdtype)
    details = {"rcode": rcode, "answers": answers, "resolver": resolver, "transport": transport}
    name = qname.to_text(omit_final_dot=True)
    failure = problem(spec, name, rcode, answers)
    status = ProbeStatus.FAILED if failure else ProbeStatus.SUCCESS
    # Returned rather than raised: a failed run keeps what the resolver said (details), for the user to see.
    return ProbeOutcome(status, error=failure, body="\n".join(answers), bytes_read=size, details=details)


PROTOCOL = Protocol(DnsSpec, probe)
