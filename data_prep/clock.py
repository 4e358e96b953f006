"""Map steps in time: their numbering from an origin, and how much of each step a set of time
spans covers (the coverage of feeds that observe spans of time rather than listing days)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepClock:
    """Map step numbering: step k covers ``[origin + k*step, origin + (k+1)*step)`` (ns, UTC)."""

    origin: int
    step: int
    lo: int | None = None  # first step kept (inclusive); None = no bound
    hi: int | None = None  # last step kept (inclusive)

    def index(self, t: np.ndarray) -> np.ndarray:
        """Step number of each time (int64 ns) -> int64."""
        return (np.asarray(t, dtype=np.int64) - self.origin) // self.step

    def start(self, k: int | np.ndarray) -> np.ndarray:
        """Start time (int64 ns) of step(s) ``k``."""
        return self.origin + np.asarray(k, dtype=np.int64) * self.step


def span_fraction(spans: list[tuple[int, int]], clock: StepClock, k0: int, k1: int) -> np.ndarray:
    """Share (S,) of each step ``k0 .. k1`` covered by the union of ``(t0, t1)`` ns intervals."""
    edges = clock.start(np.arange(k0, k1 + 2))
    covered = np.zeros(k1 - k0 + 1, dtype=np.int64)
    for t0, t1 in _union(spans):
        a = np.clip(edges[:-1], t0, t1)
        b = np.clip(edges[1:], t0, t1)
        covered += b - a
    return covered / clock.step


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for t0, t1 in sorted(spans):
        if out and t0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], t1))
        else:
            out.append((t0, t1))
    return out


_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "t": 60, "min": 60, "minute": 60}
_UNIT_SECONDS |= {"h": 3600, "hr": 3600, "hour": 3600, "d": 86400, "day": 86400}
_UNIT_SECONDS |= {"w": 604800, "week": 604800}


def step_seconds(step: str) -> float | None:
    """Seconds in a step such as ``1h``, ``30min`` or ``1 day``; None when it is not of that
    shape (it is then refused, naming the key, where the world is made). No pandas here, so the
    config loads on a machine that has only torch, numpy and PyYAML."""
    match = _STEP.match(step)
    unit = match and _UNIT_SECONDS.get(match[2].lower().removesuffix("s") or "s")
    if not unit:
        return None
    return float(match[1] or 1) * unit
