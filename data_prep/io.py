"""Atomic netCDF writes and validated reads of maps files (layout in :mod:`data_prep.schema`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.atomic import atomic_output
from data_prep.errors import UserError
from data_prep.journal import check_no_journal
from data_prep.schema import (
    COUNT,
    COVERAGE,
    COVERAGE_ATTRS,
    LAT,
    LON,
    TIME,
    cf_encoding,
    with_cf_globals,
)

EAGER_BYTES = 1 << 30  # maps files smaller than this are loaded into memory by open_maps
CHECK_BYTES = 1 << 26  # values are checked in blocks of steps about this large


def write_netcdf_atomic(ds: xr.Dataset, path: Path, encoding: dict | None = None) -> Path:
    """Write ``ds`` to a temporary file beside ``path``, then rename it into place.

    A crash or a full disk never leaves a partial file at ``path``; an existing file there is
    replaced only once the new one is complete. The file follows CF-1.8
    (:func:`data_prep.schema.cf_encoding`); ``encoding`` adds to or overrides that.
    """
    ds = with_cf_globals(ds)
    with atomic_output(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=cf_encoding(ds, encoding))
    return Path(path)


def file_identity(path: str | Path) -> str:
    """``size:mtime_ns:inode`` of the file (e.g. maps whose window index is saved) at ``path``; "" when there is none."""
    try:
        st = Path(path).stat()
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def open_maps(path: Path, *, lazy: bool = False) -> xr.Dataset:
    """Open a maps file and check its layout; load it into memory when small.

    Returns a Dataset with ``strike_count(time, lat, lon)`` and ``coverage(time, lat, lon)``;
    a file without ``coverage`` is taken as observed everywhere. ``lazy`` keeps even a small
    file on disk (read step by step, as a file over ``EAGER_BYTES`` is). Raises
    :class:`UserError` naming the file and what is missing.
    """
    ds = open_maps_layout(path)
    if not lazy and ds.nbytes < EAGER_BYTES:
        ds = ds.load()
        ds.close()
    try:
        check_maps(ds, path)
    except UserError:
        ds.close()
        raise
    return ds


def open_maps_layout(path: Path) -> xr.Dataset:
    """The maps file at ``path`` opened lazily in the (time, lat, lon) layout, its dimensions
    checked but not its values (:func:`open_maps` checks those once; a loader process that opens
    its own handle on the same file uses this)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: maps file not found; make it with 'strikecast prep ... --out {path}'"
        )
    check_no_journal(path)
    try:
        ds = xr.open_dataset(path)
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: not a readable netCDF maps file ({str(e).splitlines()[0]})"
        ) from None
    if COUNT not in ds:
        ds.close()
        raise UserError(
            f"{path}: variable {COUNT!r} missing; not a strikecast maps file (run prep)"
        )
    dims = ds[COUNT].dims
    if set(dims) != {TIME, LAT, LON}:
        ds.close()
        raise UserError(f"{path}: {COUNT} has dimensions {dims}; expected ({TIME}, {LAT}, {LON})")
    ds = ds.transpose(TIME, LAT, LON, ...)
    if COVERAGE not in ds:
        ds[COVERAGE] = xr.ones_like(ds[COUNT], dtype=np.int8).assign_attrs(COVERAGE_ATTRS)
    return ds


def check_maps(ds: xr.Dataset, path: Path | str) -> None:
    """Raise :class:`UserError` naming ``path`` unless the time labels strictly increase, every
    count is a whole number >= 0 and every coverage value is 0 or 1.

    ``ds``: ``strike_count`` and ``coverage`` (time, lat, lon); read in blocks of steps.
    """
    check_time_labels(ds[TIME].values, path)
    per = max(1, CHECK_BYTES // max(1, 8 * ds.sizes[LAT] * ds.sizes[LON]))
    for a in range(0, ds.sizes[TIME], per):
        block = ds.isel({TIME: slice(a, a + per)})
        counts = block[COUNT].values
        bad = counts < 0
        if counts.dtype.kind == "f":
            bad = ~np.isfinite(counts) | bad | (counts != np.round(counts))
        _refuse(path, block, bad, COUNT, "counts must be whole numbers >= 0")
        cov = block[COVERAGE].values
        _refuse(path, block, (cov != 0) & (cov != 1), COVERAGE, "coverage is 1 (observed) or 0")


def check_time_labels(times: np.ndarray, path: Path | str, name: str = TIME) -> None:
    """Raise :class:`UserError` naming ``path`` unless ``times`` (T,) strictly increase: a
    repeated step would count twice, an unsorted one would put windows out of order."""
    if times.size < 2:
        return
    back = np.flatnonzero(~(times[1:] > times[:-1]))
    if back.size:
        i = int(back[0])
        raise UserError(
            f"{path}: {name} labels do not strictly increase ({_when(times[i])} is followed by "
            f"{_when(times[i + 1])}); each step must appear once, in time order: re-run prep or sort "
            "and de-duplicate the file"
        )


def _refuse(path, block: xr.Dataset, bad: np.ndarray, name: str, rule: str) -> None:
    """Raise naming the first (time, lat, lon) where boolean ``bad`` (t, H, W) is True."""
    if not bad.any():
        return
    t, y, x = np.argwhere(bad)[0]
    value = block[name].values[t, y, x]
    raise UserError(
        f"{path}: {name} is {value} at {_when(block[TIME].values[t])}, lat {block[LAT].values[y]:g}, "
        f"lon {block[LON].values[x]:g} ({int(bad.sum())} such value(s)); {rule}: "
        "re-run prep or fix the file"
    )


def _when(t) -> str:
    """A time label as text: ``2021-01-04 00:00:00`` for datetimes, as it is otherwise."""
    return str(pd.Timestamp(t)) if np.issubdtype(np.asarray(t).dtype, np.datetime64) else str(t)
