"""The fused gridding kernel (numba): records -> per-(step, cell) counts in one parallel pass.

Each thread takes a contiguous share of the records and walks it in blocks of ``BLOCK``: a
vectorised loop computes every record's cell exactly as :meth:`data_prep.schema.Grid.cell_index`
does (``floor((lat - lat_min) / res + EDGE_SNAP)`` in float64, no fast-math, so the same IEEE
operations give the same bits), then a scalar loop finds each record's time step (one division per block when
the block lies within one step, the usual case for feeds in time order), drops records outside
the clock's bounds or the domain, and adds the strikes to the thread's own table. Tables and
per-outcome totals are summed afterwards: integer sums, so the result does not depend on the
number of threads.

Imported lazily by :mod:`data_prep.grid`, which falls back to numpy when numba is absent.
Compiled once per machine: ``cache=True`` keeps the machine code in ``__pycache__``.
"""

from __future__ import annotations

import numba
import numpy as np

from data_prep.schema import EDGE_SNAP

BLOCK = 1024  # records per block: the cell indices of a block stay in L1


def set_threads(n: int) -> None:
    """Run the kernel on ``n`` threads (at most numba's ``NUMBA_NUM_THREADS``)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def threads() -> int:
    """Threads the kernel runs on (numba's setting: ``NUMBA_NUM_THREADS``, all cores)."""
    return numba.get_num_threads()


@numba.njit(inline="always")
def _floor_div(d, step, inv_step):  # pragma: no cover
    """``d // step`` (int64, floor) without the slow integer division: a float estimate, then
    corrected exactly with integer arithmetic (the estimate is off by at most one in practice)."""
    k = np.int64(np.floor(d * inv_step))
    r = d - k * step
    while r < 0:
        k -= 1
        r += step
    while r >= step:
        k += 1
        r -= step
    return k


@numba.njit(inline="always")
def _block_cells(la, lo, cell, m, geo, east, west):  # pragma: no cover
    """Flat cell of each of the ``m`` records into ``cell``: -1 outside the domain (and NaN)."""
    lat_min, lon_min, res, fh, fw = geo[0], geo[1], geo[2], geo[3], geo[4]
    for q in range(m):
        x = lo[q]
        x = x + (east if x >= 180.0 else 0.0) + (west if x < 0.0 else 0.0)  # no branch
        fi = np.floor((la[q] - lat_min) / res + EDGE_SNAP)
        fj = np.floor((x - lon_min) / res + EDGE_SNAP)
        inside = (fi >= 0) & (fi < fh) & (fj >= 0) & (fj < fw)
        # fi * fw + fj is exact in float64: small integers
        cell[q] = np.int32(fi * fw + fj) if inside else np.int32(-1)


@numba.njit(inline="always")
def _time_range(tb, m):  # pragma: no cover
    """The earliest and latest of the ``m`` times ``tb``."""
    t_min, t_max = tb[0], tb[0]
    for q in range(m):
        t_min = min(t_min, tb[q])
        t_max = max(t_max, tb[q])
    return t_min, t_max


@numba.njit(inline="always")
def _add_one_step(row, cell, count, a, m, weighted):  # pragma: no cover
    """Add a block lying within one kept step to its ``row``; returns (records in, strikes in,
    records outside the domain, their strikes)."""
    in_r = in_s = out_d = out_ds = 0
    if not weighted:  # one strike each: no count to read
        for q in range(m):
            if cell[q] >= 0:
                row[cell[q]] += 1
            else:
                out_d += 1
        return m - out_d, m - out_d, out_d, out_d
    for q in range(m):
        s = count[a + q]
        if cell[q] >= 0:
            row[cell[q]] += s
            in_r += 1
            in_s += s
        else:
            out_d += 1
            out_ds += s
    return in_r, in_s, out_d, out_ds


@numba.njit(inline="always")
def _add_each(table, cell, time, count, a, m, weighted, clock, k0, inv_step):  # pragma: no cover
    """Add a block spanning steps (or outside the time range), one division per record;
    returns the six totals of :func:`grid_records` for the block."""
    origin, step, k_lo, k_hi = clock[0], clock[1], clock[2], clock[3]
    out_t = out_ts = out_d = out_ds = in_r = in_s = 0
    for q in range(m):
        s = count[a + q] if weighted else 1
        kq = _floor_div(time[a + q] - origin, step, inv_step)
        if kq < k_lo or kq > k_hi:
            out_t += 1
            out_ts += s
        elif cell[q] < 0:
            out_d += 1
            out_ds += s
        else:
            table[kq - k0, cell[q]] += s
            in_r += 1
            in_s += s
    return out_t, out_ts, out_d, out_ds, in_r, in_s


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def grid_records(time, lat, lon, count, clock, geo, table_steps, n_threads):  # pragma: no cover
    """Counts per (step, cell) and totals per outcome of N records, on ``n_threads`` threads.

    ``time`` (N,) int64 ns; ``lat``, ``lon`` (N,) float64; ``count`` (N,) int64 strikes per
    record, or (0,) for one each. ``clock`` (5,) int64 = (origin, step, k_lo, k_hi, wrap):
    records of steps outside ``[k_lo, k_hi]`` are outside the time range; ``wrap`` 1 maps
    lon >= 180 to lon - 360, 2 maps lon < 0 to lon + 360. ``geo`` (5,) float64 = (lat_min,
    lon_min, res, H, W). ``table_steps`` (2,) int64 = (k0, S): the tables hold steps
    ``k0 .. k0 + S - 1``, which must include every step in ``[k_lo, k_hi]`` that occurs.

    Returns ``counts (n_threads, S, H*W) int64`` and ``totals (n_threads, 6) int64``: records
    and strikes outside the time range, outside the domain, and gridded.
    """
    n, origin, step, k_lo, k_hi, wrap = time.size, clock[0], clock[1], clock[2], clock[3], clock[4]
    k0, span = table_steps[0], table_steps[1]
    weighted, inv_step = count.size > 0, 1.0 / step
    east = -360.0 if wrap == 1 else 0.0  # added to lon >= 180
    west = 360.0 if wrap == 2 else 0.0  # added to lon < 0
    counts = np.zeros((n_threads, span, np.int64(geo[3]) * np.int64(geo[4])), dtype=np.int64)
    totals = np.zeros((n_threads, 6), dtype=np.int64)
    for b in numba.prange(n_threads):
        table, cell = counts[b], np.empty(BLOCK, dtype=np.int32)
        out_t = out_ts = out_d = out_ds = in_r = in_s = 0  # totals kept in registers
        t_lo, t_hi, k = np.int64(1), np.int64(0), np.int64(0)  # the current step's [t_lo, t_hi)
        stop = (b + 1) * n // n_threads
        for a in range(b * n // n_threads, stop, BLOCK):
            m = min(BLOCK, stop - a)
            _block_cells(lat[a : a + m], lon[a : a + m], cell, m, geo, east, west)
            t_min, t_max = _time_range(time[a : a + m], m)
            if t_min < t_lo or t_max >= t_hi:  # the block's time span: usually within one step
                k = _floor_div(t_min - origin, step, inv_step)
                t_lo = origin + k * step
                t_hi = t_lo + step
            if t_max < t_hi and k_lo <= k <= k_hi:
                r, s, d, ds = _add_one_step(table[k - k0], cell, count, a, m, weighted)
                in_r, in_s, out_d, out_ds = in_r + r, in_s + s, out_d + d, out_ds + ds
                continue
            g = _add_each(table, cell, time, count, a, m, weighted, clock, k0, inv_step)
            out_t, out_ts, out_d, out_ds = out_t + g[0], out_ts + g[1], out_d + g[2], out_ds + g[3]
            in_r, in_s = in_r + g[4], in_s + g[5]
        totals[b, 0], totals[b, 1], totals[b, 2] = out_t, out_ts, out_d
        totals[b, 3], totals[b, 4], totals[b, 5] = out_ds, in_r, in_s
    return counts, totals
