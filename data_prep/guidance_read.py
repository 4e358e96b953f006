"""Read NWP or reanalysis netCDF files as guidance: find their axes under the usual names and
bring every field to ``(init_time, lead_time, lat, lon)``.

Accepted layouts (names, or the CF ``standard_name`` in brackets)::

    analyses   field(time, lat, lon)                 time: time, valid_time      [time]
               -> init_time = time, lead_time = 0
    forecasts  field(init_time, lead_time, lat, lon) init_time: init_time,
                                                     forecast_reference_time, time
                                                                     [forecast_reference_time]
                                                     lead_time: lead_time, step,
                                                     forecast_period [forecast_period]
    lat, lon   lat, latitude [latitude]; lon, longitude [longitude]; 1-D, either order

An init or lead given as a scalar coordinate (one forecast per file) becomes a dimension of
length one. Dimensions may come in any order; lat may descend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from data_prep.errors import UserError, close_match
from data_prep.guidance import check_time_axes
from data_prep.schema import INIT_TIME, LAT, LEAD_TIME, LON

DIMS = (INIT_TIME, LEAD_TIME, LAT, LON)
NAMES = {  # our name -> (names a file may use, CF standard_name)
    LAT: (("lat", "latitude"), "latitude"),
    LON: (("lon", "longitude"), "longitude"),
    LEAD_TIME: (("lead_time", "step", "forecast_period"), "forecast_period"),
    INIT_TIME: (("init_time", "forecast_reference_time", "time"), "forecast_reference_time"),
}
ANALYSIS_TIME = (("time", "valid_time", "init_time", "forecast_reference_time"), "time")
TIME_HINT = "time (analyses) or init_time/forecast_reference_time with lead_time/step"


@dataclass
class SourceFile:
    """One input file, renamed: ``ds`` fields are (init_time, lead_time, lat, lon), lazy."""

    path: Path
    ds: xr.Dataset
    fields: list[str]
    analyses: bool  # the file held (time, lat, lon) analyses: lead_time 0 was added
    skipped: list[str]  # fields with lat/lon left out (other dimensions, or no time)


def open_source(path: Path, wanted: list[str] | None) -> SourceFile:
    """Open ``path`` and name its axes; keep the fields ``wanted`` (None: every field on
    lat/lon). Raises a one-line :class:`UserError` naming the file, the field and the fix."""
    try:
        ds = xr.open_dataset(path, decode_timedelta=True)
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"{path}: not a readable netCDF file ({first}); give netCDF files (GRIB: convert "
            f"with `cdo -f nc copy IN OUT` or open with cfgrib and save to netCDF)"
        ) from None
    try:
        ds = _horizontal(ds, path)
        ds, analyses = _times(ds, path)
        fields, skipped = _fields(ds, path, wanted)
        ds = ds[fields].transpose(*DIMS)
        _check_axes(ds, path)
    except UserError:
        ds.close()
        raise
    return SourceFile(path, ds, fields, analyses, skipped)


def _find(ds: xr.Dataset, key) -> str | None:
    """The variable of ``ds`` named one of ``key[0]`` or with standard_name ``key[1]``."""
    names, standard = key
    for name in names:
        if name in ds.variables:
            return name
    for name, var in ds.variables.items():
        if var.attrs.get("standard_name") == standard:
            return str(name)
    return None


def _horizontal(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """``ds`` with its latitude and longitude as 1-D dimensions ``lat`` and ``lon``."""
    for ours in (LAT, LON):
        name = _find(ds, NAMES[ours])
        if name is None:
            looked = ", ".join(NAMES[ours][0])
            raise UserError(
                f"{path}: no {NAMES[ours][1]} coordinate (looked for {looked} and "
                f"standard_name {NAMES[ours][1]!r}); give a lat-lon file or rename its axis"
            )
        var = ds[name]
        if var.ndim != 1:
            raise UserError(
                f"{path}: {name} has dimensions {var.dims}: the grid is not regular "
                f"(curvilinear or rotated); bring it onto a regular lat-lon grid first "
                f"(e.g. `cdo remapbil`)"
            )
        ds = ds.swap_dims({var.dims[0]: name}) if var.dims[0] != name else ds
        ds = ds.rename({name: ours}) if name != ours else ds
    return ds


def _times(ds: xr.Dataset, path: Path) -> tuple[xr.Dataset, bool]:
    """``ds`` with dimensions init_time and lead_time; whether it held analyses."""
    lead = _find(ds, NAMES[LEAD_TIME])
    if lead is not None:
        init = _find(ds.drop_vars(lead), NAMES[INIT_TIME])
        analyses = False
    else:
        init = _find(ds, ANALYSIS_TIME)
        analyses = True
    if init is None:
        raise UserError(
            f"{path}: no time-like dimension (looked for {TIME_HINT}); give the fields a time "
            f"axis or rename it"
        )
    keep = {init, lead} - {None}
    extra = [n for n in ds.coords if n not in keep and n not in ds.dims]
    ds = ds.drop_vars(extra)  # valid_time(time, step), surface, number, ...: not needed
    for name in sorted(keep):
        if name not in ds.dims:
            ds = ds.expand_dims(name) if ds[name].ndim == 0 else ds
            if name not in ds.dims:
                raise UserError(f"{path}: {name} has dimensions {ds[name].dims}; give it its own")
    ds = ds.rename({init: INIT_TIME} if init != INIT_TIME else {})
    if lead is None:
        zero = np.array([0], "timedelta64[ns]")
        ds = ds.expand_dims({LEAD_TIME: zero})
    elif lead != LEAD_TIME:
        ds = ds.rename({lead: LEAD_TIME})
    return ds, analyses


def _fields(ds: xr.Dataset, path: Path, wanted: list[str] | None) -> tuple[list[str], list[str]]:
    """The fields to read, and those on lat/lon left out (other dimensions)."""
    on_grid = [str(n) for n, v in ds.data_vars.items() if {LAT, LON} <= set(v.dims)]
    fits = [n for n in on_grid if set(ds[n].dims) == set(DIMS)]
    if wanted is None:
        if not fits:
            raise UserError(
                f"{path}: no field on ({', '.join(DIMS)}) (fields on lat/lon: "
                f"{', '.join(on_grid) or 'none'}); give fields with a time axis"
            )
        return fits, [n for n in on_grid if n not in fits]
    for name in wanted:
        if name not in ds.data_vars:
            raise UserError(
                f"{path}: no field {name!r} (present: {', '.join(on_grid) or 'none'})"
                f"{close_match(name, on_grid)}; fix --vars"
            )
        if name not in fits:
            other = [d for d in ds[name].dims if d not in DIMS]
            why = f"extra dimension {other[0]!r}" if other else f"dimensions {ds[name].dims}"
            raise UserError(
                f"{path}: field {name!r} has {why}; select one level (e.g. `cdo sellevel`) or "
                f"leave it out of --vars"
            )
    return list(wanted), []


def _check_axes(ds: xr.Dataset, path: Path) -> None:
    """Times are times, leads durations, and no axis repeats a value."""
    check_time_axes(ds, path)
    for name in (INIT_TIME, LEAD_TIME, LAT, LON):
        values = ds[name].values
        if np.unique(values).size != values.size:
            raise UserError(
                f"{path}: {name} repeats a value; each init, lead and cell must appear once: "
                f"de-duplicate the file"
            )
