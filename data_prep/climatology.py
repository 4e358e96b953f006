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
_COUNT_TYPES = (np.uint8, np.uint16, np.uint32, np.uint64)  # sums widen along this list
BLOCK_BYTES = 1 << 26  # float64 sums of one band of latitude rows when finishing a table


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


class ClimSums:
    """Strike-occurrence and sample counts per climatology bin (calendar day, or season bin and
    hour of day) and cell, added up block of steps by block of steps.

    The tables are unsigned integers of the narrowest width that holds them (uint8 up to 255
    steps a bin, so an hourly record needs 16 bits only after 42 years; a daily one after 255).
    The bound: an entry of bin ``d`` counts at most one for every used step labelled ``d``, so
    no entry exceeds ``steps[d]``, the used steps of that bin added so far; :meth:`add` widens
    both tables before that count could pass the largest value of their type.

    Attributes
    ----------
    hits, samples : unsigned int (bins, H, W): steps with ``count >= 1`` and observed steps.
    steps : int64 (bins,) used steps added per bin.
    shape : :func:`table_shape` of the finished table.
    """

    def __init__(self, n_hours: int, h: int, w: int):
        self.n_hours = int(n_hours)
        self.shape = table_shape(self.n_hours, h, w)
        bins = int(np.prod(self.shape[:-2]))
        self.hits = np.zeros((bins, h, w), np.uint8)
        self.samples = np.zeros_like(self.hits)
        self.steps = np.zeros(bins, np.int64)

    def add(
        self,
        counts: np.ndarray,
        times: np.ndarray,
        use: np.ndarray,
        observed: np.ndarray | None = None,
    ) -> None:
        """Add the steps ``use`` (bool (T,)) of ``counts`` (int (T, H, W)) labelled ``times``
        (datetime64 (T,)); cells where ``observed`` (optional (T, H, W)) is 0 are not counted."""
        counts = np.asarray(counts)
        if counts.ndim != 3 or len(times) != counts.shape[0] or len(use) != counts.shape[0]:
            raise UserError(
                f"climatology: counts {counts.shape}, times ({len(times)},) and use ({len(use)},) "
                "must be (T, H, W), (T,) and (T,)"
            )
        if counts.shape[1:] != self.shape[-2:]:
            raise UserError(f"climatology: maps {counts.shape[1:]}, table {self.shape[-2:]}")
        use = np.asarray(use, dtype=bool)
        days = bin_index(times, self.n_hours)
        steps = self.steps + np.bincount(days[use], minlength=self.steps.size)
        self._widen(int(steps.max(initial=0)))
        self.steps = steps
        kind = self.hits.dtype
        for d in np.unique(days[use]):
            sel = np.flatnonzero(use & (days == d))
            struck = counts[sel] >= 1
            if observed is None:
                self.samples[d] += kind.type(sel.size)
            else:
                obs = np.asarray(observed[sel]) > 0
                struck &= obs
                self.samples[d] += obs.sum(axis=0, dtype=kind)
            self.hits[d] += struck.sum(axis=0, dtype=kind)

    def _widen(self, most: int) -> None:
        """Both tables in the narrowest unsigned type holding ``most`` (never narrower)."""
        kind = next(k for k in _COUNT_TYPES if np.iinfo(k).max >= most)
        if np.dtype(kind).itemsize > self.hits.dtype.itemsize:
            self.hits, self.samples = self.hits.astype(kind), self.samples.astype(kind)

    def finish(self, **kwargs) -> np.ndarray:
        """The climatology of these sums (:func:`finish_climatology`, ``kwargs`` passed on)."""
        return finish_climatology(
            self.hits.reshape(self.shape), self.samples.reshape(self.shape), **kwargs
        )


def finish_climatology(
    hits: np.ndarray,
    samples: np.ndarray,
    *,
    window_days: int = WINDOW_DAYS,
    smooth_pixels: int = 1,
    prior_samples: float = 10.0,
    window_hours: int = WINDOW_HOURS,
    block_bytes: int = BLOCK_BYTES,
) -> np.ndarray:
    """Smoothed, shrunk frequency of occurrence float32 from the sums of :class:`ClimSums` (any
    numeric type), of their shape ((366, H, W) daily, (61, n_hours, H, W) sub-daily).

    Worked in bands of latitude rows, about ``block_bytes`` of float64 sums each (plus the rows
    the spatial smoothing reaches), so no float64 copy of the whole table is made: a first pass
    adds up the domain-wide sums of the prior, a second smooths and shrinks each band. Every
    entry is the whole-table arithmetic's, bit for bit, except that the domain-wide sums of a
    table of several bands are added band by band (within a few ulp of one sum over the domain).
    """
    if min(window_days, smooth_pixels, prior_samples, window_hours) < 0:
        raise UserError(
            f"climatology: window_days {window_days}, smooth_pixels {smooth_pixels}, "
            f"prior_samples {prior_samples} and window_hours {window_hours} must not be negative"
        )
    smooth = {"window_days": window_days, "window_hours": window_hours}
    h = hits.shape[-2]
    rows = max(1, int(block_bytes) // (8 * int(np.prod(hits.shape)) // h or 1))
    bands = [(y, min(y + rows, h)) for y in range(0, h, rows)]
    # pass 1: domain-wide sums of the season (and hour) smoothed sums, per bin and overall
    bin_h = bin_n = 0.0
    all_h = all_n = 0.0
    for a, b in bands:
        ht, nt = (_temporal(t[..., a:b, :], **smooth) for t in (hits, samples))
        bin_h, bin_n = bin_h + ht.sum(axis=(-2, -1)), bin_n + nt.sum(axis=(-2, -1))
        all_h, all_n = all_h + ht.sum(), all_n + nt.sum()
    overall = all_h / all_n if all_n > 0 else 0.0
    prior = ((bin_h + overall) / (bin_n + 1.0))[..., None, None]  # (366 | 61, n_hours, 1, 1)
    # pass 2: each band with the rows its spatial smoothing reaches
    out = np.empty(hits.shape, np.float32)
    spatial, k = _binomial(smooth_pixels), float(prior_samples)
    y, x = hits.ndim - 2, hits.ndim - 1
    for a, b in bands:
        lo, hi = max(a - smooth_pixels, 0), min(b + smooth_pixels, h)
        hs, ns = (
            _smooth(
                _smooth(_temporal(t[..., lo:hi, :], **smooth), spatial, axis=y), spatial, axis=x
            )[..., a - lo : b - lo, :]
            for t in (hits, samples)
        )
        denom = ns + k
        p = np.where(denom > 0, (hs + k * prior) / np.where(denom > 0, denom, 1.0), prior)
        out[..., a:b, :] = np.clip(p, 0.0, 1.0)
    return out


def _temporal(sums: np.ndarray, *, window_days: int, window_hours: int) -> np.ndarray:
    """float64 ``sums`` smoothed along the season (and, sub-daily, first the hour of day)."""
    t = np.asarray(sums, dtype=np.float64)
    if t.ndim == 4:  # sub-daily: the season in bins of days, then the hour of day
        half_hours = int(window_hours * t.shape[1] // 24)
        t = np.moveaxis(_seasonal(np.moveaxis(t, 1, 0), half_hours), 0, 1)
        window_days = int(round(window_days / DAY_BIN_DIURNAL))
    return _seasonal(t, window_days)


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
    counts = np.asarray(counts)
    if counts.ndim != 3:
        raise UserError(f"climatology: counts {counts.shape} must be (T, H, W)")
    sums = ClimSums(n_hours, *counts.shape[1:])
    sums.add(counts, times, use, observed)
    return sums.finish(
        window_days=window_days,
        smooth_pixels=smooth_pixels,
        prior_samples=prior_samples,
        window_hours=window_hours,
    )


def climatology_at(clim: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The climatology of each time's calendar day (and hour of day): (366, H, W) or
    (61, n_hours, H, W) -> (T, H, W). ``clim`` is an array, or a table that reads its own flat
    bins (``take_bins``, e.g. a coded sub-daily table kept at half the bytes)."""
    coded = hasattr(clim, "take_bins")
    if not coded:
        clim = np.asarray(clim)
    n_hours = clim.shape[1] if clim.ndim == 4 else 1
    if clim.shape[:-2] != table_shape(n_hours, 1, 1)[:-2]:
        raise UserError(
            f"climatology: array of shape {clim.shape} is not ({N_DAYS}, H, W) or "
            f"({N_DAYS // DAY_BIN_DIURNAL}, hours, H, W)"
        )
    bins = bin_index(times, n_hours)
    if coded:
        return clim.take_bins(bins)
    return clim.reshape(-1, *clim.shape[-2:])[bins]


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
