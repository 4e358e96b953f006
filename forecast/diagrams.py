"""Score diagrams of lightning forecasts, drawn from a scores file written by ``evaluate``.

Reliability diagram with sharpness histogram, ROC and precision-recall curves, performance diagram
(POD against success ratio with CSI contours and frequency-bias lines) and headline scores against
lead time with confidence intervals. Every method of the file is drawn in the same colour across
figures. A diagram whose variables are absent from the file is skipped with a warning, so files
from older or partial evaluations still plot.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from data_prep.errors import UserError
from data_prep.schema import parse_time_step
from forecast.map_figures import duration_words

METHOD, LEAD = "method", "lead_time"
# Fixed colours so a method looks the same in every figure; others cycle through the rest.
METHOD_COLOURS = {
    "model": "black",
    "persistence": "tab:blue",
    "smoothed_persistence": "tab:cyan",
    "climatology": "tab:green",
    "lagrangian": "tab:purple",
    "oracle": "tab:red",
}
_SPARE = ["tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:gray"]
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


def _step(scores: xr.Dataset) -> pd.Timedelta | None:
    """The map step of the scored maps (``time_step`` attribute), or None when unknown."""
    try:
        return parse_time_step(str(scores.attrs["time_step"]))
    except (KeyError, UserError):
        return None


def _lead_label(scores: xr.Dataset, lead: int) -> str:
    """``lead 2 (+2 days)``, or ``lead 2`` when the step is unknown."""
    step = _step(scores)
    return f"lead {lead}" + (f" (+{duration_words(lead * step)})" if step is not None else "")


def _lead_axis(scores: xr.Dataset) -> str:
    step = _step(scores)
    return "lead time (map steps" + (f" of {duration_words(step)})" if step is not None else ")")


def _pick_leads(scores: xr.Dataset, n: int = 3) -> list[int]:
    """The first, a middle and the last lead time (unique), for panels of curve diagrams."""
    leads = scores[LEAD].values
    return [int(leads[i]) for i in sorted({0, len(leads) // 2, len(leads) - 1})][:n]


def _select(da: xr.DataArray, keep: tuple[str, ...]) -> xr.DataArray:
    """Drop every dimension not in ``keep``: scale 1 when present, otherwise the first entry."""
    for dim in [d for d in da.dims if d not in keep]:
        values = da[dim].values if dim in da.coords else None
        if dim == "scale" and values is not None and 1 in values:
            da = da.sel({dim: 1})
        else:
            da = da.isel({dim: 0})
    return da


def _curve_dim(da: xr.DataArray) -> str | None:
    others = [d for d in da.dims if d not in (METHOD, LEAD)]
    return others[0] if others else None


def _need(scores: xr.Dataset, names: tuple[str, ...], diagram: str) -> bool:
    missing = [n for n in names if n not in scores]
    if missing:
        warnings.warn(f"scores file lacks {', '.join(missing)}: {diagram} not drawn", stacklevel=3)
    return not missing


def _panels(n: int, height: float = 4.0, rows: int = 1, ratios=None) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(4.0 * n + 0.6, height), layout="constrained")
    axes = fig.subplots(
        rows, n, squeeze=False, gridspec_kw={"height_ratios": ratios} if ratios else None
    )
    return fig, axes


def _legend_below(fig: Figure, ax) -> None:
    """One legend for all panels, below them (the panels share methods and reference lines)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8)


# --------------------------------------------------------------------------------------------
# reliability


def reliability_figure(scores: xr.Dataset) -> Figure | None:
    """Observed frequency against mean forecast probability per bin, with a sharpness histogram."""
    names = ("reliability_forecast", "reliability_observed", "reliability_count")
    if not _need(scores, names, "reliability diagram"):
        return None
    leads = _pick_leads(scores)
    fig, axes = _panels(len(leads), height=5.6, rows=2, ratios=[3, 1])
    for col, lead in enumerate(leads):
        ax, hist = axes[0, col], axes[1, col]
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="perfect reliability")
        _climatology_lines(ax, scores, lead)
        for m in scores[METHOD].values.tolist():
            sel = {METHOD: m, LEAD: lead}
            f, o, n = (_select(scores[v].sel(sel), (_curve_dim(scores[v]),)).values for v in names)
            ok = n > 0
            st = method_style(scores, m)
            # Two-valued forecasts (persistence) fill two bins: points, not a misleading line.
            ax.plot(
                f[ok], o[ok], marker="o", ms=3, **{**st, "ls": st["ls"] if ok.sum() > 2 else ""}
            )
            hist.plot(f[ok], n[ok], marker="o", ms=2, **{**st, "label": None})
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title=_lead_label(scores, lead))
        ax.set(xlabel="forecast probability", ylabel="observed frequency of >= 1 strike")
        hist.set(yscale="log", xlim=(0, 1), xlabel="forecast probability", ylabel="cases per bin")
    _legend_below(fig, axes[0, 0])
    fig.suptitle("Reliability diagram (top) and sharpness (bottom)", fontsize=10)
    return fig


def _climatology_lines(ax, scores: xr.Dataset, lead: int) -> None:
    """Horizontal line at the observed base rate and the no-skill line halfway to the diagonal."""
    if "base_rate" not in scores:
        return
    rate = float(np.nanmean(_select(scores["base_rate"].sel({LEAD: lead}), (METHOD,)).values))
    x = np.array([0.0, 1.0])
    ax.axhline(rate, color="0.6", lw=0.8, ls="--", label=f"base rate {rate:.3f}")
    ax.plot(x, (x + rate) / 2, color="0.75", lw=0.8, ls="-.", label="no skill (BSS = 0)")


# --------------------------------------------------------------------------------------------
# ROC and precision-recall


def _curve_figure(scores, x_name, y_name, score_name, title, labels, draw_ref) -> Figure | None:
    """ROC and PR layout: one panel per lead, one curve per method, score in the legend."""
    if not _need(scores, (x_name, y_name), title):
        return None
    leads = _pick_leads(scores)
    fig, axes = _panels(len(leads))
    for ax, lead in zip(axes[0], leads, strict=True):
        draw_ref(ax, scores, lead)
        for m in scores[METHOD].values.tolist():
            sel = {METHOD: m, LEAD: lead}
            x = scores[x_name].sel(sel)
            x = _select(x, (_curve_dim(x),)).values
            y = _select(scores[y_name].sel(sel), (_curve_dim(scores[y_name]),)).values
            st = method_style(scores, m)
            if score_name in scores:
                st["label"] += f" ({float(_select(scores[score_name].sel(sel), ())):.3f})"
            ok = np.isfinite(x) & np.isfinite(y)
            ax.plot(x[ok], y[ok], **st)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), aspect="equal", title=_lead_label(scores, lead))
        ax.set(xlabel=labels[0], ylabel=labels[1])
        ax.legend(fontsize=7, loc="lower right" if "ROC" in title else "lower left")
    fig.suptitle(title, fontsize=10)
    return fig


def _roc_ref(ax, scores, lead) -> None:
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="no skill")


def _pr_ref(ax, scores, lead) -> None:
    if "base_rate" in scores:
        rate = float(np.nanmean(_select(scores["base_rate"].sel({LEAD: lead}), (METHOD,)).values))
        ax.axhline(rate, color="0.6", lw=0.8, ls=":", label=f"no skill (base rate {rate:.3f})")


def roc_figure(scores: xr.Dataset) -> Figure | None:
    """ROC curves (POD against POFD) per method; ROC area in the legend."""
    return _curve_figure(
        scores,
        "roc_pofd",
        "roc_pod",
        "roc_auc",
        "ROC curves (area in brackets)",
        ("probability of false detection (POFD)", "probability of detection (POD)"),
        _roc_ref,
    )


def pr_figure(scores: xr.Dataset) -> Figure | None:
    """Precision-recall curves per method; average precision in the legend."""
    return _curve_figure(
        scores,
        "pr_recall",
        "pr_precision",
        "average_precision",
        "Precision-recall curves (average precision in brackets)",
        ("recall (POD)", "precision (1 - FAR)"),
        _pr_ref,
    )


# --------------------------------------------------------------------------------------------
# performance diagram


def _performance_background(ax) -> None:
    """CSI contours (filled, labelled) and dashed frequency-bias lines of a performance diagram."""
    sr, pod = np.meshgrid(np.linspace(0.005, 1, 200), np.linspace(0.005, 1, 200))
    csi = 1.0 / (1.0 / sr + 1.0 / pod - 1.0)
    levels = np.arange(0.1, 1.01, 0.1)
    ax.contourf(sr, pod, csi, levels=np.r_[0, levels], cmap="Greys", alpha=0.35)
    cs = ax.contour(sr, pod, csi, levels=levels[:-1], colors="0.45", linewidths=0.5)
    on_diagonal = [(2 * c / (1 + c), 2 * c / (1 + c)) for c in levels[:-1]]  # where SR = POD
    ax.clabel(cs, fmt="%.1f", fontsize=6, manual=on_diagonal)
    for bias in (0.25, 0.5, 1.0, 1.5, 2.0, 4.0):
        x = np.linspace(0, 1, 50)
        ax.plot(x, bias * x, color="0.4", lw=0.6, ls="--")
        xb, yb = (1.0, bias) if bias <= 1 else (1.0 / bias, 1.0)
        ax.annotate(
            f"{bias:g}",
            (xb, yb),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=6,
            color="0.3",
        )


def performance_figure(scores: xr.Dataset) -> Figure | None:
    """POD against success ratio over probability thresholds, best-CSI threshold marked."""
    pod_name = next(
        (n for n in ("pod_curve", "pod") if n in scores and "threshold" in scores[n].dims), None
    )
    far_name = next(
        (n for n in ("far_curve", "far") if n in scores and "threshold" in scores[n].dims), None
    )
    if pod_name is None or far_name is None:
        warnings.warn(
            "scores file lacks pod/far over threshold: performance diagram not drawn", stacklevel=2
        )
        return None
    leads = _pick_leads(scores)
    fig, axes = _panels(len(leads), height=4.4)
    for ax, lead in zip(axes[0], leads, strict=True):
        _performance_background(ax)
        for m in scores[METHOD].values.tolist():
            sel = {METHOD: m, LEAD: lead}
            pod = _select(scores[pod_name].sel(sel), ("threshold",))
            sr = 1.0 - _select(scores[far_name].sel(sel), ("threshold",))
            ok = np.isfinite(pod.values) & np.isfinite(sr.values)
            st = method_style(scores, m)
            ax.plot(sr.values[ok], pod.values[ok], **st)
            _mark_best(ax, scores, sel, pod, sr, st["color"])
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title=_lead_label(scores, lead))
        ax.set(xlabel="success ratio (1 - FAR)", ylabel="probability of detection (POD)")
    _legend_below(fig, axes[0, 0])
    fig.suptitle(
        "Performance diagram: probability thresholds along each curve, best CSI marked;\n"
        "shading and solid labels = CSI, dashed lines = frequency bias",
        fontsize=9,
    )
    return fig


def _mark_best(ax, scores, sel, pod: xr.DataArray, sr: xr.DataArray, colour) -> None:
    if "best_threshold" not in scores:
        return
    t = float(_select(scores["best_threshold"].sel(sel), ()))
    if not np.isfinite(t):
        return
    i = int(np.argmin(np.abs(pod["threshold"].values - t)))
    ax.plot(sr.values[i], pod.values[i], marker="*", ms=11, color=colour, mec="white", mew=0.6)
    ax.annotate(
        f"{t:.2f}",
        (sr.values[i], pod.values[i]),
        xytext=(4, -9),
        textcoords="offset points",
        fontsize=6,
        color=colour,
    )


# --------------------------------------------------------------------------------------------
# headline scores against lead time


def scores_by_lead_figure(scores: xr.Dataset) -> Figure | None:
    """Brier skill score, ROC area, average precision and CSI against lead time for every method,
    with confidence intervals as error bars where ``<score>_lo`` / ``<score>_hi`` exist."""
    names = [n for n in HEADLINE if n in scores]
    if not names:
        warnings.warn(
            f"scores file lacks {', '.join(HEADLINE)}: score-vs-lead not drawn", stacklevel=2
        )
        return None
    fig, axes = _panels(len(names), height=3.6)
    methods = scores[METHOD].values.tolist()
    leads = scores[LEAD].values
    dodge = 0.25 * (np.arange(len(methods)) - (len(methods) - 1) / 2) / max(len(methods), 1)
    for ax, name in zip(axes[0], names, strict=True):
        for k, m in enumerate(methods):
            y = _select(scores[name].sel({METHOD: m}), (LEAD,)).values
            err = _error_bars(scores, name, m, y)
            ax.errorbar(
                leads + dodge[k],
                y,
                yerr=err,
                marker="o",
                ms=3,
                capsize=2,
                **method_style(scores, m),
            )
        if name == "brier_skill_score":
            ax.axhline(0, color="0.5", lw=0.8, ls="--")
        ax.set(title=HEADLINE[name], xlabel=_lead_axis(scores), xticks=leads)
        ax.grid(alpha=0.3)
    _legend_below(fig, axes[0, 0])
    ci = (
        "error bars: confidence interval"
        if any(f"{n}_lo" in scores for n in names)
        else "no intervals"
    )
    fig.suptitle(f"Scores by lead time ({ci})", fontsize=10)
    return fig


def _error_bars(scores: xr.Dataset, name: str, method: str, y: np.ndarray) -> np.ndarray | None:
    lo_name, hi_name = f"{name}_lo", f"{name}_hi"
    if lo_name not in scores or hi_name not in scores:
        return None
    lo = _select(scores[lo_name].sel({METHOD: method}), (LEAD,)).values
    hi = _select(scores[hi_name].sel({METHOD: method}), (LEAD,)).values
    return np.nan_to_num(np.stack([y - lo, hi - y]).clip(min=0))


# --------------------------------------------------------------------------------------------
# spatial tolerance


def neighbourhood_figure(scores: xr.Dataset) -> Figure | None:
    """Fractions skill score and neighbourhood CSI against window size, first and last lead."""
    names = [n for n in ("fss", "csi_neighbourhood") if n in scores and "scale" in scores[n].dims]
    if not names:
        warnings.warn(
            "scores file lacks fss over scale: neighbourhood diagram not drawn", stacklevel=2
        )
        return None
    leads = scores[LEAD].values
    first_last = [int(leads[0])] + ([int(leads[-1])] if len(leads) > 1 else [])
    fig, axes = _panels(len(names), height=3.6)
    titles = {"fss": "fractions skill score", "csi_neighbourhood": "neighbourhood CSI"}
    styles = ("-", ":")
    for ax, name in zip(axes[0], names, strict=True):
        scale = scores["scale"].values
        for m in scores[METHOD].values.tolist():
            st = method_style(scores, m)
            for lead, ls in zip(first_last, styles, strict=False):
                y = _select(scores[name].sel({METHOD: m, LEAD: lead}), ("scale",)).values
                ax.plot(scale, y, marker="o", ms=3, **{**st, "ls": ls, "label": None})
        ax.set(title=titles[name], xlabel="window size (cells per side)", xticks=scale)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], **method_style(scores, m)) for m in scores[METHOD].values.tolist()]
    handles += [
        Line2D([], [], color="0.3", ls=ls, label=f"lead {lead}")
        for lead, ls in zip(first_last, styles, strict=False)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)
    fig.suptitle("Spatial tolerance at the best-CSI threshold", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# all diagrams -> PNGs

DIAGRAMS: dict[str, Callable[[xr.Dataset], Figure | None]] = {
    "scores_by_lead": scores_by_lead_figure,
    "reliability": reliability_figure,
    "roc": roc_figure,
    "precision_recall": pr_figure,
    "performance": performance_figure,
    "neighbourhood": neighbourhood_figure,
}


def plot_scores(out: Path, scores: xr.Dataset) -> list[Path]:
    """Every diagram the scores Dataset allows, saved as ``out/<name>.png``; returns the paths."""
    from forecast.plots import save_figure

    paths = []
    for name, make in DIAGRAMS.items():
        fig = make(scores)
        if fig is not None:
            paths.append(save_figure(fig, Path(out) / f"{name}.png"))
    return paths
