"""Guidance files: NWP or reanalysis fields on the maps' grid, and which of their values a
forecast may see.

Guidance file (written by ``strikecast guidance`` or ``strikecast synth``)::

    <field>(init_time, lead_time, lat, lon)  float32, one variable per field (cape, tp, ...)
        init_time: the instant the forecast was issued (CF forecast_reference_time)
        lead_time: a duration >= 0 (CF forecast_period); 0 is an analysis
        lat, lon: exactly the maps' grid
        NaN: no data (never read as zero)

A value valid at ``v = init_time + lead_time`` describes the map step whose interval
``(start, start + step]`` holds ``v``: accumulations and daily extremes end at ``v``, so a daily
precipitation total valid at 00 UTC of 2024-02-04 describes the map of 2024-02-03.

**No peeking.** The forecast from init step ``i`` (the last observed step, ending at
``e = time[i] + step``) may see only forecasts issued at or before ``e``. Its target step ``i + k``
gets the value valid then from the latest such forecast; each past step ``j <= i`` gets the value
valid then with the shortest lead (the analysis when there is one). A file of analyses only has
nothing for the target steps and is refused where they are needed: analyses of the target days
would hand the model the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.errors import UserError
from data_prep.schema import INIT_TIME, LAT, LEAD_TIME, LON, TIME

KIND = "guidance"  # global attribute strikecast_kind of a guidance file
DIMS = (INIT_TIME, LEAD_TIME, LAT, LON)
GRID_TOLERANCE = 1e-6  # degrees: coordinates closer than this are the same cell centre


def guidance_fields(g: xr.Dataset) -> list[str]:
    """The field variables of a guidance Dataset, in file order."""
    return [name for name, da in g.data_vars.items() if da.dims == DIMS]


def check_guidance(g: xr.Dataset, path: Path | str) -> None:
    """Refuse, in one line naming ``path``, a Dataset that is not a guidance file."""
    missing = [d for d in DIMS if d not in g.dims]
    if missing:
        raise UserError(
            f"{path}: not a guidance file: no dimension {missing[0]!r} (fields are "
            f"(init_time, lead_time, lat, lon)); make one with `strikecast guidance`"
        )
    check_time_axes(g, path)
    if not guidance_fields(g):
        raise UserError(f"{path}: no field with dimensions {DIMS}; nothing to read")


def check_time_axes(g: xr.Dataset, path: Path | str) -> None:
    """Refuse init times that are not times and leads that are not durations >= 0."""
    if not np.issubdtype(g[INIT_TIME].dtype, np.datetime64):
        raise UserError(
            f"{path}: init time holds {g[INIT_TIME].dtype}, not times; give it CF units "
            f"('hours since 1970-01-01')"
        )
    if not np.issubdtype(g[LEAD_TIME].dtype, np.timedelta64):
        raise UserError(
            f"{path}: lead time holds {g[LEAD_TIME].dtype} without time units; give it units "
            f"('hours' or 'seconds', CF forecast_period)"
        )
    if (g[LEAD_TIME].values < np.timedelta64(0, "ns")).any():
        raise UserError(f"{path}: lead time has negative durations; leads count from the init")


def open_guidance(path: Path | str, maps: xr.Dataset) -> xr.Dataset:
    """A checked guidance file on the grid of ``maps``, loaded into memory."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such guidance file; make one with `strikecast guidance`")
    try:
        with xr.open_dataset(path) as g:
            g = g.load()
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable netCDF guidance file ({err})") from None
    check_guidance(g, path)
    check_same_grid(g, maps, path)
    return g


def check_same_grid(g: xr.Dataset, maps: xr.Dataset, path: Path | str) -> None:
    """Refuse guidance whose lat/lon are not the maps' cell centres."""
    for name in (LAT, LON):
        a, b = g[name].values, maps[name].values
        if a.shape != b.shape or np.abs(a - b).max(initial=0.0) > GRID_TOLERANCE:
            raise UserError(
                f"{path}: its {name} is not the maps' grid ({a.size} vs {b.size} cells); bring "
                f"it onto the maps with `strikecast guidance FILES --maps MAPS --out OUT`"
            )


@dataclass(frozen=True)
class GuidancePicks:
    """Which guidance value each window position sees, for every init step of the maps.

    ``init[i, p]`` and ``lead[i, p]`` index the file's init_time and lead_time for the window of
    init step ``i`` at position ``p`` (step ``i - n_in + 1 + p``: ``n_in`` past steps, then
    ``n_out`` targets); -1 where no value may be seen (the guidance is then missing, NaN).
    """

    init: np.ndarray  # (n_steps, n_in + n_out) int64
    lead: np.ndarray  # (n_steps, n_in + n_out) int64
    n_in: int

    def seen(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_in + n_out) bool: where a value is picked."""
        return self.init[rows] >= 0

    def gather(self, field: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Values of ``field`` (init_time, lead_time, H, W) for init steps ``rows``:
        (len(rows), n_in + n_out, H, W) float32, NaN where none may be seen."""
        a, b = self.init[rows], self.lead[rows]
        out = field[np.maximum(a, 0), np.maximum(b, 0)].astype(np.float32)
        out[a < 0] = np.nan
        return out


def pick_guidance(
    issued: np.ndarray,
    leads: np.ndarray,
    times: np.ndarray,
    step: pd.Timedelta,
    *,
    n_in: int,
    n_out: int,
) -> GuidancePicks:
    """The no-peeking rule of this module for every init step of maps with step starts
    ``times`` and length ``step``, from a file's ``issued`` (init_time) and ``leads``."""
    issued = np.asarray(issued, "datetime64[ns]")
    leads = np.asarray(leads, "timedelta64[ns]")
    times = np.asarray(times, "datetime64[ns]")
    dt = np.timedelta64(pd.Timedelta(step).value, "ns")
    a, b = (
        x.ravel() for x in np.meshgrid(np.arange(issued.size), np.arange(leads.size), indexing="ij")
    )
    valid = issued[a] + leads[b]
    where = np.searchsorted(times, valid, side="left") - 1  # step with start < valid
    inside = (where >= 0) & (valid <= times[np.maximum(where, 0)] + dt)
    a, b, where = a[inside], b[inside], where[inside]
    n_steps, width = times.size, n_in + n_out
    init = np.full((n_steps, width), -1, np.int64)
    lead = np.full((n_steps, width), -1, np.int64)
    ends = times + dt  # e_i: forecasts issued by then may be seen from init step i
    for j in np.unique(where):
        sel = where == j
        _pick_step(j, a[sel], b[sel], issued, ends, n_in, n_out, init, lead)
    return GuidancePicks(init, lead, n_in)


def _pick_step(j, a, b, issued, ends, n_in, n_out, init, lead) -> None:
    """Fill the window positions that show step ``j`` from the pairs (a, b) valid in it."""
    n_steps = ends.size
    for p in range(n_in + n_out):
        i = j + n_in - 1 - p  # the init step whose window shows step j at position p
        if not 0 <= i < n_steps:
            continue
        ok = issued[a] <= ends[i]
        if not ok.any():
            continue
        if p < n_in:  # a past step: the shortest lead, then the latest issue
            order = np.lexsort((-issued[a][ok].astype(np.int64), b[ok]))
        else:  # a target step: the latest issue, then the shortest lead
            order = np.lexsort((b[ok], -issued[a][ok].astype(np.int64)))
        init[i, p], lead[i, p] = a[ok][order[0]], b[ok][order[0]]


def check_targets_seen(picks: GuidancePicks, leads: np.ndarray, rows: np.ndarray, path) -> None:
    """Refuse guidance that can feed no target step of the windows ``rows``, in one line."""
    targets = picks.seen(rows)[:, picks.n_in :]
    if targets.size and targets.any():
        return
    if (np.asarray(leads, "timedelta64[ns]") == np.timedelta64(0, "ns")).all():
        raise UserError(
            f"{path}: holds analyses only (every lead_time is 0): analyses feed past steps, never "
            f"the target steps, whose analyses would hand the model the future; give forecasts "
            f"(lead_time > 0) issued by each init, or train without guidance"
        )
    raise UserError(
        f"{path}: no forecast issued by an init time is valid on its target steps; give "
        f"forecasts whose leads reach the targets (data.n_out steps ahead)"
    )


@dataclass(frozen=True)
class Guidance:
    """A guidance file opened for one set of maps and window shape: what every window sees.

    ``window(inits)`` gives, for init steps ``inits`` of the maps (the last observed step of each
    window, as everywhere in strikecast), the fields at the ``n_in`` past steps and the ``n_out``
    target steps under the no-peeking rule: (N, n_in + n_out, F, H, W) float32, NaN where no value
    may be seen or the file has no data.
    """

    path: str
    fields: tuple[str, ...]
    units: tuple[str, ...]
    values: np.ndarray  # (F, init_time, lead_time, H, W) float32
    picks: GuidancePicks
    leads: np.ndarray  # the file's lead_time, timedelta64[ns]

    @property
    def n_in(self) -> int:
        return self.picks.n_in

    def window(self, inits: np.ndarray) -> np.ndarray:
        rows = np.asarray(inits, np.int64)
        per_field = [self.picks.gather(v, rows) for v in self.values]  # F x (N, P, H, W)
        return np.stack(per_field, axis=2)

    def past(self, inits: np.ndarray) -> np.ndarray:
        """(N, n_in, F, H, W): the fields at the input steps."""
        return self.window(inits)[:, : self.n_in]

    def targets(self, inits: np.ndarray) -> np.ndarray:
        """(N, n_out, F, H, W): the fields forecast for the target steps."""
        return self.window(inits)[:, self.n_in :]

    def check_targets(self, inits: np.ndarray) -> None:
        """Refuse guidance that feeds no target step of these inits (see check_targets_seen)."""
        check_targets_seen(self.picks, self.leads, np.asarray(inits, np.int64), self.path)


def load_guidance(
    path: Path | str,
    maps: xr.Dataset,
    step: pd.Timedelta,
    *,
    n_in: int,
    n_out: int,
    fields: tuple[str, ...] | list[str] | None = None,
) -> Guidance:
    """Open guidance ``path`` for ``maps`` (time step ``step``) and windows of ``n_in`` past and
    ``n_out`` target steps; ``fields`` chooses and orders the fields (None: all, in file order).
    A field asked for but absent is refused in one line naming it."""
    g = open_guidance(path, maps)
    present = guidance_fields(g)
    names = list(present if fields is None else fields)
    absent = [f for f in names if f not in present]
    if absent:
        raise UserError(
            f"{path}: no guidance field {', '.join(map(repr, absent))} (it holds "
            f"{', '.join(present)}); give the guidance file the model was trained with"
        )
    values = np.stack([g[f].transpose(*DIMS).values.astype(np.float32) for f in names])
    picks = pick_guidance(
        g[INIT_TIME].values, g[LEAD_TIME].values, maps[TIME].values, step, n_in=n_in, n_out=n_out
    )
    units = tuple(str(g[f].attrs.get("units", "")) for f in names)
    return Guidance(str(path), tuple(names), units, values, picks, g[LEAD_TIME].values)
