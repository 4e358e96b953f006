"""Categorical scores of lightning forecasts at probability thresholds, from one summed table.

A forecast says "yes" at threshold ``t`` where its probability is ``>= t``. Per lead time and
threshold, :class:`ContingencyState` sums hits ``a``, false alarms ``b``, misses ``c`` and correct
negatives ``d`` over every scored pixel of every map; the scores are computed once from the totals
(never averaged over maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecast.metrics.fused import add_contingency, scoring_kernel
from forecast.metrics.probabilistic import lead_cases

THRESHOLDS = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05, 0.10, ..., 0.95


@dataclass
class ContingencyState:
    """Contingency tables per lead time and threshold: ``table`` int64 (L, K, 4) = a, b, c, d."""

    thresholds: np.ndarray  # (K,) ascending
    table: np.ndarray

    @classmethod
    def init(cls, n_leads: int, thresholds: np.ndarray = THRESHOLDS) -> ContingencyState:
        """An empty state for ``n_leads`` lead times at the given ascending ``thresholds``."""
        thresholds = np.asarray(thresholds, dtype=np.float64)
        return cls(thresholds, np.zeros((n_leads, thresholds.size, 4), dtype=np.int64))

    def add(
        self, prob: np.ndarray, obs: np.ndarray, mask: np.ndarray, kernel: str = "auto"
    ) -> ContingencyState:
        """Accumulate ``prob`` (N, L, H, W) against ``obs`` where ``mask``; in place.

        ``kernel``: "auto" counts in one compiled pass when numba is installed (the same
        counts), "numpy" with the histograms below.
        """
        if kernel != "numpy" and scoring_kernel() is not None:
            add_contingency(self, prob, obs, mask)
            return self
        k = self.thresholds.size
        for lead, p, o in lead_cases(prob, obs, mask):
            n_le = np.searchsorted(self.thresholds, p, side="right")  # how many thresholds <= p
            # yes at threshold j <=> n_le > j: reverse cumulative sums of the histogram of n_le
            hits = np.cumsum(np.bincount(n_le[o], minlength=k + 1)[::-1])[::-1][1:]
            false_alarms = np.cumsum(np.bincount(n_le[~o], minlength=k + 1)[::-1])[::-1][1:]
            n_pos = int(o.sum())
            n_neg = o.size - n_pos
            self.table[lead] += np.stack(
                [hits, false_alarms, n_pos - hits, n_neg - false_alarms], -1
            )
        return self

    def merge(self, other: ContingencyState) -> ContingencyState:
        """The state of both sets of cases together."""
        return ContingencyState(self.thresholds, self.table + other.table)

    def compute(self) -> dict[str, np.ndarray]:
        """Categorical scores (L, K) from the summed tables (see :func:`categorical_scores`)."""
        return categorical_scores(*np.moveaxis(self.table, -1, 0))


def categorical_scores(a, b, c, d) -> dict[str, np.ndarray]:
    """Scores of 2x2 contingency tables (hits a, false alarms b, misses c, correct negatives d).

    POD a/(a+c); FAR (false-alarm ratio) b/(a+b); CSI a/(a+b+c); frequency bias (a+b)/(a+c);
    ETS (a-ar)/(a+b+c-ar), ar=(a+b)(a+c)/n; HSS 2(ad-bc)/((a+c)(c+d)+(a+b)(b+d)); PSS POD-POFD;
    SEDI (ln F - ln H - ln(1-F) + ln(1-H)) / (ln F + ln H + ln(1-F) + ln(1-H)), H=POD, F=POFD.
    Arrays broadcast; undefined ratios are NaN.
    """
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in (a, b, c, d))
    n = a + b + c + d
    with np.errstate(invalid="ignore", divide="ignore"):
        pod = a / (a + c)
        pofd = b / (b + d)
        a_random = (a + b) * (a + c) / n
        lf, lh, lf1, lh1 = np.log(pofd), np.log(pod), np.log1p(-pofd), np.log1p(-pod)
        return {
            "pod": pod,
            "far": b / (a + b),
            "pofd": pofd,
            "csi": a / (a + b + c),
            "frequency_bias": (a + b) / (a + c),
            "ets": (a - a_random) / (a + b + c - a_random),
            "hss": 2 * (a * d - b * c) / ((a + c) * (c + d) + (a + b) * (b + d)),
            "pss": pod - pofd,
            "sedi": (lf - lh - lf1 + lh1) / (lf + lh + lf1 + lh1),
        }


def best_threshold(csi: np.ndarray, thresholds: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Threshold of the highest CSI per lead: ``csi`` (L, K) -> (L,); ``default`` where all NaN."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    filled = np.where(np.isnan(csi), -np.inf, csi)
    best = thresholds[np.argmax(filled, axis=-1)]
    return np.where(np.all(np.isnan(csi), axis=-1), default, best)
