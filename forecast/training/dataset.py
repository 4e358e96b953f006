"""Window index -> lazily sliced input/target tensors for the lightning forecaster.

Input channels and their statistics are in :mod:`forecast.training.features`.
:class:`WindowDataset` reads the steps of one window per item: from numpy arrays loaded once
when the maps are small (< ``EAGER_BYTES``), else from the maps file through a handle of each
loader process's own. Tensors come last. Input features depend on one step only, so small maps
are featurised once for all windows, and other maps once per step in each loader process while
the step stays in its cache (:mod:`forecast.training.steps`).
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from data_prep.errors import UserError
from data_prep.io import EAGER_BYTES
from data_prep.schema import COUNT, COVERAGE, LAT, LON, TIME
from forecast.training.features import FeatureStats, input_features, lead_climatology, n_channels
from forecast.training.steps import STEP_CACHE_BYTES, MapSteps


class WindowDataset(Dataset):
    """Windows of a maps Dataset as tensors; each item reads only the steps it needs.

    Parameters
    ----------
    ds : maps Dataset.
    starts : int (N,) window starts (``index.starts[split]``).
    n_in, n_out : input steps and lead times.
    stats : :class:`FeatureStats` from :func:`forecast.training.features.fit_stats`.
    thresholds : count thresholds of the targets, P(count >= t).
    in_memory : load the two arrays once as numpy (default: when they take < ``EAGER_BYTES``,
        the limit under which ``open_maps`` loads a file); False reads steps from the maps file,
        each loader process through its own handle (:class:`forecast.training.steps.MapSteps`).
    cache_bytes : budget of each process's cache of read and featurised steps.

    Items are dicts: ``x`` float32 (n_in, C, H, W), ``y`` float32 (n_out, n_thr, H, W),
    ``mask`` float32 (n_out, H, W) target coverage, ``init`` int64 index of the last input step;
    sub-daily maps add ``clim`` float32 (n_out, H, W), the climatology of each lead's valid time.
    """

    def __init__(
        self,
        ds: xr.Dataset,
        starts: np.ndarray,
        *,
        n_in: int,
        n_out: int,
        stats: FeatureStats,
        thresholds: tuple[int, ...] = (1,),
        in_memory: bool | None = None,
        cache_bytes: int = STEP_CACHE_BYTES,
    ):
        self.starts = np.asarray(starts, dtype=np.int64)
        self.n_in, self.n_out, self.stats = int(n_in), int(n_out), stats
        self.thresholds = np.asarray(thresholds, dtype=np.int64)
        n_steps = ds.sizes[TIME]
        if self.starts.size and (
            self.starts.min() < 0 or self.starts.max() + n_in + n_out > n_steps
        ):
            raise UserError(
                f"window starts run past the {n_steps} steps of the maps; rebuild the index"
            )
        if self.thresholds.size == 0 or self.thresholds.min() < 1:
            raise UserError(
                f"config model.thresholds {list(thresholds)} must be counts >= 1; e.g. [1]"
            )
        self.lat, self.lon = ds[LAT].values, ds[LON].values
        if in_memory is None:
            # one limit with open_maps: maps it loads eagerly are loaded once as numpy here
            in_memory = ds[COUNT].nbytes + ds[COVERAGE].nbytes < EAGER_BYTES
        self.steps = MapSteps(
            ds,
            self._featurise,
            channels=n_channels(stats),
            in_memory=in_memory,
            cache_bytes=cache_bytes,
        )
        self.times = self.steps.times

    def _featurise(self, counts: np.ndarray, cov: np.ndarray, times: np.ndarray) -> np.ndarray:
        """:func:`input_features` of steps (t, H, W) on this dataset's grid (hour-of-day
        channels included for sub-daily maps)."""
        return input_features(counts, cov, times, self.stats, self.lat, self.lon)

    def __len__(self) -> int:
        return len(self.starts)

    def item_bytes(self) -> int:
        """Bytes of the tensors of one item (what a loader holds per window it prepares)."""
        planes = self.n_in * n_channels(self.stats)  # x
        planes += self.n_out * (len(self.thresholds) + 1 + int(self.stats.diurnal))  # y, mask, clim
        return 4 * planes * len(self.lat) * len(self.lon) + 8  # float32 planes, int64 init

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        e = s + self.n_in
        x, counts, cov = self.steps.window(s, self.n_in, self.n_out)  # targets (n_out, H, W)
        target = counts[:, None] >= self.thresholds[None, :, None, None]  # (n_out, n_thr, H, W)
        item = {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(target.astype(np.float32)),
            "mask": torch.from_numpy((cov > 0).astype(np.float32)),
            "init": torch.tensor(e - 1, dtype=torch.int64),
        }
        if self.stats.diurnal:
            item["clim"] = torch.from_numpy(
                lead_climatology(self.stats, self.times[e : e + self.n_out])
            )
        return item
