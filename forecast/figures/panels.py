"""The common parts of the score diagrams: method colours, lead-time labels, panels, legends.

Every method of a scores file is drawn in the same colour in every diagram of
:mod:`forecast.figures.diagrams`; a diagram whose variables are absent is skipped with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from data_prep.errors import UserError
from data_prep.schema import LEAD_STEP, parse_time_step
from forecast.figures.maps import duration_words
from forecast.metrics.suite import FORECAST

METHOD, LEAD = FORECAST, LEAD_STEP  # scores dims, lead indexed by step (``by_lead_step``)
# Fixed colours so a method looks the same in every figure; others cycle through the rest.
METHOD_COLOURS = {
    "model": "black",
    "persistence": "tab:blue",
    "smoothed_persistence": "tab:cyan",
    "climatology": "tab:green",
    "lagrangian": "tab:purple",
    "mos": "tab:orange",
    "oracle": "tab:red",
}
_SPARE = ["tab:brown", "tab:pink", "tab:olive", "tab:gray"]
HEADLINE = {
    "brier_skill_score": "Brier skill score",
    "roc_auc": "ROC area",
    "average_precision": "average precision",
    "csi": "CSI at best threshold",
}


def method_style(scores: xr.Dataset, method: str) -> dict:
    """Line style of one method: fixed colour, thicker line for the model, dashed oracle."""
    spare = [m for m in scores[METHOD].values.tolist() if m not in METHOD_COLOURS]
    colour = METHOD_COLOURS.get(method) or _SPARE[spare.index(method) % len(_SPARE)]
    return {
        "color": colour,
        "lw": 2.0 if method == "model" else 1.2,
        "ls": "--" if method == "oracle" else "-",
        "label": method.replace("_", " "),
    }


def map_step(scores: xr.Dataset) -> pd.Timedelta | None:
    """The map step of the scored maps (``time_step`` attribute), or None when unknown."""
    try:
        return parse_time_step(str(scores.attrs["time_step"]))
    except (KeyError, UserError):
        return None


def lead_label(scores: xr.Dataset, lead: int) -> str:
    """``lead 2 (+2 days)``, or ``lead 2`` when the step is unknown."""
    step = map_step(scores)
    return f"lead {lead}" + (f" (+{duration_words(lead * step)})" if step is not None else "")


def lead_axis(scores: xr.Dataset) -> str:
    step = map_step(scores)
    return "lead time (map steps" + (f" of {duration_words(step)})" if step is not None else ")")


def pick_leads(scores: xr.Dataset, n: int = 3) -> list[int]:
    """The first, a middle and the last lead time (unique), for panels of curve diagrams."""
    leads = scores[LEAD].values
    return [int(leads[i]) for i in sorted({0, len(leads) // 2, len(leads) - 1})][:n]


def select_curve(da: xr.DataArray, keep: tuple[str, ...]) -> xr.DataArray:
    """Drop every dimension not in ``keep``: scale 1 when present, otherwise the first entry."""
    for dim in [d for d in da.dims if d not in keep]:
        values = da[dim].values if dim in da.coords else None
        if dim == "scale" and values is not None and 1 in values:
            da = da.sel({dim: 1})
        else:
            da = da.isel({dim: 0})
    return da


def curve_dim(da: xr.DataArray) -> str | None:
    others = [d for d in da.dims if d not in (METHOD, LEAD)]
    return others[0] if others else None


def need(scores: xr.Dataset, names: tuple[str, ...], diagram: str) -> bool:
    missing = [n for n in names if n not in scores]
    if missing:
        warnings.warn(f"scores file lacks {', '.join(missing)}: {diagram} not drawn", stacklevel=3)
    return not missing


def panels(
    n: int, height: float = 4.0, rows: int = 1, ratios=None, *, square: bool = False
) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows`` x ``n`` panels; ``square`` for equal-aspect panels (unit-square
    diagrams), whose titles, labels and legends then keep clear of each other."""
    fig = Figure(figsize=(4.0 * n + 0.6, height), layout="compressed" if square else "constrained")
    axes = fig.subplots(
        rows, n, squeeze=False, gridspec_kw={"height_ratios": ratios} if ratios else None
    )
    return fig, axes


def legend_below(fig: Figure, ax) -> None:
    """One legend for all panels, below them (the panels share methods and reference lines)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8)


def pr_achievable(recall: np.ndarray, precision: np.ndarray, n: int = 24):
    """Precision-recall points (M,) with the achievable curve between neighbouring thresholds.

    A straight line between two PR points promises precision that no forecast reaches (Davis and
    Goadrich 2006): mixing the "yes" cells of two thresholds moves true and false positives, not
    precision, linearly. In units of all events, ``tp = recall`` and ``fp = recall (1/p - 1)``;
    ``n`` points per step interpolate those and give ``precision = tp / (tp + fp)``.

    Parameters
    ----------
    recall, precision : (K,) finite points of one curve, in threshold order.
    """
    if recall.size < 2:
        return recall, precision
    fp = recall * (1.0 / np.maximum(precision, 1e-12) - 1.0)  # (K,)
    w = np.linspace(0.0, 1.0, n, endpoint=False)[None, :]  # (1, n)
    tp_i = recall[:-1, None] + w * np.diff(recall)[:, None]  # (K - 1, n)
    fp_i = fp[:-1, None] + w * np.diff(fp)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        prec_i = np.where(tp_i > 0, tp_i / (tp_i + fp_i), precision[:-1, None])
    return np.r_[tp_i.ravel(), recall[-1]], np.r_[prec_i.ravel(), precision[-1]]
