"""The probe engine: one spec in, one ``ProbeOutcome`` out, for every protocol.

``run_probe`` is the entry point for callers: it owns the deadline and the
clock, never raises for a target or a spec, and applies the user's success
conditions. ``run_many`` runs a batch concurrently with a bound.
``new_event_loop`` is the loop the engine is cheapest on (uvloop where installed).
"""

from __future__ import annotations

from app.probes.base import PhaseTimings, ProbeError, ProbeOutcome, ProbeRun, ProbeSpec, ProbeStatus, Prober, Protocol
from app.probes.conditions import Conditions, evaluate
from app.probes.loop import new_event_loop
from app.probes.registry import (
    PROTOCOLS,
    REGISTRY,
    SPEC_MODELS,
    ProbeSpecUnion,
    SpecOptionsUnion,
    UnknownProtocolError,
    build_spec,
    get_protocol,
    spec_model,
    stored_spec,
    validate_target,
)
from app.probes.runner import run_many, run_probe

__all__ = [
    "PROTOCOLS",
    "REGISTRY",
    "SPEC_MODELS",
    "Conditions",
    "PhaseTimings",
    "ProbeError",
    "ProbeOutcome",
    "ProbeRun",
    "ProbeSpec",
    "ProbeSpecUnion",
    "ProbeStatus",
    "Prober",
    "SpecOptionsUnion",
    "Protocol",
    "UnknownProtocolError",
    "build_spec",
    "evaluate",
    "get_protocol",
    "new_event_loop",
    "run_many",
    "run_probe",
    "spec_model",
    "stored_spec",
    "validate_target",
]
