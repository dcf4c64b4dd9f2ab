"""Field types the protocol specs share, and the headers every HTTP-speaking spec carries.

Validation lives in the types, so a spec that is accepted can be sent: a header name
HTTP cannot carry or a value with a line break is refused when the probe is saved,
not discovered on every run.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from app.probes.base import ProbeSpec
from app.probes.urls import MASK, SECRET_NAME  # noqa: F401  (re-exported: specs mask credentials with them)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _valid_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name “{name}” is not valid in HTTP")
        if any(char in value for char in "\r\n\0"):
            raise ValueError(f"header {name} contains a line break")
    return headers


Payload = Annotated[str | None, Field(None, max_length=65536,
                                      description="Sent byte for byte as given (whitespace kept).")]
Expect = Annotated[str | None, Field(None, min_length=1, max_length=4096,
                                     description="Text the reply must contain (whitespace kept).")]
HeaderMap = Annotated[dict[str, str], AfterValidator(_valid_headers),
                      Field(default_factory=dict, max_length=50, description="Request headers.")]


class WithHeaders(ProbeSpec):
    """A spec that sends request headers, some of them credentials for the target.

    A header's value is a credential when its name looks like one (``SECRET_NAME``) or
    the user listed it in ``secret_headers``. Credentials are sent, but read back as
    ``MASK``, and never appear in a message.
    """

    headers: HeaderMap
    secret_headers: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50,
        description="Names of further headers whose values are credentials: sent, never shown.")

    def is_secret(self, header: str) -> bool:
        return bool(SECRET_NAME.search(header)) or header.lower() in {name.lower() for name in self.secret_headers}

    def secret_values(self) -> list[str]:
        return [value for name, value in self.headers.items() if self.is_secret(name)]

    def shown(self) -> dict[str, Any]:
        shown = self.stored()
        shown["headers"] = {name: MASK if self.is_secret(name) else value for name, value in self.headers.items()}
        return shown

    def sealed(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        secret = {name: value for name, value in self.headers.items() if self.is_secret(name)}
        return self.shown(), ({"headers": secret} if secret else None)
