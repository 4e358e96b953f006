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
        return cls(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in dataclasses.fields(cls)
            }
        )

    @classmethod
    def empty(cls):
        return cls(
            **{
                f.name: np.zeros(0, np.int64 if f.name == "world" else float)
                for f in dataclasses.fields(cls)
            }
        )


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
        return cls(
            cfg,
            grid,
            pd.Timestamp(cfg.start).as_unit("ns"),
            la,
            lo,
            size,
            cdf / cdf[-1],
            float(cdf[-1]),
        )

    @property
    def region(self) -> tuple[float, float, float, float]:
        """Where storms may be born: (lat_min, lat_max, lon_min, lon_max), domain plus margins."""
        g = self.grid
        return g.lat_min - PAD, g.lat_max + PAD, g.lon_min - PAD_WEST, g.lon_max + PAD

    def doy(self, t: np.ndarray) -> np.ndarray:
        return fields.day_of_year(self.start, t)

    @property
    def maps_per_day(self) -> int:
        """Map steps per day: 1 for a daily world, 24 for an hourly one (``cfg.time_step``)."""
        step = pd.Timedelta(self.cfg.time_step)
        return max(int(pd.Timedelta("1D") // step), 1)

    @property
    def sub_daily(self) -> bool:
        """Whether the map step is shorter than a day: the world then resolves the land-sea
        diurnal cycle of births and intensity (:func:`fields.diurnal_land_sea`)."""
        return self.maps_per_day > 1


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

    def alive_pairs(
        self, t0: np.ndarray, t1: np.ndarray, world: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row, slot) for every row alive (``t0 < midpoint < t1``) at a slot of its world."""
        rel0 = (t0 - self.t_start[world]) / self.dt - 0.5
        rel1 = (t1 - self.t_start[world]) / self.dt - 0.5
        first = np.clip(np.floor(rel0) + 1, 0, self.n_steps).astype(np.int64)
        last = np.clip(np.ceil(rel1) - 1, -1, self.n_steps - 1).astype(np.int64)
        n = np.maximum(last - first + 1, 0)
        row = np.repeat(np.arange(len(t0)), n)
        k = first[row] + np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n)
        return row, world[row] * self.n_steps + k


def activity_paths(
    rng: np.random.Generator, s: Setting, frame: Frame, a0: np.ndarray
) -> np.ndarray:
    """Activity state of each world at the start of each step, (n_worlds, n_steps + 1, 3).

    Three AR(1) processes: the domain-wide log-activity (sd ``activity_sd``, memory
    ``activity_days``) and the west-east and south-north tilts of log-activity across the
    birth region (sd ``regime_sd``, memory ``regime_days``). ``a0`` (n_worlds, 3) starts them.
    """
    cfg = s.cfg
    tau = np.array([cfg.activity_days, cfg.regime_days, cfg.regime_days])
    sd = np.array([cfg.activity_sd, cfg.regime_sd, cfg.regime_sd])
    rho = np.exp(-frame.dt / tau)
    noise = np.sqrt(1 - rho**2) * sd * rng.standard_normal((frame.n_steps, frame.n_worlds, 3))
    out = np.empty((frame.n_worlds, frame.n_steps + 1, 3))
    out[:, 0] = a0
    for k in range(frame.n_steps):
        out[:, k + 1] = rho * out[:, k] + noise[k]
    return out


def stationary_activity(rng: np.random.Generator, s: Setting, n_worlds: int) -> np.ndarray:
    """A draw from the stationary distribution of the activity state, (n_worlds, 3)."""
    sd = np.array([s.cfg.activity_sd, s.cfg.regime_sd, s.cfg.regime_sd])
    return sd * rng.standard_normal((n_worlds, 3))


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


def spawn_storms(
    rng: np.random.Generator, s: Setting, frame: Frame, systems: Systems, state: np.ndarray
) -> Storms:
    """Storm clusters born in every slot: the sum of two independent Poisson processes.

    Birth rate (per square degree per day) = storm_rate * activity * regime tilt *
    favourability * (air-mass term + system term). Each process draws candidates from a bound
    of its rate and keeps them with the ratio (thinning), which is exact. ``state`` is the
    activity state of each slot, (n_slots, 3) (see :func:`activity_paths`).
    """
    tm = frame.slot_times() + frame.dt / 2
    a0, a1, a2 = state.T
    bound = s.cfg.storm_rate * np.exp(a0 - 0.5 * s.cfg.activity_sd**2 + np.abs(a1) + np.abs(a2))
    air = _air_mass_births(rng, s, frame, tm, bound, state)
    forced = _system_births(rng, s, frame, tm, bound, state, systems)
    return Storms.concat([air, forced])


def _regime(s: Setting, y: np.ndarray, x: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Tilt of the birth rate at (y, x) over its bound, in (0, 1]; ``state`` (N, 3) per point."""
    lat0, lat1, lon0, lon1 = s.region
    xn = np.clip((2 * x - lon0 - lon1) / (lon1 - lon0), -1, 1)
    yn = np.clip((2 * y - lat0 - lat1) / (lat1 - lat0), -1, 1)
    a1, a2 = state[:, 1], state[:, 2]
    return np.exp(a1 * xn + a2 * yn - np.abs(a1) - np.abs(a2))


def _air_mass_births(rng, s: Setting, frame: Frame, tm, bound, state) -> Storms:
    """Warm-season storms: rate activity * R_AIR * warmth^2 * favourability * moisture."""
    doy = s.doy(tm)
    peak = fields.BIRTH_PEAK if s.sub_daily else 1.0  # bound of the diurnal birth factor
    n = rng.poisson(bound * R_AIR * fields.warmth(doy) ** 2 * s.fav_total * frame.dt * peak)
    slot = np.repeat(np.arange(frame.n_slots), n)
    y, x = _draw_cells(rng, s, len(slot))
    p = fields.moisture(y, doy[slot]) * _regime(s, y, x, state[slot])
    if s.sub_daily:  # air-mass storms start in the afternoon, over land (thinning is exact)
        p = p * fields.diurnal_births((tm[slot] % 1.0) * 24.0, y, x) / peak
    keep = rng.random(len(slot)) < p
    zero = np.zeros(int(keep.sum()))
    return _new_storms(rng, s, frame, slot[keep], y[keep], x[keep], zero, zero)


def _system_births(rng, s: Setting, frame: Frame, tm, bound, state, systems: Systems) -> Storms:
    """Storms along systems: rate activity * R_SYS * envelope * band * favourability * moisture.

    Candidates come from each system's band (a Gaussian ``sy`` along, ``sx`` across its tilted
    axis, total 2*pi*sx*sy square degrees, cut at 3 sd along and 4 sd across) and are kept with
    favourability * moisture * regime tilt inside the birth region. Systems whose cut band
    misses the region (still far west, or gone east) raise nothing and are skipped.
    """
    row, slot = frame.alive_pairs(systems.t0, systems.t0 + systems.life, systems.world)
    row, slot = _reaching(s, systems, row, slot, tm)
    sy_ = systems.take(row)
    area = 2 * np.pi * sy_.sx * sy_.sy
    n = rng.poisson(bound[slot] * R_SYS * sy_.envelope(tm[slot]) * area * frame.dt)
    k = np.repeat(np.arange(len(row)), n)
    sy_, slot = sy_.take(k), slot[k]
    z = rng.standard_normal((2, len(k)))
    y = sy_.yc + sy_.sy * z[0]
    x = sy_.x0 + sy_.u * (tm[slot] - sy_.t0) + sy_.tilt * (y - sy_.yc) + sy_.sx * z[1]
    lat0, lat1, lon0, lon1 = s.region
    inside = (y >= lat0) & (y < lat1) & (x >= lon0) & (x < lon1)
    inside &= (np.abs(z[0]) < 3.0) & (np.abs(z[1]) < 4.0)
    p = fields.favourability(y, x) * fields.moisture(y, s.doy(tm[slot]), extra=2.0)
    keep = inside & (rng.random(len(k)) < p * _regime(s, y, x, state[slot]))
    one = np.ones(int(keep.sum()))
    return _new_storms(rng, s, frame, slot[keep], y[keep], x[keep], one, sy_.u[keep])


def _reaching(s: Setting, systems: Systems, row, slot, tm) -> tuple[np.ndarray, np.ndarray]:
    """The (system, slot) pairs whose cut band overlaps the birth region."""
    sy_ = systems.take(row)
    axis = sy_.x0 + sy_.u * (tm[slot] - sy_.t0)
    reach = np.abs(sy_.tilt) * 3.0 * sy_.sy + 4.0 * sy_.sx
    lat0, lat1, lon0, lon1 = s.region
    ok = (axis + reach >= lon0) & (axis - reach < lon1)
    ok &= (sy_.yc + 3.0 * sy_.sy >= lat0) & (sy_.yc - 3.0 * sy_.sy < lat1)
    return row[ok], slot[ok]


def _draw_cells(rng: np.random.Generator, s: Setting, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` points with density proportional to the favourability."""
    k = np.minimum(np.searchsorted(s.cdf, rng.random(m)), len(s.cdf) - 1)
    jitter = (rng.random((2, m)) - 0.5) * s.cell_size
    return s.cells_lat[k] + jitter[0], s.cells_lon[k] + jitter[1]


def _new_storms(rng, s: Setting, frame: Frame, slot, y, x, share, sys_speed) -> Storms:
    """Attributes of newborn storms; ``share`` 1: raised by a system, they drift with it."""
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
