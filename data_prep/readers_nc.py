"""netCDF readers: GOES GLM L2 LCFA flashes, and gridded (time, lat, lon) count maps.

GLM flash times are ``flash_time_offset_of_first_event`` decoded with its own ``units``
(``"seconds since <granule start>"`` or ``"milliseconds since ..."``), ``scale_factor`` and
``add_offset``. Early granules (2018) mislabel the sign of the packed int16 offsets (``_Unsigned``
missing, or set where the values are signed); each offset is therefore decoded both ways and the
reading that falls inside the granule (``product_time_bounds``, from 5 s before its start, as
flashes may begin in the previous granule) is kept; an offset that fits under neither reading
is unparseable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from data_prep.errors import UserError
from data_prep.fov import GLM_STATED_RADIUS_DEG, FieldOfView
from data_prep.io import check_time_labels
from data_prep.records import (
    Cells,
    ReadOptions,
    Records,
    Span,
    Tally,
    check_coordinates,
    check_count_limit,
    first_line,
)

GLM_VARS = (
    "flash_lat",
    "flash_lon",
    "flash_time_offset_of_first_event",
    "flash_quality_flag",
    "product_time",
)
_BEFORE_NS, _AFTER_NS = 5 * 10**9, 10**9  # a flash may start a few seconds before its granule
_UNIT_NS = {
    "seconds": 10**9,
    "second": 10**9,
    "s": 10**9,
    "milliseconds": 10**6,
    "millisecond": 10**6,
    "ms": 10**6,
    "microseconds": 10**3,
    "minutes": 60 * 10**9,
}


def _open_nc(path: Path):
    try:
        ds = netCDF4.Dataset(str(path))
    except OSError as e:
        raise UserError(
            f"{path}: not a readable netCDF file ({first_line(e)}); re-download it"
        ) from None
    ds.set_auto_maskandscale(False)
    return ds


def read_glm(path: Path, opts: ReadOptions, tally: Tally) -> Iterator[Records | Span]:
    """Flashes of one GLM LCFA granule; flagged flashes (quality flag != 0) are rejected."""
    with _open_nc(path) as ds:
        missing = [v for v in GLM_VARS if v not in ds.variables]
        if missing:
            raise UserError(
                f"{path}: variable {missing[0]} missing; not a GLM L2 LCFA granule "
                "(use --format gridded for gridded maps)"
            )
        t0, t1 = _granule_span(ds, path)
        fov = glm_field_of_view(ds, opts.fov_radius_deg)
        yield Span(t0, t1, fov)
        lat = _decoded(ds["flash_lat"]).astype(np.float64)
        lon = _decoded(ds["flash_lon"]).astype(np.float64)
        time, bad_time = _flash_times(ds["flash_time_offset_of_first_event"], t0, t1, path)
        flag = ds["flash_quality_flag"][:].astype(np.int64)
    rec = Records(time, lat, lon)
    tally.read(len(rec), len(rec))
    bad = bad_time
    tally.reject("unparseable", bad.sum(), bad.sum())
    flagged = ~bad & (flag != 0)
    tally.reject("quality_flag", flagged.sum(), flagged.sum())
    rec = check_coordinates(rec.take(~(bad | flagged)), tally)
    if fov is not None:  # the coverage marks such cells no data: their flashes would be lost
        outside = ~fov.contains(rec.lat, rec.lon)
        tally.reject("outside_field_of_view", outside.sum(), outside.sum())
        rec = rec.take(~outside)
    yield rec


def glm_field_of_view(ds, radius_deg: float | None) -> FieldOfView | None:
    """The granule's field of view: centred on ``lat_field_of_view``/``lon_field_of_view`` (else
    the nominal sub-satellite point), ``radius_deg`` degrees of arc wide, or when None as wide as
    the north/south extent the file states in ``lat_field_of_view_bounds`` (else
    ``GLM_STATED_RADIUS_DEG``; see :mod:`data_prep.fov`). None when the file gives no centre:
    its granules then observe the whole domain."""
    centre = [_scalar(ds, a) if a in ds.variables else None for a in _FOV_CENTRE]
    lat, lon = (centre[0], centre[1]) if None not in centre[:2] else (centre[2], centre[3])
    if lat is None or lon is None:
        return None
    if radius_deg is None:
        radius_deg = GLM_STATED_RADIUS_DEG
        if "lat_field_of_view_bounds" in ds.variables:
            b = _decoded(ds["lat_field_of_view_bounds"])
            extent = np.abs(b[np.isfinite(b)] - lat)
            if extent.size and extent.max() > 0:
                radius_deg = round(float(extent.max()), 4)
    return FieldOfView(lat, lon, float(radius_deg))


_FOV_CENTRE = (
    "lat_field_of_view",
    "lon_field_of_view",
    "nominal_satellite_subpoint_lat",
    "nominal_satellite_subpoint_lon",
)


def _scalar(ds, name: str) -> float | None:
    """A finite scalar variable's decoded value, rounded to 1e-4 degree (float32 noise), or None."""
    v = _decoded(ds[name]).ravel()
    return round(float(v[0]), 4) if v.size == 1 and np.isfinite(v[0]) else None


def _decoded(var) -> np.ndarray:
    """Raw values (at least 1-D) with _FillValue -> NaN, scaled (float64)."""
    raw = np.atleast_1d(np.asarray(var[...]))
    out = raw.astype(np.float64) * float(getattr(var, "scale_factor", 1.0)) + float(
        getattr(var, "add_offset", 0.0)
    )
    fill = getattr(var, "_FillValue", None)
    if fill is not None:
        out[raw == fill] = np.nan
    return out


GLM_UNITS = {  # what the GOES-R product user guide gives each time variable
    "product_time": "seconds since 2000-01-01 12:00:00",
    "flash_time_offset_of_first_event": "seconds since <granule start>",
}


def _units(var, path: Path) -> str:
    """The ``units`` attribute of GLM time variable ``var``; a missing one is a UserError."""
    units = getattr(var, "units", None)
    if units is None:
        raise UserError(
            f"{path}: variable {var.name} has no units; "
            f"expected {GLM_UNITS.get(var.name, '<seconds> since <date>')!r} (GOES GLM L2 LCFA)"
        )
    return str(units)


def _cf_time(units: str, path: Path, name: str, default_ref: int | None = None) -> tuple[int, int]:
    """``"<unit> since <date>"`` -> (ns per unit, reference time in ns).

    A bare ``"<unit>"`` counts from ``default_ref`` (the granule's ``product_time``) when given.
    An unknown unit or a reference date that does not parse raises :class:`UserError`.
    """
    unit, _, ref = str(units).partition(" since ")
    unit = unit.strip().lower()
    expected = GLM_UNITS.get(name, "<seconds|milliseconds> since <date>")
    if unit in _UNIT_NS and not ref and default_ref is not None:
        return _UNIT_NS[unit], default_ref
    if unit not in _UNIT_NS or not ref:
        raise UserError(
            f"{path}: variable {name} has units {units!r}; expected "
            f"'<seconds|milliseconds> since <date>', e.g. {expected!r} (GOES GLM L2 LCFA)"
        )
    ref_ns = _utc_ns(ref)
    if ref_ns is None:
        raise UserError(
            f"{path}: variable {name} has units {units!r}, whose reference date does not parse; "
            f"expected {expected!r} (GOES GLM L2 LCFA)"
        )
    return _UNIT_NS[unit], ref_ns


def _utc_ns(text: str) -> int | None:
    """A date (naive = UTC) -> int ns since 1970 UTC; None when it does not parse or fit."""
    try:
        ts = pd.Timestamp(text.strip())
        if ts is pd.NaT:
            return None
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(ts.as_unit("ns").value)
    except (ValueError, TypeError, OverflowError):  # OutOfBoundsDatetime is a ValueError
        return None


def _granule_span(ds, path: Path) -> tuple[int, int]:
    unit, ref = _cf_time(_units(ds["product_time"], path), path, "product_time")
    if "product_time_bounds" in ds.variables:
        b = ds["product_time_bounds"][:].astype(np.float64).ravel()
        return ref + int(round(b[0] * unit)), ref + int(round(b[-1] * unit))
    t0 = ref + int(round(float(ds["product_time"][...]) * unit))
    return t0, t0 + 20 * 10**9


def _flash_times(var, t0: int, t1: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Flash times (int64 ns) and a mask of offsets that fit the granule under no reading.

    ``t0``, ``t1``: the granule's span (ns); ``t0`` is ``product_time``.
    """
    unit, ref = _cf_time(_units(var, path), path, var.name, default_ref=t0)
    raw = np.asarray(var[:])
    scale, offset = float(getattr(var, "scale_factor", 1.0)), float(getattr(var, "add_offset", 0.0))
    readings = [raw]
    if raw.dtype.kind in "iu":  # try the declared signedness first, then the other one
        signed = raw.view(raw.dtype.str.replace("u", "i"))
        unsigned = raw.view(raw.dtype.str.replace("i", "u"))
        declared = str(getattr(var, "_Unsigned", "false")).lower() == "true"
        readings = [unsigned, signed] if declared else [signed, unsigned]
    time = np.zeros(raw.shape, dtype=np.int64)
    found = np.zeros(raw.shape, dtype=bool)
    for r in readings:
        t = ref + np.rint((r.astype(np.float64) * scale + offset) * unit).astype(np.int64)
        fits = ~found & (t >= t0 - _BEFORE_NS) & (t <= t1 + _AFTER_NS)
        time[fits] = t[fits]
        found |= fits
    return time, ~found


_DIMS = {
    "time": ("time", "t", "valid_time"),
    "lat": ("lat", "latitude", "y"),
    "lon": ("lon", "longitude", "x"),
}


def read_gridded(path: Path, opts: ReadOptions, tally: Tally) -> Iterator[Records | Cells]:
    """Counts of any (time, lat, lon) variable: each finite non-zero source cell is one record
    at the source cell centre, carrying its count; finite cells (zeros too) are observed, NaN
    cells, cells with ``coverage == 0`` and absent steps are not. Repeated or unsorted time
    labels, a ``coverage`` other than 0 or 1, and a finite count that is negative (a fill value
    read as data would become an observed zero), not whole or above ``MAX_COUNT`` raise
    :class:`UserError`.
    """
    with _open_gridded(path) as ds:
        da, dims = _pick_variable(ds, opts.variable, path)
        times = _step_times(ds, dims[0], path)
        check_time_labels(times.view("datetime64[ns]"), path, dims[0])
        lat = ds[dims[1]].values.astype(np.float64)
        lon = ds[dims[2]].values.astype(np.float64)
        cov = (
            ds["coverage"].transpose(*dims) if "coverage" in ds and da.name != "coverage" else None
        )
        per = max(1, opts.chunk_records // max(1, lat.size * lon.size))
        lo, hi = (0, times.size) if opts.part is None else (opts.part[0], opts.part[-1])
        for a in range(lo, hi, per):  # a piece's steps start and end where chunks do
            step = slice(a, min(a + per, hi))
            v = da.isel({dims[0]: step}).values.astype(np.float64)
            if cov is not None:
                c = cov.isel({dims[0]: step}).values
                _check_coverage(c, path)
                v[c == 0] = np.nan
            _check_cell_counts(v, path, da.name)
            ti, yi, xi = np.nonzero(np.isfinite(v))
            yield Cells(times[a + ti], lat[yi], lon[xi])
            yield _cell_records(v, times[a:], lat, lon, tally)


def gridded_chunks(path: Path, opts: ReadOptions) -> list[int]:
    """The first step of each chunk :func:`read_gridded` reads, then the number of steps: a
    piece of the file (``opts.part``) is a run of these."""
    with _open_gridded(path) as ds:
        _, dims = _pick_variable(ds, opts.variable, path)
        n, cells = ds.sizes[dims[0]], ds.sizes[dims[1]] * ds.sizes[dims[2]]
    return [*range(0, n, max(1, opts.chunk_records // max(1, cells))), n]


def _open_gridded(path: Path) -> xr.Dataset:
    try:
        return xr.open_dataset(path, decode_times=False)  # the time coordinate: _step_times
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: not a readable netCDF file ({first_line(e)}); re-download it"
        ) from None


def _step_times(ds, name: str, path: Path) -> np.ndarray:
    """Time coordinate ``name`` of ``ds`` (opened with ``decode_times=False``) -> int64 ns UTC.

    Numbers need CF units (``"<unit> since <date>"``) on a standard calendar; read without
    them they would silently become nanoseconds since 1970, so they raise :class:`UserError`.
    """
    var = ds[name].variable
    if var.dtype.kind == "M":
        return var.values.astype("datetime64[ns]").view(np.int64)
    units, cal = var.attrs.get("units"), var.attrs.get("calendar")
    fix = f"give {name!r} CF units, e.g. units 'hours since 1970-01-01' (calendar 'standard')"
    if units is None:
        raise UserError(
            f"{path}: time coordinate {name!r} holds {var.dtype} values without units; {fix}"
        )
    try:
        decoded = xr.decode_cf(xr.Dataset({name: var}))[name].values
    except (ValueError, TypeError, OverflowError):
        decoded = None
    if decoded is None or decoded.dtype.kind != "M":
        on = f" on calendar {cal!r}" if cal else ""
        raise UserError(
            f"{path}: time coordinate {name!r} has units {units!r}{on}, "
            f"which do not decode to standard dates; {fix}"
        )
    return decoded.astype("datetime64[ns]").view(np.int64)


def _check_coverage(cov: np.ndarray, path: Path) -> None:
    bad = (cov != 0) & (cov != 1)
    if bad.any():
        raise UserError(
            f"{path}: coverage holds {cov[bad][0]} ({int(bad.sum())} value(s) not 0 or 1); "
            "coverage is 1 (observed) or 0 (no data): fix the file or drop its coverage variable"
        )


def _check_cell_counts(v: np.ndarray, path: Path, name) -> None:
    """Finite counts of ``v`` (T, H, W) must be whole numbers from 0 to ``MAX_COUNT``."""
    check_count_limit(path, str(name), v)
    with np.errstate(invalid="ignore"):
        bad = (v < 0) | (v != np.round(v))
    bad &= np.isfinite(v)
    if bad.any():
        raise UserError(
            f"{path}: {name} holds {v[bad][0]:.6g} ({int(bad.sum())} value(s) negative or not "
            "whole); counts must be whole numbers >= 0, and no data NaN or a _FillValue: fix the "
            "file, or name the count variable with prep.variable=NAME"
        )


def _cell_records(v: np.ndarray, times, lat, lon, tally: Tally) -> Records:
    """Records (one per finite non-zero cell of ``v`` (T, H, W), whole counts >= 0)."""
    ti, yi, xi = np.nonzero(np.isfinite(v) & (v != 0))
    rec = Records(times[ti], lat[yi], lon[xi], v[ti, yi, xi].astype(np.int64))
    tally.read(len(rec), rec.strikes())
    return rec


def _pick_variable(ds, name: str | None, path: Path):
    """The count variable and its (time, lat, lon) dimension names."""

    def dims_of(da):
        found = [
            next((d for d in da.dims if d.lower() in _DIMS[k]), None)
            for k in ("time", "lat", "lon")
        ]
        return None if None in found or da.ndim != 3 else tuple(found)

    if name is not None:
        if name not in ds.data_vars:
            raise UserError(
                f"{path}: variable {name!r} not found; "
                f"variables are {', '.join(map(str, ds.data_vars))}"
            )
        candidates = [name]
    else:
        candidates = sorted(
            ds.data_vars, key=lambda n: (n != "strike_count", n == "coverage", str(n))
        )
    for n in candidates:
        dims = dims_of(ds[n])
        if dims is not None and ds[n].dtype.kind in "iuf":
            return ds[n].transpose(*dims), dims
    raise UserError(
        f"{path}: no numeric variable with (time, lat, lon) dimensions; variables are "
        f"{', '.join(f'{k}{tuple(ds[k].dims)}' for k in ds.data_vars) or 'none'}; "
        "give a gridded file of strike counts"
    )
