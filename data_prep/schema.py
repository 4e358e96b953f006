"""Names, units and the grid: the contract every file of strikecast follows.

Maps file (written by ``prep``)::

    strike_count(time, lat, lon)  int32   strikes detected in the cell during the step
    coverage(time, lat, lon)      int8    1 = the network observed the cell, 0 = no data

Forecast file (written by ``predict``, the synthetic oracle, or brought by a user)::

    probability(init_time, lead_time, lat, lon)  float32 in [0, 1]
        init_time: time label of the last observed step (CF forecast_reference_time)
        lead_time: time from init_time to the start of the forecast step, a duration
            (timedelta64 in xarray; CF forecast_period, stored as seconds)
        lead_step(lead_time): the same as a number of map steps (1 = the next step)
        valid_time(init_time, lead_time): start of the forecast step
        optional extra dimension ``strikes`` (strike counts per cell: P(count >= strikes))

``by_lead_step(ds)`` indexes a forecast or scores Dataset by step: ``.sel(lead_step=1)``.

Time labels are the *start* of each step, in UTC (a daily map labelled 2024-02-03 holds strikes
from 2024-02-03T00:00Z up to, not including, 2024-02-04T00:00Z).

Cell edges: a strike at (lat, lon) falls in cell (i, j) when
``lat_min + i*res <= lat < lat_min + (i+1)*res`` and likewise for lon: the south and west edges of a
cell are inclusive, the north and east edges exclusive. Strikes on the domain's north or east edge
are outside the domain. The edge ``lat_min + i*res`` is the decimal value (24 + 17*0.1 = 25.7),
not its float64 rounding: ``(lat - lat_min) / res`` is snapped up by ``EDGE_SNAP`` (1e-9 of a
cell, 1e-5 m at 0.1 deg) before the floor, so 25.7 falls in cell 17 although
``(25.7 - 24) / 0.1`` is 16.999999999999993 in float64. NLDN tile centres lie exactly on the
edges of ``conus-0.1``; without the snap they would scatter between neighbouring cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.errors import UserError

TIME, LAT, LON = "time", "lat", "lon"
INIT_TIME, LEAD_TIME, LEAD_STEP = "init_time", "lead_time", "lead_step"
STRIKES = "strikes"  # strike-count threshold of a forecast: P(count >= strikes)
COUNT = "strike_count"
COVERAGE = "coverage"
PROBABILITY = "probability"
CF_CONVENTIONS = "CF-1.8"

COORD_ATTRS = {
    LAT: {
        "units": "degrees_north",
        "standard_name": "latitude",
        "long_name": "latitude of cell centre",
        "axis": "Y",
    },
    LON: {
        "units": "degrees_east",
        "standard_name": "longitude",
        "long_name": "longitude of cell centre",
        "axis": "X",
    },
    TIME: {
        "standard_name": "time",
        "long_name": "start of the accumulation step (UTC)",
        "axis": "T",
    },
}
COUNT_ATTRS = {
    "long_name": "number of lightning strikes detected in the cell during the step",
    "units": "1",
    "coordinates": "time lat lon",
    "cell_methods": "time: sum",
}
TIME_BOUNDS, BOUNDS_DIM = "time_bnds", "nv"  # (time, nv): start and end of each step
FORECAST_COORD_ATTRS = {
    INIT_TIME: {
        "standard_name": "forecast_reference_time",
        "long_name": "time of the last observed step (UTC)",
    },
    "valid_time": {"standard_name": "time", "long_name": "start of the forecast step (UTC)"},
    LEAD_TIME: {
        "standard_name": "forecast_period",
        "long_name": "time from init_time to the start of the forecast step",
    },
    LEAD_STEP: {
        "long_name": "forecast step ahead of init_time (1 = the next map step)",
        "units": "1",
    },
    STRIKES: {
        "long_name": "strike count threshold of the probability (count >= strikes)",
        "units": "1",
    },
}
# Times as float64 seconds: exact for whole seconds over +-285 million years, and (unlike int64,
# which xarray picks by default) a CF-1.8 data type.
TIME_ENCODING = {
    "units": "seconds since 1970-01-01 00:00:00",
    "calendar": "proleptic_gregorian",
    "dtype": "float64",
}
COVERAGE_ATTRS = {
    "long_name": "observation coverage: 1 the cell was observed, 0 no data",
    "units": "1",
    "flag_values": np.array([0, 1], dtype=np.int8),
    "flag_meanings": "no_data observed",
}


EARTH_RADIUS_KM = 6371.0  # mean radius
EDGE_SNAP = 1e-9  # cells: a point this close below a cell edge lies on it (decimal edges)


@dataclass(frozen=True)
class Grid:
    """A regular latitude-longitude grid; cells are ``res`` degrees square.

    Bounds are cell *edges*; ``lat`` and ``lon`` give cell centres, ascending.
    """

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float
    res: float
    name: str = "custom"

    def __post_init__(self):
        if not (self.res > 0 and self.lat_max > self.lat_min and self.lon_max > self.lon_min):
            raise UserError(
                f"grid {self.name!r}: need lat_min < lat_max, lon_min < lon_max, res > 0"
            )
        if not (
            -90 <= self.lat_min
            and self.lat_max <= 90
            and -180 <= self.lon_min
            and self.lon_max <= 360
        ):
            raise UserError(
                f"grid {self.name!r}: bounds out of range; lat in [-90, 90], lon in [-180, 360]"
            )

    @property
    def nlat(self) -> int:
        return int(round((self.lat_max - self.lat_min) / self.res))

    @property
    def nlon(self) -> int:
        return int(round((self.lon_max - self.lon_min) / self.res))

    @property
    def shape(self) -> tuple[int, int]:
        return self.nlat, self.nlon

    @property
    def lat(self) -> np.ndarray:
        return self.lat_min + (np.arange(self.nlat) + 0.5) * self.res

    @property
    def lon(self) -> np.ndarray:
        return self.lon_min + (np.arange(self.nlon) + 0.5) * self.res

    def cell_area_km2(self) -> np.ndarray:
        """(nlat,) area of one cell of each row, km^2, on a sphere of radius ``EARTH_RADIUS_KM``."""
        edges = np.radians(self.lat_min + np.arange(self.nlat + 1) * self.res)
        return EARTH_RADIUS_KM**2 * np.radians(self.res) * np.diff(np.sin(edges))

    def cell_index(
        self, lat: np.ndarray, lon: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell row/column of each point and whether it lies inside the domain.

        Returns ``(i, j, inside)``; ``i`` and ``j`` are only meaningful where ``inside``.
        """
        fi = np.floor((np.asarray(lat, dtype=np.float64) - self.lat_min) / self.res + EDGE_SNAP)
        fj = np.floor((np.asarray(lon, dtype=np.float64) - self.lon_min) / self.res + EDGE_SNAP)
        inside = (fi >= 0) & (fi < self.nlat) & (fj >= 0) & (fj < self.nlon)
        return fi.astype(np.int64, copy=False), fj.astype(np.int64, copy=False), inside

    def spec(self) -> str:
        """The string that :func:`get_grid` parses back into this grid."""
        if self.name in GRIDS:
            return self.name
        return f"{self.lat_min},{self.lat_max},{self.lon_min},{self.lon_max},{self.res}"

    @classmethod
    def from_coords(cls, lat: np.ndarray, lon: np.ndarray, name: str = "custom") -> Grid:
        """Rebuild the grid of a maps file from its cell-centre coordinates."""
        lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
        res = (
            float(np.round(lat[1] - lat[0], 9))
            if lat.size > 1
            else float(np.round(lon[1] - lon[0], 9))
        )
        return cls(
            lat_min=float(np.round(lat[0] - res / 2, 9)),
            lat_max=float(np.round(lat[-1] + res / 2, 9)),
            lon_min=float(np.round(lon[0] - res / 2, 9)),
            lon_max=float(np.round(lon[-1] + res / 2, 9)),
            res=res,
            name=name,
        )


# CONUS: 24-50 N, 125-66 W (conus-0.25 is 104 x 236 cells).
GRIDS: dict[str, Grid] = {
    "conus-0.1": Grid(24.0, 50.0, -125.0, -66.0, 0.1, "conus-0.1"),
    "conus-0.25": Grid(24.0, 50.0, -125.0, -66.0, 0.25, "conus-0.25"),
    "conus-0.5": Grid(24.0, 50.0, -125.0, -66.0, 0.5, "conus-0.5"),
    # Small domain over the southern and central plains, for the quickstart and tests (32 x 48).
    "plains-0.5": Grid(30.0, 46.0, -104.0, -80.0, 0.5, "plains-0.5"),
}

_CUSTOM = re.compile(
    r"^\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*$"
)


def get_grid(spec: str | Grid) -> Grid:
    """A named grid (``conus-0.25``) or custom bounds ``"lat_min,lat_max,lon_min,lon_max,res"``."""
    if isinstance(spec, Grid):
        return spec
    if spec in GRIDS:
        return GRIDS[spec]
    m = _CUSTOM.match(spec)
    if m is None:
        raise UserError(
            f"unknown grid {spec!r}: use one of {', '.join(GRIDS)} or 'lat_min,lat_max,lon_min,lon_max,res'"
        )
    a, b, c, d, r = (float(v) for v in m.groups())
    return Grid(a, b, c, d, r, "custom")


def parse_time_step(step: str) -> pd.Timedelta:
    """``"1D"``, ``"6h"``, ``"15min"`` -> Timedelta; a whole number of minutes, at least one."""
    try:
        td = pd.Timedelta(step)
    except (ValueError, TypeError):
        raise UserError(
            f"time step {step!r} is not a duration: use e.g. '1D', '6h' or '15min'"
        ) from None
    if td < pd.Timedelta("1min") or td % pd.Timedelta("1min") != pd.Timedelta(0):
        raise UserError(f"time step {step!r} must be a whole number of minutes, at least '1min'")
    return td


def lead_coords(n_leads: int, step: pd.Timedelta | np.timedelta64) -> dict:
    """``lead_time`` (durations 1..n_leads map ``step``s, CF forecast_period) and ``lead_step``
    (1..n_leads) on the ``lead_time`` dimension, for an xarray Dataset."""
    steps = np.arange(1, n_leads + 1, dtype=np.int32)
    period = steps * pd.Timedelta(step).to_timedelta64().astype("timedelta64[ns]")
    attrs = FORECAST_COORD_ATTRS
    return {
        LEAD_TIME: (LEAD_TIME, period, attrs[LEAD_TIME]),
        LEAD_STEP: (LEAD_TIME, steps, attrs[LEAD_STEP]),
    }


def by_lead_step(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` indexed by the number of steps ahead: ``ds.sel(lead_step=1)`` picks the first lead.

    ``lead_time`` (the duration) stays as a coordinate. A file written before lead_time became a
    duration (integer ``lead_time`` counting steps) is indexed by that count; durations without
    ``lead_step`` are counted in the file's ``time_step``.
    """
    if LEAD_STEP in ds.dims or LEAD_TIME not in ds.dims:
        return ds
    if LEAD_STEP in ds.coords:
        return ds.swap_dims({LEAD_TIME: LEAD_STEP})
    if ds[LEAD_TIME].dtype.kind in "iuf":
        return ds.rename({LEAD_TIME: LEAD_STEP})
    if not ds.attrs.get("time_step"):
        raise UserError(
            f"{LEAD_TIME} is a duration but the file has neither a {LEAD_STEP} coordinate nor a "
            "time_step attribute; add either to count lead times in map steps"
        )
    steps = lead_steps(ds, parse_time_step(str(ds.attrs["time_step"])), "forecast file")
    return ds.assign_coords({LEAD_STEP: (LEAD_TIME, steps)}).swap_dims({LEAD_TIME: LEAD_STEP})


def lead_steps(da: xr.DataArray | xr.Dataset, step: pd.Timedelta, what: str) -> np.ndarray:
    """Steps ahead (int64) of each ``lead_time`` of ``da``: a duration divided by the maps'
    ``step`` (a UserError naming ``what`` when it is not a whole number of steps), or an integer
    count of steps (older files, or forecasts from elsewhere)."""
    lead = da[LEAD_TIME].values
    if lead.dtype.kind != "m":
        return lead.astype(np.int64)
    ratio = lead.astype("timedelta64[ns]") / pd.Timedelta(step).to_timedelta64()
    if not np.allclose(ratio, np.round(ratio)):
        durations = [pd.Timedelta(t).isoformat() for t in lead[:4]]
        raise UserError(
            f"{what}: {LEAD_TIME} {durations} is not a whole number of map steps "
            f"({pd.Timedelta(step).isoformat()}); write lead times the maps' step apart"
        )
    return np.round(ratio).astype(np.int64)


def grid_coords(grid: Grid) -> dict:
    """CF coordinate variables (lat, lon) of ``grid`` for an xarray Dataset."""
    return {
        LAT: ((LAT,), grid.lat.astype(np.float64), COORD_ATTRS[LAT]),
        LON: ((LON,), grid.lon.astype(np.float64), COORD_ATTRS[LON]),
    }


def time_bounds(edges: np.ndarray) -> tuple[tuple[str, str], np.ndarray]:
    """The ``time_bnds`` variable of steps whose edges are ``edges`` (T+1,): (T, 2) start, end."""
    edges = np.asarray(edges, dtype="datetime64[ns]")
    return (TIME, BOUNDS_DIM), np.stack([edges[:-1], edges[1:]], axis=1)


def cf_encoding(ds: xr.Dataset, encoding: dict | None = None) -> dict:
    """Per-variable netCDF encoding that keeps ``ds`` inside CF-1.8, merged under ``encoding``.

    Times (and durations) become float64 seconds, int64 data int32 (float64 when it does not fit),
    and coordinates carry no ``_FillValue`` (they never miss a value). ``encoding`` (the caller's)
    wins key by key.
    """
    given = encoding or {}
    out = {}
    for name, var in ds.variables.items():
        enc = {}
        if var.dtype.kind in "mM":
            enc.update(TIME_ENCODING)
            if var.dtype.kind == "m":
                enc = {"units": "seconds", "dtype": "float64"}
        elif np.dtype(var.encoding.get("dtype", var.dtype)) == np.int64:
            enc["dtype"] = "int32" if _fits_int32(var.values) else "float64"
        if name in ds.coords or name == TIME_BOUNDS:
            enc["_FillValue"] = None
        if enc or name in given:
            out[name] = {**enc, **given.get(name, {})}
    return out


def with_cf_globals(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` (a shallow copy) stating ``Conventions`` and a ``history`` line when it lacks them.

    The default history carries no date, so the same inputs still give identical files.
    """
    out = ds.copy(deep=False)
    out.attrs.setdefault("Conventions", CF_CONVENTIONS)
    out.attrs.setdefault("history", "written by strikecast")
    return out


def _fits_int32(values: np.ndarray) -> bool:
    info = np.iinfo(np.int32)
    return values.size == 0 or (info.min <= values.min() and values.max() <= info.max)
