"""The maps file written block by block: memory bounded by a block of steps, not the archive.

A new archive is written to a temporary file and renamed into place (:mod:`data_prep.atomic`);
its first block goes through xarray, so the variables, attributes and CF encoding are those of
:func:`data_prep.io.write_netcdf_atomic`, and the time dimension is unlimited so later blocks, and
later appends, add rows at its end. An append whose steps all lie at or after the archive's first
step is written in place under the undo journal of :mod:`data_prep.journal`: the new steps are
added at the end, and only the old rows that new inputs touch are read, added to and rewritten.
An append reaching before the archive's first step rewrites it into a new file (block by block).

Step ``k`` of the clock is row ``k - k0`` of a file whose first step is ``k0``; an existing
archive's first step is step 0 of the clock (see :func:`data_prep.prep.make_clock`).
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from data_prep.atomic import atomic_output
from data_prep.errors import UserError
from data_prep.grid import Accumulator
from data_prep.journal import Journal, roll_back
from data_prep.schema import (
    COORD_ATTRS,
    COUNT,
    COUNT_ATTRS,
    COVERAGE,
    COVERAGE_ATTRS,
    LAT,
    LON,
    TIME,
    TIME_BOUNDS,
    cf_encoding,
    grid_coords,
    time_bounds,
    with_cf_globals,
)

BLOCK_BYTES = 1 << 26  # dense block of steps built at a time (13 bytes per cell and step)
CHUNK_STEPS = 16  # steps per compressed netCDF chunk of maps
TIME_CHUNK = 4096  # steps per chunk of the time labels and bounds
INT32_MAX = np.iinfo(np.int32).max


def block_steps(n_cells: int) -> int:
    """Steps per written block: a whole number of chunks, about ``BLOCK_BYTES`` of dense rows."""
    return max(1, BLOCK_BYTES // (13 * n_cells * CHUNK_STEPS)) * CHUNK_STEPS


def write_new(acc: Accumulator, frac: float, attrs: dict, out: Path, old: Path | None = None):
    """Write every step of ``acc`` (merged with the archive ``old`` when given, whose first step
    is step 0) to a new maps file renamed to ``out``. Returns the time labels written."""
    k0, k1 = _range(acc, acc.grid, _steps(old) if old else 0)
    n, per = k1 - k0 + 1, block_steps(acc.n_cells)
    src = netCDF4.Dataset(old) if old else None
    try:
        with atomic_output(out) as tmp:
            first = _block(acc, frac, k0, min(k1, k0 + per - 1), src)
            _create(tmp, acc, first, k0, n, attrs)
            with netCDF4.Dataset(tmp, "a") as nc:
                for a in range(k0 + per, k1 + 1, per):
                    _write_rows(nc, a - k0, _block(acc, frac, a, min(k1, a + per - 1), src), acc, a)
    finally:
        if src is not None:
            src.close()
    return acc.clock.start(np.arange(k0, k1 + 1)).astype("datetime64[ns]")


def append_in_place(acc: Accumulator, frac: float, attrs: dict, out: Path):
    """Add ``acc``'s steps (none before step 0) to the archive ``out`` in place, under a journal.
    Returns the time labels of the whole archive."""
    with netCDF4.Dataset(out) as nc:
        n_old, old_attrs = len(nc.dimensions[TIME]), {k: nc.getncattr(k) for k in nc.ncattrs()}
    k0, k1 = _range(acc, acc.grid, n_old)
    journal = Journal(out, n_old, old_attrs)
    try:
        with netCDF4.Dataset(out, "a") as nc:
            for a in range(max(k0, 0), k1 + 1, block_steps(acc.n_cells)):
                b = min(k1, a + block_steps(acc.n_cells) - 1)
                _append_block(nc, acc, frac, a, b, n_old, journal)
            for name in nc.ncattrs():  # the attributes a rewrite would give: the new ones only
                nc.delncattr(name)
            nc.setncatts(with_cf_globals(xr.Dataset(attrs=attrs)).attrs)
    except BaseException:  # an error or an interruption: the archive as it was
        roll_back(out)
        raise
    journal.commit()
    return acc.clock.start(np.arange(0, k1 + 1)).astype("datetime64[ns]")


def _append_block(nc, acc, frac, a, b, n_old, journal) -> None:
    """Steps ``a .. b``: old rows that new inputs touch are saved, added to and rewritten;
    rows past the archive's end are written."""
    counts, cov = acc.maps(a, b, frac)
    o = min(b, n_old - 1) - a + 1  # rows of the block inside the old archive
    if o > 0 and (counts[:o].any() or cov[:o].any()):
        old_counts, old_cov = _read_rows(nc, a, a + o)
        journal.save_rows(a, old_counts, old_cov)
        counts[:o] += old_counts
        cov[:o] = np.maximum(cov[:o], old_cov)
    elif o > 0:
        counts, cov, a = counts[o:], cov[o:], a + o
    if counts.shape[0]:
        _write_rows(nc, a, _checked(counts, cov), acc, a)


def _read_rows(nc, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Old rows ``a .. b - 1``: counts (S, H, W) int64 and coverage (S, H, W) int8."""
    nc[COUNT].set_auto_maskandscale(False)  # plain arrays: no fill value is ever a count
    nc[COVERAGE].set_auto_maskandscale(False)
    return (
        np.asarray(nc[COUNT][a:b], dtype=np.int64),
        np.asarray(nc[COVERAGE][a:b], dtype=np.int8),
    )


def _block(acc, frac, a, b, src):
    """Dense counts and coverage of steps ``a .. b``, with the rows of the old archive ``src``
    (an open netCDF4 file whose first step is step 0) added where they overlap."""
    counts, cov = acc.maps(a, b, frac)
    if src is not None:
        lo, hi = max(a, 0), min(b, len(src.dimensions[TIME]) - 1)
        if lo <= hi:
            old_counts, old_cov = _read_rows(src, lo, hi + 1)
            counts[lo - a : hi - a + 1] += old_counts
            np.maximum(cov[lo - a : hi - a + 1], old_cov, out=cov[lo - a : hi - a + 1])
    return _checked(counts, cov)


def _checked(counts: np.ndarray, cov: np.ndarray):
    if counts.size and counts.max() > INT32_MAX:
        raise UserError(
            f"a cell holds more than {INT32_MAX} strikes in one step; use a shorter --time-step"
        )
    return counts, cov


def _range(acc: Accumulator, grid, n_old: int) -> tuple[int, int]:
    """First and last step of the file: the new inputs' and the archive's (rows 0 .. n_old - 1)."""
    rng = acc.step_range()
    ks = ([0, n_old - 1] if n_old else []) + (list(rng) if rng else [])
    if not ks:
        raise UserError(
            "no strike records inside the grid and time range, and no observed steps: nothing to "
            f"write; check --grid ({grid.spec()}), --start/--end and the inputs"
        )
    return min(ks), max(ks)


def _steps(path: Path) -> int:
    with netCDF4.Dataset(path) as nc:
        return len(nc.dimensions[TIME])


def _create(tmp: Path, acc: Accumulator, first, k0: int, n_steps: int, attrs: dict) -> None:
    """Write the first block with xarray: variables, attributes and encoding of the maps file."""
    counts, cov = first
    edges = acc.clock.start(np.arange(k0, k0 + counts.shape[0] + 1)).astype("datetime64[ns]")
    time_attrs = {**COORD_ATTRS[TIME], "bounds": TIME_BOUNDS}
    dims = (TIME, LAT, LON)
    ds = xr.Dataset(
        {
            COUNT: (dims, counts.astype(np.int32), COUNT_ATTRS),
            COVERAGE: (dims, cov.astype(np.int8), COVERAGE_ATTRS),
            TIME_BOUNDS: time_bounds(edges),
        },
        coords={TIME: ((TIME,), edges[:-1], time_attrs), **grid_coords(acc.grid)},
        attrs=attrs,
    )
    ds = with_cf_globals(ds)
    enc = maps_encoding(n_steps, acc.grid.shape)
    # along an unlimited dimension every variable is chunked: time labels in long chunks
    enc[TIME] = {"chunksizes": (TIME_CHUNK,)}
    enc[TIME_BOUNDS] = {"chunksizes": (TIME_CHUNK, 2)}
    enc = cf_encoding(ds, enc)
    ds.to_netcdf(tmp, engine="netcdf4", encoding=enc, unlimited_dims=[TIME])


def maps_encoding(n_steps: int, shape: tuple[int, int]) -> dict:
    """zlib compression, chunks of whole maps a few steps long (times: the CF default of
    :func:`data_prep.schema.cf_encoding`)."""
    chunks = (max(1, min(n_steps, CHUNK_STEPS)), *shape)
    var = {"zlib": True, "complevel": 4, "chunksizes": chunks, "_FillValue": None}
    return {
        COUNT: {**var, "dtype": "int32"},
        COVERAGE: {**var, "dtype": "int8"},
        LAT: {"_FillValue": None},
        LON: {"_FillValue": None},
    }


def _write_rows(nc, row: int, block, acc: Accumulator, k: int) -> None:
    """Rows ``row ..`` of the open file ``nc``: counts, coverage, and the time labels and
    bounds of steps ``k ..`` (float64 seconds since 1970, as xarray encodes them)."""
    counts, cov = block
    n = counts.shape[0]
    edges = acc.clock.start(np.arange(k, k + n + 1)).astype(np.int64)  # (n+1,) ns
    seconds = edges.astype(np.float64) / 1e9
    nc[COUNT][row : row + n] = counts.astype(np.int32)
    nc[COVERAGE][row : row + n] = cov.astype(np.int8)
    nc[TIME][row : row + n] = seconds[:-1]
    nc[TIME_BOUNDS][row : row + n] = np.stack([seconds[:-1], seconds[1:]], axis=1)


__all__ = ["append_in_place", "block_steps", "maps_encoding", "write_new"]
