"""Synthetic NWP guidance: the fields a weather model would give, read from the world's hidden state.

Two fields describe each map day ``D`` (the analysis, lead 0, is the truth):

- ``cape`` (J/kg), convective instability: the environment that makes storms, i.e. the
  activity and regime multipliers times the air-mass and system terms of the storm birth rate
  (:mod:`.dynamics`), averaged over the day's internal steps and saturated at ``CAPE_MAX``;
- ``tp`` (mm per map step), precipitation: convective rain from the storms actually present,
  ``TP_CONVECTIVE * sqrt(expected strikes per TP_AREA_KM2)``, plus stratiform rain along the
  systems' bands. Rain is a depth, the same on any grid, so it follows the strike *density*: read
  from the strikes per cell, 0.25-degree cells (a quarter of a 0.5-degree cell's strikes) would
  get half the convective rain beside the same stratiform rain, and rain would tell less about
  lightning the finer the grid.

A forecast issued at the end of day ``d`` (init_time = day ``d + 1`` 00 UTC) with lead ``k`` days
describes day ``d + k`` (valid at its end). Its fields are the truth of that day with errors that
grow with ``k``, drawn from a random stream of its own (seed, init), so that no forecast uses the
world after day ``d`` except through the fields it forecasts:

- displacement of systems: a smooth random displacement field, 1 sigma
  ``guidance_displacement_deg * k`` degrees, moves both fields together;
- amplitude: each field times a smooth log-normal factor, log sd ``guidance_amplitude_sd * sqrt(k)``;
- missed systems: patches (size ``guidance_scale_deg``) covering ``guidance_miss * k`` of the
  domain lose their instability and rain;
- false systems: patches covering ``guidance_false * k`` of the domain gain instability and rain
  of a typical active cell of that day.

Days past the end of the world have no truth to forecast: NaN (no data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from data_prep import guidance as gfile
from data_prep import schema
from data_prep.config import to_dict
from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic import fields
from data_prep.synthetic.simulate import Run, steps_per_day

CAPE_MAX = 5000.0  # J/kg reached by the strongest environments
CAPE_HALF = 1.0  # environment (in summer air-mass units) giving half of CAPE_MAX
TP_CONVECTIVE = 2.0  # mm per sqrt(expected detected strike per TP_AREA_KM2) in a day
TP_AREA_KM2 = 2500.0  # area the convective rain's strike density is counted over (0.5 deg ~ 38 N)
TP_STRATIFORM = 8.0  # mm per day at the centre of a system's band at strength 1
ERROR_CAP = 0.6  # most of the domain that missed or false systems may cover
FALSE_QUANTILE = 0.9  # false systems bring the value of this quantile of the day's field
FIELDS = ("cape", "tp")
UNITS = {"cape": "J kg-1", "tp": "mm"}
LONG_NAMES = {
    "cape": "convective available potential energy, daily mean (synthetic)",
    "tp": "total precipitation over the map step (synthetic)",
}


def truth_fields(s: dyn.Setting, run: Run) -> np.ndarray:
    """The analysis of every map day: (2, T, H, W) float32, cape then tp."""
    spd, days = steps_per_day(s), s.cfg.days
    lat, lon = np.meshgrid(s.grid.lat, s.grid.lon, indexing="ij")
    env = np.zeros((days, *s.grid.shape))
    band = np.zeros((days, *s.grid.shape))
    for k in range(days * spd):
        tm = (k + 0.5) / spd
        doy = s.doy(tm)
        b = _system_bands(run.systems, tm, lat, lon)
        air = fields.warmth(doy) ** 2 * fields.moisture(lat, doy)
        forced = dyn.R_SYS / dyn.R_AIR * b * fields.moisture(lat, doy, extra=2.0)
        env[k // spd] += _multiplier(s, run.activity[k], lat, lon) * (air + forced) / spd
        band[k // spd] += b / spd
    cape = CAPE_MAX * env / (env + CAPE_HALF)
    per_area = TP_AREA_KM2 / s.grid.cell_area_km2()[:, None]  # (H, 1)
    tp = TP_CONVECTIVE * np.sqrt(run.cohorts.sum(1) * per_area) + TP_STRATIFORM * band
    return np.stack([cape, tp]).astype(np.float32)


def _system_bands(sy: dyn.Systems, t: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Sum over systems alive at ``t`` of envelope * their Gaussian band (peak 1), (H, W)."""
    out = np.zeros(lat.shape)
    alive = np.flatnonzero((sy.t0 < t) & (sy.t0 + sy.life > t))
    for j in alive:
        axis = sy.x0[j] + sy.u[j] * (t - sy.t0[j]) + sy.tilt[j] * (lat - sy.yc[j])
        z = ((lat - sy.yc[j]) / sy.sy[j]) ** 2 + ((lon - axis) / sy.sx[j]) ** 2
        out += sy.envelope(t)[j] * np.exp(-0.5 * z)
    return out


def _multiplier(s: dyn.Setting, a: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Activity times regime tilt of the birth rate at (lat, lon), state ``a`` = (a0, a1, a2)."""
    lat0, lat1, lon0, lon1 = s.region
    xn = np.clip((2 * lon - lon0 - lon1) / (lon1 - lon0), -1, 1)
    yn = np.clip((2 * lat - lat0 - lat1) / (lat1 - lat0), -1, 1)
    return np.exp(a[0] - 0.5 * s.cfg.activity_sd**2 + a[1] * xn + a[2] * yn)


def forecast_fields(s: dyn.Setting, truth: np.ndarray) -> np.ndarray:
    """Every forecast: (2, T, leads + 1, H, W) float32; init ``d`` issued at the end of day ``d``,
    lead 0 the analysis of day ``d``, lead ``k`` the forecast of day ``d + k`` (NaN past the end)."""
    cfg = s.cfg
    n_days, n_leads = truth.shape[1], cfg.guidance_leads
    out = np.full((2, n_days, n_leads + 1, *truth.shape[2:]), np.nan, np.float32)
    out[:, :, 0] = truth
    for d in range(n_days):
        rng = np.random.default_rng([cfg.seed, 2, d])
        for k in range(1, min(n_leads, n_days - 1 - d) + 1):
            out[:, d, k] = perturb(rng, s, truth[:, d + k], k)
    return out


def perturb(rng: np.random.Generator, s: dyn.Setting, true: np.ndarray, k: int) -> np.ndarray:
    """One forecast at lead ``k`` days of the truth ``true`` (2, H, W), with errors (see module)."""
    cfg, res = s.cfg, s.grid.res
    scale = cfg.guidance_scale_deg / res  # cells
    shift = cfg.guidance_displacement_deg * k / res
    dy = shift * (rng.standard_normal() + smooth_noise(rng, true.shape[1:], scale)) / np.sqrt(2)
    dx = shift * (rng.standard_normal() + smooth_noise(rng, true.shape[1:], scale)) / np.sqrt(2)
    ii, jj = np.meshgrid(*(np.arange(n, dtype=float) for n in true.shape[1:]), indexing="ij")
    out = np.stack(
        [ndimage.map_coordinates(f, [ii - dy, jj - dx], order=1, mode="nearest") for f in true]
    )
    sd = cfg.guidance_amplitude_sd * np.sqrt(k)
    for f in range(len(out)):
        out[f] *= np.exp(sd * smooth_noise(rng, true.shape[1:], scale) - 0.5 * sd * sd)
    missed = patches(rng, true.shape[1:], scale, min(ERROR_CAP, cfg.guidance_miss * k))
    false = patches(rng, true.shape[1:], scale, min(ERROR_CAP, cfg.guidance_false * k))
    typical = np.quantile(true.reshape(len(true), -1), FALSE_QUANTILE, axis=1)
    out = out * (1.0 - missed) + false * typical[:, None, None]
    return np.maximum(out, 0.0).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple, scale: float) -> np.ndarray:
    """Gaussian noise smoothed over ``scale`` cells, standardised to mean 0, sd 1."""
    z = ndimage.gaussian_filter(rng.standard_normal(shape), scale / 2.0, mode="reflect")
    return (z - z.mean()) / max(float(z.std()), 1e-12)


def patches(rng: np.random.Generator, shape: tuple, scale: float, share: float) -> np.ndarray:
    """Weights in [0, 1] of random patches (``scale`` cells across) covering ~``share`` of the
    domain; zeros when ``share`` is 0."""
    z = smooth_noise(rng, shape, scale)
    if share <= 0:
        return np.zeros(shape)
    edge = np.quantile(z, 1.0 - share)
    return np.clip((z - edge) / 0.3 + 0.5, 0.0, 1.0)


def guidance_dataset(values: np.ndarray, s: dyn.Setting) -> xr.Dataset:
    """The guidance-file layout of :mod:`data_prep.guidance` for ``values`` (2, T, L + 1, H, W)."""
    cfg = s.cfg
    n_days, n_leads = values.shape[1], values.shape[2]
    init_time = (s.start + pd.to_timedelta(np.arange(1, n_days + 1), "D")).values
    lead = (np.arange(n_leads) * np.timedelta64(1, "D")).astype("timedelta64[ns]")
    data = {
        name: (gfile.DIMS, values[i], {"units": UNITS[name], "long_name": LONG_NAMES[name]})
        for i, name in enumerate(FIELDS)
    }
    ds = xr.Dataset(
        data,
        coords={
            schema.INIT_TIME: (
                schema.INIT_TIME,
                init_time.astype("datetime64[ns]"),
                {**schema.FORECAST_COORD_ATTRS[schema.INIT_TIME], "long_name": "issue time (UTC)"},
            ),
            schema.LEAD_TIME: (
                schema.LEAD_TIME,
                lead,
                {"standard_name": "forecast_period", "long_name": "time from issue to validity"},
            ),
            **schema.grid_coords(s.grid),
        },
    )
    settings = {k: v for k, v in to_dict(cfg).items() if k.startswith("guidance_")}
    ds.attrs = {
        "Conventions": schema.CF_CONVENTIONS,
        "title": "strikecast synthetic-world NWP guidance",
        "strikecast_kind": gfile.KIND,
        "source": "synthetic world (data_prep.synthetic.guidance): truth of each day's "
        "environment and rain with errors growing with lead",
        "grid": s.grid.spec(),
        "time_step": "1D",
        "seed": cfg.seed,
        "world_start": str(s.start.date()),
        **{k: str(v) for k, v in settings.items()},
    }
    return ds
