"""How alike are the training and validation days for a few block lengths? Validation only.

Calibration fitted on validation holds on other days only as far as the validation days are like
them. This prints, for each candidate ``data.block_steps``, the windows of each split and the
share of cells struck on the validation target days against the training climatology's share on
the same dates (1.0 = validation as active as the climate of the training days). The test split
is never read beyond its window count, so the choice stays on training and validation data.

    python benchmarks/split_balance.py runs/conus/maps.nc --n-in 7 --n-out 3 --blocks 14 28 56
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from data_prep.climatology import climatology_at, fit_climatology
from data_prep.config import SequenceConfig
from data_prep.io import open_maps
from data_prep.sequences import build_index


def target_steps(index, split: str, n_steps: int) -> np.ndarray:
    """Bool (T,): the steps that are a target of some window of ``split``."""
    used = np.zeros(n_steps, dtype=bool)
    for lead in range(1, index.n_out + 1):
        used[index.inits(split) + lead] = True
    return used


def balance(ds, cfg: SequenceConfig) -> dict[str, float]:
    """Windows per split and the validation activity ratio for one split config."""
    index = build_index(ds, cfg)
    counts = ds["strike_count"].values
    observed = ds["coverage"].values > 0
    times = ds["time"].values
    train = index.steps("train", len(times))
    clim = fit_climatology(counts, times, train, observed=observed)
    val = target_steps(index, "val", len(times))
    struck = ((counts[val] > 0) & observed[val]).sum() / observed[val].sum()
    expected = (climatology_at(clim, times[val]) * observed[val]).sum() / observed[val].sum()
    n = {s: len(index.inits(s)) for s in ("train", "val", "test")}
    return {**n, "val_days": int(val.sum()), "ratio": float(struck / expected)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("maps", type=Path)
    p.add_argument("--n-in", type=int, default=7)
    p.add_argument("--n-out", type=int, default=3)
    p.add_argument("--blocks", type=int, nargs="+", default=[14, 28, 56])
    args = p.parse_args()
    ds = open_maps(args.maps)
    base = SequenceConfig(n_in=args.n_in, n_out=args.n_out)
    print(
        f"{'block_steps':>11} {'train':>6} {'val':>5} {'test':>5} {'val days':>8} {'val/clim':>8}"
    )
    for b in args.blocks:
        r = balance(ds, replace(base, block_steps=b))
        print(
            f"{b:>11} {r['train']:>6} {r['val']:>5} {r['test']:>5} {r['val_days']:>8} "
            f"{r['ratio']:>8.3f}"
        )


if __name__ == "__main__":
    main()
