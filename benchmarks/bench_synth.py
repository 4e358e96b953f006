"""Speed and climate of the synthetic world on a full grid, run by hand.

Generates one world (strike records and oracle) with ``data_prep.synthetic.generate_world`` and
prints one table: wall time of the records and of the oracle against the target (one year of
conus-0.25 with its oracle in under a minute on 2 cores), then the climate the module docstring
documents, measured on the records: base rate of cells with a strike in winter (DJF) and summer
(JJA), the share of CG strokes, the eastward drift of activity, and the tail of daily totals.

    python benchmarks/bench_synth.py                        # conus-0.25, 365 days
    python benchmarks/bench_synth.py --grid plains-0.5 --days 1095
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.config import SynthConfig
from data_prep.schema import get_grid
from data_prep.synthetic import generate_world, grid_counts, world_stats


def eastward_shift(counts: np.ndarray) -> int:
    """Lag-1-day shift (cells, + = east) that best correlates the daily longitude profile,
    searched up to a quarter of the domain's width either way."""
    max_shift = counts.shape[2] // 4
    prof = np.log1p(counts.sum(1).astype(float))  # (T, W)
    prof -= prof.mean(1, keepdims=True)
    w = prof.shape[1]
    shifts = np.arange(-max_shift, max_shift + 1)
    corr = [
        np.mean(prof[:-1, max(0, -s) : w - max(0, s)] * prof[1:, max(0, s) : w + min(0, s)])
        for s in shifts
    ]
    return int(shifts[int(np.argmax(corr))])


def measure(cfg: SynthConfig, out: Path) -> list[tuple[str, str, str]]:
    """Rows ``(quantity, measured, target)`` for one generated world."""
    t0 = time.perf_counter()
    paths = generate_world(cfg, out, progress=False)
    wall = time.perf_counter() - t0
    counts, days = grid_counts(paths["strikes"], cfg.grid, cfg.start, cfg.days)
    stats = world_stats(paths["strikes"], cfg.grid)
    rate = (counts > 0).mean((1, 2))
    month = pd.DatetimeIndex(days).month
    winter, summer = rate[month.isin([12, 1, 2])], rate[month.isin([6, 7, 8])]
    totals = counts.sum((1, 2))
    res = get_grid(cfg.grid).res
    per_year = wall * 365 / cfg.days
    return [
        ("records", f"{stats['strikes']:,}", ""),
        ("wall time, records + oracle", f"{wall:.1f} s", ""),
        ("wall time per 365 days", f"{per_year:.1f} s", "< 60 s on conus-0.25, 2 cores"),
        ("base rate, year", f"{rate.mean():.3f}", ""),
        ("base rate, DJF", f"{winter.mean():.3f}" if winter.size else "-", "a few % (conus-0.25)"),
        ("base rate, JJA", f"{summer.mean():.3f}" if summer.size else "-", "0.10-0.25, tens of % (conus-0.25)"),
        ("CG share of strokes", f"{stats['cg_share']:.3f}", f"{cfg.cg_fraction:.3f} (config)"),
        ("eastward shift of activity per day", f"{eastward_shift(counts) * res:+.2f} deg lon", "> 0"),
        ("daily totals p99 / median", f"{np.percentile(totals, 99) / max(np.median(totals), 1):.1f}", "> 5"),
        ("quiet-day share (< 10 % of mean)", f"{stats['quiet_day_share']:.3f}", "> 0.05"),
    ]  # fmt: skip


def format_table(rows: list[tuple[str, str, str]]) -> str:
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    head = f"{'quantity':<{w0}}  {'measured':>{w1}}  target"
    return "\n".join([head, "-" * len(head)] + [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="conus-0.25")
    p.add_argument("--start", default="2021-01-01")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    cfg = dataclasses.replace(
        SynthConfig(), grid=args.grid, start=args.start, days=args.days, seed=args.seed
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(cfg, Path(tmp))
    print(f"synthetic world: {cfg.grid}, {cfg.days} days from {cfg.start}, seed {cfg.seed}")
    print(format_table(rows))


if __name__ == "__main__":
    main()
