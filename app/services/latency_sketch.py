"""A mergeable response-time sketch: counts per logarithmic bin (the DDSketch mapping).

A value v > 0 falls in bin i = ceil(log_gamma(v)), the interval (gamma^(i-1), gamma^i].
A quantile is answered with the bin's midpoint in relative terms, 2 * gamma^i / (gamma + 1),
which is within ``RELATIVE_ERROR`` (2 %) of every value of the bin: the estimate of a
nearest-rank percentile is within 2 % of the exact one. Values at or below ``MIN_VALUE`` ms
(including 0) share the lowest bin and are answered as ``MIN_VALUE``.

A sketch is stored as one compact JSON object, bin index -> count (``encode``/``decode``),
in its rollup row: 28 bins cover response times spread 1:3, 115 bins 1:100.
Merging two sketches adds their counts bin by bin (``merge``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

RELATIVE_ERROR = 0.02
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 0.001  # ms
MIN_BIN = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)
MAX_BIN = 2000  # gamma^2000 is ~1e34 ms: any finite measurement is below it

Sketch = dict[int, int]


def bin_of(value: float) -> int:
    if value <= MIN_VALUE:
        return MIN_BIN
    if not math.isfinite(value):  # infinity (or NaN): the top bin
        return MAX_BIN
    return min(MAX_BIN, math.ceil(math.log(value) / _LOG_GAMMA))


def value_of(index: int) -> float:
    if index <= MIN_BIN:
        return MIN_VALUE
    return 2 * GAMMA ** index / (GAMMA + 1)


def encode(sketch: Mapping[int, int]) -> str | None:
    """The stored form: ``{"<bin>":<count>,…}`` in bin order, or None for an empty sketch."""
    if not sketch:
        return None
    return "{" + ",".join(f'"{index}":{count}' for index, count in sorted(sketch.items()) if count) + "}"


def decode(stored: str | None) -> Sketch:
    if not stored:
        return {}
    return {int(index): count for index, count in json.loads(stored).items()}


def merge(into: Sketch, other: Mapping[int, int]) -> Sketch:
    """Add ``other``'s counts to ``into`` (in place) and return it."""
    for index, count in other.items():
        into[index] = into.get(index, 0) + count
    return into


def quantiles(bins: Mapping[int, int], percents: Iterable[int]) -> dict[int, float | None]:
    """The nearest-rank percentiles of the sketch: rank ceil(p/100 * n) among the n values."""
    ordered = sorted((index, count) for index, count in bins.items() if count > 0)
    total = sum(count for _, count in ordered)
    answers: dict[int, float | None] = {}
    for percent in percents:
        if not total:
            answers[percent] = None
            continue
        rank = max(1, math.ceil(percent * total / 100))
        seen = 0
        for index, count in ordered:
            seen += count
            if seen >= rank:
                answers[percent] = round(value_of(index), 3)
                break
    return answers
