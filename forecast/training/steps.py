"""Single map steps for the training windows: read and featurised once per loader process.

A window of ``n_in + n_out`` steps overlaps ``n_in + n_out - 1`` other windows, so reading and
featurising its steps per window would repeat the work up to ``n_in + n_out`` times.
:class:`MapSteps` keeps each step's counts, coverage and input features in a small
least-recently-used cache (a byte budget per process) and only reads and featurises the steps of
a window it does not hold.

Maps come in two ways:

* in memory: the two arrays as numpy; when the input features of every step fit in
  ``FEATURE_CACHE_BYTES`` they are all computed once, up front;
* lazily from the maps file: each process opens its own handle on the file on its first read
  (keyed by process id). netCDF/HDF5 handles are not safe to share across ``fork``, so a loader
  worker never reads through a handle its parent opened; the handle and the cache are left out
  when the object is pickled (``spawn`` workers).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import xarray as xr

from data_prep.errors import UserError
from data_prep.io import open_maps_layout
from data_prep.schema import COUNT, COVERAGE, TIME

FEATURE_CACHE_BYTES = 1024**3  # in-memory maps whose input features fit are featurised once
STEP_CACHE_BYTES = 512 * 1024**2  # default budget of one process's cache of single steps


class MapSteps:
    """Counts, coverage and input features of the steps of one maps Dataset.

    Parameters
    ----------
    ds : maps Dataset (``strike_count``, ``coverage`` (time, lat, lon)).
    featurise : ``f(counts, coverage, times) -> float32 (t, C, H, W)`` for arrays (t, H, W).
    channels : ``C``, the input channels ``featurise`` makes per step.
    in_memory : load the two arrays as numpy now; else read steps from ``ds``'s file.
    cache_bytes : budget of the cache of single steps in each process.
    """

    def __init__(
        self, ds: xr.Dataset, featurise, *, channels: int, in_memory: bool, cache_bytes: int
    ):
        self.times = ds[TIME].values
        self._featurise = featurise
        self._budget = int(cache_bytes)
        self._arrays = (ds[COUNT].values, ds[COVERAGE].values) if in_memory else None
        source = ds.encoding.get("source")
        # a lazy Dataset without a file behind it (built in memory) has no handle to share
        self._path = None if in_memory or not source else Path(source)
        self._inline = None if in_memory or self._path else ds[[COUNT, COVERAGE]]
        self._handle, self._pid = None, None
        self._features = None  # (T, C, H, W) inputs of every step, when small enough
        if in_memory and self._arrays[0].size * channels * 4 < FEATURE_CACHE_BYTES:
            self._features = featurise(*self._arrays, self.times)
        self._cache: OrderedDict = OrderedDict()  # ("raw" | "x", step) -> arrays, oldest first
        self._cached_bytes = 0
        self.reads = self.featurised = 0  # steps read from the file / featurised, this process

    @property
    def lazy(self) -> bool:
        """True when steps are read from the maps file (or a lazy Dataset) on demand."""
        return self._arrays is None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_handle=None, _pid=None, _cache=OrderedDict(), _cached_bytes=0)
        return state

    def window(self, start: int, n_in: int, n_out: int) -> tuple[np.ndarray, ...]:
        """Inputs and targets of the window at ``start``.

        Returns ``x`` float32 (n_in, C, H, W), counts (n_out, H, W), coverage (n_out, H, W).
        """
        end = start + n_in
        if self._features is not None:
            counts, cov = self._arrays[0][end : end + n_out], self._arrays[1][end : end + n_out]
            return self._features[start:end], counts, cov
        targets = range(end, end + n_out)
        self._fill(range(start, end), targets)
        x = np.stack([self._cache[("x", t)][0] for t in range(start, end)])
        counts = np.stack([self._cache[("raw", t)][0] for t in targets])
        cov = np.stack([self._cache[("raw", t)][1] for t in targets])
        self._evict()  # after stacking: a budget below one window still gives the window
        return x, counts, cov

    def _fill(self, inputs: range, targets: range) -> None:
        """Cache the features of the ``inputs`` steps and the counts and coverage of the
        ``targets`` steps (and of the inputs not featurised yet), reading what is missing."""
        need_x = [t for t in inputs if ("x", t) not in self._cache]
        need = [t for t in [*need_x, *targets] if ("raw", t) not in self._cache]
        for lo, hi in _runs(need):  # one read per run of consecutive missing steps
            counts, cov = self._read(lo, hi)  # (hi - lo, H, W) each
            for t in range(lo, hi):
                self._put(("raw", t), (counts[t - lo], cov[t - lo]))
        if need_x:
            counts = np.stack([self._cache[("raw", t)][0] for t in need_x])  # (k, H, W)
            cov = np.stack([self._cache[("raw", t)][1] for t in need_x])
            feats = self._featurise(counts, cov, self.times[need_x])  # (k, C, H, W)
            self.featurised += len(need_x)
            for t, f in zip(need_x, feats, strict=True):
                self._put(("x", t), (f,))
        for key in [*(("x", t) for t in inputs), *(("raw", t) for t in targets)]:
            self._cache.move_to_end(key)  # this window's steps are the most recently used

    def _read(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts and coverage of steps a..b-1, each (b - a, H, W)."""
        if self._arrays is not None:
            return self._arrays[0][a:b], self._arrays[1][a:b]
        part = self._source().isel({TIME: slice(a, b)})
        self.reads += b - a
        return part[COUNT].values, part[COVERAGE].values

    def _source(self) -> xr.Dataset:
        """The lazy Dataset to read from: this process's own handle on the maps file."""
        if self._inline is not None:
            return self._inline
        if self._pid != os.getpid():
            # a handle inherited through fork belongs to the parent: never read or close it
            handle = open_maps_layout(self._path)[[COUNT, COVERAGE]]
            if not np.array_equal(handle[TIME].values, self.times):
                raise UserError(
                    f"{self._path}: its time axis differs from the maps being read (the file "
                    "changed, or a subset of it was passed); pass the maps as open_maps opens them"
                )
            self._handle, self._pid = handle, os.getpid()
        return self._handle

    def _put(self, key: tuple[str, int], arrays: tuple[np.ndarray, ...]) -> None:
        """Cache ``arrays`` (copies, so that a slice never keeps a whole read block alive)."""
        arrays = tuple(np.array(v) for v in arrays)
        self._cache[key] = arrays
        self._cached_bytes += sum(v.nbytes for v in arrays)

    def _evict(self) -> None:
        """Drop the least recently used steps beyond the budget."""
        while self._cached_bytes > self._budget and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= sum(v.nbytes for v in old)


def _runs(steps: list[int]) -> list[tuple[int, int]]:
    """Ascending steps -> (first, last + 1) of each run of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for t in steps:
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t + 1)
        else:
            runs.append((t, t + 1))
    return runs


__all__ = ["FEATURE_CACHE_BYTES", "STEP_CACHE_BYTES", "MapSteps"]
