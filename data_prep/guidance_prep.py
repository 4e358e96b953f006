"""``strikecast guidance``: NWP or reanalysis files -> one guidance file on the maps' grid.

Each input is read (:mod:`data_prep.guidance_read`), regridded (:mod:`data_prep.regrid`: area-
weighted where the source is finer, bilinear where coarser, NaN where under half a cell is
observed) and placed on the union of all inputs' init and lead times. A value given by two files
(the same field, init and lead) is refused: which one to keep is the user's call. The result
follows the layout of :mod:`data_prep.guidance` and is written atomically, never over an input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.atomic import check_output_path
from data_prep.errors import UserError
from data_prep.guidance import KIND
from data_prep.guidance_read import open_source
from data_prep.io import write_netcdf_atomic
from data_prep.prep import expand_inputs
from data_prep.regrid import MIN_COVERAGE, Regridder
from data_prep.schema import COORD_ATTRS, INIT_TIME, LAT, LEAD_TIME, LON

KEPT_ATTRS = ("units", "long_name", "standard_name")  # a field's attributes carried over
BLOCK_BYTES = 1 << 27  # source values read and regridded at a time (about 128 MiB)
AXIS_ATTRS = {
    INIT_TIME: {
        "standard_name": "forecast_reference_time",
        "long_name": "time the guidance was issued (UTC); analyses: their valid time",
    },
    LEAD_TIME: {
        "standard_name": "forecast_period",
        "long_name": "time from init_time to the valid time (0: an analysis)",
    },
}


@dataclass
class Part:
    """The fields of one input on the maps' grid."""

    path: Path
    inits: np.ndarray  # (I,) datetime64[ns]
    leads: np.ndarray  # (L,) timedelta64[ns]
    values: dict[str, np.ndarray]  # field -> (I, L, H, W) float32
    attrs: dict[str, dict]
    methods: tuple[str, str]
    analyses: bool
    skipped: list[str] = field(default_factory=list)


@dataclass
class GuidanceSummary:
    """What ``guidance`` read and wrote; ``str()`` is the accounting printed by the CLI."""

    out: Path
    parts: list[Part]
    ds: xr.Dataset
    given: dict[str, np.ndarray]  # field -> (init, lead) bool: some file gave it

    def __str__(self) -> str:
        lines = [f"guidance: {len(self.parts)} file(s) read"]
        for p in self.parts:
            kind = "analyses" if p.analyses else "forecasts"
            lines.append(
                f"  {p.path.name}: {kind}, {', '.join(p.values)}; {p.inits.size} init(s) x "
                f"{p.leads.size} lead(s); lat {p.methods[0]}, lon {p.methods[1]}"
                + (f"; left out (other dimensions): {', '.join(p.skipped)}" if p.skipped else "")
            )
        ds = self.ds
        inits = ds[INIT_TIME].values
        leads = ", ".join(_duration(t) for t in ds[LEAD_TIME].values)
        lines.append(
            f"init_time: {inits.size} from {pd.Timestamp(inits[0])} to {pd.Timestamp(inits[-1])}; "
            f"lead_time: {leads}"
        )
        cells = ds.sizes[LAT] * ds.sizes[LON]
        for name, da in ds.data_vars.items():
            nan = int(np.isnan(da.values).sum())
            absent = int((~self.given[name]).sum()) * cells
            lines.append(
                f"  {name} [{da.attrs.get('units', '?')}]: {nan} of {da.size} values NaN "
                f"({100 * nan / max(da.size, 1):.1f}%): {absent} where no file gives the init "
                f"and lead, {nan - absent} unobserved (no data, or under {MIN_COVERAGE:g} of "
                f"the cell covered)"
            )
        lines.append(f"wrote {self.out}  grid {ds.sizes[LAT]} x {ds.sizes[LON]} (the maps')")
        return "\n".join(lines)


def make_guidance(
    inputs: list[str], maps: Path, out: Path, variables: list[str] | None = None
) -> GuidanceSummary:
    """Bring the fields ``variables`` (None: all on lat/lon) of ``inputs`` (files or glob
    patterns) onto the grid of the maps file ``maps``; write the guidance file ``out``."""
    files = expand_inputs(inputs)
    check_output_path(out, [("input", f) for f in files] + [("--maps", maps)])
    lat, lon = maps_grid(Path(maps))
    parts = [regrid_file(f, variables, lat, lon) for f in files]
    ds, given = assemble(parts, lat, lon)
    ds.attrs.update(
        strikecast_kind=KIND,
        source_files=", ".join(p.path.name for p in parts),
        regridding=f"area-weighted where finer, bilinear where coarser; NaN under "
        f"{MIN_COVERAGE:g} of a cell observed",
    )
    encoding = {name: {"zlib": True, "complevel": 1} for name in ds.data_vars}
    write_netcdf_atomic(ds, Path(out), encoding)
    return GuidanceSummary(Path(out), parts, ds, given)


def maps_grid(path: Path) -> tuple[xr.DataArray, xr.DataArray]:
    """The ``lat`` and ``lon`` coordinates (with attributes) of the maps file ``path``."""
    if not path.is_file():
        raise UserError(f"--maps {path}: file not found; make the maps with `strikecast prep`")
    try:
        with xr.open_dataset(path) as ds:
            if LAT not in ds.coords or LON not in ds.coords:
                raise UserError(
                    f"--maps {path}: no lat/lon coordinates; give a maps file written by "
                    f"`strikecast prep`"
                )
            return ds[LAT].load(), ds[LON].load()
    except (OSError, ValueError) as err:
        raise UserError(f"--maps {path}: not a readable netCDF maps file ({err})") from None


def regrid_file(path: Path, variables, lat: xr.DataArray, lon: xr.DataArray) -> Part:
    """One input's fields on the maps' grid (lat, lon); a file covering none of it is refused."""
    src = open_source(path, variables)
    with src.ds as ds:
        regrid = Regridder.build(ds[LAT].values, ds[LON].values, lat.values, lon.values, path)
        if not regrid.covers_any:
            raise UserError(
                f"{path}: its grid (lat {_span(ds[LAT])}, lon {_span(ds[LON])}) covers none of "
                f"the maps (lat {_span(lat)}, lon {_span(lon)}); give a file over the maps' domain"
            )
        ds = ds.isel({LAT: regrid.lat_index, LON: regrid.lon_index})
        values = {name: _regrid_field(ds[name], regrid) for name in src.fields}
        attrs = {n: {k: ds[n].attrs[k] for k in KEPT_ATTRS if k in ds[n].attrs} for n in values}
        return Part(
            path,
            ds[INIT_TIME].values.astype("datetime64[ns]"),
            ds[LEAD_TIME].values.astype("timedelta64[ns]"),
            values,
            attrs,
            regrid.methods,
            src.analyses,
            src.skipped,
        )


def _regrid_field(da: xr.DataArray, regrid: Regridder) -> np.ndarray:
    """(init, lead, H, W) float32 of ``da`` (init, lead, lat, lon), read in blocks of inits."""
    n_init, n_lead = da.sizes[INIT_TIME], da.sizes[LEAD_TIME]
    per = max(1, BLOCK_BYTES // max(1, 8 * n_lead * da.sizes[LAT] * da.sizes[LON]))
    out = np.empty((n_init, n_lead, regrid.wy.shape[0], regrid.wx.shape[0]), np.float32)
    for a in range(0, n_init, per):
        block = da.isel({INIT_TIME: slice(a, a + per)}).values
        out[a : a + per] = regrid(block)[0]
    return out


def assemble(
    parts: list[Part], lat: xr.DataArray, lon: xr.DataArray
) -> tuple[xr.Dataset, dict[str, np.ndarray]]:
    """One Dataset on the union of the parts' inits and leads, NaN where no part gives a
    value (a :class:`UserError` where two do), and per field the (init, lead) given."""
    inits = np.unique(np.concatenate([p.inits for p in parts]))
    leads = np.unique(np.concatenate([p.leads for p in parts]))
    names = list(dict.fromkeys(n for p in parts for n in p.values))
    shape = (inits.size, leads.size, lat.size, lon.size)
    data, given = {}, {}
    for name in names:
        values = np.full(shape, np.nan, np.float32)
        owner = np.full(shape[:2], -1)  # which part gave each (init, lead)
        for k, p in enumerate(parts):
            if name in p.values:
                _place(name, k, p, parts, values, owner, inits, leads)
        data[name] = ((INIT_TIME, LEAD_TIME, LAT, LON), values, _field_attrs(name, parts))
        given[name] = owner >= 0
    coords = {
        INIT_TIME: (INIT_TIME, inits, AXIS_ATTRS[INIT_TIME]),
        LEAD_TIME: (LEAD_TIME, leads, AXIS_ATTRS[LEAD_TIME]),
        LAT: (LAT, lat.values, lat.attrs or COORD_ATTRS[LAT]),
        LON: (LON, lon.values, lon.attrs or COORD_ATTRS[LON]),
    }
    return xr.Dataset(data, coords=coords), given


def _place(name, k, part, parts, values, owner, inits, leads) -> None:
    """Put ``part``'s field ``name`` in ``values``; refuse an (init, lead) given before."""
    ii, ll = np.searchsorted(inits, part.inits), np.searchsorted(leads, part.leads)
    taken = owner[np.ix_(ii, ll)]
    if (taken >= 0).any():
        a, b = np.argwhere(taken >= 0)[0]
        raise UserError(
            f"{part.path}: field {name!r} at init {pd.Timestamp(part.inits[a])}, lead "
            f"{_duration(part.leads[b])} is also in {parts[taken[a, b]].path}; give each init "
            f"and lead once: leave one of the files out"
        )
    owner[np.ix_(ii, ll)] = k
    values[np.ix_(ii, ll)] = part.values[name]


def _field_attrs(name: str, parts: list[Part]) -> dict:
    """The field's attributes from its first file; files that disagree on units are refused."""
    given = [p for p in parts if name in p.values]
    first = given[0].attrs[name]
    for p in given[1:]:
        if p.attrs[name].get("units") != first.get("units"):
            raise UserError(
                f"{p.path}: field {name!r} is in units {p.attrs[name].get('units')!r} but "
                f"{given[0].path} gives {first.get('units')!r}; convert the files to one unit"
            )
    return dict(first)


def _span(da: xr.DataArray) -> str:
    return f"{float(da.min()):g}..{float(da.max()):g}"


def _duration(t) -> str:
    """A lead time as short text: ``0``, ``6h``, ``1D``, ``1D 6h``."""
    td = pd.Timedelta(t)
    if td == pd.Timedelta(0):
        return "0"
    days, rest = td.days, td - pd.Timedelta(days=td.days)
    text = f"{days}D" if days else ""
    if rest:
        hours = rest / pd.Timedelta("1h")
        text += f"{' ' if text else ''}{hours:g}h"
    return text
