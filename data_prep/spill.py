"""Rows of an accumulator moved to disk, so gridding holds a bounded number of steps in memory.

A part is the non-zero cells of some steps' rows as sorted ``(step, cell, value)`` triples in
``.npy`` files (read back memory-mapped, so a block of steps reads only its own slice), and the
covered cells of gridded inputs as ``(step, cell)`` pairs. Lightning maps are sparse: a part
takes far less room than the dense rows it replaces. Within a part each (step, cell) occurs
once, so adding a part's slice into a dense block with a fancy index is exact; integer sums and
boolean ors of parts give the same maps in any order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPILL_BYTES = 1 << 28  # rows an accumulator keeps in memory before moving them to disk


@dataclass
class Part:
    """One spilled set of rows: file stem and the first and last step it holds (any kind)."""

    stem: str
    k_min: int
    k_max: int


@dataclass
class Spill:
    """The parts written under ``folder`` (which must exist; its owner removes it)."""

    folder: Path
    parts: list[Part] = field(default_factory=list)

    def write(self, counts: dict[int, np.ndarray], covered: dict[int, np.ndarray]) -> None:
        """Write rows ``counts[k]`` (C,) int64 and ``covered[k]`` (C,) bool as one part."""
        keys = list(counts) + list(covered)
        if not keys:
            return
        stem = str(self.folder / f"part-{uuid.uuid4().hex}")  # unique across workers
        for kind, table in (("counts", counts), ("covered", covered)):
            steps, cells, vals = _triples(table)
            np.save(f"{stem}.{kind}.steps.npy", steps)
            np.save(f"{stem}.{kind}.cells.npy", cells)
            if kind == "counts":
                np.save(f"{stem}.{kind}.vals.npy", vals)
        self.parts.append(Part(stem, min(keys), max(keys)))

    def add_into(self, counts: np.ndarray, cov: np.ndarray, k0: int) -> None:
        """Add the parts' counts into ``counts`` (S, C) int64 and their covered cells into
        ``cov`` (S, C) int8, whose first row is step ``k0``."""
        k1 = k0 + counts.shape[0] - 1
        for part in self.parts:
            if part.k_max < k0 or part.k_min > k1:
                continue
            rows, cells, sl = _slice(f"{part.stem}.counts", k0, k1)
            vals = np.load(f"{part.stem}.counts.vals.npy", mmap_mode="r")[sl]
            counts[rows, cells] += vals
            rows, cells, _ = _slice(f"{part.stem}.covered", k0, k1)
            cov[rows, cells] = 1

    def strike_steps(self) -> np.ndarray:
        """The steps (sorted int64) where some part holds a non-zero count."""
        steps = [
            np.unique(np.load(f"{p.stem}.counts.steps.npy", mmap_mode="r")) for p in self.parts
        ]
        return np.unique(np.concatenate([np.zeros(0, np.int64), *steps]))


def _triples(table: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows -> sorted (steps int64, cells int32, values int64) of their non-zero cells."""
    steps, cells, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int32)], [np.zeros(0, np.int64)]
    for k in sorted(table):
        row = table[k]
        nz = np.flatnonzero(row)
        steps.append(np.full(nz.size, k, dtype=np.int64))
        cells.append(nz.astype(np.int32))
        vals.append(row[nz].astype(np.int64))
    return np.concatenate(steps), np.concatenate(cells), np.concatenate(vals)


def _slice(stem: str, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, slice]:
    """Rows (relative to ``k0``) and cells of the entries of steps ``k0 .. k1``, and their slice."""
    steps = np.load(f"{stem}.steps.npy", mmap_mode="r")
    a, b = np.searchsorted(steps, [k0, k1 + 1])
    sl = slice(int(a), int(b))
    cells = np.load(f"{stem}.cells.npy", mmap_mode="r")[sl]
    return np.asarray(steps[sl]) - k0, np.asarray(cells), sl
