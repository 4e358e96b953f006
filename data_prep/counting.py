"""The numpy gridding kernel: records -> flat cell indices -> per-(step, cell) counts.

Used by :class:`data_prep.grid.Accumulator` when numba is absent or a chunk spans too many
steps for the fused kernel; see :mod:`data_prep.grid` for the conventions.
"""

from __future__ import annotations

import numpy as np

from data_prep.clock import StepClock
from data_prep.schema import EDGE_SNAP, Grid


def cell_index(lat: np.ndarray, lon: np.ndarray, grid: Grid) -> np.ndarray:
    """Flat cell index ``i*W + j`` (int32) of each point; ``H*W`` for points outside the domain.

    ``lat``, ``lon`` (N,) float64 without NaN. South/west cell edges are inclusive, the domain's
    north/east edges exclusive (see :mod:`data_prep.schema`).
    """
    h, w = grid.shape
    fi = np.subtract(lat, grid.lat_min)
    fi /= grid.res
    fi += EDGE_SNAP  # decimal cell edges (see data_prep.schema)
    np.floor(fi, out=fi)
    fj = np.subtract(lon, grid.lon_min)
    fj /= grid.res
    fj += EDGE_SNAP
    np.floor(fj, out=fj)
    i = fi.astype(np.int32)  # NaN/inf become INT_MIN: outside; coordinates were range-checked
    j = fj.astype(np.int32)
    inside = (i.view(np.uint32) < h) & (j.view(np.uint32) < w)  # negatives wrap to huge
    i *= w
    i += j
    np.logical_not(inside, out=inside)
    np.copyto(i, np.int32(h * w), where=inside)
    return i


def count_cells(
    time: np.ndarray, cells: np.ndarray, weights: np.ndarray | None, clock: StepClock, n_cells: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Counts per (step, cell) of one slice, as ``(steps (S,), counts (S, n_cells + 1) int64)``.

    ``counts[s]`` holds step ``steps[s]``; the last column collects the points outside the
    domain (``cells == n_cells``). Sorted slices are cut at step edges with ``searchsorted``;
    others take one ``bincount`` over a flat (step, cell) index. Returns None when the slice
    spans too many steps for a dense table (use :func:`count_sparse`).
    """
    k0, k1 = (int(v) for v in clock.index(time[[0, -1]]))
    is_sorted = bool(np.all(time[1:] >= time[:-1]))
    if not is_sorted:
        k = clock.index(time)
        k0, k1 = int(k.min()), int(k.max())
    if (k1 - k0 + 1) * (n_cells + 1) > max(8 * time.size, 1 << 20):
        return None
    if is_sorted:
        cut = np.searchsorted(time, clock.start(np.arange(k0 + 1, k1 + 1)))
        bounds = np.r_[0, cut, time.size]
        used = np.flatnonzero(bounds[1:] > bounds[:-1])
        out = np.empty((used.size, n_cells + 1), dtype=np.int64)
        for r, s in enumerate(used):
            a, b = bounds[s], bounds[s + 1]
            w = None if weights is None else weights[a:b]
            out[r] = np.bincount(cells[a:b], weights=w, minlength=n_cells + 1)
        return k0 + used, out
    flat = (k - k0) * (n_cells + 1) + cells
    span = k1 - k0 + 1
    counts = np.bincount(flat, weights=weights, minlength=span * (n_cells + 1))
    return np.arange(k0, k1 + 1), counts.astype(np.int64, copy=False).reshape(span, n_cells + 1)


def count_sparse(
    time: np.ndarray, cells: np.ndarray, weights: np.ndarray | None, clock: StepClock, n_cells: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of the distinct (step, cell) pairs of one slice: ``(steps, cells, counts)`` (M,)."""
    flat = clock.index(time) * (n_cells + 1) + cells
    uniq, inv = np.unique(flat, return_inverse=True)
    counts = np.bincount(inv, weights=weights, minlength=uniq.size).astype(np.int64)
    return uniq // (n_cells + 1), uniq % (n_cells + 1), counts
