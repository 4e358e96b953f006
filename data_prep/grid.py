"""Strike records -> (time, lat, lon) count maps and a coverage mask.

Two kernels give identical counts and tallies. ``numba`` (used when numba is installed) grids a
chunk in one parallel pass: see :mod:`data_prep.kernel`. The ``numpy`` kernel turns each record
into a flat cell index ``i*W + j`` (int32, computed exactly as
:meth:`data_prep.schema.Grid.cell_index` does, so the cell-edge convention holds bit for bit) and
counts them with ``np.bincount``, in cache-sized slices. Time steps come from ``np.searchsorted``
on sorted chunks (the common case: feeds are written in time order), otherwise from an integer
division. Steps are numbered from an ``origin`` (``step k`` covers ``[origin + k*step,
origin + (k+1)*step)``), so results of separate files add up exactly, in any order.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from data_prep import spill as spill_mod
from data_prep.clock import StepClock, span_fraction
from data_prep.cores import usable_cores
from data_prep.counting import cell_index, count_cells, count_sparse
from data_prep.fov import FieldOfView, fov_coverage
from data_prep.records import Records, Tally
from data_prep.schema import Grid
from data_prep.spill import Spill

SLICE = 1 << 17  # points per kernel slice: ~1 MB per float64 array, fits in cache
THREADS = min(4, usable_cores())  # threads counting slices of one chunk


KERNELS = ("auto", "numba", "numpy")  # auto: numba when it is installed
OBSERVE = ("span", "days")  # how a reader's records mark the steps it observed (Accumulator)


@functools.cache
def numba_kernel():
    """The module :mod:`data_prep.kernel`, or None when numba is not installed."""
    try:
        from data_prep import kernel
    except ImportError:
        return None
    return kernel


def _readonly(a: np.ndarray, dtype) -> np.ndarray:
    """A contiguous read-only view (a copy only if the dtype or layout differs): Arrow's arrays
    are read-only, so passing every array read-only keeps numba to one compiled signature."""
    v = np.ascontiguousarray(a, dtype=dtype).view()
    v.flags.writeable = False
    return v


@dataclass
class Accumulator:
    """Running counts and coverage of one or more inputs on one grid and step clock.

    ``counts[k]`` (H*W,) int64 and ``covered[k]`` (H*W,) bool hold step ``k``; only steps that
    saw records are stored, so scattered granules years apart cost nothing. ``observed`` lists
    inclusive step ranges ``(k0, k1)`` seen over the whole domain: with ``observe = "days"``
    (NLDN tiles) each step holding a record. With ``observe = "span"`` (point feeds) each input
    adds to ``feeds`` the steps from its first to its last record; :meth:`observed_ranges`
    extends only the earliest feed back to the clock's lower bound and the latest forward to its
    upper bound, so days between two feeds' files stay unobserved. ``spans`` lists ``(t0, t1)``
    ns intervals observed over the whole domain, ``fov_spans`` those observed inside a field of
    view (GLM granules); they count where they fill enough of a step. With a ``spill``, rows
    beyond ``spill.SPILL_BYTES`` move to disk (:meth:`flush`).
    """

    grid: Grid
    clock: StepClock
    counts: dict[int, np.ndarray] = field(default_factory=dict)
    covered: dict[int, np.ndarray] = field(default_factory=dict)
    observe: str = ""  # "", or one of OBSERVE: how added records mark observed steps
    observed: list[tuple[int, int]] = field(default_factory=list)
    feeds: list[tuple[int, int]] = field(default_factory=list)  # first, last step of each feed
    spans: list[tuple[int, int]] = field(default_factory=list)
    fov_spans: dict[FieldOfView, list[tuple[int, int]]] = field(default_factory=dict)
    kernel: str = "auto"  # one of KERNELS
    spill: Spill | None = None  # where rows go beyond spill.SPILL_BYTES (None: all in memory)

    def __post_init__(self) -> None:
        self._span: tuple[int, int] | None = None  # first and last step of a span input so far
        if self.observe and self.observe not in OBSERVE:
            raise ValueError(f"unknown observe {self.observe!r}; valid: {', '.join(OBSERVE)}")
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; valid: {', '.join(KERNELS)}")
        if self.kernel == "numba" and numba_kernel() is None:
            raise ValueError("kernel 'numba' asked for, but numba is not installed")

    @property
    def n_cells(self) -> int:
        return self.grid.nlat * self.grid.nlon

    def _row(self, table: dict, k: int, dtype) -> np.ndarray:
        row = table.get(k)
        if row is None:
            row = table[k] = np.zeros(self.n_cells, dtype=dtype)
        return row

    def add(self, rec: Records, tally: Tally) -> None:
        """Grid one chunk of records; count those outside the time range or domain in ``tally``.

        Slices are counted on ``THREADS`` threads (numpy releases the GIL in the arithmetic);
        their integer counts are added in slice order, so the result does not depend on it.
        """
        self._observe(rec)
        if self.kernel == "numpy" or numba_kernel() is None or not self._add_fused(rec, tally):
            self._add_numpy(rec, tally)
        self._bound()

    def _bound(self) -> None:
        """Flush when the rows in memory pass ``spill.SPILL_BYTES`` (and there is a spill)."""
        rows = len(self.counts) + len(self.covered) / 8
        if self.spill is not None and rows * self.n_cells * 8 > spill_mod.SPILL_BYTES:
            self.flush()

    def flush(self) -> Accumulator:
        """Move the rows held in memory to the spill (when there is one) and return self."""
        if self.spill is not None:
            self.spill.write(self.counts, self.covered)
            self.counts, self.covered = {}, {}
        return self

    def _add_numpy(self, rec: Records, tally: Tally) -> None:
        rec = self._wrap_lon(self._in_time_range(rec, tally))
        starts = range(0, len(rec), SLICE)
        if len(starts) > 1 and THREADS > 1:
            with ThreadPoolExecutor(THREADS) as pool:
                parts = list(pool.map(lambda a: self._count_slice(rec, a), starts))
        else:
            parts = [self._count_slice(rec, a) for a in starts]
        for n_records, n_outside, dense, sparse in parts:
            if dense is not None:
                steps, c = dense
                for k, row in zip(steps.tolist(), c, strict=True):
                    if row[:-1].any():
                        self._row(self.counts, k, np.int64)[:] += row[:-1]
                gridded, outside = int(c[:, :-1].sum()), int(c[:, -1].sum())
            else:
                gridded, outside = self._add_sparse(*sparse)
            tally.reject("outside_domain", n_outside, outside)
            tally.gridded_records += n_records - n_outside
            tally.gridded_strikes += gridded

    def _observe(self, rec: Records) -> None:
        """Note the steps ``rec`` shows observed (records outside the domain count: the network
        was running), within the clock's bounds."""
        if not self.observe or not len(rec):
            return
        lo, hi = self.clock.lo, self.clock.hi
        if self.observe == "days":
            ks = np.unique(self.clock.index(rec.time))
            if lo is not None:
                ks = ks[ks >= lo]
            if hi is not None:
                ks = ks[ks <= hi]
            self.observed.extend((k, k) for k in ks.tolist())
            return
        # a span: the first and last step within the bounds, merged with earlier chunks
        k_first, k_last = self.clock.index(np.array([rec.time.min(), rec.time.max()])).tolist()
        a = k_first if lo is None else max(k_first, lo)
        b = k_last if hi is None else min(k_last, hi)
        if a > b:
            return
        if self._span is not None:
            a, b = min(a, self._span[0]), max(b, self._span[1])
        self._span = (a, b)

    def finish(self) -> Accumulator:
        """Close this input: a span input's first and last record's steps join ``feeds``.
        Call once, after the input's last :meth:`add`."""
        if self.observe == "span" and self._span is not None:
            self.feeds.append(self._span)
        self._span = None
        return self

    def observed_ranges(self) -> list[tuple[int, int]]:
        """Inclusive step ranges observed over the whole domain: ``observed``, each feed's own
        span, and the clock's bounds reached from the earliest and the latest feed only."""
        ranges = list(self.observed) + list(self.feeds)
        if self.feeds:
            first, last = min(a for a, _ in self.feeds), max(b for _, b in self.feeds)
            if self.clock.lo is not None and self.clock.lo < first:
                ranges.append((self.clock.lo, first))
            if self.clock.hi is not None and self.clock.hi > last:
                ranges.append((last, self.clock.hi))
        return ranges

    def _add_fused(self, rec: Records, tally: Tally) -> bool:
        """Grid one chunk with the numba kernel; False (nothing done) when its steps are too many
        for a dense table per thread (the numpy kernel's sparse path takes those)."""
        if not len(rec):
            return True
        c, g = self.clock, self.grid
        k_min, k_max = (int(k) for k in c.index(np.array([rec.time.min(), rec.time.max()])))
        k0 = k_min if c.lo is None else max(k_min, c.lo)
        k1 = k_max if c.hi is None else min(k_max, c.hi)
        span = max(k1 - k0 + 1, 1)  # k1 < k0: every record is outside the time range
        kernel = numba_kernel()
        threads = kernel.threads()
        if threads * span * self.n_cells > max(2 * len(rec), 1 << 22):
            return False
        wrap = 1 if g.lon_min < 0 else 2 if g.lon_max > 180 else 0
        if g.lon_min < 0 and g.lon_max > 180:  # both ways possible: decide as _wrap_lon does
            rec, wrap = self._wrap_lon(rec), 0
        big = np.iinfo(np.int64)
        lo, hi = (big.min if c.lo is None else c.lo), (big.max if c.hi is None else c.hi)
        counts, totals = kernel.grid_records(
            _readonly(rec.time, np.int64),
            _readonly(rec.lat, np.float64),
            _readonly(rec.lon, np.float64),
            _readonly(np.empty(0) if rec.count is None else rec.count, np.int64),
            np.array([c.origin, c.step, lo, hi, wrap], dtype=np.int64),
            np.array([g.lat_min, g.lon_min, g.res, g.nlat, g.nlon], dtype=np.float64),
            np.array([k0, span], dtype=np.int64),
            threads,
        )
        table = counts.sum(axis=0)  # (span, H*W): the threads' tables
        for s in np.flatnonzero(table.any(axis=1)).tolist():
            self._row(self.counts, k0 + s, np.int64)[:] += table[s]
        t = totals.sum(axis=0).tolist()
        tally.reject("outside_time_range", t[0], t[1])
        tally.reject("outside_domain", t[2], t[3])
        tally.gridded_records += t[4]
        tally.gridded_strikes += t[5]
        return True

    def _count_slice(self, rec: Records, a: int) -> tuple:
        """``(records, records outside, dense, sparse)`` of one slice: ``dense`` is
        :func:`count_cells`'s table, or None when the slice spans too many steps, and then
        ``sparse`` is :func:`count_sparse`'s pairs."""
        sl, n_cells = slice(a, a + SLICE), self.n_cells
        w = None if rec.count is None else rec.count[sl].astype(np.float64)
        cells = cell_index(rec.lat[sl], rec.lon[sl], self.grid)
        outside = int(np.count_nonzero(cells == n_cells))
        dense = count_cells(rec.time[sl], cells, w, self.clock, n_cells)
        sparse = (
            None if dense is not None else count_sparse(rec.time[sl], cells, w, self.clock, n_cells)
        )
        return cells.size, outside, dense, sparse

    def _add_sparse(self, steps: np.ndarray, cell: np.ndarray, n: np.ndarray) -> tuple[int, int]:
        """Add counts of (step, cell) pairs sorted by step; returns strikes (inside, outside)."""
        inside = cell < self.n_cells
        totals = int(n[inside].sum()), int(n[~inside].sum())
        steps, cell, n = steps[inside], cell[inside], n[inside]
        cut = np.flatnonzero(np.diff(steps)) + 1
        for a, b in zip(np.r_[0, cut], np.r_[cut, steps.size], strict=True):
            if b > a:  # cells are distinct within a step: plain fancy-index add is exact
                self._row(self.counts, int(steps[a]), np.int64)[cell[a:b]] += n[a:b]
        return totals

    def _wrap_lon(self, rec: Records) -> Records:
        """Longitudes in [0, 360) onto a grid west of Greenwich (and back): -100 == 260."""
        if not len(rec):
            return rec
        g = self.grid
        if g.lon_min < 0 and rec.lon.max() >= 180:
            lon = np.where(rec.lon >= 180, rec.lon - 360, rec.lon)
        elif g.lon_max > 180 and rec.lon.min() < 0:
            lon = np.where(rec.lon < 0, rec.lon + 360, rec.lon)
        else:
            return rec
        return Records(rec.time, rec.lat, lon, rec.count, rec.stroke_type, rec.peak_current)

    def _in_time_range(self, rec: Records, tally: Tally) -> Records:
        lo, hi = self.clock.lo, self.clock.hi
        if lo is None and hi is None:
            return rec
        k = self.clock.index(rec.time)
        out = np.zeros(len(rec), dtype=bool)
        if lo is not None:
            out |= k < lo
        if hi is not None:
            out |= k > hi
        if out.any():
            tally.reject("outside_time_range", out.sum(), rec.strikes_where(out))
            rec = rec.take(~out)
        return rec

    def cover_cells(self, time: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> None:
        """Mark the target cells holding observed source points (gridded inputs) as covered."""
        k = self.clock.index(time)
        lon = self._wrap_lon(Records(time, lat, lon)).lon
        cells = cell_index(lat, lon, self.grid)
        keep = cells < self.n_cells
        if self.clock.lo is not None:
            keep &= k >= self.clock.lo
        if self.clock.hi is not None:
            keep &= k <= self.clock.hi
        k, cells = k[keep], cells[keep]
        for step in np.unique(k).tolist():
            self._row(self.covered, step, bool)[cells[k == step]] = True
        self._bound()

    def merge(self, other: Accumulator) -> Accumulator:
        """Add ``other`` (same grid and clock) into this accumulator and return it."""
        if other.spill is not None and other.spill.parts:
            self.spill = self.spill or Spill(other.spill.folder)
            self.spill.parts.extend(other.spill.parts)
        for k, row in other.counts.items():
            self._row(self.counts, k, np.int64)[:] += row
        for k, row in other.covered.items():
            self._row(self.covered, k, bool)[:] |= row
        self.observed.extend(other.observed)
        self.feeds.extend(other.feeds)
        self.spans.extend(other.spans)
        for fov, spans in other.fov_spans.items():
            self.fov_spans.setdefault(fov, []).extend(spans)
        self._bound()
        return self

    def strike_steps(self) -> np.ndarray:
        """Sorted steps (int64) where some cell holds strikes, in memory or spilled."""
        ks = [k for k, row in self.counts.items() if row.any()]
        spilled = self.spill.strike_steps() if self.spill else np.zeros(0, np.int64)
        return np.union1d(np.array(ks, dtype=np.int64), spilled)

    def step_range(self) -> tuple[int, int] | None:
        """First and last step holding strikes or observations (clock bounds win), or None."""
        ks = list(self.counts) + list(self.covered)
        ks += [k for p in (self.spill.parts if self.spill else []) for k in (p.k_min, p.k_max)]
        ks += [k for ab in self.observed_ranges() for k in ab]
        for t0, t1 in self.spans + [s for v in self.fov_spans.values() for s in v]:
            ks += [int(self.clock.index(np.int64(t0))), int(self.clock.index(np.int64(t1 - 1)))]
        lo, hi = self.clock.lo, self.clock.hi
        ks = [k for k in ks if (lo is None or k >= lo) and (hi is None or k <= hi)]
        if not ks and (lo is None or hi is None):
            return None
        return (min(ks) if lo is None else lo), (max(ks) if hi is None else hi)

    def maps(self, k0: int, k1: int, min_span_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """``(counts (S, H, W) int64, coverage (S, H, W) int8)`` for steps ``k0 .. k1`` (a block
        of the archive, or all of it)."""
        n = k1 - k0 + 1
        counts = np.zeros((n, self.n_cells), dtype=np.int64)
        cov = np.zeros((n, self.n_cells), dtype=np.int8)
        for k, row in self.counts.items():
            if k0 <= k <= k1:
                counts[k - k0] = row
        for k, row in self.covered.items():
            if k0 <= k <= k1:
                cov[k - k0] = row
        if self.spill is not None:
            self.spill.add_into(counts, cov, k0)
        for a, b in self.observed_ranges():
            if a <= k1 and b >= k0:  # a range ending before k0 would wrap the slice around
                cov[max(a, k0) - k0 : min(b, k1) - k0 + 1] = 1

        def filled(spans: list[tuple[int, int]]) -> np.ndarray:  # (S,) steps ``spans`` fill
            return span_fraction(spans, self.clock, k0, k1) >= min_span_fraction - 1e-9

        if self.spans:
            cov[filled(self.spans)] = 1
        cov[fov_coverage(self.fov_spans, self.grid, filled, n)] = 1
        shape = (n, *self.grid.shape)
        return counts.reshape(shape), cov.reshape(shape)
