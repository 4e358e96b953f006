"""Streaming verification scores of lightning forecasts.

Every score keeps a small state with ``init`` / ``add`` / ``merge`` / ``compute``, so a decade of
maps streams through in batches and partial results merge:

- :class:`ProbabilityState` (probabilistic): Brier score, log loss, reliability, ECE, ROC and AUC,
  precision-recall and average precision, from binned counts of events and non-events.
- :class:`ContingencyState` (categorical, per probability threshold): POD, FAR, CSI, ETS, HSS, PSS,
  frequency bias, SEDI, from one contingency table summed over the whole set.
- :class:`FractionsState` (spatial tolerance): fractions skill score and neighbourhood CSI.
- :class:`DailyState` (per forecast day): the headline scores and their confidence intervals
  (percentile, circular moving-block bootstrap of days) from one binned state.

Arrays of forecasts and observations are ``(N inits, L leads, H, W)``; a boolean mask of the same
shape marks the scored pixels (observed cells with a finite forecast).
"""

from forecast.metrics.bootstrap import (
    DailyState,
    bootstrap_samples,
    confidence_intervals,
    point_estimates,
    resample_weights,
)
from forecast.metrics.categorical import (
    THRESHOLDS,
    ContingencyState,
    best_threshold,
    categorical_scores,
)
from forecast.metrics.probabilistic import (
    ProbabilityState,
    average_precision,
    expected_calibration_error,
    pr_curve,
    reliability,
    roc_auc,
    roc_curve,
    skill_score,
)
from forecast.metrics.spatial import FractionsState, box_sum

__all__ = [
    "THRESHOLDS",
    "ContingencyState",
    "DailyState",
    "FractionsState",
    "ProbabilityState",
    "average_precision",
    "best_threshold",
    "bootstrap_samples",
    "box_sum",
    "categorical_scores",
    "confidence_intervals",
    "expected_calibration_error",
    "point_estimates",
    "pr_curve",
    "reliability",
    "resample_weights",
    "roc_auc",
    "roc_curve",
    "skill_score",
]
