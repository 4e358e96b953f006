"""How much the synthetic NWP guidance tells about lightning, against the oracle, run by hand.

Generates one world (records, oracle, guidance.nc) and, per lead, fits a logistic regression
(MOS) of P(>= 1 strike in the cell and day) on the guidance forecast for that day (log1p cape,
log1p tp) and the climatology's logit, on the first 70 % of the oracle's init days; scores both
on the last 30 % by the Brier skill score against the climatology (per cell and day of year,
+-15 days, counted on the fitting days). Prints lead, MOS BSS, oracle BSS and their ratio; the
guidance errors (``synth.guidance_*``) are tuned so that the ratio is ~0.5-0.7 at lead 1 and
falls with lead: 0.57, 0.54, 0.42 on plains-0.5 and 0.47, 0.45, 0.41 on conus-0.25 (two years,
seed 1; 132 s on conus-0.25).

    python benchmarks/bench_guidance.py                       # plains-0.5, 730 days
    python benchmarks/bench_guidance.py --grid conus-0.25     # the grid of the conus configs
    python benchmarks/bench_guidance.py --days 365 --n-out 5 synth.guidance_miss=0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.config import SynthConfig, apply_overrides, from_dict, to_dict
from data_prep.synthetic import generate_world, grid_counts
from data_prep.synthetic.oracle import oracle_inits

TRAIN_SHARE = 0.7
CLIP = 1e-3  # climatology kept in [CLIP, 1 - CLIP] before its logit


def climatology(occ: np.ndarray, days: pd.DatetimeIndex, fit: np.ndarray, window: int = 15):
    """Per-cell occurrence by day of year (+-``window`` days) counted on days ``fit`` only."""
    doy = np.minimum(days.day_of_year.to_numpy(), 365) - 1
    sums, n = np.zeros((365, *occ.shape[1:])), np.zeros(365)
    np.add.at(sums, doy[fit], occ[fit])
    np.add.at(n, doy[fit], 1)
    ks = sum(np.roll(sums, o, axis=0) for o in range(-window, window + 1))
    kn = sum(np.roll(n, o) for o in range(-window, window + 1))
    base = occ[fit].mean()
    table = np.where(kn[:, None, None] > 0, ks / np.maximum(kn, 1)[:, None, None], base)
    return np.clip(table[doy], CLIP, 1 - CLIP)


def fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 25, ridge: float = 1e-6) -> np.ndarray:
    """Coefficients (intercept first) of a logistic regression by IRLS (Newton steps)."""
    a = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(a.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -30, 30)))
        h = (a * (p * (1 - p))[:, None]).T @ a + ridge * np.eye(a.shape[1])
        step = np.linalg.solve(h, a.T @ (y - p))
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return w


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(w[0] + x @ w[1:], -30, 30)))


def features(g: xr.Dataset, inits: np.ndarray, lead: int, clim: np.ndarray) -> np.ndarray:
    """(N, 3): log1p cape, log1p tp of the lead-``lead`` forecast issued at the end of each
    init day, and the climatology's logit of the day it describes; N = inits x cells."""
    cape = g["cape"].values[inits, lead]
    tp = g["tp"].values[inits, lead]
    c = clim[inits + lead]
    cols = [np.log1p(cape), np.log1p(tp), np.log(c / (1 - c))]
    return np.stack([v.ravel() for v in cols], 1)


def scores(cfg: SynthConfig, out: Path) -> list[tuple[int, float, float | None]]:
    """(lead, MOS BSS, oracle BSS or None) on the last 30 % of the oracle's init days."""
    paths = generate_world(cfg, out, progress=False)
    counts, days = grid_counts(paths["strikes"], cfg.grid, cfg.start, cfg.days)
    occ = (counts > 0).astype(np.float64)
    inits = oracle_inits(cfg.days, n_in=cfg.n_in, n_out=cfg.n_out)
    n_fit = int(TRAIN_SHARE * len(inits))
    fit_inits, test_inits = inits[:n_fit], inits[n_fit:]
    fit_days = np.zeros(cfg.days, bool)
    fit_days[: fit_inits[-1] + cfg.n_out + 1] = True
    clim = climatology(occ, days, fit_days)
    with xr.open_dataset(paths["guidance"]) as g, xr.open_dataset(paths["oracle"]) as o:
        g, prob = g.load(), o["probability"].values
    rows = []
    for lead in range(1, cfg.guidance_leads + 1):
        ok = test_inits[test_inits + lead < cfg.days]
        fi = fit_inits[fit_inits + lead < cfg.days]
        w = fit_logistic(features(g, fi, lead, clim), occ[fi + lead].ravel())
        y = occ[ok + lead].ravel()
        ref = np.mean((clim[ok + lead].ravel() - y) ** 2)
        mos = 1 - np.mean((predict(w, features(g, ok, lead, clim)) - y) ** 2) / ref
        oracle = None
        if lead <= cfg.n_out:
            p = prob[np.searchsorted(inits, ok), lead - 1].ravel()
            oracle = 1 - np.mean((p - y) ** 2) / ref
        rows.append((lead, mos, oracle))
    return rows


def format_table(rows) -> str:
    lines = ["lead  MOS BSS  oracle BSS  ratio", "-" * 33]
    for lead, mos, oracle in rows:
        o = f"{oracle:10.3f}" if oracle is not None else f"{'-':>10}"
        r = f"{mos / oracle:6.2f}" if oracle else f"{'-':>6}"
        lines.append(f"{lead:4d}  {mos:7.3f}  {o}  {r}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="plains-0.5")
    p.add_argument("--start", default="2021-01-01")
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n-out", type=int, default=3, help="oracle leads (each costs time)")
    p.add_argument("overrides", nargs="*", help="synth.KEY=VALUE, e.g. synth.guidance_miss=0.2")
    args = p.parse_args()
    base = dataclasses.replace(
        SynthConfig(), grid=args.grid, start=args.start, days=args.days, seed=args.seed
    )
    base = dataclasses.replace(base, n_out=args.n_out)
    data = apply_overrides({"synth": to_dict(base)}, args.overrides)
    cfg = from_dict(SynthConfig, data["synth"], "synth.")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = scores(cfg, Path(tmp))
    print(f"synthetic guidance: {cfg.grid}, {cfg.days} days from {cfg.start}, seed {cfg.seed}")
    print(", ".join(f"{k}={v}" for k, v in to_dict(cfg).items() if k.startswith("guidance_")))
    print(format_table(rows))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
