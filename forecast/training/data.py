"""Training data and validation scores for :func:`forecast.training.loop.train`.

:func:`build_data` opens the maps, loads (or builds) the window index, fits the feature statistics
on the training split and makes the loaders: training windows reshuffled per epoch as a pure
function of (seed, epoch), validation windows in a fixed order. :func:`validate` scores the model
on the validation windows: mean loss, Brier score of P(count >= 1) and its skill against the
climatology of the valid day.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from data_prep.climatology import climatology_at
from data_prep.errors import UserError
from data_prep.heap import trim_heap
from data_prep.io import open_maps
from data_prep.sequences import WindowIndex, load_or_build_index
from forecast.metrics import ProbabilityState, roc_auc
from forecast.training.dataset import WindowDataset
from forecast.training.distributed import Dist, ShardSampler, all_sum, inference_precision, on_main
from forecast.training.features import FeatureStats, fit_stats, n_channels
from forecast.training.guided import GuidanceStats, GuidedWindows, guidance_for_training
from forecast.training.loader import make_loader, start_workers


@dataclass
class TrainData:
    """The maps, their window index and feature statistics, and the two loaders."""

    ds: xr.Dataset
    index: WindowIndex
    stats: FeatureStats
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    train_sampler: ShardSampler
    steps_per_epoch: int  # batches of a whole epoch (the loader is shorter in a resumed epoch)
    in_channels: int
    n_out: int
    thr1: int  # position of threshold 1 (or the lowest threshold) among the model's thresholds
    guidance: GuidanceStats | None = None  # data.guidance's normalisation; None without guidance
    guide_channels: int = 0  # guidance channels per lead for the decoder (0: none)
    channels_last: bool = False  # input frames channels-last (train.channels_last on CUDA)


def build_data(cfg, dist: Dist) -> TrainData:
    """Open ``cfg.train.maps`` and make the training and validation loaders of this process."""
    tc = cfg.train
    if not tc.maps:
        raise UserError(
            "config: train.maps is empty; pass train.maps=PATH, a maps file written by "
            "`strikecast prep`"
        )
    path = Path(tc.maps)
    ds = open_maps(path, lazy=tc.lazy_maps)
    # built (and saved) once by the main process, not by every process at once
    index = on_main(dist, lambda: load_or_build_index(path, ds, cfg.data))
    _check_windows(path, ds, index, cfg.data.block_steps)
    index = thinned_training(index, tc.train_fraction, cfg.data.block_steps)
    stats = on_main(dist, lambda: fit_stats(ds, index))
    trim_heap()  # the fit's freed tables, before loader workers fork from this process
    thresholds = tuple(cfg.model.thresholds)
    guidance = gstats = None
    if cfg.data.guidance:
        guidance, gstats = guidance_for_training(cfg.data.guidance, ds, index)

    def dataset(split):
        windows = WindowDataset(
            ds,
            index.starts[split],
            n_in=index.n_in,
            n_out=index.n_out,
            stats=stats,
            thresholds=thresholds,
            in_memory=False if tc.lazy_maps else None,
            cache_bytes=cache_share(tc),
        )
        return windows if guidance is None else GuidedWindows(windows, guidance, gstats)

    train_loader, sampler, n_batches = _training_batches(dataset("train"), tc, dist)
    val_set = dataset("val")
    val_sampler = ShardSampler(len(val_set), rank=dist.rank, world=dist.world, shuffle=False)
    val_loader = make_loader(val_set, val_sampler, **_loading(tc, dist))
    # validation workers fork now, with the training ones, from a process not yet grown by
    # training steps: forked at the first validation, each copied 600 MB of that grown heap
    start_workers(val_loader)
    return TrainData(
        ds=ds,
        index=index,
        stats=stats,
        train_loader=train_loader,
        val_loader=val_loader,
        train_sampler=sampler,
        steps_per_epoch=n_batches,
        in_channels=n_channels(stats) + (gstats.channels if gstats else 0),
        n_out=index.n_out,
        thr1=thresholds.index(1) if 1 in thresholds else 0,
        guidance=gstats,
        guide_channels=gstats.channels if gstats else 0,
        channels_last=tc.channels_last and dist.device.type == "cuda",
    )


def thinned_training(index: WindowIndex, fraction: float, block_steps: int) -> WindowIndex:
    """``index`` with the training windows of an evenly spaced ``fraction`` of its training
    blocks (windows whose start falls in the same ``block_steps`` steps of the record, the
    blocks of ``data.split``): the ``b``-th block holding training windows is kept when
    ``floor((b + 1) f)`` exceeds ``floor(b f)``, so 1/2 keeps every second block, 1/4 every
    fourth, spread over the whole record. Validation and test windows are unchanged; the feature
    and guidance statistics are then fitted on the kept windows only."""
    starts = index.starts["train"]
    if fraction >= 1 or len(starts) == 0:
        return index
    _, block = np.unique(starts // block_steps, return_inverse=True)  # b of each window
    keep = np.floor((block + 1) * fraction) > np.floor(block * fraction)
    if not keep.any():  # fewer blocks than 1 / fraction: keep the last one
        keep = block == block[-1]
    return dataclasses.replace(index, starts={**index.starts, "train": starts[keep]})


def _check_windows(path: Path, ds: xr.Dataset, index: WindowIndex, block_steps: int) -> None:
    """Refuse maps that give no training or no validation window."""
    for split in ("train", "val"):
        if len(index.starts[split]) == 0:
            raise UserError(
                f"{path}: no {split} windows of {index.n_in}+{index.n_out} usable steps "
                f"({ds.sizes['time']} steps in blocks of data.block_steps={block_steps});"
                " use a longer record, a smaller data.block_steps, data.split=contiguous, or "
                "a lower data.min_coverage"
            )


def cache_share(tc) -> int:
    """Bytes of step cache for each process that holds one: ``train.step_cache_mb`` split evenly
    over the training and validation loaders' worker processes (both sets persist, so they live
    at once), or over the main process's two datasets without workers: the run's caches together
    stay within ``train.step_cache_mb``."""
    holders = 2 * max(1, int(tc.num_workers))
    return int(tc.step_cache_mb) * 2**20 // holders


def _loading(tc, dist: Dist) -> dict:
    return dict(
        batch_size=tc.batch_size, num_workers=tc.num_workers, device=dist.device, seed=tc.seed
    )


def _training_batches(train_set, tc, dist: Dist):
    """(loader, sampler, batches of a whole epoch) of this process's training windows.

    A compiled model would compile again for a ragged last batch (a graph for its size, or a
    slower dynamic-shape one), so compiled training drops it; the per-epoch reshuffle puts
    other windows last each epoch. Without compile nothing is gained by dropping: every window
    is seen every epoch, as before. A split smaller than one batch keeps its one batch.
    """
    sampler = ShardSampler(
        len(train_set), rank=dist.rank, world=dist.world, shuffle=True, seed=tc.seed
    )
    drop = tc.compile and len(sampler) >= tc.batch_size
    n = len(sampler) // tc.batch_size if drop else math.ceil(len(sampler) / tc.batch_size)
    loader = make_loader(train_set, sampler, drop_last=drop, **_loading(tc, dist))
    return loader, sampler, n


def model_inputs(batch: dict, device, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """The model's keyword inputs of a batch on ``device``: ``x``, and ``guide`` with guidance,
    ``clim`` (each lead's climatology) for sub-daily maps; with ``channels_last`` the frames of
    ``x`` and ``guide`` channels-last (:func:`frames_channels_last`)."""
    keys = [k for k in ("x", "guide", "clim") if k in batch]
    inputs = {k: batch[k].to(device, non_blocking=True) for k in keys}
    if channels_last:
        for k in ("x", "guide"):
            if k in inputs:
                inputs[k] = frames_channels_last(inputs[k])
    return inputs


def frames_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) with the same values, laid out (B, T, H, W, C) in memory: every frame
    ``x[:, t]`` has its channels innermost and the (B*T, C, H, W) view the model's encoder takes
    is channels-last (NHWC), the layout cuDNN's fastest convolutions (tensor cores) read without
    a transpose of their own."""
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # memory (B, T, H, W, C)


def climatology_of_targets(data: TrainData, init: torch.Tensor) -> torch.Tensor:
    """Climatological P(count >= 1) on the valid day of every target, (B, n_out, H, W) float32."""
    times = data.ds["time"].values
    valid = init.cpu().numpy()[:, None] + np.arange(1, data.n_out + 1)  # (B, n_out)
    clim = climatology_at(data.stats.climatology, times[valid.ravel()])  # (B*n_out, H, W)
    return torch.from_numpy(
        np.asarray(clim, dtype=np.float32).reshape(*valid.shape, *clim.shape[1:])
    )


@torch.no_grad()
def validate(net, data: TrainData, loss_fn, dist: Dist, hist=None, stop=None) -> dict | None:
    """Scores over the validation windows, merged over processes, with the model in the
    precision of predict (:func:`forecast.training.distributed.inference_precision`).

    Returns ``val_loss`` (mean over windows of the training loss; NaN without ``loss_fn``),
    ``val_brier`` (Brier score of P(count >= 1) over observed target cells, all leads),
    ``val_bss`` (skill against the climatology of the valid day) and ``val_auc`` (ROC area).
    When ``hist`` (a :class:`forecast.training.calibration.LogitHistogram`) is given, the raw logits
    stream into it. ``stop()`` (every process calls it at the same batches; it agrees across
    them) is asked before each batch that every process has: when it says so, the pass is
    abandoned and None returned, so a signal ends a long validation within a batch.
    """
    net.eval()
    trim_heap()  # training steps' freed activations go back while validation runs
    loss_sum = torch.zeros(2, dtype=torch.float64)  # sum of loss * windows, windows
    model = ProbabilityState.init(data.n_out, n_bins=101)
    clim = ProbabilityState.init(data.n_out, n_bins=2)
    common = _batches_on_every_process(data.val_loader, dist)
    for b, batch in enumerate(data.val_loader):
        if stop is not None and b < common and stop():
            return None
        y, mask = (batch[k].to(dist.device, non_blocking=True) for k in ("y", "mask"))
        with inference_precision(dist.device):
            logits = net(**model_inputs(batch, dist.device, data.channels_last))
        logits = logits.float()
        if loss_fn is not None:
            loss_sum += torch.tensor([float(loss_fn(logits, y, mask)) * len(y), len(y)])
        obs = y[:, :, data.thr1].cpu().numpy() > 0.5  # (B, n_out, H, W)
        m = mask.cpu().numpy() > 0
        model.add(torch.sigmoid(logits[:, :, data.thr1]).cpu().numpy(), obs, m)
        clim.add(climatology_of_targets(data, batch["init"]).numpy(), obs, m)
        if hist is not None:
            hist.add(logits, y, mask)
    loss_sum = all_sum(loss_sum, dist)
    model, clim = _merged(model, dist), _merged(clim, dist)
    n = max(int(model.n.sum()), 1)
    brier, brier_clim = model.brier_sum.sum() / n, clim.brier_sum.sum() / n
    return {
        "val_loss": float(loss_sum[0] / loss_sum[1]) if loss_fn is not None else float("nan"),
        "val_brier": float(brier),
        "val_bss": float(1 - brier / brier_clim) if brier_clim > 0 else float("nan"),
        "val_auc": float(roc_auc(model.positives.sum(0), model.negatives.sum(0))),
    }


def _batches_on_every_process(loader, dist: Dist) -> int:
    """Validation batches that every process has (each takes ``range(rank, n, world)`` of the
    windows, so the last process has the fewest: ``n // world``)."""
    return math.ceil(len(loader.dataset) // dist.world / loader.batch_size)


def _merged(state, dist: Dist):
    """A metrics state summed over all processes."""
    if dist.world == 1:
        return state
    arrays = [all_sum(torch.from_numpy(a), dist).numpy() for a in state._arrays()]
    return type(state)(*arrays)
