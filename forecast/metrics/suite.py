"""Every score of one method in one streaming state, and the scores Dataset of all methods.

:class:`MethodState` bundles the probability, contingency, fractions and per-day states of one
method; :func:`scores_dataset` computes them and stacks the methods along a ``forecast``
dimension (with ``lead_time``, ``probability_threshold``, ``scale``, ``bin`` and
``curve_threshold`` as needed): ``scores.sel(forecast="model")`` picks the model. ``lead_time`` is a
duration (CF forecast_period), ``lead_step`` the same in map steps. Brier skill scores use the
``climatology`` and ``persistence`` states of the same cases. :func:`upgrade_scores` renames the
dimensions of a scores file written before these names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.schema import LEAD_STEP, LEAD_TIME, lead_coords
from forecast.metrics.bootstrap import (
    DailyState,
    confidence_intervals,
    independent_blocks,
    point_estimates,
)
from forecast.metrics.categorical import THRESHOLDS, ContingencyState
from forecast.metrics.fused import add_fused, scoring_kernel
from forecast.metrics.probabilistic import ProbabilityState, skill_score
from forecast.metrics.spatial import FractionsState

REFERENCES = ("climatology", "persistence")  # Brier skill scores are relative to these
# dimensions: the scored forecasts (model, baselines, files), the probability thresholds of the
# categorical scores, and those of the ROC and precision-recall curves
FORECAST, PROBABILITY_THRESHOLD, CURVE_THRESHOLD = (
    "forecast",
    "probability_threshold",
    "curve_threshold",
)
# the names of scores files written before them (xarray's ``sel`` takes ``method`` as its own)
OLD_NAMES = {
    "method": FORECAST,
    "threshold": PROBABILITY_THRESHOLD,
    "prob_threshold": CURVE_THRESHOLD,
}


@dataclass
class MethodState:
    """All streaming states of one method (see :mod:`forecast.metrics`)."""

    prob: ProbabilityState
    table: ContingencyState
    fractions: FractionsState
    daily: DailyState
    thresholds: np.ndarray  # (L,) probability threshold of the categorical / spatial scores

    @classmethod
    def init(cls, n_leads: int, n_days: int, cfg, thresholds: np.ndarray) -> MethodState:
        return cls(
            ProbabilityState.init(n_leads, cfg.n_bins),
            ContingencyState.init(n_leads, THRESHOLDS),
            FractionsState.init(n_leads, cfg.neighbourhoods),
            DailyState.init(n_days, n_leads, cfg.n_bins),  # the bins of ``prob``: one AUC
            np.asarray(thresholds, dtype=np.float64),
        )

    def add(self, prob, events, mask, day, kernel: str = "auto") -> None:
        """Accumulate ``prob`` (N, L, H, W) of init days ``day`` (N,); finite where ``mask``.

        ``kernel``: "auto" scores in the fused passes of :mod:`forecast.metrics.fused` when numba
        is installed (the same bits), "numpy" in each state's own ``add``.
        """
        if kernel != "numpy" and scoring_kernel() is not None:
            add_fused(self, prob, events, mask, day)
            return
        self.prob.add(prob, events, mask)
        self.table.add(prob, events, mask, kernel="numpy")
        self.fractions.add(prob, events, mask, self.thresholds)
        self.daily.add(prob, events, mask, day, self.thresholds)


_CURVES = ("roc_pofd", "roc_pod", "pr_recall", "pr_precision")
_RELIABILITY = ("reliability_forecast", "reliability_observed", "reliability_count")
_CATEGORICAL = ("pod", "far", "pofd", "ets", "hss", "pss", "frequency_bias", "sedi")
_TABLE = ("hits", "false_alarms", "misses", "correct_negatives")


def scores_dataset(
    states: dict[str, MethodState], names: list[str], ecfg, step: pd.Timedelta
) -> xr.Dataset:
    """Compute every state and stack the methods ``names`` into the scores Dataset; ``step`` is
    the maps' time step (lead times are durations)."""
    per = {n: _method_scores(states[n], states, ecfg) for n in states}
    any_state = states[names[0]]
    n_leads, n_bins = any_state.prob.positives.shape
    coords = {
        FORECAST: np.array(names, dtype=object),
        **lead_coords(n_leads, step),
        PROBABILITY_THRESHOLD: THRESHOLDS,
        "scale": np.asarray(ecfg.neighbourhoods, dtype=np.int64),
        "bin": (np.arange(ecfg.reliability_bins) + 0.5) / ecfg.reliability_bins,
        CURVE_THRESHOLD: np.arange(n_bins + 1) / (n_bins - 1),
    }
    data = {}
    for var in per[names[0]]:
        stacked = np.stack([per[n][var] for n in names])
        data[var] = (_dims(var, stacked.ndim), stacked, {"long_name": _LONG.get(var, var)})
    ds = xr.Dataset(data, coords=coords)
    for name, long_name in _COORD_LONG.items():
        ds[name].attrs.update(long_name=long_name, units="1")
    ds[FORECAST].attrs.update(long_name="scored forecast: the model, a baseline or a file")
    ds.attrs.update(title="strikecast forecast scores by forecast and lead time")
    ds.attrs.update(n_bins=int(n_bins), seed=int(ecfg.seed))
    ds.attrs.update(bootstrap_attrs(any_state.daily.n.shape[0], ecfg))
    return ds


def bootstrap_attrs(n_days: int, ecfg) -> dict:
    """The interval settings recorded in the scores file: resamples, block length, blocks."""
    return {
        "bootstrap": int(ecfg.bootstrap),
        "bootstrap_block": int(ecfg.bootstrap_block),
        "bootstrap_blocks": independent_blocks(n_days, ecfg.bootstrap_block),
        "bootstrap_scheme": "percentile intervals (95 %) of a circular moving-block bootstrap "
        "of forecast days, blocks of bootstrap_block consecutive scored days; "
        "bootstrap_blocks = n_days // bootstrap_block",
    }


def _dims(var: str, ndim: int) -> tuple[str, ...]:
    if ndim == 2:
        return (FORECAST, LEAD_TIME)
    last = {
        **dict.fromkeys(_CURVES, CURVE_THRESHOLD),
        **dict.fromkeys(_RELIABILITY, "bin"),
        **dict.fromkeys(("fss", "csi_neighbourhood"), "scale"),
    }.get(var, PROBABILITY_THRESHOLD)
    return (FORECAST, LEAD_TIME, last)


def upgrade_scores(ds: xr.Dataset) -> xr.Dataset:
    """A scores Dataset written before the names of :data:`OLD_NAMES` (``method``, ``threshold``,
    ``prob_threshold``; ``lead_time`` counting steps) in today's names; others unchanged."""
    ds = ds.rename({old: new for old, new in OLD_NAMES.items() if old in ds.variables})
    old_leads = LEAD_TIME in ds.dims and ds[LEAD_TIME].dtype.kind in "iu"  # 1, 2, .. steps
    if old_leads and LEAD_STEP not in ds.coords and ds.attrs.get("time_step"):
        step = pd.Timedelta(ds.attrs["time_step"])
        ds = ds.assign_coords(lead_coords(ds.sizes[LEAD_TIME], step))
    return ds


def _method_scores(state: MethodState, states: dict[str, MethodState], ecfg) -> dict:
    """All scores of one method: (L,), (L, K), (L, S), (L, R) or (L, B+1) arrays."""
    out = state.prob.compute(ecfg.reliability_bins, ecfg.reliability_min_share)
    cat = state.table.compute()
    out.update({k: cat[k] for k in _CATEGORICAL})
    out["csi_by_threshold"] = cat["csi"]
    out.update(zip(_TABLE, np.moveaxis(state.table.table, -1, 0), strict=True))
    out.update(state.fractions.compute())
    out["best_threshold"] = state.thresholds
    pers = states["persistence"].prob.compute()
    out["brier_skill_score_vs_persistence"] = skill_score(out["brier_score"], pers["brier_score"])
    # headline scores and their intervals from one binned per-day state
    clim = states["climatology"].daily
    out.update(point_estimates(state.daily, clim))
    ci = confidence_intervals(
        state.daily, clim, n_resamples=ecfg.bootstrap, seed=ecfg.seed, block=ecfg.bootstrap_block
    )
    for name, (lo, hi) in ci.items():
        out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    return out


_COORD_LONG = {
    PROBABILITY_THRESHOLD: "forecast 'yes' where probability >= this (categorical scores)",
    "scale": "neighbourhood width in cells",
    "bin": "centre of the reliability bin",
    CURVE_THRESHOLD: "forecast 'yes' where probability >= this (ROC and precision-recall curves)",
}
_LONG = {
    "brier_score": "Brier score (mean squared probability error)",
    "brier_skill_score": "Brier skill score against climatology on the same cases",
    "brier_skill_score_vs_persistence": "Brier skill score against persistence on the same cases",
    "log_loss": "mean negative log-likelihood (probabilities clipped to [1e-6, 1 - 1e-6])",
    "ece": "expected calibration error over the reliability bins",
    "reliability_max_gap": "largest |observed frequency - mean forecast| over reliability bins "
    "holding at least eval.reliability_min_share of the cases",
    "roc_auc": "area under the ROC curve",
    "average_precision": "average precision (area under the precision-recall curve)",
    "csi": "critical success index at best_threshold",
    "best_threshold": "probability threshold of highest CSI on the selection cases",
    "csi_by_threshold": "critical success index at each probability threshold",
    "pod": "probability of detection",
    "far": "false-alarm ratio",
    "pofd": "probability of false detection",
    "ets": "equitable threat score",
    "hss": "Heidke skill score",
    "pss": "Peirce skill score",
    "frequency_bias": "frequency bias",
    "sedi": "symmetric extremal dependence index",
    "fss": "fractions skill score at best_threshold",
    "csi_neighbourhood": "CSI with a hit anywhere in the scale x scale window, at best_threshold",
    "base_rate": "observed frequency of at least one strike",
    "n_cases": "scored pixels (observed cells with a finite forecast)",
}
