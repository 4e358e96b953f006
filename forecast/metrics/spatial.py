"""Spatial-tolerance scores of lightning forecasts: fractions skill score, neighbourhood CSI.

Both judge the "yes" field (probability >= a threshold, one per lead time) against observed strikes
in square windows of ``n`` x ``n`` pixels (the *scale*). Fractions are taken over the observed cells
of each window, so unobserved cells and the domain edge neither help nor hurt. Sums run over every
scored pixel of every map (one summed state, as for contingency tables).

- FSS = 1 - sum (Ff - Fo)^2 / sum (Ff^2 + Fo^2), Ff / Fo the forecast / observed fractions.
- Neighbourhood CSI: an observed strike is a hit when a "yes" pixel lies in its window, a miss
  otherwise; a "yes" pixel with no observed strike in its window is a false alarm.
  CSI_n = hits / (hits + misses + false alarms); at scale 1 it is the ordinary CSI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def box_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum over the ``n`` x ``n`` window around each pixel (zero outside), over the last two axes.

    ``x`` (..., H, W) -> (..., H, W): int32 for boolean or integer ``x`` (exact and fast: counts of
    pixels), float64 otherwise. The window spans ``-(n-1)//2 .. n//2`` pixels.
    """
    x = np.asarray(x)
    exact = x.dtype == bool or np.issubdtype(x.dtype, np.integer)
    if n <= 1:
        return x.astype(np.int32 if exact else np.float64)
    size = (1,) * (x.ndim - 2) + (n, n)
    # scipy's running mean, zero outside; an even window reaches one pixel further after
    mean = ndimage.uniform_filter(
        x.astype(np.float64), size, mode="constant", origin=-1 if n % 2 == 0 else 0
    )
    out = mean * (n * n)
    return np.rint(out).astype(np.int32) if exact else out


@dataclass
class FractionsState:
    """Per lead and scale: FSS sums and neighbourhood contingency counts.

    ``sq_diff``, ``sq_sum`` float64 (L, S): sums of (Ff-Fo)^2 and Ff^2+Fo^2;
    ``counts`` int64 (L, S, 3): hits, misses, false alarms.
    """

    scales: np.ndarray  # (S,) window sizes in pixels
    sq_diff: np.ndarray
    sq_sum: np.ndarray
    counts: np.ndarray

    @classmethod
    def init(cls, n_leads: int, scales) -> FractionsState:
        """An empty state for ``n_leads`` lead times and window sizes ``scales``."""
        scales = np.asarray(scales, dtype=np.int64)
        z = np.zeros((n_leads, scales.size))
        return cls(scales, z, z.copy(), np.zeros((n_leads, scales.size, 3), dtype=np.int64))

    def add(
        self, prob: np.ndarray, obs: np.ndarray, mask: np.ndarray, thresholds: np.ndarray
    ) -> FractionsState:
        """Accumulate ``prob`` (N, L, H, W), "yes" where ``>= thresholds[lead]``; in place."""
        for lead in range(prob.shape[1]):
            m = mask[:, lead]
            yes = (np.nan_to_num(prob[:, lead]) >= thresholds[lead]) & m
            o = obs[:, lead] & m
            for s, n in enumerate(self.scales):
                self._add_scale(lead, s, int(n), yes, o, m)
        return self

    def _add_scale(self, lead: int, s: int, n: int, yes, o, m) -> None:
        n_obs = box_sum(m, n)  # observed cells per window, (N, H, W)
        f_yes, f_obs = box_sum(yes, n), box_sum(o, n)
        sel = m & (n_obs > 0)
        ff, fo = f_yes[sel] / n_obs[sel], f_obs[sel] / n_obs[sel]
        self.sq_diff[lead, s] += np.sum((ff - fo) ** 2)
        self.sq_sum[lead, s] += np.sum(ff**2 + fo**2)
        near_yes, near_obs = f_yes > 0, f_obs > 0
        self.counts[lead, s] += [
            np.sum(o & near_yes),
            np.sum(o & ~near_yes),
            np.sum(yes & ~near_obs),
        ]

    def merge(self, other: FractionsState) -> FractionsState:
        """The state of both sets of cases together."""
        return FractionsState(
            self.scales,
            self.sq_diff + other.sq_diff,
            self.sq_sum + other.sq_sum,
            self.counts + other.counts,
        )

    def compute(self) -> dict[str, np.ndarray]:
        """``fss`` and ``csi_neighbourhood``, each (L, S); NaN where undefined."""
        hits, misses, false_alarms = np.moveaxis(self.counts.astype(np.float64), -1, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "fss": np.where(self.sq_sum > 0, 1.0 - self.sq_diff / self.sq_sum, np.nan),
                "csi_neighbourhood": hits / (hits + misses + false_alarms),
            }
