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

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from forecast.figures.panels import (
    HEADLINE,
    LEAD,
    METHOD,
    curve_dim,
    lead_axis,
    lead_label,
    legend_below,
    method_style,
    need,
    panels,
    pick_leads,
    pr_achievable,
    select_curve,
)
from forecast.metrics.suite import PROBABILITY_THRESHOLD as THRESH

# --------------------------------------------------------------------------------------------
# reliability


def reliability_figure(scores: xr.Dataset) -> Figure | None:
    """Observed frequency against mean forecast probability per bin, with a sharpness histogram."""
    names = ("reliability_forecast", "reliability_observed", "reliability_count")
    if not need(scores, names, "reliability diagram"):
        return None
    leads = pick_leads(scores)
    fig, axes = panels(len(leads), height=5.6, rows=2, ratios=[3, 1])
    for col, lead in enumerate(leads):
        ax, hist = axes[0, col], axes[1, col]
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="perfect reliability")
        _climatology_lines(ax, scores, lead)
        for m in scores[METHOD].values.tolist():
            sel = {METHOD: m, LEAD: lead}
            f, o, n = (
                select_curve(scores[v].sel(sel), (curve_dim(scores[v]),)).values for v in names
            )
            ok = n > 0
            st = method_style(scores, m)
            # Two-valued forecasts (persistence) fill two bins: points, not a misleading line.
            ax.plot(
                f[ok], o[ok], marker="o", ms=3, **{**st, "ls": st["ls"] if ok.sum() > 2 else ""}
            )
            # Empty bins break the sharpness line: no line drawn through bins without cases.
            centres = scores[curve_dim(scores[names[2]])].values
            hist.plot(centres, np.where(ok, n, np.nan), marker="o", ms=2, **{**st, "label": None})
        # A little room beyond 0 and 1, where two-valued forecasts put their points.
        lim = (-0.02, 1.02)
        ax.set(xlim=lim, ylim=lim, aspect="equal", title=lead_label(scores, lead))
        ax.set(xlabel="forecast probability", ylabel="observed frequency of >= 1 strike")
        hist.set(yscale="log", xlim=lim, xlabel="forecast probability", ylabel="cases per bin")
    legend_below(fig, axes[0, 0])
    fig.suptitle("Reliability diagram (top) and sharpness (bottom)", fontsize=10)
    return fig


def _climatology_lines(ax, scores: xr.Dataset, lead: int) -> None:
    """Horizontal line at the observed base rate and the no-skill line halfway to the diagonal."""
    if "base_rate" not in scores:
        return
    rate = float(np.nanmean(select_curve(scores["base_rate"].sel({LEAD: lead}), (METHOD,)).values))
    x = np.array([0.0, 1.0])
    ax.axhline(rate, color="0.6", lw=0.8, ls="--", label=f"base rate {rate:.3f}")
    ax.plot(x, (x + rate) / 2, color="0.75", lw=0.8, ls="-.", label="no skill (BSS = 0)")


# --------------------------------------------------------------------------------------------
# ROC and precision-recall


def _curve_figure(
    scores, x_name, y_name, score_name, title, labels, draw_ref, interpolate=lambda x, y: (x, y)
) -> Figure | None:
    """ROC and PR layout: one panel per lead, one curve per method, score in the legend.

    ``interpolate(x, y) -> (x, y)`` fills in the points between thresholds (ROC: straight lines).
    """
    if not need(scores, (x_name, y_name), title):
        return None
    leads = pick_leads(scores)
    fig, axes = panels(len(leads), square=True)
    for ax, lead in zip(axes[0], leads, strict=True):
        draw_ref(ax, scores, lead)
        for m in scores[METHOD].values.tolist():
            sel = {METHOD: m, LEAD: lead}
            x = scores[x_name].sel(sel)
            x = select_curve(x, (curve_dim(x),)).values
            y = select_curve(scores[y_name].sel(sel), (curve_dim(scores[y_name]),)).values
            st = method_style(scores, m)
            if score_name in scores:
                st["label"] += f" ({float(select_curve(scores[score_name].sel(sel), ())):.3f})"
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = interpolate(x[ok], y[ok])
            ax.plot(x, y, **st)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), aspect="equal", title=lead_label(scores, lead))
        ax.set(xlabel=labels[0], ylabel=labels[1])
        ax.legend(fontsize=7, loc="lower right" if "ROC" in title else "lower left")
    fig.suptitle(title, fontsize=10)
    return fig


def _roc_ref(ax, scores, lead) -> None:
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="no skill")


def _pr_ref(ax, scores, lead) -> None:
    if "base_rate" in scores:
        rate = float(
            np.nanmean(select_curve(scores["base_rate"].sel({LEAD: lead}), (METHOD,)).values)
        )
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
        "Precision-recall curves (average precision in brackets); between thresholds, the "
        "precision reached by mixing their forecasts",
        ("recall (POD)", "precision (1 - FAR)"),
        _pr_ref,
        pr_achievable,
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
    """POD against success ratio over probability thresholds, best-CSI threshold starred.

    The best thresholds are listed in the legend (one per lead), not written beside the stars,
    where the labels of close curves would overlap.
    """
    pod_name = next(
        (n for n in ("pod_curve", "pod") if n in scores and THRESH in scores[n].dims), None
    )
    far_name = next(
        (n for n in ("far_curve", "far") if n in scores and THRESH in scores[n].dims), None
    )
    if pod_name is None or far_name is None:
        warnings.warn(
            "scores file lacks pod/far over threshold: performance diagram not drawn", stacklevel=2
        )
        return None
    leads = pick_leads(scores)
    fig, axes = panels(len(leads), height=4.8, square=True)
    best: dict[str, list[str]] = {}
    for ax, lead in zip(axes[0], leads, strict=True):
        _performance_background(ax)
        for m in scores[METHOD].values.tolist():
            sel = {METHOD: m, LEAD: lead}
            pod = select_curve(scores[pod_name].sel(sel), (THRESH,))
            sr = 1.0 - select_curve(scores[far_name].sel(sel), (THRESH,))
            ok = np.isfinite(pod.values) & np.isfinite(sr.values)
            st = method_style(scores, m)
            ax.plot(sr.values[ok], pod.values[ok], **{**st, "label": None})
            best.setdefault(m, []).append(_mark_best(ax, scores, sel, pod, sr, st["color"]))
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
        ax.set_title(lead_label(scores, lead), pad=12)  # above the bias labels of the top edge
        ax.set(xlabel="success ratio (1 - FAR)", ylabel="probability of detection (POD)")
    _performance_legend(fig, scores, best, leads)
    fig.suptitle(
        "Performance diagram: probability thresholds along each curve, best CSI starred;\n"
        "shading and labels inside = CSI, dashed lines and labels on the edges = frequency bias",
        fontsize=9,
    )
    return fig


def _performance_legend(fig, scores: xr.Dataset, best: dict, leads: list[int]) -> None:
    """One legend below the panels: each method with its best-CSI threshold per lead."""
    handles = []
    for m, values in best.items():
        st = method_style(scores, m)
        label = st["label"] + (f": {', '.join(values)}" if any(v != "-" for v in values) else "")
        handles.append(Line2D([], [], marker="*", ms=9, mec="white", **{**st, "label": label}))
    title = "best-CSI probability threshold (star) at leads " + ", ".join(map(str, leads))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 4),
        fontsize=8,
        title=title if "best_threshold" in scores else None,
        title_fontsize=8,
    )


def _mark_best(ax, scores, sel, pod: xr.DataArray, sr: xr.DataArray, colour) -> str:
    """Star the best-CSI threshold on the curve; returns it as text (``-`` when unknown)."""
    if "best_threshold" not in scores:
        return "-"
    t = float(select_curve(scores["best_threshold"].sel(sel), ()))
    if not np.isfinite(t):
        return "-"
    i = int(np.argmin(np.abs(pod[THRESH].values - t)))
    ax.plot(sr.values[i], pod.values[i], marker="*", ms=11, color=colour, mec="white", mew=0.6)
    return f"{t:.2f}"


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
    fig, axes = panels(len(names), height=3.6)
    methods = scores[METHOD].values.tolist()
    leads = scores[LEAD].values
    dodge = 0.25 * (np.arange(len(methods)) - (len(methods) - 1) / 2) / max(len(methods), 1)
    for ax, name in zip(axes[0], names, strict=True):
        for k, m in enumerate(methods):
            y = select_curve(scores[name].sel({METHOD: m}), (LEAD,)).values
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
        ax.set(title=HEADLINE[name], xlabel=lead_axis(scores), xticks=leads)
        ax.set_ylabel(HEADLINE[name])
        ax.grid(alpha=0.3)
    legend_below(fig, axes[0, 0])
    fig.suptitle(f"Scores by lead time\n{interval_words(scores, names)}", fontsize=10)
    return fig


def interval_words(scores: xr.Dataset, names: list[str]) -> str:
    """What the error bars are: ``error bars: 95 % moving-block bootstrap interval ...``."""
    with_ci = [n for n in names if f"{n}_lo" in scores and f"{n}_hi" in scores]
    if not with_ci:
        return "no confidence intervals in the scores file"
    a = scores.attrs
    how = (
        f" over forecast days ({a['bootstrap']} resamples, blocks of {a['bootstrap_block']} days)"
        if "bootstrap" in a and "bootstrap_block" in a
        else ""
    )
    without = [HEADLINE[n] for n in names if n not in with_ci]
    rest = f"; none for {', '.join(without)}" if without else ""
    return f"error bars: 95 % moving-block bootstrap interval{how}{rest}"


def _error_bars(scores: xr.Dataset, name: str, method: str, y: np.ndarray) -> np.ndarray | None:
    lo_name, hi_name = f"{name}_lo", f"{name}_hi"
    if lo_name not in scores or hi_name not in scores:
        return None
    lo = select_curve(scores[lo_name].sel({METHOD: method}), (LEAD,)).values
    hi = select_curve(scores[hi_name].sel({METHOD: method}), (LEAD,)).values
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
    fig, axes = panels(len(names), height=3.6)
    titles = {"fss": "fractions skill score", "csi_neighbourhood": "neighbourhood CSI"}
    styles = ("-", ":")
    for ax, name in zip(axes[0], names, strict=True):
        scale = scores["scale"].values
        for m in scores[METHOD].values.tolist():
            st = method_style(scores, m)
            for lead, ls in zip(first_last, styles, strict=False):
                y = select_curve(scores[name].sel({METHOD: m, LEAD: lead}), ("scale",)).values
                ax.plot(scale, y, marker="o", ms=3, **{**st, "ls": ls, "label": None})
        ax.set(title=titles[name], xlabel="window size (cells per side)", xticks=scale)
        ax.set_ylabel(titles[name])
        ax.grid(alpha=0.3)
    # Colour names the method, line style the lead: method entries show colour only.
    handles = [
        Patch(color=method_style(scores, m)["color"], label=method_style(scores, m)["label"])
        for m in scores[METHOD].values.tolist()
    ]
    handles += [
        Line2D([], [], color="0.3", ls=ls, label=lead_label(scores, lead))
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
