"""Input channels of the lightning forecaster, and the training-split statistics they need.

Every map step becomes ``n_channels(stats)`` input channels (:func:`input_features`; 10,
``N_CHANNELS``, for daily maps, 12 for sub-daily ones)::

    0  log1p(strike_count) / count_scale     strike intensity, about 0..1
    1  strike_count >= 1                     occurrence
    2  climatology of the step's calendar day (and hour)  P(count >= 1) fitted on training steps
    3  latitude, scaled to -1..1 over the training grid
    4  longitude, scaled to -1..1 over the training grid
    5  sin(2 pi day-of-year / 365.25)
    6  cos(2 pi day-of-year / 365.25)
    7  share of the observed cells with >= 1 strike     domain-wide activity, the same in every cell
    8  log((share + 0.01) / (climatological share + 0.01))  that activity against the calendar day's
    9  coverage: 1 where the network observed the cell, 0 where there is no data
   10  sin(2 pi local solar hour / 24)           sub-daily maps only (see below)
   11  cos(2 pi local solar hour / 24)

Maps with steps shorter than a day have a climatology by day of year and hour of day
(:mod:`data_prep.climatology`), and two more channels: the hour of day by local solar time
(UTC hour + longitude / 15), which is what drives convection, so a cell's afternoon reads the
same at every longitude. Daily maps keep their ten channels and their meaning, so daily
checkpoints load unchanged; :func:`n_channels` gives the count for a fitted
:class:`FeatureStats`. Sub-daily windows also carry ``clim``, the climatology of every lead's own
valid time, for the model's prior (the last input step's hour is not the hour of lead 6).

Missing data is never read as zero strikes. Where a cell has no data (coverage 0), channels 0
and 1 hold the cell's climatological expectation instead of an observed zero: occurrence
``p`` (channel 2) and intensity ``p * log(2) / count_scale`` (one strike, weighted by ``p``);
channel 9 tells the model which cells these are. Channels 7 and 8 compare the observed cells'
share with the climatological share of the same cells; a step without any observed cell gets
the climatological share (ratio 0).

Channels 7 and 8 give every cell the state of the whole domain that step: quiet and active spells
span the domain (in the synthetic world a domain-wide activity with a memory of days; in real
networks the synoptic regime), while the convolutions see only a few hundred kilometres around
a cell. Without them the model regresses to the training split's mean activity and forecasts
too low in an active month and too high in a quiet one.

:func:`fit_stats` fits the climatology and ``count_scale`` on the training split only (a
sub-daily table packed for checkpoints, :mod:`forecast.training.clim_codec`);
:func:`init_features` makes the inputs of forecasts from their init steps (no targets needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import xarray as xr

from data_prep.climatology import ClimSums, climatology_at, steps_per_day
from data_prep.errors import UserError
from data_prep.schema import COUNT, COVERAGE, LAT, LON, TIME
from data_prep.sequences import WindowIndex, time_step
from forecast.training.clim_codec import pack_table, unpack_codes

N_CHANNELS = 10  # channels of daily maps
COVERAGE_CHANNEL = 9  # appended last: older channel numbers (clim_channel 2) keep their meaning
HOUR_CHANNELS = 2  # sin, cos of the local solar hour, after the coverage, sub-daily maps only
_SHARE_EPS = 0.01  # keeps the log ratio of channel 8 finite on days without a strike
_CHUNK_STEPS = 128  # steps read at a time when fitting statistics
_COUNT_QUANTILE = 0.99  # count_scale = log1p of this quantile of positive training counts
_MAX_COUNT_BIN = 1 << 16  # counts above are binned together when taking the quantile


@dataclass
class FeatureStats:
    """What the input features need from the training split.

    climatology : float32 P(count >= 1), (366, H, W) by calendar day, or (61, n_hours, H, W)
        by season bin and hour of day for sub-daily maps (see data_prep.climatology); a
        sub-daily table fitted or read back is a ``clim_codec.CodedTable`` (half the bytes).
    count_scale : log1p(count) is divided by this.
    lat, lon : float64 (H,), (W,) cell centres of the training grid.
    packed : the sub-daily table as a checkpoint stores it (:mod:`forecast.training.clim_codec`);
        ``climatology`` is then exactly its unpacked table, the one predict reads back.
    """

    climatology: np.ndarray
    count_scale: float
    lat: np.ndarray
    lon: np.ndarray
    packed: dict | None = field(default=None, repr=False, compare=False)

    def to_state(self) -> dict:
        """Plain tensors, floats and lists: safe for ``torch.load(weights_only=True)``. A daily
        table is stored as it is (float32, bit for bit); a sub-daily one packed, within
        ``clim_codec.TOLERANCE`` (exactly ``climatology`` when it came from
        :func:`pack_climatology`)."""
        if self.diurnal:
            table = {"climatology_packed": self.packed or pack_table(self.climatology)}
        else:
            clim = torch.from_numpy(np.ascontiguousarray(self.climatology, np.float32))
            table = {"climatology": clim}
        return {
            **table,
            "count_scale": float(self.count_scale),
            "lat": [float(v) for v in self.lat],
            "lon": [float(v) for v in self.lon],
        }

    @classmethod
    def from_state(cls, state: dict) -> FeatureStats:
        """Inverse of :meth:`to_state`; also reads checkpoints that stored a sub-daily table
        as float32."""
        packed = state.get("climatology_packed")
        if packed is not None:
            clim = unpack_codes(packed)
        else:
            clim = state["climatology"]
            clim = clim.cpu().numpy() if isinstance(clim, torch.Tensor) else np.asarray(clim)
            clim = np.asarray(clim, dtype=np.float32)  # no copy of a float32 table
        return cls(
            climatology=clim,
            count_scale=float(state["count_scale"]),
            lat=np.asarray(state["lat"], dtype=np.float64),
            lon=np.asarray(state["lon"], dtype=np.float64),
            packed=packed,
        )

    @property
    def diurnal(self) -> bool:
        """Whether the climatology has an hour-of-day axis (maps with sub-daily steps)."""
        return self.climatology.ndim == 4


def pack_climatology(stats: FeatureStats) -> FeatureStats:
    """``stats`` with a sub-daily table replaced by its packed self, kept coded
    (``clim_codec.CodedTable``, within ``clim_codec.TOLERANCE``), so training reads the table its
    checkpoints hand to predict; daily stats and stats packed already unchanged."""
    if not stats.diurnal or stats.packed is not None:
        return stats
    state = pack_table(np.asarray(stats.climatology))
    return FeatureStats(unpack_codes(state), stats.count_scale, stats.lat, stats.lon, state)


def n_channels(stats: FeatureStats) -> int:
    """Input channels :func:`input_features` makes with ``stats``: 10 daily, 12 sub-daily."""
    return N_CHANNELS + (HOUR_CHANNELS if stats.diurnal else 0)


def fit_stats(ds: xr.Dataset, index: WindowIndex, **clim_kwargs) -> FeatureStats:
    """Fit the climatology and count scale on the steps of the training windows only.

    Parameters
    ----------
    ds : maps Dataset (``strike_count``, ``coverage``), read in chunks of steps.
    index : window index of ``ds``; only ``index.steps("train")`` are read for fitting.
    clim_kwargs : passed to :func:`data_prep.climatology.finish_climatology`.

    The sums are added up in compact integer tables as the steps are read, and the table is
    finished in bands of latitude rows (:class:`data_prep.climatology.ClimSums`), so memory does
    not grow with the length of the record.

    A sub-daily table comes back through :func:`pack_climatology`: within
    ``clim_codec.TOLERANCE`` of the fitted one and exactly the table its checkpoints store.
    """
    n_steps = ds.sizes[TIME]
    if index.n_steps and index.n_steps != n_steps:
        raise UserError(
            f"window index has {index.n_steps} steps, maps {n_steps}; rebuild the index"
        )
    train = index.steps("train", n_steps)
    if not train.any():
        raise UserError("window index: no training window to fit feature statistics on")
    times = ds[TIME].values
    n_hours = steps_per_day(time_step(ds)) if n_steps > 1 else 1
    sums = ClimSums(n_hours, ds.sizes[LAT], ds.sizes[LON])
    hist = np.zeros(_MAX_COUNT_BIN + 1, dtype=np.int64)
    for a in range(0, n_steps, _CHUNK_STEPS):
        use = train[a : a + _CHUNK_STEPS]
        if not use.any():
            continue
        part = ds.isel({TIME: slice(a, a + _CHUNK_STEPS)})
        counts, cov = part[COUNT].values, part[COVERAGE].values  # (t, H, W)
        sums.add(counts, times[a : a + _CHUNK_STEPS], use, cov)
        positive = counts[use][(cov[use] > 0) & (counts[use] >= 1)]
        hist += np.bincount(np.minimum(positive, _MAX_COUNT_BIN), minlength=_MAX_COUNT_BIN + 1)
        del counts, cov, positive
    clim = sums.finish(**clim_kwargs)
    del sums
    lat, lon = ds[LAT].values.astype(np.float64), ds[LON].values.astype(np.float64)
    return pack_climatology(FeatureStats(clim, _count_scale(hist), lat, lon))


def _count_scale(hist: np.ndarray) -> float:
    """log1p of the 99th percentile of positive counts (histogram by count), at least log(2)."""
    if hist.sum() == 0:
        return float(np.log1p(1.0))
    q = int(np.searchsorted(np.cumsum(hist), _COUNT_QUANTILE * hist.sum()))
    return float(max(np.log1p(q), np.log1p(1.0)))


def input_features(
    counts: np.ndarray,
    coverage: np.ndarray,
    times: np.ndarray,
    stats: FeatureStats,
    lat: np.ndarray,
    lon: np.ndarray,
) -> np.ndarray:
    """Input channels of each step (see the module docstring).

    Parameters
    ----------
    counts : int (T, H, W) strike counts.
    coverage : (T, H, W) 1 where the cell was observed, 0 where there is no data.
    times : datetime64 (T,) step labels.
    stats : fitted :class:`FeatureStats` on the same grid.
    lat, lon : (H,), (W,) cell centres.

    Returns
    -------
    np.ndarray float32 (T, n_channels(stats), H, W)
    """
    counts = np.asarray(counts)
    t, h, w = counts.shape
    if stats.climatology.shape[-2:] != (h, w) or len(lat) != h or len(lon) != w:
        raise UserError(
            f"maps grid {(h, w)} (lat {len(lat)}, lon {len(lon)}) differs from the grid the "
            f"statistics were fitted on {stats.climatology.shape[-2:]}; "
            "use maps on the training grid"
        )
    seen = np.asarray(coverage) > 0  # (T, H, W)
    out = np.empty((t, n_channels(stats), h, w), dtype=np.float32)
    clim = climatology_at(stats.climatology, times)  # (T, H, W)
    c = counts.astype(np.float32)
    scale = np.float32(stats.count_scale)
    out[:, 0] = np.where(seen, np.log1p(c), clim * np.float32(np.log(2.0))) / scale
    out[:, 1] = np.where(seen, c >= 1, clim)
    out[:, 2] = clim
    out[:, 3] = _scaled(lat, stats.lat)[None, :, None]
    out[:, 4] = _scaled(lon, stats.lon)[None, None, :]
    angle = 2 * np.pi * _day_of_year(times) / 365.25  # (T,)
    out[:, 5] = np.sin(angle)[:, None, None]
    out[:, 6] = np.cos(angle)[:, None, None]
    share, clim_share = activity_shares(counts >= 1, clim, seen)
    out[:, 7] = share[:, None, None]
    out[:, 8] = np.log((share + _SHARE_EPS) / (clim_share + _SHARE_EPS))[:, None, None]
    out[:, COVERAGE_CHANNEL] = seen
    if stats.diurnal:
        hour = 2 * np.pi * _local_solar_hour(times, lon) / 24  # (T, W)
        out[:, COVERAGE_CHANNEL + 1] = np.sin(hour)[:, None, :]
        out[:, COVERAGE_CHANNEL + 2] = np.cos(hour)[:, None, :]
    return out


def lead_climatology(stats: FeatureStats, times: np.ndarray) -> np.ndarray:
    """The climatology at the valid ``times`` (..., ) of forecast leads, float32 (..., H, W)."""
    times = np.asarray(times)
    clim = climatology_at(stats.climatology, times.ravel())  # (N, H, W)
    return np.ascontiguousarray(clim.reshape(*times.shape, *clim.shape[1:]), dtype=np.float32)


def lead_prior(
    stats: FeatureStats, ds: xr.Dataset, inits: np.ndarray, n_out: int
) -> dict[str, torch.Tensor]:
    """The model's prior input for forecasts made at step indices ``inits`` (N,) of ``ds``:
    ``{"clim": float32 (N, n_out, H, W)}``, each lead's climatology at its valid time, for
    sub-daily stats; ``{}`` for daily ones (the model then reads the last input step's)."""
    if not stats.diurnal:
        return {}
    step = time_step(ds).to_timedelta64()
    valid = ds[TIME].values[np.asarray(inits)][:, None] + np.arange(1, n_out + 1) * step
    return {"clim": torch.from_numpy(lead_climatology(stats, valid))}


def check_input_channels(in_channels: int, path: object, stats: FeatureStats | None = None) -> None:
    """Refuse a checkpoint whose model reads another number of input channels than
    :func:`input_features` makes with its ``stats`` (daily without them; one trained before the
    coverage channel has 9)."""
    want = N_CHANNELS if stats is None else n_channels(stats)
    if int(in_channels) == want:
        return
    why = "trained before the coverage input; " if int(in_channels) == 9 else ""
    raise UserError(
        f"checkpoint {path}: model reads {in_channels} input channels, this version makes "
        f"{want} ({why}retrain it with `strikecast train`)"
    )


def activity_shares(
    struck: np.ndarray, clim: np.ndarray, seen: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Share of the observed cells struck, and their climatological share, float64 (T,) each.

    ``struck``, ``clim``, ``seen``: (T, H, W). A step without an observed cell gets the
    climatological share of the whole domain for both, so its log ratio is 0.
    """
    n_seen = seen.sum((1, 2), dtype=np.float64)  # (T,)
    fallback = clim.mean((1, 2), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (struck & seen).sum((1, 2), dtype=np.float64) / n_seen
        clim_share = np.where(seen, clim, 0).sum((1, 2), dtype=np.float64) / n_seen
    none = n_seen == 0
    return np.where(none, fallback, share), np.where(none, fallback, clim_share)


def _scaled(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``x`` mapped so that the span of ``ref`` becomes -1..1."""
    lo, hi = float(np.min(ref)), float(np.max(ref))
    half = (hi - lo) / 2 or 1.0
    return ((np.asarray(x, dtype=np.float64) - (lo + hi) / 2) / half).astype(np.float32)


def _day_of_year(times: np.ndarray) -> np.ndarray:
    """Fractional day of year (0 = 1 January 00:00 UTC), float64 (T,)."""
    t = pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]"))
    return (t - t.normalize()).total_seconds().to_numpy() / 86400.0 + t.day_of_year.to_numpy() - 1


def _local_solar_hour(times: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Mean local solar hour 0..24 of each time at each longitude, float64 (T, W)."""
    t = pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]"))
    utc = (t - t.normalize()).total_seconds().to_numpy() / 3600.0  # (T,)
    return (utc[:, None] + np.asarray(lon, dtype=np.float64)[None, :] / 15.0) % 24.0


def init_features(
    ds: xr.Dataset, inits: np.ndarray, n_in: int, stats: FeatureStats
) -> torch.Tensor:
    """Inputs of forecasts made at ``inits`` (last observed steps), no targets needed.

    Parameters
    ----------
    ds : maps Dataset.
    inits : int (N,) step index of the last input step of each forecast.
    n_in : input steps.
    stats : fitted :class:`FeatureStats`.

    Returns
    -------
    torch.Tensor float32 (N, n_in, C, H, W)
    """
    inits = np.atleast_1d(np.asarray(inits, dtype=np.int64))
    n_steps = ds.sizes[TIME]
    if inits.size and (inits.min() < n_in - 1 or inits.max() >= n_steps):
        raise UserError(
            f"forecast init steps must lie in {n_in - 1}..{n_steps - 1} "
            f"(need {n_in} past steps); got {inits.min()}..{inits.max()}"
        )
    steps = inits[:, None] - np.arange(n_in - 1, -1, -1)  # (N, n_in) input steps, oldest first
    needed, where = np.unique(steps, return_inverse=True)  # each step read and featurised once
    part = ds.isel({TIME: needed})
    counts, cov = part[COUNT].values, part[COVERAGE].values  # (U, H, W) each
    feats = input_features(counts, cov, part[TIME].values, stats, ds[LAT].values, ds[LON].values)
    return torch.from_numpy(feats[where.reshape(steps.shape)])  # (N, n_in, C, H, W)
