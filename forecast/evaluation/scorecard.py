"""Scores Dataset -> words: a compact terminal table and a Markdown scorecard.

Methods are listed with the oracle first (the best achievable), then the model, then forecast
files, then MOS (the guidance baseline to beat), then the other baselines in registry order.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from data_prep.schema import LEAD_STEP, by_lead_step
from forecast.evaluation.baselines import BASELINES
from forecast.evaluation.mos import MOS
from forecast.metrics.suite import FORECAST


def method_order(names) -> list[str]:
    """oracle, model, other forecasts, mos, then the other baselines in registry order."""

    def rank(name: str) -> tuple[int, int]:
        if name == "oracle":
            return 0, 0
        if name == "model":
            return 1, 0
        if name == MOS:
            return 3, -1
        if name in BASELINES:
            return 3, list(BASELINES).index(name)
        return 2, 0

    return sorted((str(n) for n in names), key=rank)


def _fmt(x: float, width: int = 6) -> str:
    return f"{x:{width}.3f}" if np.isfinite(x) else f"{'-':>{width}}"


def format_score_table(scores: xr.Dataset) -> str:
    """Compact table: one row per method, columns BSS / AUC / CSI at each lead time."""
    scores = by_lead_step(scores)
    leads = scores[LEAD_STEP].values.tolist()
    cols = [("BSS", "brier_skill_score"), ("AUC", "roc_auc"), ("CSI", "csi")]
    names = method_order(scores[FORECAST].values)
    width = max(len(n) for n in names + ["method"])
    group = " ".join(f"{'+' + str(lead):>6}" for lead in leads)
    head = (f"{'method':<{width}}  " + "  ".join(f"{t:^{len(group)}}" for t, _ in cols)).rstrip()
    sub = f"{'lead':<{width}}  " + "  ".join(group for _ in cols)
    lines = [head, sub]
    for name in names:
        row = scores.sel({FORECAST: name})
        parts = [" ".join(_fmt(float(row[v].sel(lead_step=k))) for k in leads) for _, v in cols]
        lines.append(f"{name:<{width}}  " + "  ".join(parts))
    return "\n".join(lines)


MIN_BLOCKS = 10  # an interval resting on fewer independent blocks of days is flagged


def few_blocks(attrs: dict) -> bool:
    """True when the scores' intervals rest on fewer than MIN_BLOCKS independent blocks."""
    return int(attrs.get("bootstrap", 0)) > 0 and int(attrs.get("bootstrap_blocks", 0)) < MIN_BLOCKS


def _ci(row: xr.Dataset, var: str, flag: str = "") -> str:
    value = float(row[var])
    lo, hi = (float(row[f"{var}_{e}"]) if f"{var}_{e}" in row else np.nan for e in ("lo", "hi"))
    if not np.isfinite(value):
        return "-"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{value:.3f} [{lo:.3f}, {hi:.3f}]{flag}"
    return f"{value:.3f}"


def _interval_lines(a: dict) -> list[str]:
    """How the brackets were made, and a warning when they rest on too few blocks."""
    lines = [
        f"- brackets: 95 % moving-block bootstrap interval over forecast days "
        f"({a.get('bootstrap')} resamples, blocks of {a.get('bootstrap_block')} days, "
        f"{a.get('bootstrap_blocks')} independent blocks)"
    ]
    if few_blocks(a):
        lines.append(
            f"- **\\* few blocks**: the intervals rest on {a.get('bootstrap_blocks')} < "
            f"{MIN_BLOCKS} independent blocks of {a.get('bootstrap_block')} days; they are "
            "rough, score more days before comparing methods by them"
        )
    return lines


def scorecard_markdown(scores: xr.Dataset) -> str:
    """Markdown scorecard: per lead, each method's BSS, AUC, AP, CSI@best with 95 % intervals,
    and its calibration (ECE; the largest reliability gap over populated bins)."""
    a = scores.attrs
    lines = [
        "# strikecast scorecard",
        "",
        f"- split: `{a.get('split')}`, {a.get('n_inits')} inits over {a.get('n_days')} days, "
        f"{a.get('init_start')} .. {a.get('init_end')}",
        f"- maps: `{a.get('maps', '?')}`",
        f"- cases: {a.get('cases', '')}",
        f"- CSI threshold: {a.get('threshold_selection', '')}",
        f"- climatology fitted on: {a.get('climatology_fit', '')}",
        f"- skill: {a.get('references', '')}",
        *_interval_lines(a),
    ]
    flag = "\\*" if few_blocks(a) else ""
    lines += ["", "## summary (BSS vs climatology, ROC AUC, CSI at the selected threshold)", ""]
    lines += ["```", format_score_table(scores), "```"]
    names = method_order(scores[FORECAST].values)
    scores = by_lead_step(scores)
    for lead in scores[LEAD_STEP].values.tolist():
        lines += ["", f"## lead time {lead} step{'s' if lead != 1 else ''}", ""]
        lines.append(
            "| method | BSS vs climatology | BSS vs persistence | AUC | AP | CSI@best | threshold "
            "| ECE | max gap |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for name in names:
            row = scores.sel({FORECAST: name, LEAD_STEP: lead})
            lines.append(
                f"| {name} | {_ci(row, 'brier_skill_score', flag)} "
                f"| {_fmt(float(row['brier_skill_score_vs_persistence']), 0).strip()} "
                f"| {_ci(row, 'roc_auc', flag)} "
                f"| {_fmt(float(row['average_precision']), 0).strip()} "
                f"| {_ci(row, 'csi', flag)} | {float(row['best_threshold']):.2f} "
                f"| {_fmt(float(row['ece']), 0).strip()} "
                f"| {_fmt(float(row['reliability_max_gap']), 0).strip()} |"
            )
    return "\n".join(lines) + "\n"
