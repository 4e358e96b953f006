"""Window index -> lazily sliced input/target tensors for the lightning forecaster.

Input channels and their statistics are in :mod:`forecast.training.features`.
:class:`WindowDataset` reads the steps of one window per item: from numpy arrays loaded once
when the maps are small (< 2 GB), else by ``isel`` on the (lazy) Dataset. Tensors come last.
Input features depend on one step only, so small maps are featurised once for all windows.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset, Sampler

from data_prep.errors import UserError
from data_prep.io import EAGER_BYTES
from data_prep.schema import COUNT, COVERAGE, LAT, LON, TIME
from forecast.training.features import FeatureStats, input_features, lead_climatology, n_channels
from forecast.training.signals import held_while_forking, ignore_in_worker, stop_workers_at_exit

FEATURE_CACHE_BYTES = 1024**3  # in-memory maps whose input features fit are featurised once


class WindowDataset(Dataset):
    """Windows of a maps Dataset as tensors; each item reads only the steps it needs.

    Parameters
    ----------
    ds : maps Dataset.
    starts : int (N,) window starts (``index.starts[split]``).
    n_in, n_out : input steps and lead times.
    stats : :class:`FeatureStats` from :func:`fit_stats`.
    thresholds : count thresholds of the targets, P(count >= t).
    in_memory : load the two arrays once as numpy (default: when they take < 2 GB); the input
        features of every step are then computed once too when they take < 1 GB.

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
        self.times = ds[TIME].values
        self.lat, self.lon = ds[LAT].values, ds[LON].values
        if in_memory is None:
            # one limit with open_maps: maps it loads eagerly are loaded once as numpy here
            in_memory = ds[COUNT].nbytes + ds[COVERAGE].nbytes < EAGER_BYTES
        self._arrays = (ds[COUNT].values, ds[COVERAGE].values) if in_memory else None
        self._ds = None if in_memory else ds[[COUNT, COVERAGE]]
        self._features = None  # (T, C, H, W) inputs of every step, when small enough
        if in_memory and self._arrays[0].size * n_channels(stats) * 4 < FEATURE_CACHE_BYTES:
            self._features = input_features(*self._arrays, self.times, stats, self.lat, self.lon)

    def __len__(self) -> int:
        return len(self.starts)

    def _steps(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts and coverage of steps a..b-1, each (b - a, H, W)."""
        if self._arrays is not None:
            return self._arrays[0][a:b], self._arrays[1][a:b]
        part = self._ds.isel({TIME: slice(a, b)})
        return part[COUNT].values, part[COVERAGE].values

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        e = s + self.n_in
        counts, cov = self._steps(s, e + self.n_out)  # (n_in + n_out, H, W)
        if self._features is not None:
            x = self._features[s:e]
        else:
            n = self.n_in
            x = input_features(counts[:n], cov[:n], self.times[s:e], self.stats, self.lat, self.lon)
        target = (
            counts[self.n_in :, None] >= self.thresholds[None, :, None, None]
        )  # (n_out, n_thr, H, W)
        item = {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(target.astype(np.float32)),
            "mask": torch.from_numpy((cov[self.n_in :] > 0).astype(np.float32)),
            "init": torch.tensor(e - 1, dtype=torch.int64),
        }
        if self.stats.diurnal:
            item["clim"] = torch.from_numpy(
                lead_climatology(self.stats, self.times[e : e + self.n_out])
            )
        return item


def make_loader(
    dataset: Dataset,
    sampler: Sampler,
    *,
    batch_size: int,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> DataLoader:
    """Batches in ``sampler``'s order; worker processes and pinned memory keep the GPU fed.

    ``device`` only decides whether memory is pinned (on CUDA). Workers persist across epochs
    and prefetch 4 batches each. The loader gets its own seeded generator, so making an iterator
    does not draw from the global random state (a resumed run draws what the uninterrupted one
    drew).
    """
    workers = int(num_workers)
    if workers > 0:
        stop_workers_at_exit()
    return _Loader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(int(seed)),
        worker_init_fn=_seed_worker if workers > 0 else None,
    )


class _Loader(DataLoader):
    """A DataLoader whose workers never die of a signal meant for the main process: it forks them
    with SIGTERM and SIGINT held back (see :mod:`forecast.training.signals`)."""

    def __iter__(self):
        with held_while_forking():
            return super().__iter__()


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed, and leave SIGTERM and
    Ctrl-C to the main process: a batch scheduler or a terminal signals the whole process group,
    and a worker killed first would abort training before it saves ``last.pt``. The main process
    stops its workers itself when it leaves."""
    ignore_in_worker()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - code in workers may use the global numpy generator
    random.seed(seed)
