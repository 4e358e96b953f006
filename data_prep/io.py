"""Atomic netCDF writes and validated reads of maps files (layout in :mod:`data_prep.schema`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from data_prep.atomic import atomic_output
from data_prep.errors import UserError
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


def open_maps(path: Path) -> xr.Dataset:
    """Open a maps file and check its layout; load it into memory when small.

    Returns a Dataset with ``strike_count(time, lat, lon)`` and ``coverage(time, lat, lon)``;
    a file without ``coverage`` is taken as observed everywhere. Raises :class:`UserError`
    naming the file and what is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: maps file not found; make it with 'strikecast prep ... --out {path}'"
        )
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
    if ds.nbytes < EAGER_BYTES:
        ds = ds.load()
        ds.close()
    return ds
