"""Scoring speed of ``evaluate``, forward passes excluded, run by hand.

Forecasts one batch of inits with every baseline (and the model, given ``--checkpoint``), then
times the scoring of each method's batch (every streaming state: probability, contingency,
fractions at ``eval.neighbourhoods``, per-day) in the fused passes of
:mod:`forecast.metrics.fused` and in each state's own numpy ``add`` (the path before them, and
the fallback without numba), interleaved, best of ``--repeats``. Prints cell-forecasts per second
(inits x leads x cells of the grid) per method and path, wall clock and CPU time of the process
and checks the two paths leave the same states. Then all methods of the batch at once, each on a
thread of :func:`forecast.evaluation.scoring.scoring_threads` as ``evaluate`` scores them:
cell-forecasts per second per method = cells x methods / wall clock.

    python benchmarks/bench_eval.py                              # mock maps, 96 x 160, 32 inits
    python benchmarks/bench_eval.py --quick                      # a tiny grid: checks that it runs
    python benchmarks/bench_eval.py --maps runs/q/maps.nc --checkpoint runs/q/run/best.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import xarray as xr

from data_prep.io import open_maps
from data_prep.mock import mock_maps
from forecast.config import EvalConfig
from forecast.evaluation.baselines import build_baseline, observations
from forecast.evaluation.scoring import all_steps_index, scoring_threads
from forecast.metrics.fused import scoring_kernel
from forecast.metrics.suite import MethodState
from forecast.predict import load_forecaster
from forecast.training.distributed import cpu_threads

BASELINES = ("persistence", "smoothed_persistence", "climatology", "lagrangian")
PATHS = ("numpy", "auto")  # each state's add; the fused passes


def batch(ds: xr.Dataset, args, ecfg: EvalConfig) -> tuple[dict, np.ndarray, np.ndarray]:
    """Forecasts {method: (N, L, H, W)} of the last ``args.inits`` inits, events and mask."""
    index = all_steps_index(ds, n_in=7, n_out=3, first=6)
    inits = index.inits("all")[-args.inits :]
    methods = {name: build_baseline(name, ds, index, ecfg) for name in BASELINES}
    if args.checkpoint:
        methods["model"] = load_forecaster(args.checkpoint, "cpu")
    events, mask = observations(ds, inits, 3)
    probs = {}
    for name, method in methods.items():
        probs[name] = np.asarray(method.forecast(ds, inits)[:, :3], dtype=np.float32)
        mask &= np.isfinite(probs[name])
    return probs, events, mask


def timed(prob, events, mask, day, ecfg, path: str) -> tuple[float, float, MethodState]:
    """(wall s, CPU s, state) of scoring one batch on ``path``."""
    state = MethodState.init(prob.shape[1], int(day.max()) + 1, ecfg, np.array([0.2, 0.3, 0.3]))
    wall, cpu = time.perf_counter(), time.process_time()
    state.add(prob, events, mask, day, kernel=path)
    return time.perf_counter() - wall, time.process_time() - cpu, state


def same(a: MethodState, b: MethodState) -> str:
    """``bit for bit``; ``log loss 1e-13`` when only the log-loss sums differ, within 1e-13
    (numpy's own AVX-512 logs against the C library's in the kernel); else ``DIFFERENT``."""
    differ = [
        f"{p}.{f.name}"
        for p in ("prob", "table", "fractions", "daily")
        for f in dataclasses.fields(getattr(a, p))
        if not np.array_equal(getattr(getattr(a, p), f.name), getattr(getattr(b, p), f.name))
    ]
    if not differ:
        return "bit for bit"
    logs = a.prob.log_loss_sum, b.prob.log_loss_sum
    if differ == ["prob.log_loss_sum"] and np.allclose(*logs, rtol=1e-13, atol=0):
        return "log loss 1e-13"
    return "DIFFERENT: " + ", ".join(differ)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", help="maps netCDF (default: seeded mock maps)")
    ap.add_argument("--checkpoint", help="also score this model's forecasts")
    ap.add_argument("--grid", default="96x160", help="mock maps H x W")
    ap.add_argument("--inits", type=int, default=32, help="inits in the batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="scoring threads; 0 = usable cores")
    ap.add_argument("--quick", action="store_true", help="a tiny grid, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.grid, args.inits, args.repeats = "16x24", 8, 1
    torch.set_num_threads(args.threads or cpu_threads(1))  # the count evaluate scores with
    load = os.getloadavg()[0]
    h, w = (int(x) for x in args.grid.split("x"))
    ds = open_maps(args.maps) if args.maps else mock_maps(n_steps=160, shape=(h, w), seed=1)
    ecfg = EvalConfig(smoothing_window=5)
    probs, events, mask = batch(ds.load(), args, ecfg)
    day = np.arange(events.shape[0], dtype=np.int64) // 2
    if scoring_kernel() is None:
        raise SystemExit("numba is not installed: only the numpy path runs")
    timed(probs[BASELINES[0]], events, mask, day, ecfg, "auto")  # compile (or load the cache)
    cells = events.size
    print(f"batch: {events.shape} (inits, leads, H, W) = {cells / 1e6:.2f} M cell-forecasts; "
          f"scales {ecfg.neighbourhoods}; best of {args.repeats}, paths interleaved")  # fmt: skip
    print(f"{'method':<22}{'numpy M/s':>22}{'fused M/s':>22}{'speed-up':>10}  same states")
    print(f"{'':<22}{'wall    cpu':>22}{'wall    cpu':>22}")
    for name, prob in probs.items():
        best = {p: [np.inf, np.inf] for p in PATHS}
        for _ in range(args.repeats):
            states = {}
            for path in PATHS:
                wall, cpu, states[path] = timed(prob, events, mask, day, ecfg, path)
                best[path] = [min(best[path][0], wall), min(best[path][1], cpu)]
        rates = {p: (cells / best[p][0] / 1e6, cells / best[p][1] / 1e6) for p in PATHS}
        print(
            f"{name:<22}{rates['numpy'][0]:>14.1f}{rates['numpy'][1]:>8.1f}"
            f"{rates['auto'][0]:>14.1f}{rates['auto'][1]:>8.1f}"
            f"{best['numpy'][0] / best['auto'][0]:>9.1f}x  {same(states['numpy'], states['auto'])}"
        )

    together(probs, events, mask, day, ecfg, args.repeats)
    print(f"load average before / after: {load:.2f} / {os.getloadavg()[0]:.2f}")


def together(probs: dict, events, mask, day, ecfg, repeats: int) -> None:
    """All methods of the batch at once on scoring_threads() threads, per path; best of repeats."""
    cells = events.size * len(probs)
    line = []
    with ThreadPoolExecutor(max_workers=scoring_threads()) as pool:
        for path in PATHS:
            best = np.inf
            for _ in range(repeats):
                wall = time.perf_counter()
                jobs = [
                    pool.submit(timed, p, events, mask, day, ecfg, path) for p in probs.values()
                ]
                for job in jobs:
                    job.result()
                best = min(best, time.perf_counter() - wall)
            line.append(f"{path}: {cells / best / 1e6:.1f} M/s per method")
    print(f"all {len(probs)} methods at once on {scoring_threads()} threads: " + ", ".join(line))


if __name__ == "__main__":
    main()
