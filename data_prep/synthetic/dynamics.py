"""Hidden state of the synthetic world and its evolution, vectorised over many worlds at once.

The state of one world is (travelling systems, storm clusters, log-activity). Each system and
storm carries the index ``world`` of the world it belongs to, so the main simulation (one world)
and the oracle's rollouts (hundreds of copies of the state of many forecast times) share this
code. After birth, systems and storms evolve deterministically; all randomness enters through
births and through the activity's random walk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_prep.config import SynthConfig
from data_prep.schema import Grid
from data_prep.synthetic import fields

PAD_WEST = 6.0  # degrees west of the domain where storms may be born
SYSTEM_ENTRY = 20.0  # degrees west of the domain where systems are born: days before they arrive
PAD = 2.0  # degrees beyond the other edges where storms may be born
R_AIR = 0.05  # summer air-mass storm births per square degree per day at favourability 1
R_SYS = 0.25  # system-forced storm births per square degree per day, per unit system strength
MASS = 150.0  # median strikes per day of a storm cluster at its peak (before detection)
MASS_SD = 1.0  # log-normal spread of storm peak strikes: heavy-tailed daily totals
SIGMA = 0.45  # typical radius (1 sigma, degrees) of a storm cluster's strike density


@dataclass
class Batch:
    """Columns of equal length; subclasses name them."""

    def take(self, keep: np.ndarray):
        """The rows where ``keep`` (bool mask or index array)."""
        return type(self)(**{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return len(self.world)

    @classmethod
    def concat(cls, parts: list):
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)})

    @classmethod
    def empty(cls):
        return cls(**{f.name: np.zeros(0, np.int64 if f.name == "world" else float) for f in dataclasses.fields(cls)})


@dataclass
class Systems(Batch):
    """Travelling weather systems (troughs and their fronts) moving east.

    The forcing axis lies at lon ``x0 + u*(t - t0) + tilt*(lat - yc)``, a band ``sx`` degrees wide
    across it and ``sy`` degrees along it, centred on latitude ``yc``.
    """

    world: np.ndarray
    t0: np.ndarray  # birth time, days since the start of the world
    life: np.ndarray  # days
    x0: np.ndarray  # axis longitude at t0 and lat yc
    u: np.ndarray  # eastward speed, degrees lon per day
    yc: np.ndarray
    sy: np.ndarray
    sx: np.ndarray
    tilt: np.ndarray  # degrees lon per degree lat: fronts trail to the south-west
    strength: np.ndarray

    def envelope(self, t: float) -> np.ndarray:
        """Strength at ``t``: ramps up over half a day, holds, fades over the last 18 h."""
        age = t - self.t0
        ramp = np.minimum(age / 0.5, (self.life - age) / 0.75)
        return self.strength * np.clip(ramp, 0.0, 1.0)


@dataclass
class Storms(Batch):
    """Storm clusters: born, grow and decay as ``sin(pi*age/life)``, drift at (u, v) deg/day."""

    world: np.ndarray
    t0: np.ndarray
    life: np.ndarray
    y0: np.ndarray
    x0: np.ndarray
    u: np.ndarray
    v: np.ndarray
    mass: np.ndarray  # strikes per day at the peak of the life cycle (before detection)
    sigma: np.ndarray  # radius of the strike density, degrees (latitude)


@dataclass
class Setting:
    """Everything static a world needs: config, grid, start date and the birth sampler."""

    cfg: SynthConfig
    grid: Grid
    start: pd.Timestamp
    cells_lat: np.ndarray  # proposal cells for storm births (centres), (K,)
    cells_lon: np.ndarray
    cell_size: float
    cdf: np.ndarray  # cumulative favourability * area of the cells, normalised, (K,)
    fav_total: float  # integral of favourability over the birth region, square degrees

    @classmethod
    def build(cls, cfg: SynthConfig, grid: Grid) -> Setting:
        size = min(0.25, grid.res)
        lat = np.arange(grid.lat_min - PAD + size / 2, grid.lat_max + PAD, size)
        lon = np.arange(grid.lon_min - PAD_WEST + size / 2, grid.lon_max + PAD, size)
        la, lo = (a.ravel() for a in np.meshgrid(lat, lon, indexing="ij"))
        fav = fields.favourability(la, lo) * size * size
        cdf = np.cumsum(fav)
        return cls(cfg, grid, pd.Timestamp(cfg.start), la, lo, size, cdf / cdf[-1], float(cdf[-1]))

    def doy(self, t: np.ndarray) -> np.ndarray:
        return fields.day_of_year(self.start, t)


@dataclass
class Frame:
    """A regular set of slots: ``n_steps`` internal steps of each of several worlds.

    Slot ``q = world * n_steps + k`` covers ``[t_start[world] + k*dt, t_start[world] + (k+1)*dt)``.
    """

    t_start: np.ndarray  # (n_worlds,) days since the start of the world
    n_steps: int
    dt: float

    @property
    def n_worlds(self) -> int:
        return len(self.t_start)

    @property
    def n_slots(self) -> int:
        return self.n_worlds * self.n_steps

    def slot_times(self) -> np.ndarray:
        """Start time of every slot, (n_slots,)."""
        return (self.t_start[:, None] + np.arange(self.n_steps) * self.dt).ravel()

    def alive_pairs(self, t0: np.ndarray, t1: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, slot) for every row alive (``t0 < midpoint < t1``) at the midpoint of a slot of its world."""
        rel0 = (t0 - self.t_start[world]) / self.dt - 0.5
        rel1 = (t1 - self.t_start[world]) / self.dt - 0.5
        first = np.clip(np.floor(rel0) + 1, 0, self.n_steps).astype(np.int64)
        last = np.clip(np.ceil(rel1) - 1, -1, self.n_steps - 1).astype(np.int64)
        n = np.maximum(last - first + 1, 0)
        row = np.repeat(np.arange(len(t0)), n)
        k = first[row] + np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n)
        return row, world[row] * self.n_steps + k




def pad_by_group(group: np.ndarray, n_groups: int, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scatter rows into (n_groups, K, ...) arrays, K = most rows of any group; empty slots are 0."""
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=n_groups)
    first = np.cumsum(counts) - counts
    rank = np.empty(len(group), np.int64)
    rank[order] = np.arange(len(group)) - first[group[order]]
    k = max(int(counts.max(initial=0)), 1)
    out = []
    for c in cols:
        a = np.zeros((n_groups, k) + c.shape[1:], c.dtype)
        a[group, rank] = c
        out.append(a)
    return tuple(out)


def activity_paths(rng: np.random.Generator, s: Setting, frame: Frame, a0: np.ndarray) -> np.ndarray:
    """AR(1) log-activity of each world at the start of each step, (n_worlds, n_steps + 1)."""
    rho = np.exp(-frame.dt / s.cfg.activity_days)
    noise = np.sqrt(1 - rho**2) * s.cfg.activity_sd * rng.standard_normal((frame.n_steps, frame.n_worlds))
    out = np.empty((frame.n_worlds, frame.n_steps + 1))
    out[:, 0] = a0
    for k in range(frame.n_steps):
        out[:, k + 1] = rho * out[:, k] + noise[k]
    return out


def spawn_systems(rng: np.random.Generator, s: Setting, frame: Frame) -> Systems:
    """Systems entering the west edge during each slot: more, and stronger, in the cool season."""
    cfg, t = s.cfg, frame.slot_times()
    warm = fields.warmth(s.doy(t + frame.dt / 2))
    n = rng.poisson(cfg.system_rate * (1.2 - 0.6 * warm) * frame.dt)
    slot = np.repeat(np.arange(len(t)), n)
    m, warm = len(slot), warm[slot]
    yc = fields.track_lat(s.doy(t[slot])) + rng.normal(0.0, 4.0, m)
    return Systems(
        world=slot // frame.n_steps,
        t0=t[slot] + rng.random(m) * frame.dt,
        life=rng.uniform(4.0, 9.0, m),
        x0=np.full(m, s.grid.lon_min - SYSTEM_ENTRY),
        u=rng.uniform(*cfg.system_speed, m),
        yc=np.clip(yc, s.grid.lat_min - 2.0, s.grid.lat_max + 2.0),
        sy=rng.uniform(4.0, 8.0, m),
        sx=rng.uniform(1.2, 2.5, m),
        tilt=rng.uniform(0.0, 0.6, m),
        strength=np.exp(rng.normal(0.0, 0.5, m)) * (0.35 + 0.65 * warm),
    )


def spawn_storms(rng: np.random.Generator, s: Setting, frame: Frame, systems: Systems, log_act: np.ndarray) -> Storms:
    """Storm clusters born in every slot, by thinning candidates drawn from the favourability.

    Birth rate (per square degree per day) = storm_rate * activity * favourability *
    (air-mass term + system term). Candidates come from a bound of the bracket (each system's
    Gaussian <= 1, moisture <= 1), so the thinning is exact. ``log_act`` is (n_slots,).
    """
    tm = frame.slot_times() + frame.dt / 2
    doy = s.doy(tm)
    air = R_AIR * fields.warmth(doy) ** 2  # (n_slots,)
    row, pslot = frame.alive_pairs(systems.t0, systems.t0 + systems.life, systems.world)
    amp = R_SYS * systems.take(row).envelope(tm[pslot])
    sys_total = np.bincount(pslot, amp, minlength=frame.n_slots)
    act = np.exp(log_act - 0.5 * s.cfg.activity_sd**2)
    n = rng.poisson(s.cfg.storm_rate * act * (air + sys_total) * s.fav_total * frame.dt)
    slot = np.repeat(np.arange(frame.n_slots), n)
    y, x = _draw_cells(rng, s, len(slot))
    forced, speed = _system_forcing(systems.take(row), amp, pslot, tm, y, x, slot, frame.n_slots)
    sys_part = forced * fields.moisture(y, doy[slot], extra=2.0)
    accept = air[slot] * fields.moisture(y, doy[slot]) + sys_part
    keep = rng.random(len(slot)) * (air + sys_total)[slot] < accept
    share = np.divide(sys_part, accept, out=np.zeros_like(accept), where=accept > 0)
    return _new_storms(rng, s, frame, slot[keep], y[keep], x[keep], share[keep], speed[keep])


def _draw_cells(rng: np.random.Generator, s: Setting, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` points with density proportional to the favourability."""
    k = np.minimum(np.searchsorted(s.cdf, rng.random(m)), len(s.cdf) - 1)
    jitter = (rng.random((2, m)) - 0.5) * s.cell_size
    return s.cells_lat[k] + jitter[0], s.cells_lon[k] + jitter[1]


def _system_forcing(sy_, amp, pslot, tm, y, x, slot, n_slots) -> tuple[np.ndarray, np.ndarray]:
    """System term at points (y, x) in ``slot``, and the forcing-weighted system speed there."""
    if len(pslot) == 0 or len(y) == 0:
        return np.zeros(len(y)), np.zeros(len(y))
    axis_x = sy_.x0 + sy_.u * (tm[pslot] - sy_.t0)
    cols = pad_by_group(pslot, n_slots, amp, axis_x, sy_.tilt, sy_.yc, sy_.sy, sy_.sx, sy_.u)
    a, xa, tilt, yc, wy, wx, u = (c[slot] for c in cols)  # (N, K)
    wx, wy = np.where(wx > 0, wx, 1.0), np.where(wy > 0, wy, 1.0)
    axis = xa + tilt * (y[:, None] - yc)
    g = a * np.exp(-0.5 * (((x[:, None] - axis) / wx) ** 2 + ((y[:, None] - yc) / wy) ** 2))
    total = g.sum(1)
    speed = np.divide((g * u).sum(1), total, out=np.zeros_like(total), where=total > 0)
    return total, speed


def _new_storms(rng, s: Setting, frame: Frame, slot, y, x, share, sys_speed) -> Storms:
    """Attributes of newborn storms; storms raised by a system drift with it."""
    m, t = len(slot), frame.slot_times()[slot]
    steer = fields.steering_speed(s.doy(t))
    log_mass = rng.normal(0.0, MASS_SD, m)
    return Storms(
        world=slot // frame.n_steps,
        t0=t + rng.random(m) * frame.dt,
        life=rng.uniform(*s.cfg.storm_life_days, m),
        y0=y,
        x0=x,
        u=steer + share * (0.9 * sys_speed - steer) + rng.normal(0.0, 1.5, m),
        v=rng.normal(0.5, 1.0, m),
        mass=s.cfg.strike_scale * MASS * np.exp(log_mass) * (0.7 + 0.6 * share),
        sigma=np.clip(SIGMA * np.exp(0.25 * log_mass + rng.normal(0.0, 0.2, m)), 0.2, 1.5),
    )


def render(
    storms: Storms,
    row: np.ndarray,
    tm: np.ndarray,
    bucket: np.ndarray,
    n_buckets: int,
    s: Setting,
    scale: float,
    budget: int = 100_000,
) -> np.ndarray:
    """Expected strikes per cell summed over (storm ``row``, time ``tm``) pairs into buckets, (n_buckets, H, W) float32.

    Each pair contributes storm ``row`` at the step centred on ``tm`` (steps of ``cfg.step_hours``):
    a separable Gaussian (wider in degrees of lon by 1/cos(lat)) integrated over the cell by its
    centre value times the cell size, times ``scale`` (the detection efficiency).
    """
    g, dt = s.grid, s.cfg.step_hours / 24.0
    age = tm - storms.t0[row]
    x = storms.x0[row] + storms.u[row] * age
    y = storms.y0[row] + storms.v[row] * age
    hour = (tm % 1.0) * 24.0
    phase = np.clip(age / storms.life[row], 0.0, 1.0)
    w = storms.mass[row] * np.sin(np.pi * phase) * fields.diurnal(hour, x) * dt * scale
    sig = storms.sigma[row]
    near = (w > 1e-6) & (np.abs(y - g.lat.mean()) < (g.lat_max - g.lat_min) / 2 + 5 * sig)
    near &= np.abs(x - g.lon.mean()) < (g.lon_max - g.lon_min) / 2 + 5 * sig / np.cos(np.deg2rad(np.clip(y, -80, 80)))
    out = np.zeros((n_buckets, *g.shape), np.float32)
    y, x, sig, w, bucket = y[near], x[near], sig[near], w[near], bucket[near]
    # buckets sorted by their number of pairs, so that batches pad little
    counts = np.bincount(bucket, minlength=n_buckets)
    by_size = np.argsort(counts, kind="stable")
    rank = np.empty(n_buckets, np.int64)
    rank[by_size] = np.arange(n_buckets)
    order = np.argsort(rank[bucket], kind="stable")
    for lo, hi, sel in _batches(counts[by_size], budget):
        idx = order[sel]
        gy = _gauss(g.lat, y[idx], sig[idx], g.res)  # (P, H)
        sx = sig[idx] / np.cos(np.deg2rad(np.clip(y[idx], -80, 80)))
        gx = _gauss(g.lon, x[idx], sx, g.res) * w[idx, None].astype(np.float32)  # (P, W)
        a, c = pad_by_group(rank[bucket[idx]] - lo, hi - lo, gy, gx)  # (G, K, H), (G, K, W)
        out[by_size[lo:hi]] += np.matmul(np.ascontiguousarray(a.transpose(0, 2, 1)), c)
    return out


def _batches(sorted_counts: np.ndarray, budget: int) -> list[tuple[int, int, slice]]:
    """Runs [lo, hi) of buckets (ascending pair counts) whose padded size hi-lo times the largest
    count stays under ``budget`` pairs; with the slice of the sorted pairs they hold."""
    ends = np.cumsum(sorted_counts)
    out, lo = [], int(np.searchsorted(sorted_counts, 1))  # skip empty buckets
    n = len(sorted_counts)
    while lo < n:
        k = max(int(sorted_counts[lo]), 1)
        hi = lo + 1
        while hi < n and (hi + 1 - lo) * sorted_counts[hi] <= max(budget, k):
            hi += 1
        out.append((lo, hi, slice(int(ends[lo] - sorted_counts[lo]), int(ends[hi - 1]))))
        lo = hi
    return out


def _gauss(centres: np.ndarray, mu: np.ndarray, sigma: np.ndarray, res: float) -> np.ndarray:
    """Gaussian density at cell centres times cell size, (N, len(centres)) float32; 0 beyond 5 sigma."""
    z = (centres[None, :].astype(np.float32) - mu[:, None].astype(np.float32)) / sigma[:, None].astype(np.float32)
    z *= z
    z *= np.float32(-0.5)
    near = z > np.float32(-12.5)
    out = np.exp(z, out=np.zeros_like(z), where=near)
    out *= (res / (np.sqrt(2 * np.pi) * sigma[:, None])).astype(np.float32)
    return out
