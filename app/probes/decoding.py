"""Response bodies decoded as they arrive, never past a limit.

A gzip bomb (half a megabyte on the wire, gigabytes inflated) costs at most
``limit`` bytes of output plus zlib's window: ``decompress(data, max_length)``
stops producing output at ``max_length`` and keeps the rest of the input in
``unconsumed_tail``, which is only decompressed while there is room. Each step
inflates at most ``STEP`` bytes, so no single call holds the event loop long.
"""

from __future__ import annotations

import zlib

from app.probes.base import ProbeError, ProbeStatus
from app.probes.text import size

STEP = 65536
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyDecoder:
    """Collects a body (``Content-Encoding`` gzip, deflate or none) up to ``limit`` decoded bytes.

    ``full`` turns true once more was sent than fits; the caller stops reading then.
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        self.encoding = content_encoding.strip().lower()
        self.limit = limit
        self.body = bytearray()
        self.full = False
        wbits = _WBITS.get(self.encoding)
        self._inflate = zlib.decompressobj(wbits) if wbits is not None else None
        self._raw_deflate_possible = self.encoding == "deflate"

    @property
    def compressed(self) -> bool:
        return self._inflate is not None

    def feed(self, data: bytes) -> None:
        if self.full or not data:
            return
        if self._inflate is None:
            room = self.limit - len(self.body)
            self.body += data[:room]
            self.full = len(data) > room
            return
        try:
            self._feed_compressed(data)
        except zlib.error as exc:
            if self._raw_deflate_possible and not self.body:
                # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate.
                self._raw_deflate_possible = False
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self.feed(data)
                return
            raise ProbeError(ProbeStatus.FAILED, f"response body is not valid {self.encoding} data") from exc
        self._raw_deflate_possible = False

    def _feed_compressed(self, data: bytes) -> None:
        assert self._inflate is not None
        pending = data
        while pending and not self._inflate.eof:
            room = self.limit - len(self.body)
            if room == 0:
                # Full: is there more to come, or was the limit exactly the body's size?
                self.full = bool(self._inflate.decompress(pending, 1))
                return
            self.body += self._inflate.decompress(pending, min(room, STEP))
            pending = self._inflate.unconsumed_tail

    def truncated_reason(self) -> str | None:
        if not self.full:
            return None
        return f"body cut at {size(self.limit)}" + (" (decompressed)" if self.compressed else "")
