"""Confidence intervals over forecast days: small per-day statistics, percentile bootstrap.

Maps of one forecast day are correlated, so days (not pixels) are resampled. :class:`DailyState`
keeps, per init day and lead time, the Brier sum and case count, event / non-event counts in coarse
probability bins (for ROC AUC), and the contingency table at one threshold per lead (for CSI):
``n_days * n_leads * (2 + 2 * coarse_bins + 4)`` numbers whatever the size of the maps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from forecast.metrics.probabilistic import bin_index, roc_auc, skill_score

COARSE_BINS = 101


@dataclass
class DailyState:
    """Per-day sufficient statistics, arrays with leading dims (D days, L leads).

    ``brier`` float64 (D, L); ``n`` int64 (D, L); ``positives``, ``negatives`` int64 (D, L, C);
    ``table`` int64 (D, L, 3) = hits, false alarms, misses at the lead's threshold.
    """

    brier: np.ndarray
    n: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    table: np.ndarray

    @classmethod
    def init(cls, n_days: int, n_leads: int, coarse_bins: int = COARSE_BINS) -> DailyState:
        """An empty state for ``n_days`` forecast days and ``n_leads`` lead times."""
        counts = np.zeros((n_days, n_leads, coarse_bins), dtype=np.int64)
        return cls(
            np.zeros((n_days, n_leads)),
            np.zeros((n_days, n_leads), dtype=np.int64),
            counts,
            counts.copy(),
            np.zeros((n_days, n_leads, 3), dtype=np.int64),
        )

    def add(
        self,
        prob: np.ndarray,
        obs: np.ndarray,
        mask: np.ndarray,
        day: np.ndarray,
        thresholds: np.ndarray,
    ) -> DailyState:
        """Accumulate ``prob`` (N, L, H, W) of init days ``day`` int (N,) into the state; in place.

        ``thresholds`` (L,) are the probability thresholds of the CSI table.
        """
        n_days, _, n_coarse = self.positives.shape
        for lead in range(prob.shape[1]):
            m = mask[:, lead]
            d = np.broadcast_to(day[:, None, None], m.shape)[m]
            p = prob[:, lead][m].astype(np.float64)
            o = obs[:, lead][m].astype(bool)
            yes = p >= thresholds[lead]
            self.brier[:, lead] += np.bincount(d, weights=(p - o) ** 2, minlength=n_days)
            self.n[:, lead] += np.bincount(d, minlength=n_days)
            key = d * n_coarse + bin_index(p, n_coarse)
            size = n_days * n_coarse
            shape = (n_days, n_coarse)
            self.positives[:, lead] += np.bincount(key[o], minlength=size).reshape(shape)
            self.negatives[:, lead] += np.bincount(key[~o], minlength=size).reshape(shape)
            for j, sel in enumerate((yes & o, yes & ~o, ~yes & o)):
                self.table[:, lead, j] += np.bincount(d[sel], minlength=n_days)
        return self

    def merge(self, other: DailyState) -> DailyState:
        """The state of both sets of cases together (same days axis)."""
        return DailyState(
            self.brier + other.brier,
            self.n + other.n,
            self.positives + other.positives,
            self.negatives + other.negatives,
            self.table + other.table,
        )


def resample_weights(n_days: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each day is drawn in each resample (with replacement): float64 (B, D)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_days, size=(n_resamples, n_days))
    return np.stack([np.bincount(row, minlength=n_days) for row in draws]).astype(np.float64)


def bootstrap_samples(
    state: DailyState, reference: DailyState, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Headline scores of each resample: ``brier_skill_score``, ``roc_auc``, ``csi``, each (B, L).

    ``reference`` is the climatology's state on the same days (same day axis).
    """

    def total(x: np.ndarray) -> np.ndarray:
        return np.tensordot(weights, x, axes=(1, 0))  # (B, D) x (D, ...) -> (B, ...)

    with np.errstate(invalid="ignore", divide="ignore"):
        brier = total(state.brier) / total(state.n)
        ref = total(reference.brier) / total(reference.n)
        hits, false_alarms, misses = np.moveaxis(total(state.table), -1, 0)
        return {
            "brier_skill_score": skill_score(brier, ref),
            "roc_auc": roc_auc(total(state.positives), total(state.negatives)),
            "csi": hits / (hits + false_alarms + misses),
        }


def confidence_intervals(
    state: DailyState,
    reference: DailyState,
    *,
    n_resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Percentile intervals ``{score: (lo (L,), hi (L,))}`` of the headline scores.

    NaN when fewer than two days or ``n_resamples`` is 0.
    """
    n_days, n_leads = state.n.shape
    names = ("brier_skill_score", "roc_auc", "csi")
    if n_days < 2 or n_resamples <= 0:
        nan = np.full(n_leads, np.nan)
        return {name: (nan, nan.copy()) for name in names}
    samples = bootstrap_samples(state, reference, resample_weights(n_days, n_resamples, seed))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN leads (no events) stay NaN
        return {name: tuple(np.nanpercentile(samples[name], q, axis=0)) for name in names}
