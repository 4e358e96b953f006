"""The oracle: probability of at least one detected strike per cell and day, given the hidden state.

For a forecast made at the end of day ``d`` (init label ``d``), the world's state is known: every
storm born so far (position, drift, life cycle, size, strikes), every travelling system
(including those still west of the domain) and the activity. The expected detected strikes on day
``d + L`` in each cell are ``Lambda = Lambda_known + Lambda_new``:

- ``Lambda_known`` comes from storms already born; they evolve deterministically, so it is exact
  and is read from the main run (its intensity split by the day storms were born);
- ``Lambda_new`` comes from storms born after the forecast time. It is random; the oracle draws
  ``oracle_samples`` rollouts of the future from the state (new systems, the activity's random
  walk, new storms) and averages ``P = 1 - exp(-Lambda)`` over them, which is exact given each
  rollout's intensity because detected counts are Poisson.

Location error moves strikes into neighbouring cells (or out of the domain, where they are
dropped). Displacement of Poisson points keeps them Poisson, so the oracle blurs ``Lambda`` with
the exact probability that a strike placed uniformly in a cell plus Gaussian error lands in each
neighbour (one kernel along latitude, one per row along longitude); this is skipped when the
error is tiny compared with the cell. The only approximation left is the Monte Carlo average:
its noise adds ``Var(P_rollout) / oracle_samples`` to the oracle's Brier score, so the oracle
slightly understates the ceiling at long leads (on plains-0.5, lead 3, going from 8 to 16
rollouts raised its Brier skill over climatology by ~0.03; the limit is ~0.03 higher again).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import xarray as xr

from data_prep import schema
from data_prep.cores import usable_cores
from data_prep.progress import bar
from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic.render import render
from data_prep.synthetic.simulate import Run, n_cohorts, steps_per_day, steps_per_map

CHUNK_INITS = 8  # forecast times per batch of rollouts (fixed: the random streams depend on it)
KM_PER_DEGREE = 111.2
WORKERS = min(2, usable_cores())  # threads for the rollouts
SKIP_BELOW = 0.05  # location error (1 sigma, in cells) below which the oracle does not blur


def oracle_inits(days: int, *, n_in: int, n_out: int) -> np.ndarray:
    """Map-step indices of every init with ``n_in`` observed steps up to it and ``n_out`` after;
    ``days`` is the number of map steps (days of a daily world, hours of an hourly one)."""
    return np.arange(n_in - 1, days - n_out)


def n_maps(s: dyn.Setting) -> int:
    """Map steps of the world: its days times the map steps per day."""
    return s.cfg.days * s.maps_per_day


def oracle_probability(s: dyn.Setting, run: Run, progress: bool = False) -> np.ndarray:
    """Oracle probability of >= 1 detected strike, (I, n_out, H, W) float32, one per init.

    Batches of ``CHUNK_INITS`` forecast times run on ``WORKERS`` threads (numpy releases the
    GIL); each batch has its own random stream, so the result does not depend on the threads.
    """
    cfg = s.cfg
    inits = oracle_inits(n_maps(s), n_in=cfg.n_in, n_out=cfg.n_out)
    kernels = location_kernels(s)
    out = np.empty((len(inits), cfg.n_out, *s.grid.shape), np.float32)

    def one(c: int) -> None:
        d = inits[c : c + CHUNK_INITS]
        rng = np.random.default_rng([cfg.seed, 1, c // CHUNK_INITS])
        lam = rollout(rng, s, run, d) + known_part(run, d, cfg.n_out)[:, None]  # (C, S, L, H, W)
        out[c : c + len(d)] = (-np.expm1(-blur(lam, kernels))).mean(1)

    starts = range(0, len(inits), CHUNK_INITS)
    with ThreadPoolExecutor(WORKERS) as pool:
        jobs = pool.map(one, starts)
        for _ in bar(jobs, total=len(starts), desc="oracle", unit="chunk") if progress else jobs:
            pass
    return out


def known_part(run: Run, inits: np.ndarray, n_out: int) -> np.ndarray:
    """Expected detected strikes from storms born by the end of each init day, (C, n_out, H, W)."""
    nc = run.cohorts.shape[1]
    out = np.zeros((len(inits), n_out, *run.cohorts.shape[2:]), np.float32)
    for lead in range(1, min(n_out, nc - 1) + 1):
        out[:, lead - 1] = run.cohorts[inits + lead, lead:].sum(1)
    return out


def rollout(rng: np.random.Generator, s: dyn.Setting, run: Run, inits: np.ndarray) -> np.ndarray:
    """Expected detected strikes from storms born after each init, (C, S, n_out, H, W)."""
    cfg, spd, spm = s.cfg, steps_per_day(s), steps_per_map(s)
    n_s, c = cfg.oracle_samples, len(inits)
    t0 = np.repeat((inits + 1.0) / s.maps_per_day, n_s)  # world w = init index * S + sample
    frame = dyn.Frame(t0, cfg.n_out * spm, 1.0 / spd)
    a0 = np.repeat(run.activity[(inits + 1) * spm], n_s, axis=0)  # (C * S, 3)
    state = dyn.activity_paths(rng, s, frame, a0)[:, :-1].reshape(-1, 3)  # (slots, 3)
    known = _replicate(run, (inits + 1.0) / s.maps_per_day, n_s)
    systems = dyn.Systems.concat([known, dyn.spawn_systems(rng, s, frame)])
    storms = dyn.spawn_storms(rng, s, frame, systems, state)
    row, slot = frame.alive_pairs(storms.t0, storms.t0 + storms.life, storms.world)
    world, k = np.divmod(slot, frame.n_steps)
    tm = frame.t_start[world] + (k + 0.5) * frame.dt
    n_b = frame.n_worlds * cfg.n_out
    lam = render(storms, row, tm, world * cfg.n_out + k // spm, n_b, s, cfg.detection_efficiency)
    return lam.reshape(c, n_s, cfg.n_out, *s.grid.shape)


def _replicate(run: Run, ends: np.ndarray, n_s: int) -> dyn.Systems:
    """The systems alive at the end (days) of each init step, copied into each of its rollouts."""
    parts = []
    for i, end in enumerate(ends):
        known = run.systems_at(end)
        idx = np.tile(np.arange(len(known)), n_s)
        part = known.take(idx)
        part.world = i * n_s + np.repeat(np.arange(n_s), len(known))
        parts.append(part)
    return dyn.Systems.concat(parts) if parts else dyn.Systems.empty()


# --------------------------------------------------------------------------------------------
# location error


def location_kernels(s: dyn.Setting) -> tuple[np.ndarray, np.ndarray] | None:
    """Cell-to-cell kernels of the location error: along lat (2m+1,), along lon per row (H, 2m+1).

    None when the error is below SKIP_BELOW cells: under ~4 % of strikes change cell per axis,
    mostly between cells of similar intensity, and the blur would change nothing measurable.
    """
    g, err = s.grid, s.cfg.location_error_km
    s_lat = err / KM_PER_DEGREE / g.res
    s_lon = err / (KM_PER_DEGREE * np.cos(np.deg2rad(g.lat))) / g.res  # (H,)
    if max(s_lat, s_lon.max()) < SKIP_BELOW:
        return None
    m = int(math.ceil(4 * max(s_lat, s_lon.max()))) + 1
    offsets = np.arange(-m, m + 1, dtype=float)
    return _cell_kernel(offsets, np.array(s_lat)), _cell_kernel(offsets[None, :], s_lon[:, None])


def _cell_kernel(m: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(a point uniform in cell 0 plus N(0, sd^2) error lands in cell m), sizes in cells.

    With F(z) = z*Phi(z) + phi(z) (so F' = Phi): ``sd * (F((m+1)/sd) - 2F(m/sd) + F((m-1)/sd))``.
    """
    erf = np.vectorize(math.erf, otypes=[float])

    def f(z):
        return z * 0.5 * (1 + erf(z / math.sqrt(2))) + np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    sd = np.maximum(sd, 1e-3)
    return sd * (f((m + 1) / sd) - 2 * f(m / sd) + f((m - 1) / sd))


def blur(lam: np.ndarray, kernels: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Spread expected counts (..., H, W) by the location kernels; mass leaving the grid is lost."""
    if kernels is None:
        return lam
    k_lat, k_lon = kernels
    m = (len(k_lat) - 1) // 2
    out = np.zeros_like(lam)
    h, w = lam.shape[-2:]
    for o in range(-m, m + 1):  # along lat: cell i sends to i + o
        src = slice(max(0, -o), min(h, h - o))
        dst = slice(max(0, o), min(h, h + o))
        out[..., dst, :] += k_lat[o + m] * lam[..., src, :]
    res = np.zeros_like(lam)
    for o in range(-m, m + 1):  # along lon, kernel per row
        src = slice(max(0, -o), min(w, w - o))
        dst = slice(max(0, o), min(w, w + o))
        res[..., dst] += k_lon[:, o + m, None].astype(lam.dtype) * out[..., src]
    return res


def oracle_dataset(prob: np.ndarray, s: dyn.Setting) -> xr.Dataset:
    """The oracle in the forecast-file layout: probability(init_time, lead_time, lat, lon)."""
    cfg = s.cfg
    inits = oracle_inits(n_maps(s), n_in=cfg.n_in, n_out=cfg.n_out)
    step = pd.Timedelta(cfg.time_step).to_timedelta64().astype("timedelta64[ns]")
    init_time = (s.start.to_datetime64() + inits * step).astype("datetime64[ns]")
    lead = np.arange(1, cfg.n_out + 1)
    valid = init_time[:, None] + (lead * step)[None, :]
    unit = "day" if s.maps_per_day == 1 else "map step"
    ds = xr.Dataset(
        {schema.PROBABILITY: ((schema.INIT_TIME, schema.LEAD_TIME, schema.LAT, schema.LON), prob)},
        coords={
            schema.INIT_TIME: (
                schema.INIT_TIME,
                init_time,
                {
                    **schema.FORECAST_COORD_ATTRS[schema.INIT_TIME],
                    "long_name": f"label of the last observed {unit} (UTC)",
                },
            ),
            **schema.lead_coords(cfg.n_out, step),
            "valid_time": (
                (schema.INIT_TIME, schema.LEAD_TIME),
                valid,
                schema.FORECAST_COORD_ATTRS["valid_time"],
            ),
            **schema.grid_coords(s.grid),
        },
    )
    ds[schema.PROBABILITY].attrs = {
        "long_name": f"oracle probability of at least one detected strike in the cell and {unit}",
        "units": "1",
    }
    ds.attrs = {
        "Conventions": schema.CF_CONVENTIONS,
        "title": "strikecast synthetic-world oracle forecast",
        "source": "oracle",
        "grid": s.grid.spec(),
        "time_step": cfg.time_step,
        "time_step_seconds": int(step // np.timedelta64(1, "s")),
        "seed": cfg.seed,
        "oracle_samples": cfg.oracle_samples,
        "storm_cohorts": n_cohorts(s),
    }
    return ds
