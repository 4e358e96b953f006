"""Forecast files as methods to score: ``probability(init_time, lead_time, lat, lon)``.

A :class:`ForecastFile` opens a forecast netCDF (the model's, the synthetic oracle, or one brought
from elsewhere), checks it against the maps it is scored on, and answers ``forecast(ds, inits)``
like a baseline. Inits are matched by time: the file's ``init_time`` must equal the maps' time of
the init step. ``lead_time`` is a duration (a whole number of map steps, as ``predict`` writes it)
or an integer count of steps (older files, forecasts from elsewhere); a ``strikes`` (or older
``threshold``) dimension is scored at 1 strike. Inits or lead times the file lacks come back as NaN
(not scored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from data_prep.errors import UserError
from data_prep.records import first_line
from data_prep.schema import INIT_TIME, LAT, LEAD_TIME, LON, PROBABILITY, STRIKES, TIME, lead_steps
from data_prep.sequences import time_step

ROUNDING = 1e-4  # probabilities this far outside [0, 1] are rounding errors, clipped
_FIX = "a forecast file needs probability(init_time, lead_time, lat, lon) in [0, 1]"
_OLD_STRIKES = "threshold"  # the strike-count dimension's name before it became ``strikes``


class ForecastFile:
    """A forecast netCDF on the maps' grid, read lazily batch by batch."""

    def __init__(self, path: Path, maps: xr.Dataset, maps_path: Path | str = "maps"):
        self.path = Path(path)
        self.ds = _open(self.path)
        self.note = ""
        self.prob = self._probability()
        _check_grid(self.path, self.prob, maps, maps_path)
        self.init_times = self.prob[INIT_TIME].values.astype("datetime64[ns]")
        self.leads = lead_steps(self.prob, time_step(maps), str(self.path))  # steps ahead

    def _probability(self) -> xr.DataArray:
        if PROBABILITY not in self.ds:
            have = ", ".join(map(str, self.ds.data_vars)) or "none"
            raise UserError(f"{self.path}: no variable {PROBABILITY!r} (has: {have}); {_FIX}")
        prob = self.ds[PROBABILITY]
        dim = next((d for d in (STRIKES, _OLD_STRIKES) if d in prob.dims), None)
        if dim is not None:  # several count thresholds: score P(count >= 1)
            thresholds = prob[dim].values
            if not np.any(thresholds == 1):
                raise UserError(
                    f"{self.path}: {PROBABILITY} has {dim} {thresholds.tolist()} but no 1; "
                    "strikes are scored as P(count >= 1): add that threshold to the file"
                )
            pick = int(np.flatnonzero(thresholds == 1)[0])
            prob = prob.isel({dim: pick})
            self.note = f"{STRIKES} {thresholds[pick]} of {thresholds.tolist()}"
        missing = [d for d in (INIT_TIME, LEAD_TIME, LAT, LON) if d not in prob.dims]
        if missing or prob.ndim != 4:
            raise UserError(
                f"{self.path}: {PROBABILITY} has dims {prob.dims}, lacks {missing}; {_FIX}"
            )
        return prob.transpose(INIT_TIME, LEAD_TIME, LAT, LON)

    @property
    def n_out(self) -> int:
        """Lead times 1 .. n_out are all in the file."""
        have = set(self.leads.tolist())
        n = 0
        while n + 1 in have:
            n += 1
        return n

    def covers(self, ds: xr.Dataset, inits: np.ndarray) -> np.ndarray:
        """Bool (N,): the file has a forecast from the maps' time of each init step."""
        return self._positions(ds, inits) >= 0

    def _positions(self, ds: xr.Dataset, inits: np.ndarray) -> np.ndarray:
        times = ds[TIME].values[np.asarray(inits)].astype("datetime64[ns]")
        if self.init_times.size == 0:
            return np.full(times.size, -1)
        order = np.argsort(self.init_times)
        sorted_times = self.init_times[order]
        pos = np.clip(np.searchsorted(sorted_times, times), 0, sorted_times.size - 1)
        return np.where(sorted_times[pos] == times, order[pos], -1)

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Probability float32 (N, n_out, H, W); NaN where the file has no such init or lead."""
        n_out = n_out or int(self.leads.max())
        pos = self._positions(ds, inits)
        out = np.full((len(pos), n_out) + self.prob.shape[2:], np.nan, dtype=np.float32)
        have_lead = [k for k, lead in enumerate(self.leads) if 1 <= lead <= n_out]
        rows = np.flatnonzero(pos >= 0)
        if rows.size and have_lead:
            block = self.prob.isel({INIT_TIME: pos[rows], LEAD_TIME: have_lead}).values
            self._check_values(block)
            out[rows[:, None], self.leads[have_lead] - 1] = np.clip(block, 0, 1)
        return out

    def _check_values(self, block: np.ndarray) -> None:
        """Probabilities must be numbers in [0, 1]: a NaN would silently drop cells from the
        scores (a file lacking an init or lead leaves it out instead)."""
        nan = int(np.isnan(block).sum())
        if nan:
            raise UserError(
                f"{self.path}: {PROBABILITY} holds {nan} NaN value(s) at inits it forecasts; "
                f"{_FIX}, with no NaN (leave out an init or lead time the forecast lacks)"
            )
        if block.min() < -ROUNDING or block.max() > 1 + ROUNDING:
            raise UserError(
                f"{self.path}: {PROBABILITY} has values outside [0, 1] "
                f"(min {block.min():.3g}, max {block.max():.3g}); {_FIX}"
            )

    def close(self) -> None:
        self.ds.close()


def _open(path: Path) -> xr.Dataset:
    if not path.is_file():
        raise UserError(f"{path}: forecast file not found; pass an existing netCDF with --forecast")
    try:
        return xr.open_dataset(path)
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: not a readable netCDF forecast file ({first_line(e)}); {_FIX}"
        ) from None


def _check_grid(path: Path, prob: xr.DataArray, maps: xr.Dataset, maps_path) -> None:
    """Same cell centres as the maps, or a UserError naming both grids."""
    same = all(
        prob[c].size == maps[c].size and np.allclose(prob[c].values, maps[c].values, atol=1e-6)
        for c in (LAT, LON)
    )
    if not same:
        raise UserError(
            f"{path}: grid {_describe(prob)} differs from the maps {maps_path} "
            f"({_describe(maps)}); regrid the forecast onto the maps' lat/lon cell centres"
        )


def _describe(obj) -> str:
    lat, lon = obj[LAT].values, obj[LON].values
    return (
        f"{lat.size}x{lon.size} cells, lat {lat.min():.3f}..{lat.max():.3f}, "
        f"lon {lon.min():.3f}..{lon.max():.3f}"
    )
