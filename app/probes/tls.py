"""TLS for the probers: one client context per verification mode, and the certificate verdicts.

With verification on, OpenSSL refuses a bad certificate during the handshake and
says only why (a verify code); to report *when* it expired, the prober takes a
second, non-verifying look at the certificate, on that failure path only. With
verification off the handshake succeeds whatever the dates are, so the dates are
checked here: an expired certificate still fails the run.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509

from app.probes.base import ProbeError, ProbeRun, ProbeStatus
from app.probes.net import connection_error, elapsed_ms
from app.probes.text import cert_expiry

# OpenSSL verify codes (x509_vfy.h) that get their own wording.
CERT_NOT_YET_VALID = 9
CERT_HAS_EXPIRED = 10
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64


@functools.cache
def ssl_context(verify: bool) -> ssl.SSLContext:
    """One verifying and one non-verifying context per process: loading the CA bundle is slow.

    The verifying one trusts the system store (``SSL_CERT_FILE``/``SSL_CERT_DIR``
    point it elsewhere, as for any OpenSSL client).
    """
    if verify:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Validity:
    not_before: datetime
    not_after: datetime


def peer_validity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> Validity | None:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return Validity(cert.not_valid_before_utc, cert.not_valid_after_utc)


def _dates_problem(validity: Validity) -> str | None:
    now = datetime.now(timezone.utc)
    if validity.not_after < now:
        return cert_expiry(validity.not_after, now)
    if validity.not_before > now:
        return f"certificate not valid before {validity.not_before:%Y-%m-%d %H:%M} UTC"
    return None


def check_peer_certificate(ssl_object: ssl.SSLObject | None, run: ProbeRun) -> None:
    """Record the certificate's expiry; with verification off, still fail a run on a dated-out one."""
    validity = peer_validity(ssl_object)
    if validity is None:
        return
    run.cert_expires_at = validity.not_after
    if not run.spec.verify_tls and (problem := _dates_problem(validity)):
        raise ProbeError(ProbeStatus.FAILED, problem)


def handshake_failed(exc: ssl.SSLError) -> ProbeError:
    if isinstance(exc, ssl.SSLEOFError):
        return ProbeError(ProbeStatus.ERROR, "TLS handshake failed: the server closed the connection")
    reason = (exc.reason or "").replace("_", " ").lower() or "protocol error"
    return ProbeError(ProbeStatus.ERROR, f"TLS handshake failed: {reason}")


def _verification_message(exc: ssl.SSLCertVerificationError, host: str, validity: Validity | None) -> str:
    dates = _dates_problem(validity) if validity is not None else None
    if exc.verify_code == CERT_HAS_EXPIRED:
        return dates or "certificate expired"
    if exc.verify_code == CERT_NOT_YET_VALID:
        return dates or "certificate not yet valid"
    if exc.verify_code in (HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH):
        message = f"certificate is not valid for {host}"
    else:
        message = f"certificate not trusted: {exc.verify_message or 'verification failed'}"
    return f"{message}; {dates}" if dates else message


async def _look_at_certificate(peer: tuple, host: str) -> Validity | None:
    """The peer's certificate dates over a fresh, non-verifying connection; ``None`` if that fails."""
    try:
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, peer[0], peer[1], ssl=ssl_context(False), server_hostname=host
        )
    except OSError:  # ssl.SSLError is an OSError
        return None
    try:
        return peer_validity(transport.get_extra_info("ssl_object"))
    finally:
        transport.abort()


async def verification_failed(
    exc: ssl.SSLCertVerificationError, peer: tuple, host: str, run: ProbeRun
) -> ProbeError:
    """The verdict on a certificate the handshake refused, with its dates where they matter."""
    run.verdict = ProbeError(ProbeStatus.ERROR, _verification_message(exc, host, None))
    validity = await _look_at_certificate(peer, host)
    if validity is not None:
        run.cert_expires_at = validity.not_after
    return ProbeError(ProbeStatus.ERROR, _verification_message(exc, host, validity))


async def start_tls(
    transport: asyncio.Transport, protocol: asyncio.BaseProtocol, host: str, run: ProbeRun
) -> asyncio.Transport:
    """TLS over a connected transport, timed as ``tls_ms``; every failure becomes a verdict."""
    peer = transport.get_extra_info("peername")
    started = time.perf_counter()
    try:
        secure = await asyncio.get_running_loop().start_tls(
            transport, protocol, ssl_context(run.spec.verify_tls), server_hostname=host
        )
    except ssl.SSLCertVerificationError as exc:
        raise await verification_failed(exc, peer, host, run) from exc
    except ssl.SSLError as exc:
        raise handshake_failed(exc) from exc
    except OSError as exc:
        raise connection_error(exc) from exc
    run.timings.add("tls_ms", elapsed_ms(started))
    check_peer_certificate(secure.get_extra_info("ssl_object"), run)
    return secure
