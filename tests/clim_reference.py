"""The whole-table climatology arithmetic as it was before the sums were streamed into compact
tables and finished in latitude bands: the reference tests/test_clim_sums.py compares against.

Float64 sums of the whole record, smoothed and shrunk as whole (bins, H, W) arrays."""

from __future__ import annotations

import numpy as np

from data_prep.climatology import (
    DAY_BIN_DIURNAL,
    WINDOW_DAYS,
    WINDOW_HOURS,
    _binomial,
    _seasonal,
    _smooth,
    bin_index,
    table_shape,
)
from data_prep.errors import UserError


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


def reference_finish(
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


def _domain_mean(hits: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Domain-wide frequency per day (366,) (or bin (61, n_hours)), leaning on the overall
    frequency where thin."""
    h, n = hits.sum(axis=(-2, -1)), samples.sum(axis=(-2, -1))
    overall = hits.sum() / samples.sum() if samples.sum() > 0 else 0.0
    return (h + overall) / (n + 1.0)
