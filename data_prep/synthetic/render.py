"""Storm intensity on the grid: many (storm, step) pairs summed into buckets by batched matmuls.

Each storm's strike density is a separable Gaussian, so its contribution to a map is the outer
product of a latitude profile (H,) and a longitude profile (W,); a bucket (a step, a day, a day of
one rollout) is the sum of such outer products, i.e. one matrix product (H, K) @ (K, W).
"""

from __future__ import annotations

import numpy as np

from data_prep.synthetic import fields
from data_prep.synthetic.dynamics import Setting, Storms


def render(
    storms: Storms,
    row: np.ndarray,
    tm: np.ndarray,
    bucket: np.ndarray,
    n_buckets: int,
    s: Setting,
    scale: float,
    budget: int = 20_000,
) -> np.ndarray:
    """Expected strikes per cell of (storm ``row``, time ``tm``) pairs summed into buckets.

    Each pair contributes storm ``row`` at the step centred on ``tm`` (steps of ``cfg.step_hours``):
    a separable Gaussian (wider in degrees of lon by 1/cos(lat)) integrated over the cell by its
    centre value times the cell size, times ``scale`` (the detection efficiency). Returns
    (n_buckets, H, W) float32; pairs are batched so that padded arrays hold ~``budget`` pairs.
    """
    g = s.grid
    y, x, sig, w, keep = _pair_state(storms, row, tm, s, scale)
    y, x, sig, w, bucket = y[keep], x[keep], sig[keep], w[keep], bucket[keep]
    out = np.zeros((n_buckets, *g.shape), np.float32)
    # buckets sorted by their number of pairs, so that batches pad little
    counts = np.bincount(bucket, minlength=n_buckets)
    by_size = np.argsort(counts, kind="stable")
    rank = np.empty(n_buckets, np.int64)
    rank[by_size] = np.arange(n_buckets)
    order = np.argsort(rank[bucket], kind="stable")
    for lo, hi, sel in _batches(counts[by_size], budget):
        idx = order[sel]
        gy = _gauss(g.lat, y[idx], sig[idx], g.res)  # (P, H)
        sx = sig[idx] / np.cos(np.deg2rad(np.clip(y[idx], -80, 80)))
        gx = _gauss(g.lon, x[idx], sx, g.res) * w[idx, None].astype(np.float32)  # (P, W)
        a, c = pad_by_group(rank[bucket[idx]] - lo, hi - lo, gy, gx)  # (G, K, H), (G, K, W)
        out[by_size[lo:hi]] += np.matmul(np.ascontiguousarray(a.transpose(0, 2, 1)), c)
    return out


def _pair_state(storms: Storms, row, tm, s: Setting, scale: float) -> tuple[np.ndarray, ...]:
    """Centre (y, x), radius, expected strikes in the step, and whether it can touch the grid."""
    g, dt = s.grid, s.cfg.step_hours / 24.0
    age = tm - storms.t0[row]
    x = storms.x0[row] + storms.u[row] * age
    y = storms.y0[row] + storms.v[row] * age
    phase = np.clip(age / storms.life[row], 0.0, 1.0)
    hour = (tm % 1.0) * 24.0
    cycle = fields.diurnal_land_sea(hour, y, x) if s.sub_daily else fields.diurnal(hour, x)
    w = storms.mass[row] * np.sin(np.pi * phase) * cycle * (dt * scale)
    sig = storms.sigma[row]
    sx = sig / np.cos(np.deg2rad(np.clip(y, -80, 80)))
    near = np.abs(y - g.lat.mean()) < (g.lat_max - g.lat_min) / 2 + 5 * sig
    near &= np.abs(x - g.lon.mean()) < (g.lon_max - g.lon_min) / 2 + 5 * sx
    return y, x, sig, w, near & (w > 1e-6)


def pad_by_group(group: np.ndarray, n_groups: int, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scatter rows into (n_groups, K, ...) arrays, K = most rows of a group; empty slots 0."""
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=n_groups)
    first = np.cumsum(counts) - counts
    rank = np.empty(len(group), np.int64)
    rank[order] = np.arange(len(group)) - first[group[order]]
    k = max(int(counts.max(initial=0)), 1)
    out = []
    for c in cols:
        a = np.zeros((n_groups, k) + c.shape[1:], c.dtype)
        a[group, rank] = c
        out.append(a)
    return tuple(out)


def _batches(sorted_counts: np.ndarray, budget: int) -> list[tuple[int, int, slice]]:
    """Runs [lo, hi) of buckets (ascending pair counts) whose padded size hi-lo times the largest
    count stays under ``budget`` pairs; with the slice of the sorted pairs they hold."""
    ends = np.cumsum(sorted_counts)
    out, lo = [], int(np.searchsorted(sorted_counts, 1))  # skip empty buckets
    n = len(sorted_counts)
    while lo < n:
        k = max(int(sorted_counts[lo]), 1)
        hi = lo + 1
        while hi < n and (hi + 1 - lo) * sorted_counts[hi] <= max(budget, k):
            hi += 1
        out.append((lo, hi, slice(int(ends[lo] - sorted_counts[lo]), int(ends[hi - 1]))))
        lo = hi
    return out


def _gauss(centres: np.ndarray, mu: np.ndarray, sigma: np.ndarray, res: float) -> np.ndarray:
    """Gaussian density at cell centres times cell size, (N, len(centres)) float32."""
    inv = (1.0 / sigma).astype(np.float32)[:, None]
    z = (centres[None, :].astype(np.float32) - mu[:, None].astype(np.float32)) * inv
    z *= z
    z *= np.float32(-0.5)
    np.exp(z, out=z)
    z *= np.float32(res / np.sqrt(2 * np.pi)) * inv
    return z
