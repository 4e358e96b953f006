"""Reference forecasts of lightning occurrence, with the model's signature.

Every baseline answers ``forecast(ds, inits, n_out) -> float32 (N, n_out, H, W)``: the probability
of at least one strike per cell and lead time, from the maps up to and including each init step.
Build one by name with :func:`build_baseline`; the registry is :data:`BASELINES`.

A cell without data (coverage 0) in a baseline's input is never read as zero strikes: it holds
the mean over the observed cells of its step (:func:`observed_or_mean`), e.g. the share of the
observed cells struck; NaN when the step has no observed cell, so the case is not scored.

- ``persistence``: the last step's occurrence (0 or 1) at every lead.
- ``smoothed_persistence``: the share of cells with a strike in the ``n`` x ``n`` window around each
  cell on the last step.
- ``climatology``: per-cell frequency of a strike on the valid time's calendar day (and hour of
  day, for maps with steps shorter than a day), fitted on the training split (the sums and
  smoothing of :func:`data_prep.climatology.fit_climatology`, read in chunks).
- ``lagrangian``: the last step's occurrence moved along the domain-wide storm motion (phase
  correlation of successive log-count maps over the last ``n_in`` steps), then smoothed.

Windows ``n`` are chosen on validation (lowest Brier score) unless ``EvalConfig.smoothing_window``
fixes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from data_prep.climatology import ClimSums, climatology_at, steps_per_day
from data_prep.errors import UserError
from data_prep.schema import COUNT, COVERAGE, LAT, LON, TIME
from data_prep.sequences import time_step
from forecast.config import EvalConfig
from forecast.evaluation.motion import advect, mean_motion, phase_correlation
from forecast.metrics.spatial import box_sum

FIXED_WINDOW = 5  # smoothing window when there is no validation split to choose one on
CHUNK_STEPS = 256  # steps read at a time when fitting the climatology


# --------------------------------------------------------------------------------------------
# reading maps


def valid_steps(ds: xr.Dataset, inits: np.ndarray, n_out: int) -> np.ndarray:
    """Step index of the valid time of each init and lead (1..n_out), -1 where not in the maps.

    Found by time (``init time + lead * step``), so holes in the time axis are honoured.
    Returns int64 (N, n_out).
    """
    times = ds[TIME].values
    valid = (
        times[inits][:, None] + np.arange(1, n_out + 1) * time_step(ds).to_timedelta64()
    )  # (N, L)
    pos = np.clip(np.searchsorted(times, valid), 0, times.size - 1)
    return np.where(times[pos] == valid, pos, -1)


def read_steps(ds: xr.Dataset, var: str, steps: np.ndarray) -> np.ndarray:
    """``ds[var]`` at the given step indices (any shape S, -1 allowed -> zeros): (*S, H, W)."""
    steps = np.asarray(steps)
    flat = steps.ravel()
    uniq, inverse = np.unique(np.maximum(flat, 0), return_inverse=True)
    data = np.asarray(ds[var].isel({TIME: uniq}).values)[inverse]  # (S, H, W)
    data[flat < 0] = 0
    return data.reshape(steps.shape + data.shape[1:])


def observations(ds: xr.Dataset, inits: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Observed strike occurrence and coverage at each init's valid times.

    Returns ``(events, observed)``, both bool (N, n_out, H, W); ``observed`` is False where the
    cell was not observed or the valid time is not in the maps.
    """
    steps = valid_steps(ds, np.asarray(inits), n_out)
    events = read_steps(ds, COUNT, steps) >= 1
    observed = read_steps(ds, COVERAGE, steps) > 0
    return events, observed


def occurrence(ds: xr.Dataset, steps: np.ndarray) -> np.ndarray:
    """Strike occurrence (count >= 1) at ``steps``, float32 (*S, H, W); a no-data cell holds
    the share of its step's observed cells struck (see :func:`observed_or_mean`)."""
    occ = (read_steps(ds, COUNT, steps) >= 1).astype(np.float32)
    return observed_or_mean(occ, read_steps(ds, COVERAGE, steps) > 0)


def observed_or_mean(x: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``x`` (..., H, W) where ``seen``, elsewhere the mean of ``x`` over the observed cells of
    the same map (NaN when the map has none): no data is filled, never read as zero."""
    n_seen = seen.sum((-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen, x, 0).sum((-2, -1), keepdims=True) / n_seen
    return np.where(seen, x, mean).astype(x.dtype)


def neighbourhood_fraction(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``x`` (..., H, W) over the ``n`` x ``n`` window of in-domain cells, float32."""
    if n <= 1:
        return x.astype(np.float32)
    ones = np.ones(x.shape[-2:])
    return (box_sum(x, n) / box_sum(ones, n)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# baselines


@dataclass
class Persistence:
    """Tomorrow looks like today: the init step's occurrence at every lead."""

    n_out: int

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Probability (N, n_out, H, W), 0 or 1."""
        occ = occurrence(ds, np.asarray(inits))  # (N, H, W)
        return np.repeat(occ[:, None], n_out or self.n_out, axis=1)


@dataclass
class SmoothedPersistence:
    """The init step's neighbourhood fraction of cells with a strike, at every lead."""

    n_out: int
    window: int = FIXED_WINDOW

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Probability (N, n_out, H, W) in [0, 1]."""
        frac = neighbourhood_fraction(occurrence(ds, np.asarray(inits)), self.window)
        return np.repeat(frac[:, None], n_out or self.n_out, axis=1)


@dataclass
class Climatology:
    """Per-cell frequency of a strike on the valid time's calendar day, (366, H, W), or season
    bin and hour of day, (61, n_hours, H, W), for sub-daily maps."""

    n_out: int
    table: np.ndarray

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Probability (N, n_out, H, W) in [0, 1]."""
        n_out = n_out or self.n_out
        times = ds[TIME].values[np.asarray(inits)]
        valid = times[:, None] + np.arange(1, n_out + 1) * time_step(ds).to_timedelta64()  # (N, L)
        clim = climatology_at(self.table, valid.ravel())  # (N * L, H, W)
        return clim.reshape(valid.shape + clim.shape[1:]).astype(np.float32)


@dataclass
class Lagrangian:
    """The init step's occurrence advected by the recent domain-wide storm motion."""

    n_in: int
    n_out: int
    window: int = FIXED_WINDOW
    max_shift: int = 8  # pixels per step searched for the motion
    shifts: dict = field(default_factory=dict, repr=False)  # step t -> shift from t-1 (cache)

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Probability (N, n_out, H, W) in [0, 1]."""
        inits = np.asarray(inits)
        n_out = n_out or self.n_out
        self._measure(ds, inits)
        last = occurrence(ds, inits)  # (N, H, W)
        out = []
        for init, field_ in zip(inits.tolist(), last, strict=True):
            velocity = self.velocity(init)  # (dy, dx) per step
            leads = np.arange(1, n_out + 1)[:, None] * velocity  # (L, 2)
            out.append(advect(field_.astype(np.float64), leads))  # (L, H, W)
        return neighbourhood_fraction(np.stack(out), self.window)

    def _pairs(self, init: int) -> range:
        """Steps t whose shift from t-1 enters the motion at ``init`` (the last n_in steps)."""
        return range(max(init - self.n_in + 2, 1), init + 1)

    def _measure(self, ds: xr.Dataset, inits: np.ndarray) -> None:
        """Phase-correlate every successive pair of steps the inits need, once per pair."""
        need = sorted({t for i in inits.tolist() for t in self._pairs(i)} - self.shifts.keys())
        for run in np.split(
            np.asarray(need, dtype=np.int64), np.flatnonzero(np.diff(need) > 1) + 1
        ):
            if run.size == 0:
                continue
            steps = np.arange(run[0] - 1, run[-1] + 1)  # consecutive steps, one before the run
            logs = np.log1p(read_steps(ds, COUNT, steps).astype(np.float64))  # (S, H, W)
            # a patch without data looks flat (its map's mean), not like a hole of zeros
            seen = read_steps(ds, COVERAGE, steps) > 0
            logs = np.nan_to_num(observed_or_mean(logs, seen))
            found = phase_correlation(logs, max_shift=self.max_shift)  # (S-1, 2)
            self.shifts.update(zip(run.tolist(), found, strict=True))

    def velocity(self, init: int) -> np.ndarray:
        """Mean shift per step over the pairs of the last n_in steps; 0 when none has strikes."""
        return mean_motion(np.array([self.shifts[t] for t in self._pairs(init)]))


# --------------------------------------------------------------------------------------------
# registry


def _persistence(ds, index, cfg: EvalConfig) -> Persistence:
    return Persistence(index.n_out)


def _smoothed(ds, index, cfg: EvalConfig) -> SmoothedPersistence:
    window = _window(lambda n: SmoothedPersistence(index.n_out, n), ds, index, cfg)
    return SmoothedPersistence(index.n_out, window)


def _climatology(ds, index, cfg: EvalConfig) -> Climatology:
    return fit_climatology(ds, training_steps(ds, index), index.n_out)


def fit_climatology(ds: xr.Dataset, use: np.ndarray, n_out: int) -> Climatology:
    """The climatology baseline fitted on the steps where ``use`` (bool (T,)) holds."""
    steps = np.flatnonzero(use)
    n_hours = steps_per_day(time_step(ds)) if ds.sizes[TIME] > 1 else 1
    sums = ClimSums(n_hours, ds.sizes[LAT], ds.sizes[LON])
    for lo in range(0, steps.size, CHUNK_STEPS):  # a decade never sits in memory
        chunk = steps[lo : lo + CHUNK_STEPS]
        sums.add(
            read_steps(ds, COUNT, chunk),
            ds[TIME].values[chunk],
            np.ones(chunk.size, dtype=bool),
            observed=read_steps(ds, COVERAGE, chunk) > 0,
        )
    return Climatology(n_out, sums.finish())


def _lagrangian(ds, index, cfg: EvalConfig) -> Lagrangian:
    shifts: dict = {}  # shared by the candidate windows: the motion does not depend on them

    def make(n: int) -> Lagrangian:
        return Lagrangian(index.n_in, index.n_out, n, cfg.lagrangian_max_shift, shifts)

    return make(_window(make, ds, index, cfg))


BASELINES: dict[str, Callable] = {
    "persistence": _persistence,
    "smoothed_persistence": _smoothed,
    "climatology": _climatology,
    "lagrangian": _lagrangian,
}


def build_baseline(name: str, ds: xr.Dataset, index, cfg: EvalConfig):
    """Baseline ``name`` fitted / tuned on ``ds`` with window ``index`` (a WindowIndex).

    Parameters
    ----------
    name : a key of :data:`BASELINES`.
    ds : maps Dataset (strike_count, coverage).
    index : window index; its train split fits the climatology, its val split tunes windows.
        Anything with ``n_in``, ``n_out`` and ``starts`` works (see :func:`all_steps_index`).
    cfg : evaluation settings.

    Returns
    -------
    An object with ``forecast(ds, inits, n_out=None) -> float32 (N, n_out, H, W)``.
    """
    if name not in BASELINES:
        raise UserError(f"unknown baseline {name!r}; valid baselines: {', '.join(BASELINES)}")
    return BASELINES[name](ds, index, cfg)


def training_steps(ds: xr.Dataset, index) -> np.ndarray:
    """Bool (T,): steps of the training windows, or every step when there is no training split."""
    starts = index.starts.get("train", np.zeros(0, np.int64))
    use = np.zeros(ds.sizes[TIME], dtype=bool)
    for offset in range(index.n_in + index.n_out):
        use[np.asarray(starts, dtype=np.int64) + offset] = True
    return use if use.any() else np.ones_like(use)


def _window(make: Callable[[int], object], ds: xr.Dataset, index, cfg: EvalConfig) -> int:
    """The smoothing window of lowest Brier score on (a sample of) the validation inits."""
    if cfg.smoothing_window > 0:
        return cfg.smoothing_window
    val = np.asarray(index.starts.get("val", np.zeros(0, np.int64))) + index.n_in - 1
    if val.size == 0:
        return FIXED_WINDOW
    pick = np.linspace(0, val.size - 1, min(val.size, cfg.select_inits)).round().astype(int)
    inits = val[np.unique(pick)]
    events, observed = observations(ds, inits, index.n_out)
    scores = []
    for n in cfg.smoothing_candidates:
        prob = make(n).forecast(ds, inits, index.n_out)
        scores.append(np.mean((prob - events)[observed & np.isfinite(prob)] ** 2))
    return int(cfg.smoothing_candidates[int(np.argmin(scores))])
