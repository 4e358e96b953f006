"""Small seeded maps files in the exact prep layout, for tests, notebooks and demos.

``mock_maps()`` returns a Dataset laid out like the output of ``prep`` (see
:mod:`data_prep.schema`): ``strike_count(time, lat, lon)`` int32 and ``coverage(time, lat, lon)``
int8 with CF attributes. Strikes come from a few Gaussian storm blobs that drift eastward and
whose activity follows the season (more in summer), so the maps carry signal that persistence,
climatology and a model can pick up, yet stay tiny and fast to make. Missing data comes in two
kinds, as in real archives: whole steps (``gaps``) and patches of cells on some steps
(``cell_gaps``, a network outage over part of the domain); both hold coverage 0 and count 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.errors import UserError
from data_prep.schema import (
    CF_CONVENTIONS,
    COORD_ATTRS,
    COUNT,
    COUNT_ATTRS,
    COVERAGE,
    COVERAGE_ATTRS,
    LAT,
    LON,
    TIME,
    Grid,
    grid_coords,
    parse_time_step,
)

_N_BLOBS = 3  # storms alive at any time
_SPEED = 0.8  # eastward drift, cells per step
_PEAK = 6.0  # expected strikes per cell at a storm's centre in mid-summer
_LIFE = 8  # steps a storm lives


def mock_maps(
    *,
    n_steps: int = 120,
    shape: tuple[int, int] = (16, 24),
    seed: int = 0,
    start: str = "2021-01-01",
    time_step: str = "1D",
    gaps: tuple[int, ...] | list[int] = (),
    cell_gaps: float = 0.0,
) -> xr.Dataset:
    """A seeded maps Dataset with drifting storm blobs, in the prep output layout.

    Parameters
    ----------
    n_steps : number of time steps T.
    shape : ``(H, W)`` grid size; cells are 0.5 degrees from 30 N, 104 W.
    seed : random seed; equal arguments give identical Datasets.
    start : time label of the first step.
    time_step : step length (``"1D"``, ``"6h"``, ...).
    gaps : step indices with no observations (coverage 0 and count 0 everywhere).
    cell_gaps : share of steps that lose a patch of cells (coverage 0 and count 0 there): a
        seeded rectangle of 1..H/2 by 1..W/2 cells. Drawn from their own stream, so the counts
        do not depend on it.

    Returns
    -------
    xr.Dataset with ``strike_count (T, H, W)`` int32 and ``coverage (T, H, W)`` int8.
    """
    h, w = (int(v) for v in shape)
    if n_steps < 1 or h < 1 or w < 1:
        raise UserError(f"mock_maps: n_steps {n_steps} and shape {shape} must be positive")
    gaps = np.asarray(list(gaps), dtype=np.int64)
    if gaps.size and (gaps.min() < 0 or gaps.max() >= n_steps):
        raise UserError(f"mock_maps: gaps {gaps.tolist()} must lie in 0..{n_steps - 1}")
    if not 0.0 <= cell_gaps <= 1.0:
        raise UserError(f"mock_maps: cell_gaps {cell_gaps} must lie in [0, 1]")
    step = parse_time_step(time_step)
    times = pd.date_range(pd.Timestamp(start), periods=n_steps, freq=step)
    rng = np.random.default_rng(seed)
    rate = _storm_rate(rng, times, h, w)  # (T, H, W)
    counts = rng.poisson(rate).astype(np.int32)
    coverage = _cell_gaps(np.random.default_rng([seed, 1]), n_steps, h, w, cell_gaps)
    coverage[gaps] = 0
    counts[coverage == 0] = 0
    res = 0.5 if h <= 100 and w <= 400 else 0.1  # conus-0.1-sized maps stay on the globe
    grid = Grid(30.0, 30.0 + res * h, -104.0, -104.0 + res * w, res, "custom")
    return _as_dataset(counts, coverage, times, grid, step)


def _cell_gaps(rng: np.random.Generator, t: int, h: int, w: int, share: float) -> np.ndarray:
    """Coverage int8 (T, H, W): 1, except a random rectangle on a ``share`` of the steps."""
    coverage = np.ones((t, h, w), dtype=np.int8)
    for k in np.flatnonzero(rng.random(t) < share).tolist():
        dy, dx = int(rng.integers(1, h // 2 + 1)), int(rng.integers(1, w // 2 + 1))
        y0, x0 = int(rng.integers(0, h - dy + 1)), int(rng.integers(0, w - dx + 1))
        coverage[k, y0 : y0 + dy, x0 : x0 + dx] = 0
    return coverage


def _storm_rate(rng: np.random.Generator, times: pd.DatetimeIndex, h: int, w: int) -> np.ndarray:
    """Expected strikes per cell (T, H, W): drifting Gaussian blobs, stronger in summer."""
    t = len(times)
    doy = times.day_of_year.to_numpy()
    # (T,) storm strength: 1 in mid-July (day 196), 0.1 in mid-January
    season = 0.1 + 0.9 * (0.5 + 0.5 * np.cos(2 * np.pi * (doy - 196) / 365.25)) ** 2
    yy, xx = np.arange(h)[None, :, None], np.arange(w)[None, None, :]  # (1, H, 1), (1, 1, W)
    rate = np.zeros((t, h, w))
    # Storms are born at a steady rate so that about _N_BLOBS are alive at any step.
    n_storms = rng.poisson(_N_BLOBS * (t + _LIFE) / _LIFE)
    for _ in range(n_storms):
        born = int(rng.integers(-_LIFE, t))
        steps = np.arange(max(born, 0), min(born + _LIFE, t))
        if steps.size == 0:
            continue
        y0, x0, radius = rng.uniform(0, h), rng.uniform(-2, w - 2), rng.uniform(1.5, 3.0)
        cx = (x0 + _SPEED * (steps - born))[:, None, None]  # (S, 1, 1)
        blob = np.exp(-((yy - y0) ** 2 + (xx - cx) ** 2) / (2 * radius**2))  # (S, H, W)
        rate[steps] += _PEAK * season[steps, None, None] * blob
    return rate + 0.01  # a sprinkle of isolated strikes everywhere


def _as_dataset(
    counts: np.ndarray,
    coverage: np.ndarray,
    times: pd.DatetimeIndex,
    grid: Grid,
    step: pd.Timedelta,
) -> xr.Dataset:
    """Wrap arrays (T, H, W) in the maps-file layout with CF attributes."""
    dims = (TIME, LAT, LON)
    time = (TIME, times.values.astype("datetime64[ns]"), dict(COORD_ATTRS[TIME]))
    data = {
        COUNT: (dims, counts, dict(COUNT_ATTRS)),
        COVERAGE: (dims, coverage, dict(COVERAGE_ATTRS)),
    }
    ds = xr.Dataset(data, coords={TIME: time, **grid_coords(grid)})
    ds[COUNT].attrs.pop("coordinates", None)  # xarray writes the coordinates attribute itself
    ds.attrs.update(
        Conventions=CF_CONVENTIONS,
        grid=grid.spec(),
        time_step=_step_label(step),
        time_step_seconds=int(step.total_seconds()),
        title="strikecast mock lightning maps",
        source="data_prep.mock.mock_maps (seeded drifting storm blobs)",
        history="created by data_prep.mock",
    )
    return ds


def _step_label(step: pd.Timedelta) -> str:
    """``Timedelta('1D')`` -> ``"1D"``, ``6h`` -> ``"6h"``, otherwise whole minutes."""
    minutes = int(step.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}D"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}min"
