"""The main run of the synthetic world: one world over every internal step, vectorised in time.

Births depend only on the season, the systems and the activity, never on other storms, and
storms evolve deterministically once born; so the whole period is drawn at once: activity path,
systems, storm births, then the intensity rendered in chunks of days. Besides the detected strike
counts, the run keeps what the oracle needs: the expected detected strikes per cell and map step
(a day, or an hour in an hourly world) split by the map step the storms were born in, and the
hidden state (systems, activity) at the end of every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data_prep.progress import bar
from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic.render import render

CHUNK_DAYS = 16  # days rendered at once (memory: CHUNK_DAYS * steps per day * cohorts maps)


@dataclass
class Run:
    """Output of :func:`run_world`; T map steps (days, or hours of an hourly world), H x W cells,
    ``n_cohorts`` storm-age classes."""

    maps: np.ndarray  # detected strikes per cell and map step, (T, H, W) int32
    cohorts: (
        np.ndarray
    )  # expected detected strikes in map step d from storms born in step d - k, (T, nc, H, W)
    step: np.ndarray  # internal step of each non-empty (step, cell), (M,) int64
    cell: np.ndarray  # flat cell index (i * W + j), (M,) int64
    count: np.ndarray  # detected strikes, (M,) int64
    systems: dyn.Systems  # every system of the run
    activity: np.ndarray  # activity state at the start of every step, (T * steps per day + 1, 3)
    n_storms: int  # storm clusters born

    def systems_at(self, t: float) -> dyn.Systems:
        """Systems born before ``t`` and alive at ``t`` (the hidden state at time ``t``)."""
        sy = self.systems
        return sy.take((sy.t0 < t) & (sy.t0 + sy.life > t))


def n_cohorts(s: dyn.Setting) -> int:
    """Storm-age classes: a storm born in map step d is alive at most until step d + ceil(max
    life in map steps)."""
    return int(math.ceil(s.cfg.storm_life_days[1] * s.maps_per_day)) + 1


def steps_per_day(s: dyn.Setting) -> int:
    """Internal steps per day."""
    return 24 // s.cfg.step_hours


def steps_per_map(s: dyn.Setting) -> int:
    """Internal steps per map step (``step_hours`` divides the map step)."""
    return steps_per_day(s) // s.maps_per_day


def run_world(s: dyn.Setting, rng: np.random.Generator, progress: bool = False) -> Run:
    """Draw the world from its start through ``cfg.days`` days."""
    cfg, spd, mpd = s.cfg, steps_per_day(s), s.maps_per_day
    frame = dyn.Frame(np.zeros(1), cfg.days * spd, 1.0 / spd)
    state = dyn.activity_paths(rng, s, frame, dyn.stationary_activity(rng, s, 1))[0]
    systems = dyn.spawn_systems(rng, s, frame)
    storms = dyn.spawn_storms(rng, s, frame, systems, state[:-1])
    maps = np.zeros((cfg.days * mpd, *s.grid.shape), np.int32)
    cohorts = np.zeros((cfg.days * mpd, n_cohorts(s), *s.grid.shape), np.float32)
    row, slot = frame.alive_pairs(storms.t0, storms.t0 + storms.life, storms.world)
    hits = []
    chunks = range(0, cfg.days, CHUNK_DAYS)
    for d0 in bar(chunks, desc="synth", unit="chunk") if progress else chunks:
        d1 = min(d0 + CHUNK_DAYS, cfg.days)
        sel = (slot >= d0 * spd) & (slot < d1 * spd)
        m0, m1 = d0 * mpd, d1 * mpd  # map steps of the chunk
        lam, cohorts[m0:m1] = _render_days(s, storms, row[sel], slot[sel], frame, d0, d1)
        step, cell, count = _draw_counts(rng, lam)
        at = (step // steps_per_map(s), cell)
        np.add.at(maps[m0:m1].reshape(m1 - m0, -1), at, count.astype(np.int32))
        hits.append((step + d0 * spd, cell, count))
    step, cell, count = (np.concatenate([h[i] for h in hits]) for i in range(3))
    return Run(maps, cohorts, step, cell, count, systems, state, len(storms))


def _render_days(s, storms, row, slot, frame, d0: int, d1: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected detected strikes of days [d0, d1): per internal step (steps, H, W) and per map
    step by the map step of the storm's birth (maps, nc, H, W)."""
    spd, nc, de = steps_per_day(s), n_cohorts(s), s.cfg.detection_efficiency
    mpd = s.maps_per_day
    tm = (slot + 0.5) * frame.dt
    step = slot // steps_per_map(s)  # map step of each pair
    age_class = np.minimum(step - np.floor(storms.t0[row] * mpd), nc - 1).astype(np.int64)
    per_step = render(storms, row, tm, slot - d0 * spd, (d1 - d0) * spd, s, de)
    bucket = (step - d0 * mpd) * nc + age_class
    per_map = render(storms, row, tm, bucket, (d1 - d0) * mpd * nc, s, de)
    return per_step, per_map.reshape((d1 - d0) * mpd, nc, *s.grid.shape)


def _draw_counts(rng: np.random.Generator, lam: np.ndarray) -> tuple[np.ndarray, ...]:
    """Poisson counts of intensities (S, H, W): (step, flat cell, count) of the non-empty cells."""
    flat = lam.reshape(len(lam), -1)
    idx = np.flatnonzero(flat > 1e-7)
    c = rng.poisson(flat.flat[idx].astype(np.float64))
    keep = c > 0
    step, cell = np.divmod(idx[keep], flat.shape[1])
    return step, cell, c[keep].astype(np.int64)
