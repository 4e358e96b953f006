"""Per-pixel lightning climatology: how often each cell sees at least one strike, by day of year
and, for maps with steps shorter than a day, by hour of day too.

The climatology is both a baseline forecast and an input channel of the model, so it is fitted
honestly: on training steps only, and with enough smoothing that a short record does not turn
into noise.

1. Sums: for every calendar day ``d`` (0..365, days of a leap year, so 1 March is always 60) and
   cell, ``hits[d]`` counts the used, observed steps with ``count >= 1`` and ``samples[d]`` the
   used, observed steps.
2. Seasonal smoothing: both sums are smoothed around the year (circular) with triangular weights
   that fall from 1 at the day itself to 0 beyond +-``window_days`` (default 30, see
   ``WINDOW_DAYS``).
3. Spatial smoothing: both sums are smoothed with a binomial kernel of half-width
   ``smooth_pixels`` (``[1/2, 1, 1/2]`` per axis for 1); cells beyond the domain edge count as
   unobserved, not as zero.
4. Shrinkage: ``p = (hits + k m) / (samples + k)`` with ``k = prior_samples`` and ``m[d]`` the
   domain-wide frequency of that day, so cells and days with few samples lean toward the domain
   mean. Days with no samples anywhere fall back to the overall frequency of the record.

Sub-daily maps (``steps_per_day > 1``, see :func:`steps_per_day`) get a table
``(N_DAYS // DAY_BIN_DIURNAL, steps_per_day, H, W)``: calendar days in bins of ``DAY_BIN_DIURNAL``
days (61 bins: a year of hours by day of year alone would make a table 24 times the daily one,
and the seasonal window spans several bins anyway) and hours of day (UTC) in ``steps_per_day``
bins. Both sums are smoothed circularly along the season (``window_days`` in days, rounded to
bins) and along the day (triangular, +-``window_hours``, default ``WINDOW_HOURS``) before the
spatial smoothing and the shrinkage toward the domain-wide frequency of that (season, hour) bin.
Daily maps keep the (366, H, W) table and its arithmetic unchanged.

Smoothing sums rather than frequencies keeps the estimate a ratio of counts: a field that always
has a strike gives exactly 1, a field that never has one gives exactly 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_prep.errors import UserError

N_DAYS = 366  # calendar days of a leap year; index 59 is 29 February
# Half-width of the seasonal window. Triangular weights to +-30 days (sd 12 days) beat +-15 days
# on the held-out blocks of the quickstart world (3 years, 2 of them for fitting): Brier 0.2287 vs
# 0.2326 on the test split, 0.2066 vs 0.2080 on validation; +-45 days was no better on validation.
WINDOW_DAYS = 30
DAY_BIN_DIURNAL = 6  # calendar days per season bin of a sub-daily table (366 = 61 x 6)
# Half-width of the hour-of-day window of a sub-daily table, in hours: +-2 h (weights 1, 2/3,
# 1/3) keeps a diurnal peak a few hours wide while pooling three times the samples per bin.
WINDOW_HOURS = 2
_DAY = pd.Timedelta("1D")


def steps_per_day(step: pd.Timedelta | str) -> int:
    """Hour-of-day bins of the climatology of maps with time step ``step``: 1 for a day or more
    (the daily table), else the steps in a day (at most 24; 24 when the step does not divide a
    day)."""
    step = pd.Timedelta(step)
    if step >= _DAY:
        return 1
    n = _DAY // step
    return min(int(n), 24) if n * step == _DAY else 24


def bin_index(times: np.ndarray, n_hours: int = 1) -> np.ndarray:
    """Flat climatology bin of each time, int64 (T,): the calendar day (:func:`doy_index`) for
    ``n_hours == 1``, else ``season_bin * n_hours + hour_bin`` of the sub-daily table."""
    days = doy_index(times)
    if n_hours == 1:
        return days
    t = pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]"))
    seconds = (t - t.normalize()).total_seconds().to_numpy()
    hours = np.minimum((seconds * n_hours / 86400.0).astype(np.int64), n_hours - 1)
    return (days // DAY_BIN_DIURNAL) * n_hours + hours


def table_shape(n_hours: int, h: int, w: int) -> tuple[int, ...]:
    """Shape of the climatology table: (366, H, W) daily, (61, n_hours, H, W) sub-daily."""
    if n_hours == 1:
        return (N_DAYS, h, w)
    return (N_DAYS // DAY_BIN_DIURNAL, n_hours, h, w)


def doy_index(times: np.ndarray) -> np.ndarray:
    """Calendar-day index 0..365 of each time (days of a leap year), int64 (T,).

    In common years days from 1 March on are shifted by one, so a calendar date keeps its index
    every year.
    """
    t = pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]"))
    doy = t.day_of_year.to_numpy().astype(np.int64) - 1
    return doy + ((~t.is_leap_year) & (doy >= 59)).astype(np.int64)


def doy_sums(
    counts: np.ndarray,
    times: np.ndarray,
    use: np.ndarray,
    observed: np.ndarray | None = None,
    n_hours: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Strike-occurrence and sample counts per calendar day (and hour of day) and cell.

    Parameters
    ----------
    counts : int (T, H, W) strike counts.
    times : datetime64 (T,).
    use : bool (T,) steps to count (the training steps).
    observed : optional (T, H, W) coverage; cells with 0 are not counted.
    n_hours : hour-of-day bins (:func:`steps_per_day` of the maps' step; 1 = daily table).

    Returns
    -------
    hits, samples : float64 :func:`table_shape` ((366, H, W) daily). Sums from chunks of a long
        record may be added up.
    """
    counts = np.asarray(counts)
    if counts.ndim != 3 or len(times) != counts.shape[0] or len(use) != counts.shape[0]:
        raise UserError(
            f"climatology: counts {counts.shape}, times ({len(times)},) and use ({len(use)},) "
            "must be (T, H, W), (T,) and (T,)"
        )
    days = bin_index(times, n_hours)
    shape = table_shape(n_hours, *counts.shape[1:])
    hits = np.zeros((int(np.prod(shape[:-2])), *counts.shape[1:]))  # (bins, H, W)
    samples = np.zeros_like(hits)
    use = np.asarray(use, dtype=bool)
    for d in np.unique(days[use]):
        sel = use & (days == d)
        obs = (
            np.ones(counts[sel].shape, bool) if observed is None else np.asarray(observed[sel]) > 0
        )
        hits[d] += ((counts[sel] >= 1) & obs).sum(axis=0)
        samples[d] += obs.sum(axis=0)
    return hits.reshape(shape), samples.reshape(shape)


def finish_climatology(
    hits: np.ndarray,
    samples: np.ndarray,
    *,
    window_days: int = WINDOW_DAYS,
    smooth_pixels: int = 1,
    prior_samples: float = 10.0,
    window_hours: int = WINDOW_HOURS,
) -> np.ndarray:
    """Smoothed, shrunk frequency of occurrence float32 from :func:`doy_sums`, of their shape
    ((366, H, W) daily, (61, n_hours, H, W) sub-daily)."""
    if min(window_days, smooth_pixels, prior_samples, window_hours) < 0:
        raise UserError(
            f"climatology: window_days {window_days}, smooth_pixels {smooth_pixels}, "
            f"prior_samples {prior_samples} and window_hours {window_hours} must not be negative"
        )
    hits_t, samples_t = hits, samples
    if hits.ndim == 4:  # sub-daily: the season in bins of days, then the hour of day
        n_hours = hits.shape[1]
        half_bins = int(round(window_days / DAY_BIN_DIURNAL))
        half_hours = int(window_hours * n_hours // 24)
        hits_t = np.moveaxis(_seasonal(np.moveaxis(hits, 1, 0), half_hours), 0, 1)
        samples_t = np.moveaxis(_seasonal(np.moveaxis(samples, 1, 0), half_hours), 0, 1)
        window_days = half_bins
    hits_t = _seasonal(hits_t, window_days)  # (366, H, W) or (61, n_hours, H, W)
    samples_t = _seasonal(samples_t, window_days)
    spatial = _binomial(smooth_pixels)
    y, x = hits.ndim - 2, hits.ndim - 1
    hits_s = _smooth(_smooth(hits_t, spatial, axis=y), spatial, axis=x)
    samples_s = _smooth(_smooth(samples_t, spatial, axis=y), spatial, axis=x)
    prior = _domain_mean(hits_t, samples_t)[..., None, None]  # (366, 1, 1) or (61, n_hours, 1, 1)
    k = float(prior_samples)
    denom = samples_s + k
    p = np.where(denom > 0, (hits_s + k * prior) / np.where(denom > 0, denom, 1.0), prior)
    return np.clip(p, 0.0, 1.0).astype(np.float32)


def fit_climatology(
    counts: np.ndarray,
    times: np.ndarray,
    use: np.ndarray,
    *,
    window_days: int = WINDOW_DAYS,
    smooth_pixels: int = 1,
    observed: np.ndarray | None = None,
    prior_samples: float = 10.0,
    n_hours: int = 1,
    window_hours: int = WINDOW_HOURS,
) -> np.ndarray:
    """Per-cell frequency of ``count >= 1`` by calendar day (and hour of day), fitted on the
    steps in ``use``.

    Parameters
    ----------
    counts : int (T, H, W) strike counts.
    times : datetime64 (T,) step labels.
    use : bool (T,) steps to fit on (training steps only).
    window_days : half-width of the circular seasonal smoothing, in days (weights reach 0 there).
    smooth_pixels : half-width of the spatial smoothing, in cells (0 = none).
    observed : optional (T, H, W) coverage; unobserved cells are left out.
    prior_samples : weight of the domain-wide mean of the day, in samples.
    n_hours : hour-of-day bins, :func:`steps_per_day` of the maps' step (1: by day only).
    window_hours : half-width of the circular hour-of-day smoothing, in hours (sub-daily only).

    Returns
    -------
    np.ndarray float32 (366, H, W) (daily) or (61, n_hours, H, W) (sub-daily) in [0, 1]; look up
    times with :func:`climatology_at`.
    """
    hits, samples = doy_sums(counts, times, use, observed, n_hours)
    return finish_climatology(
        hits,
        samples,
        window_days=window_days,
        smooth_pixels=smooth_pixels,
        prior_samples=prior_samples,
        window_hours=window_hours,
    )


def climatology_at(clim: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The climatology of each time's calendar day (and hour of day): (366, H, W) or
    (61, n_hours, H, W) -> (T, H, W)."""
    clim = np.asarray(clim)
    n_hours = clim.shape[1] if clim.ndim == 4 else 1
    if clim.shape[:-2] != table_shape(n_hours, 1, 1)[:-2]:
        raise UserError(
            f"climatology: array of shape {clim.shape} is not ({N_DAYS}, H, W) or "
            f"({N_DAYS // DAY_BIN_DIURNAL}, hours, H, W)"
        )
    return clim.reshape(-1, *clim.shape[-2:])[bin_index(times, n_hours)]


def _seasonal(a: np.ndarray, half: int) -> np.ndarray:
    """Circular smoothing along axis 0 with weights ``1 - |k| / (half + 1)``, ``|k| <= half``.

    The triangle is two box sums of width ``half + 1`` (running sums), so the cost does not grow
    with the window and integer counts are summed exactly.
    """
    width = half + 1
    return _box(_box(a, 0, width - 1), -(width - 1), 0) / width


def _box(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``out[i] = sum(a[(i + j) % n] for j in lo..hi)`` along axis 0."""
    n = a.shape[0]
    padded = a[np.arange(lo, n + hi) % n]  # (n + hi - lo, ...)
    run = np.concatenate([np.zeros((1, *a.shape[1:])), np.cumsum(padded, axis=0)])
    return run[hi - lo + 1 :] - run[:n]


def _binomial(half: int) -> np.ndarray:
    """Binomial weights of width 2 half + 1 scaled so the centre weight is 1."""
    w = np.array([1.0])
    for _ in range(2 * half):
        w = np.convolve(w, [1.0, 1.0])
    return w / w[half]


def _smooth(a: np.ndarray, weights: np.ndarray, *, axis: int) -> np.ndarray:
    """Weighted sum of shifted copies of ``a`` along ``axis``, zero beyond the edges;
    ``weights`` has odd length, centre = no shift."""
    half = len(weights) // 2
    n = a.shape[axis]
    out = np.zeros_like(a, dtype=np.float64)
    for k, w in zip(range(-half, half + 1), weights, strict=True):
        if abs(k) < n:
            dst = [slice(None)] * a.ndim
            src = [slice(None)] * a.ndim
            dst[axis] = slice(max(k, 0), n + min(k, 0))
            src[axis] = slice(max(-k, 0), n - max(k, 0))
            out[tuple(dst)] += w * a[tuple(src)]
    return out


def _domain_mean(hits: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Domain-wide frequency per day (366,) (or bin (61, n_hours)), leaning on the overall
    frequency where thin."""
    h, n = hits.sum(axis=(-2, -1)), samples.sum(axis=(-2, -1))
    overall = hits.sum() / samples.sum() if samples.sum() > 0 else 0.0
    return (h + overall) / (n + 1.0)
