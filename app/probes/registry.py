"""Which prober speaks which protocol, and the spec model each one takes.

Every module of this package that defines ``PROTOCOL`` (a ``Protocol``: its spec
model and its prober) is a protocol; nothing else lists them. ``ProbeSpecUnion`` is
the discriminated union of the spec models, keyed by ``protocol``; ``SpecOptionsUnion``
the same without the common fields (what a probe's ``spec`` holds).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, create_model

import app.probes as package
from app.probes.base import ProbeSpec, Protocol


class UnknownProtocolError(ValueError):
    def __init__(self, protocol: str) -> None:
        super().__init__(f"unknown protocol “{protocol}”; expected one of: {', '.join(PROTOCOLS)}")


def get_protocol(protocol: str) -> Protocol:
    try:
        return REGISTRY[protocol]
    except KeyError:
        raise UnknownProtocolError(protocol) from None


def spec_model(protocol: str) -> type[ProbeSpec]:
    return get_protocol(protocol).spec


def build_spec(protocol: str, target: str, **fields: Any) -> ProbeSpec:
    """A validated spec; ``ValidationError`` (a ``ValueError``) if a field is wrong or unknown."""
    get_protocol(protocol)
    return _ANY_SPEC.validate_python({"protocol": protocol, "target": target, **fields})


def stored_spec(protocol: str, target: str, timeout: float, stored: dict[str, Any] | None) -> ProbeSpec:
    """The spec of a saved probe (its columns and its ``spec`` JSON).

    Saved specs were validated when the probe was saved; they are validated again here
    (a few microseconds) so a row written by an older version still gets the defaults
    and checks of this one. ``UnknownProtocolError`` or ``ValidationError`` if it can't.
    """
    return spec_model(protocol).model_validate(
        {**(stored or {}), "protocol": protocol, "target": target, "timeout": timeout})


def validate_target(protocol: str, target: str) -> str:
    """The normalised target, or ``ValueError`` with a one-line message for the user."""
    model = spec_model(protocol)
    return model.normalise_target(protocol, target.strip())


def _options_model(spec: type[ProbeSpec]) -> type[ProbeSpec]:
    """The spec model without the fields stored in their own columns: what a user writes as ``spec``."""
    fields = {name: (info.annotation, info) for name, info in spec.model_fields.items()
              if name == "protocol" or name not in spec.COMMON}
    return create_model(spec.__name__, __config__=ConfigDict(extra="forbid", title=spec.__name__),  # type: ignore[call-overload]
                        __doc__=spec.__doc__, **fields)


# Last: the protocol modules import this one (partially initialised until here).
def _discover() -> dict[str, Protocol]:
    found: dict[str, Protocol] = {}
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        protocol = getattr(module, "PROTOCOL", None)
        if isinstance(protocol, Protocol):
            for name in protocol.names:
                if name in found:
                    raise RuntimeError(f"protocol {name!r} is defined twice")
                found[name] = protocol
    return found


REGISTRY: dict[str, Protocol] = _discover()
PROTOCOLS: tuple[str, ...] = tuple(REGISTRY)
SPEC_MODELS: tuple[type[ProbeSpec], ...] = tuple(dict.fromkeys(entry.spec for entry in REGISTRY.values()))
ProbeSpecUnion = Annotated[Union[SPEC_MODELS], Field(discriminator="protocol")]  # type: ignore[valid-type]
_ANY_SPEC: TypeAdapter[ProbeSpec] = TypeAdapter(ProbeSpecUnion)
SpecOptionsUnion = Annotated[Union[tuple(_options_model(model) for model in SPEC_MODELS)],  # type: ignore[valid-type]
                             Field(discriminator="protocol")]
"""What the API and CLI take as a probe's ``spec``: per protocol, its own fields only."""


__all__ = ["PROTOCOLS", "REGISTRY", "SPEC_MODELS", "ProbeSpecUnion", "SpecOptionsUnion", "UnknownProtocolError", "ValidationError",
           "build_spec", "get_protocol", "spec_model", "stored_spec", "validate_target"]
