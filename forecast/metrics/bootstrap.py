"""Confidence intervals over forecast days: small per-day statistics, moving-block bootstrap.

Maps of one forecast day are correlated, so days (not pixels) are resampled; consecutive days
are correlated too (weather lasts several days, and consecutive inits share target days), so
days are drawn in blocks of consecutive days: the circular moving-block bootstrap (Politis and
Romano 1992). Each resample strings together ``ceil(D / block)`` blocks of ``block`` consecutive
scored days starting at uniformly drawn days (wrapping from the last day to the first) and keeps
the first ``D`` days, so every day is drawn once per resample on average. ``block = 1`` is the
i.i.d. bootstrap of days.

:class:`DailyState` keeps, per init day and lead time, the Brier sum and case count, event /
non-event counts in the same probability bins as :class:`ProbabilityState` (for ROC AUC), and the
contingency table at one threshold per lead (for CSI): ``n_days * n_leads * (2 + 2 * n_bins + 3)``
numbers whatever the size of the maps. The point estimates of these scores are computed from the
same state with every day drawn once (:func:`point_estimates`), so an interval and its estimate
always come from the same binned counts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from forecast.metrics.probabilistic import bin_index, roc_auc, skill_score

HEADLINE = ("brier_skill_score", "roc_auc", "csi")  # the scores with intervals


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
    def init(cls, n_days: int, n_leads: int, n_bins: int = 1001) -> DailyState:
        """An empty state for ``n_days`` forecast days, ``n_leads`` leads, ``n_bins`` bins."""
        counts = np.zeros((n_days, n_leads, n_bins), dtype=np.int64)
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
        n_days, _, n_bins = self.positives.shape
        for lead in range(prob.shape[1]):
            m = mask[:, lead]
            d = np.broadcast_to(day[:, None, None], m.shape)[m]
            p = prob[:, lead][m].astype(np.float64)
            o = obs[:, lead][m].astype(bool)
            yes = p >= thresholds[lead]
            self.brier[:, lead] += np.bincount(d, weights=(p - o) ** 2, minlength=n_days)
            self.n[:, lead] += np.bincount(d, minlength=n_days)
            key = d * n_bins + bin_index(p, n_bins)
            size = n_days * n_bins
            shape = (n_days, n_bins)
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


def resample_weights(n_days: int, n_resamples: int, seed: int, block: int = 1) -> np.ndarray:
    """How often each day is drawn in each resample: float64 (B, D), every row summing to D.

    Circular moving blocks of ``block`` consecutive days (see module docstring); ``block = 1``
    draws days i.i.d. with replacement (the same draws for the same seed as before blocks).
    A block longer than the days is cut to ``n_days``.
    """
    block = max(1, min(int(block), n_days))
    n_starts = -(-n_days // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_days, size=(n_resamples, n_starts))
    days = (starts[:, :, None] + np.arange(block)) % n_days  # (B, starts, block)
    days = days.reshape(n_resamples, -1)[:, :n_days]  # (B, D): the first D days drawn
    rows = np.arange(n_resamples)[:, None] * n_days
    counts = np.bincount((rows + days).ravel(), minlength=n_resamples * n_days)
    return counts.reshape(n_resamples, n_days).astype(np.float64)


def independent_blocks(n_days: int, block: int) -> int:
    """Number of non-overlapping blocks of ``block`` days in ``n_days``: what an interval rests on."""
    return int(n_days // max(1, int(block)))


def bootstrap_samples(
    state: DailyState, reference: DailyState, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Headline scores of each resample: ``brier_skill_score``, ``roc_auc``, ``csi``, each (B, L).

    ``weights`` float (B, D) counts each day's draws; ``reference`` is the climatology's state on
    the same days (same day axis).
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


def point_estimates(state: DailyState, reference: DailyState) -> dict[str, np.ndarray]:
    """Headline scores of all days, each (L,): the resample that draws every day once."""
    ones = np.ones((1, state.n.shape[0]))
    return {k: v[0] for k, v in bootstrap_samples(state, reference, ones).items()}


def confidence_intervals(
    state: DailyState,
    reference: DailyState,
    *,
    n_resamples: int,
    seed: int,
    block: int = 1,
    level: float = 0.95,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Percentile intervals ``{score: (lo (L,), hi (L,))}`` of the headline scores.

    Days are resampled in circular moving blocks of ``block`` days. NaN when fewer than two days
    or ``n_resamples`` is 0.
    """
    n_days, n_leads = state.n.shape
    if n_days < 2 or n_resamples <= 0:
        nan = np.full(n_leads, np.nan)
        return {name: (nan, nan.copy()) for name in HEADLINE}
    weights = resample_weights(n_days, n_resamples, seed, block)
    samples = bootstrap_samples(state, reference, weights)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN leads (no events) stay NaN
        return {name: tuple(np.nanpercentile(samples[name], q, axis=0)) for name in HEADLINE}
