"""Score diagrams drawn from evaluate's names: what a forecaster reads off them (PR curves that
follow the achievable precision, sharpness, legends, axis labels, bootstrap error bars)."""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pytest
import xarray as xr
from figure_inputs import _texts, fake_scores
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from forecast.figures import diagrams
from forecast.figures.files import settle_layout
from forecast.metrics.probabilistic import pr_curve


def test_every_score_diagram_draws_from_evaluate_names():
    scores = fake_scores()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no diagram may be skipped
        figs = {name: make(scores) for name, make in diagrams.DIAGRAMS.items()}
    assert all(isinstance(f, Figure) for f in figs.values())
    assert "CSI at best threshold" in _texts(figs["scores_by_lead"])


def test_diagram_is_skipped_with_a_warning_when_its_variables_are_absent():
    scores = fake_scores().drop_vars(["roc_pod", "pod"])
    with pytest.warns(UserWarning, match="roc_pod"):
        assert diagrams.roc_figure(scores) is None
    with pytest.warns(UserWarning, match="performance diagram"):
        assert diagrams.performance_figure(scores) is None


# --------------------------------------------------------------------------------------------
# what a forecaster reads off the score diagrams


def _two_valued(scores: xr.Dataset, method: str = "persistence") -> xr.Dataset:
    """``scores`` with ``method`` replaced by a 0/1 forecast: cases only at p = 0 and p = 1."""
    pos, neg = np.zeros(101), np.zeros(101)
    pos[0], pos[100], neg[0], neg[100] = 40, 60, 300, 60
    recall, precision = pr_curve(pos, neg)
    count = np.zeros(scores.sizes["bin"])
    count[[0, -1]] = 340, 120
    out = scores.copy(deep=True)
    for name, values in (
        ("pr_recall", recall),
        ("pr_precision", precision),
        ("reliability_count", count),
    ):
        out[name].loc[{"forecast": method}] = values
    return out


def _drawn_texts(fig: Figure) -> list[tuple[str, object]]:
    """(text, window extent) of every text drawn in a saved figure; tick labels off the axes
    (outside the view limits, never drawn) are left out."""
    settle_layout(fig)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    hidden = set()
    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not min(lim) - 1e-9 <= tick.get_loc() <= max(lim) + 1e-9:
                    hidden |= {id(tick.label1), id(tick.label2)}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if id(t) not in hidden]


def test_pr_curve_follows_the_achievable_precision_not_a_straight_line_to_recall_one():
    scores = _two_valued(fake_scores())
    fig = diagrams.pr_figure(scores)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("persistence")]
    recall, precision = (np.asarray(v, float) for v in line.get_data())
    last = recall < 1
    assert np.diff(recall).max() < 0.05  # no long straight segment anywhere
    # Midway between the 0/1 forecast (recall 0.6, precision 0.5) and "yes everywhere"
    # (recall 1, base rate 100 / 460): tp = 0.8, fp = (0.6 + 3.6) / 2 events -> 0.8 / 2.9.
    k = np.argmin(np.abs(recall - 0.8))
    assert recall[k] == pytest.approx(0.8, abs=0.01)
    assert precision[k] == pytest.approx(0.8 / 2.9, abs=0.005)  # a straight line: 0.359
    assert recall[last].max() < 1 and recall[-1] != recall[0]


def test_pr_achievable_keeps_the_threshold_points():
    recall, precision = np.array([1.0, 0.7, 0.2]), np.array([0.3, 0.6, 0.9])
    r, p = diagrams.pr_achievable(recall, precision, n=8)
    for rk, pk in zip(recall, precision, strict=True):
        assert np.isclose(p[np.isclose(r, rk)], pk).all()


def test_sharpness_line_never_crosses_empty_bins():
    fig = diagrams.reliability_figure(_two_valued(fake_scores()))
    width = 0.1  # ten reliability bins
    for hist in fig.axes[len(fig.axes) // 2 :]:
        for line in hist.get_lines():
            x, y = (np.asarray(v, float) for v in line.get_data())
            joined = np.isfinite(y[:-1]) & np.isfinite(y[1:])  # drawn segments
            assert np.allclose(np.diff(x)[joined], width)


def test_performance_diagram_texts_do_not_overlap():
    fig = diagrams.performance_figure(fake_scores(n_leads=3))
    boxes = _drawn_texts(fig)
    overlaps = [
        (a, b) for (a, box_a), (b, box_b) in combinations(boxes, 2) if box_a.overlaps(box_b)
    ]
    assert not overlaps
    assert any("best-CSI probability threshold" in t for t, _ in boxes)  # named in the legend


def test_neighbourhood_legend_line_styles_are_the_drawn_ones():
    fig = diagrams.neighbourhood_figure(fake_scores(methods=("model", "oracle", "climatology")))
    legend = fig.legends[0]
    styles = {h.get_linestyle() for h in legend.legend_handles if isinstance(h, Line2D)}
    drawn = {ln.get_linestyle() for ax in fig.axes for ln in ax.get_lines()}
    assert styles == drawn  # one style per lead, and the oracle drawn as the leads say
    assert all(not isinstance(h, Line2D) or "lead" in h.get_label() for h in legend.legend_handles)


def test_every_diagram_panel_has_both_axis_labels():
    for name, make in diagrams.DIAGRAMS.items():
        for ax in make(fake_scores()).axes:
            assert ax.get_xlabel() and ax.get_ylabel(), (name, ax.get_title())


def test_error_bars_are_named_as_moving_block_bootstrap_intervals():
    scores = fake_scores().assign_attrs(bootstrap=100, bootstrap_block=10)
    text = _texts(diagrams.scores_by_lead_figure(scores))
    assert "95 % moving-block bootstrap interval over forecast days" in text
    assert "blocks of 10 days" in text and "none for average precision" in text
