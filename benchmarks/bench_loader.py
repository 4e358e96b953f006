"""Can the loader keep a model fed? Windows/s read from disk against the model's own rate (by hand).

Writes a seeded maps file of the conus-0.1 size (260 x 590 cells; ``data_prep.mock`` storms, the
encoding ``prep`` writes) and reads it on the lazy path (step by step from disk, as maps over the
in-memory limit are read; forced here so that the file need not exceed 1 GiB), with 0, 1 and 2
loader workers: training windows/s (the configuration's n_in + n_out steps, batches in a shuffled
order). Beside them: the rate at which the model of the configuration consumes the same windows
(forward + backward + AdamW step, one process, CPU) and the FLOPs of one window's forward +
backward (``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products), so
that a reader can tell how many windows/s a GPU that reaches a given TFLOP/s would need.

The loader variants run interleaved in this one process (0, 1, 2, 0, 1, 2, ...), each from a
fresh dataset (cold step cache) and taking the fastest of ``--repeats``, so another job on the
cores slows all of them alike. The load average and the thread count are printed with the table.

    python benchmarks/bench_loader.py                  # conus-0.1, 200 steps: a few minutes
    python benchmarks/bench_loader.py --quick          # a tiny grid, seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from data_prep.cores import usable_cores
from data_prep.io import open_maps, write_netcdf_atomic
from data_prep.mock import mock_maps
from data_prep.sequences import WindowIndex
from forecast.config import load_experiment
from forecast.model.losses import build_loss
from forecast.model.network import build_model
from forecast.training.dataset import WindowDataset
from forecast.training.distributed import ShardSampler, cpu_threads
from forecast.training.features import N_CHANNELS, fit_stats
from forecast.training.loader import make_loader

ROOT = Path(__file__).resolve().parents[1]
CONUS_01 = (260, 590)
GPU_TFLOPS = (10, 50, 100, 300)  # achieved training TFLOP/s a reader may expect of a GPU


def write_maps(path: Path, n_steps: int, shape: tuple[int, int]) -> Path:
    """A seeded maps file in the prep layout and encoding."""
    return write_netcdf_atomic(mock_maps(n_steps=n_steps, shape=shape, seed=1), path)


def open_windows(path: Path, n_in: int, n_out: int, cache_mb: int):
    """A function making a fresh lazy WindowDataset over every window of the file."""
    ds = open_maps(path, lazy=True)
    n = ds.sizes["time"]
    starts = np.arange(n - n_in - n_out + 1)
    index = WindowIndex(n_in, n_out, {"train": starts, "val": starts[:0], "test": starts[:0]}, n)
    stats = fit_stats(ds, index)

    def fresh() -> WindowDataset:
        return WindowDataset(
            ds,
            starts,
            n_in=n_in,
            n_out=n_out,
            stats=stats,
            in_memory=False,
            cache_bytes=cache_mb * 2**20,
        )

    return fresh


def loader_rate(data: WindowDataset, workers: int, batch: int, batches: int) -> float:
    """Windows/s over ``batches`` batches after the first (which pays for starting workers)."""
    sampler = ShardSampler(len(data), shuffle=True, seed=0)
    it = iter(make_loader(data, sampler, batch_size=batch, num_workers=workers, seed=0))
    next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        n += len(next(it)["x"])
    seconds = time.perf_counter() - t0
    del it  # stops the workers
    return n / seconds


def model_and_batch(cfg, shape, batch: int):
    """The configuration's model and a random batch of ``batch`` windows of the file's shape."""
    torch.manual_seed(0)
    model = build_model(cfg.model, N_CHANNELS, cfg.data.n_out)
    x = torch.rand(batch, cfg.data.n_in, N_CHANNELS, *shape)
    y = (torch.rand(batch, cfg.data.n_out, len(cfg.model.thresholds), *shape) < 0.1).float()
    return model, (x, y, torch.ones(batch, cfg.data.n_out, *shape))


def model_rate(cfg, shape, batch: int, repeats: int) -> float:
    """Windows/s of training steps (forward, backward, AdamW), fastest of ``repeats`` steps."""
    model, (x, y, mask) = model_and_batch(cfg, shape, batch)
    loss_fn, opt = build_loss("bce"), torch.optim.AdamW(model.parameters(), lr=1e-3)
    best = math.inf
    for i in range(repeats + 1):  # the first step warms up
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            best = min(best, time.perf_counter() - t0)
    return batch / best


def flops_per_window(cfg, shape) -> float:
    """FLOPs of one window's training forward + backward."""
    model, (x, y, mask) = model_and_batch(cfg, shape, 1)
    with FlopCounterMode(display=False) as counter:
        build_loss("bce")(model(x), y, mask).backward()
    return float(counter.get_total_flops())


def measure_loaders(fresh, args) -> dict[int, float]:
    """Fastest windows/s for each worker count, the counts interleaved within each repeat."""
    best = dict.fromkeys(args.workers, 0.0)
    for _ in range(args.repeats):
        for w in args.workers:
            best[w] = max(best[w], loader_rate(fresh(), w, args.batch, args.batches))
    return best


def featurised_per_window(fresh, args) -> float:
    """Steps featurised per window in one process over the timed batches (n_in without a cache)."""
    data = fresh()
    order = ShardSampler(len(data), shuffle=True, seed=0).indices()
    n = min(len(order), args.batch * (args.batches + 1))
    for i in order[:n]:
        data[int(i)]
    return data.steps.featurised / n


def report(rates: dict[int, float], model_s: float, flops: float, per_window: float, args) -> str:
    """The table, then what the rates mean for a GPU."""
    lines = [f"{'source':<40}{'windows/s':>12}{'vs model':>10}", "-" * 62]
    for w, r in rates.items():
        lines.append(f"{f'loader, lazy path, {w} workers':<40}{r:>12.2f}{r / model_s:>9.2f}x")
    lines.append(f"{f'model fwd+bwd+step, {args.threads} threads (CPU)':<40}{model_s:>12.2f}")
    lines += [
        f"FLOPs per window (forward + backward): {flops / 1e9:.1f} GFLOP; steps featurised per "
        f"window in one process: {per_window:.2f} (of n_in)",
        "A GPU that trains at T achieved TFLOP/s consumes T * 1e12 / FLOPs windows/s:",
    ]
    top = max(rates.values())
    per_worker = max((r / w for w, r in rates.items() if w), default=0.0)
    for t in GPU_TFLOPS:
        need = t * 1e12 / flops
        workers = math.ceil(need / per_worker) if per_worker else "?"
        lines.append(
            f"  {t:>4} TFLOP/s -> {need:>9.1f} windows/s ({need / top:.1f}x the best loader "
            f"here; about {workers} workers at this machine's rate per worker)"
        )
    lines.append(
        f"The best loader here feeds a GPU up to {top * flops / 1e12:.2f} achieved TFLOP/s."
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "conus_daily.yaml"))
    p.add_argument("--steps", type=int, default=200, help="time steps of the maps file")
    p.add_argument("--batch", type=int, default=8, help="windows per batch")
    p.add_argument("--batches", type=int, default=12, help="timed batches per measurement")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (fastest kept)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model-batch", type=int, default=2, help="windows per timed model step")
    p.add_argument("--cache-mb", type=int, default=512, help="step cache of each process")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = usable cores")
    p.add_argument("--quick", action="store_true", help="a tiny grid and few batches")
    args = p.parse_args(argv)
    args.shape = (24, 40) if args.quick else CONUS_01
    if args.quick:
        args.steps, args.batches, args.batch, args.model_batch = 40, 3, 4, 2
    args.threads = args.threads or cpu_threads(1)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_experiment(args.config)
    n_in, n_out = cfg.data.n_in, cfg.data.n_out
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_maps(Path(tmp) / "maps.nc", args.steps, args.shape)
        size = path.stat().st_size / 2**20
        fresh = open_windows(path, n_in, n_out, args.cache_mb)
        rates = measure_loaders(fresh, args)
        per_window = featurised_per_window(fresh, args)
    model_s = model_rate(cfg, args.shape, args.model_batch, args.repeats)
    flops = flops_per_window(cfg, args.shape)
    print(
        f"maps {args.steps} steps x {args.shape[0]}x{args.shape[1]} ({size:.0f} MiB on disk), "
        f"windows of {n_in}+{n_out} steps, batch {args.batch}, model {cfg.model.cell} "
        f"{list(cfg.model.encoder_channels)}/{list(cfg.model.hidden_channels)} from "
        f"{Path(args.config).name}; torch {torch.__version__}, {args.threads} threads of "
        f"{usable_cores()} usable cores; fastest of {args.repeats} interleaved"
    )
    print(report(rates, model_s, flops, per_window, args))
    print(f"load average before / after: {load:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
