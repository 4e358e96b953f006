"""Statistics of a strike-record table on a grid: daily counts, base rates, simple skill scores.

Independent of :mod:`data_prep.prep` so that tests and notebooks can check a synthetic world
(or any point records) with plain numpy histogramming.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.schema import Grid, get_grid


def grid_counts(
    records: pa.Table | pd.DataFrame | str | Path,
    grid: Grid | str,
    start: str | None = None,
    days: int | None = None,
    step: str = "1D",
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Strikes per cell and UTC day (or ``step``, e.g. "1h"), ``(counts (T, H, W) int32, step
    labels (T,))``.

    ``start`` / ``days`` default to the first record's day and the span of the records; records
    outside the domain or the days are left out.
    """
    table = pq.read_table(records) if isinstance(records, str | Path) else records
    df = table.to_pandas() if isinstance(table, pa.Table) else table
    g = get_grid(grid)
    t = pd.DatetimeIndex(df["time"]).tz_convert("UTC").tz_localize(None)
    day0 = pd.Timestamp(start) if start is not None else t.min().floor("D")
    step = pd.Timedelta(step)
    day = ((t - day0) // step).to_numpy()
    per_day = max(pd.Timedelta("1D") // step, 1)
    n_days = int(days) * per_day if days is not None else int(day.max(initial=-1)) + 1
    i, j, inside = g.cell_index(df["lat"].to_numpy(), df["lon"].to_numpy())
    keep = inside & (day >= 0) & (day < n_days)
    flat = (day[keep] * g.nlat + i[keep]) * g.nlon + j[keep]
    counts = np.bincount(flat, minlength=n_days * g.nlat * g.nlon).reshape(n_days, g.nlat, g.nlon)
    return counts.astype(np.int32), pd.date_range(day0, periods=n_days, freq=step)


def world_stats(strikes_path: str | Path, grid: Grid | str) -> dict:
    """Summary of a strike-record file on ``grid``: totals, base rates, stroke mix, currents."""
    table = pq.read_table(strikes_path)
    counts, days = grid_counts(table, grid)
    out = count_stats(counts, days)
    st = table.column("stroke_type").to_numpy(zero_copy_only=False)
    cur = table.column("peak_current_kA").to_numpy()
    cg = st == "CG"
    out["cg_share"] = float(cg.mean()) if len(cg) else 0.0
    out["negative_share_of_cg"] = float((cur[cg] < 0).mean()) if cg.any() else 0.0
    out["median_abs_peak_current_kA"] = float(np.median(np.abs(cur))) if len(cur) else 0.0
    return out


def count_stats(counts: np.ndarray, days: pd.DatetimeIndex) -> dict:
    """Base rates and daily totals of count maps (T, H, W)."""
    occ = counts > 0
    rate = occ.mean((1, 2))
    totals = counts.sum((1, 2))
    month = days.month.to_numpy()
    q = [0, 10, 50, 90, 99, 100]
    return {
        "days": int(len(days)),
        "strikes": int(totals.sum()),
        "base_rate": float(rate.mean()),
        "base_rate_by_month": {
            int(m): round(float(rate[month == m].mean()), 4) for m in np.unique(month)
        },
        "daily_strikes_percentiles": {
            str(p): int(v) for p, v in zip(q, np.percentile(totals, q), strict=True)
        },
        "quiet_day_share": float((totals < 0.1 * totals.mean()).mean()) if len(totals) else 0.0,
        "mean_count_in_positive_cells": float(counts[occ].mean()) if occ.any() else 0.0,
    }


def doy_climatology(occ: np.ndarray, days: pd.DatetimeIndex, window: int = 15) -> np.ndarray:
    """Per-cell frequency of occurrence by day of year, +-``window`` days (circular), (T, H, W)."""
    doy = np.minimum(days.day_of_year.to_numpy(), 365) - 1
    sums = np.zeros((365, *occ.shape[1:]))
    n = np.zeros(365)
    np.add.at(sums, doy, occ)
    np.add.at(n, doy, 1)
    kernel_sum = sum(np.roll(sums, o, axis=0) for o in range(-window, window + 1))
    kernel_n = sum(np.roll(n, o) for o in range(-window, window + 1))
    return (kernel_sum / np.maximum(kernel_n, 1)[:, None, None])[doy]


def brier_scores(prob: np.ndarray, occ: np.ndarray, inits: np.ndarray, clim: np.ndarray) -> dict:
    """Brier scores by lead of a forecast ``prob`` (I, L, H, W) and of persistence and climatology.

    ``occ`` (T, H, W) observed occurrence, ``inits`` (I,) day of each init, ``clim`` (T, H, W).
    """
    out = {"oracle": [], "persistence": [], "climatology": []}
    for lead in range(1, prob.shape[1] + 1):
        obs = occ[inits + lead].astype(np.float32)
        out["oracle"].append(float(((prob[:, lead - 1] - obs) ** 2).mean()))
        out["persistence"].append(float(((occ[inits] - obs) ** 2).mean()))
        out["climatology"].append(float(((clim[inits + lead] - obs) ** 2).mean()))
    for ref in ("climatology", "persistence"):
        out[f"oracle_bss_vs_{ref}"] = [
            1 - o / r if r > 0 else None for o, r in zip(out["oracle"], out[ref], strict=True)
        ]
    return {k: [None if v is None else round(v, 5) for v in vals] for k, vals in out.items()}
