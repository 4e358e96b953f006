"""Probability scores of lightning forecasts from streamed, binned counts.

A :class:`ProbabilityState` holds, per lead time, the number of observed strike events and
non-events in each of ``n_bins`` forecast-probability bins, the sum of forecast probabilities per
bin (for reliability), and exact running sums of the Brier score and log loss. ROC,
precision-recall, reliability and calibration error are computed from the bins, so any number of
maps streams through a state of size ``(n_leads, n_bins)``.

Bin ``i`` of ``n_bins`` holds probabilities in ``[i / (n_bins - 1), (i + 1) / (n_bins - 1))``; the
last bin holds exactly 1, so a 0/1 forecast lands in the first and last bins with no rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

LOG_EPS = 1e-6  # log loss clips to [LOG_EPS, 1 - LOG_EPS] so 0/1 forecasts stay finite


def lead_cases(
    prob: np.ndarray, obs: np.ndarray, mask: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(lead, p, o)`` per lead time: the scored cases as flat float64 / bool arrays.

    ``prob`` float (N, L, H, W), ``obs`` bool (N, L, H, W), ``mask`` bool (N, L, H, W) (scored).
    """
    for lead in range(prob.shape[1]):
        m = mask[:, lead]
        yield lead, prob[:, lead][m].astype(np.float64), obs[:, lead][m].astype(bool)


def bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Probability bin of each value (see module docstring); ``p`` float64 -> int64, same shape."""
    return np.clip(np.floor(p * (n_bins - 1)).astype(np.int64), 0, n_bins - 1)


@dataclass
class ProbabilityState:
    """Streaming sufficient statistics of probability scores, per lead time.

    Attributes: ``positives``, ``negatives`` int64 (L, B) events / non-events per bin;
    ``prob_sum`` float64 (L, B); ``brier_sum``, ``log_loss_sum`` float64 (L,).
    """

    positives: np.ndarray
    negatives: np.ndarray
    prob_sum: np.ndarray
    brier_sum: np.ndarray
    log_loss_sum: np.ndarray

    @classmethod
    def init(cls, n_leads: int, n_bins: int = 1001) -> ProbabilityState:
        """An empty state for ``n_leads`` lead times and ``n_bins`` probability bins."""
        z = np.zeros((n_leads, n_bins), dtype=np.int64)
        return cls(z, z.copy(), np.zeros(z.shape), np.zeros(n_leads), np.zeros(n_leads))

    def add(self, prob: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> ProbabilityState:
        """Accumulate ``prob`` (N, L, H, W) against events ``obs`` where ``mask``; in place."""
        n_bins = self.positives.shape[1]
        for lead, p, o in lead_cases(prob, obs, mask):
            idx = bin_index(p, n_bins)
            self.positives[lead] += np.bincount(idx[o], minlength=n_bins)
            self.negatives[lead] += np.bincount(idx[~o], minlength=n_bins)
            self.prob_sum[lead] += np.bincount(idx, weights=p, minlength=n_bins)
            self.brier_sum[lead] += np.sum((p - o) ** 2)
            pc = np.clip(p, LOG_EPS, 1 - LOG_EPS)
            self.log_loss_sum[lead] -= np.sum(np.where(o, np.log(pc), np.log1p(-pc)))
        return self

    def merge(self, other: ProbabilityState) -> ProbabilityState:
        """The state of both sets of cases together."""
        return ProbabilityState(
            *(a + b for a, b in zip(self._arrays(), other._arrays(), strict=True))
        )

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.positives, self.negatives, self.prob_sum, self.brier_sum, self.log_loss_sum

    @property
    def n(self) -> np.ndarray:
        """Number of scored cases per lead time, int64 (L,)."""
        return self.positives.sum(-1) + self.negatives.sum(-1)

    def compute(self, reliability_bins: int = 10, min_share: float = 0.01) -> dict[str, np.ndarray]:
        """All probability scores: (L,) scalars, (L, B+1) curves, (L, R) reliability.

        ``min_share``: a reliability bin is populated when it holds at least this share of the
        cases (``reliability_max_gap`` looks at populated bins only).
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            n = self.n.astype(np.float64)
            out = {
                "brier_score": self.brier_sum / n,
                "log_loss": self.log_loss_sum / n,
                "base_rate": self.positives.sum(-1) / n,
                "n_cases": self.n,
                "roc_auc": roc_auc(self.positives, self.negatives),
                "average_precision": average_precision(self.positives, self.negatives),
            }
        out["roc_pofd"], out["roc_pod"] = roc_curve(self.positives, self.negatives)
        out["pr_recall"], out["pr_precision"] = pr_curve(self.positives, self.negatives)
        rel = reliability(self.positives, self.negatives, self.prob_sum, reliability_bins)
        out.update(rel)
        out["ece"] = expected_calibration_error(**rel)
        out["reliability_max_gap"] = max_calibration_gap(**rel, min_share=min_share)
        return out


def _exceedances(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True / false positives when "yes" means bin >= k, for k = 0..B: (..., B+1), descending."""
    zero = np.zeros(pos.shape[:-1] + (1,), dtype=np.float64)
    tp = np.concatenate([np.cumsum(pos[..., ::-1], -1)[..., ::-1], zero], -1)
    fp = np.concatenate([np.cumsum(neg[..., ::-1], -1)[..., ::-1], zero], -1)
    return tp, fp


def roc_curve(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(pofd, pod)`` (..., B+1) at bin edges, from (1, 1) down to (0, 0).

    ``pos``, ``neg`` (..., B): events and non-events per probability bin.
    """
    tp, fp = _exceedances(pos, neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        return fp / fp[..., :1], tp / tp[..., :1]


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Area under the ROC curve by the trapezoid rule over bin edges (ties within a bin), (...)."""
    pofd, pod = roc_curve(pos, neg)
    return np.sum((pofd[..., :-1] - pofd[..., 1:]) * (pod[..., :-1] + pod[..., 1:]) / 2, -1)


def pr_curve(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall points ``(recall, precision)`` (..., B+1); precision NaN where no "yes"."""
    tp, fp = _exceedances(pos, neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / tp[..., :1], tp / (tp + fp)


def average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision ``sum_k (R_k - R_{k+1}) P_k`` (scikit-learn's step-wise area), (...)."""
    recall, precision = pr_curve(pos, neg)
    steps = recall[..., :-1] - recall[..., 1:]
    ap = np.sum(np.where(steps > 0, steps * np.nan_to_num(precision[..., :-1]), 0.0), -1)
    return np.where(recall[..., 0] > 0, ap, np.nan)


def reliability(
    pos: np.ndarray, neg: np.ndarray, prob_sum: np.ndarray, n_coarse: int
) -> dict[str, np.ndarray]:
    """Reliability table on ``n_coarse`` equal-width bins: mean forecast, observed frequency, count.

    Fine bins (..., B) are grouped by their lower edge; returns arrays (..., n_coarse).
    """
    n_bins = pos.shape[-1]
    group = np.minimum(np.arange(n_bins) * n_coarse // (n_bins - 1), n_coarse - 1)  # (B,)

    def coarse(x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape[:-1] + (n_coarse,))
        np.add.at(out, (..., group), x)
        return out

    count = coarse(pos + neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "reliability_forecast": coarse(prob_sum) / count,
            "reliability_observed": coarse(pos) / count,
            "reliability_count": count,
        }


def expected_calibration_error(
    reliability_forecast: np.ndarray,
    reliability_observed: np.ndarray,
    reliability_count: np.ndarray,
) -> np.ndarray:
    """Count-weighted mean of |observed frequency - mean forecast| over reliability bins, (...)."""
    gap = np.nan_to_num(np.abs(reliability_observed - reliability_forecast))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(gap * reliability_count, -1) / np.sum(reliability_count, -1)


def max_calibration_gap(
    reliability_forecast: np.ndarray,
    reliability_observed: np.ndarray,
    reliability_count: np.ndarray,
    min_share: float = 0.01,
) -> np.ndarray:
    """Largest |observed frequency - mean forecast| over the populated reliability bins, those
    holding at least ``min_share`` of the cases, (...); NaN when no bin is populated."""
    count = np.asarray(reliability_count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = count / count.sum(-1, keepdims=True)
    gap = np.abs(np.asarray(reliability_observed) - np.asarray(reliability_forecast))
    gap = np.where(share >= min_share, np.nan_to_num(gap), -np.inf)
    worst = gap.max(-1)
    return np.where(np.isfinite(worst), worst, np.nan)


def skill_score(score: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``1 - score / reference`` for negatively oriented scores (Brier skill); NaN if ref is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(reference > 0, 1.0 - np.asarray(score) / reference, np.nan)
