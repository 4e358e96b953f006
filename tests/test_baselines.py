"""Baselines on hand-made tiny fields: shapes, values, storm motion, the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from data_prep.errors import UserError
from data_prep.sequences import WindowIndex
from forecast.config import EvalConfig
from forecast.evaluation.baselines import (
    BASELINES,
    Lagrangian,
    Persistence,
    SmoothedPersistence,
    _window,
    build_baseline,
    observations,
    valid_steps,
)
from forecast.evaluation.motion import advect, estimate_motion


def _maps(counts: np.ndarray, times=None) -> xr.Dataset:
    """A maps Dataset around ``counts`` (T, H, W), daily from 2021-06-01, observed everywhere."""
    t, h, w = counts.shape
    times = pd.date_range("2021-06-01", periods=t, freq="1D") if times is None else times
    dims = ("time", "lat", "lon")
    return xr.Dataset(
        {
            "strike_count": (dims, counts.astype(np.int32)),
            "coverage": (dims, np.ones(counts.shape, np.int8)),
        },
        coords={
            "time": times,
            "lat": 30.25 + 0.5 * np.arange(h),
            "lon": -103.75 + 0.5 * np.arange(w),
        },
        attrs={"time_step": "1D"},
    )


def _index(n_steps: int, n_in: int = 3, n_out: int = 2) -> WindowIndex:
    starts = np.arange(n_steps - n_in - n_out + 1)
    third = len(starts) // 3
    splits = {
        "train": starts[:third],
        "val": starts[third : 2 * third],
        "test": starts[2 * third :],
    }
    return WindowIndex(n_in, n_out, splits, n_steps)


def _moving_blob(n_steps: int = 8, shape=(16, 24), speed: float = 2.0) -> np.ndarray:
    """Counts (T, H, W) of a 3 x 3 storm moving ``speed`` pixels east per step."""
    counts = np.zeros((n_steps,) + shape, dtype=np.int32)
    for t in range(n_steps):
        x = int(round(3 + speed * t))
        counts[t, 6:9, x : x + 3] = [[1, 2, 1], [2, 5, 2], [1, 2, 1]]
    return counts


def test_persistence_equals_last_step_occurrence():
    counts = np.random.default_rng(0).poisson(0.5, (6, 4, 5))
    ds = _maps(counts)
    prob = Persistence(n_out=2).forecast(ds, np.array([2, 4]))
    assert prob.shape == (2, 2, 4, 5) and prob.dtype == np.float32
    for k, init in enumerate((2, 4)):
        for lead in range(2):
            np.testing.assert_array_equal(prob[k, lead], counts[init] >= 1)


def test_smoothed_persistence_is_the_neighbourhood_fraction():
    counts = np.zeros((2, 5, 5), dtype=np.int32)
    counts[1, 2, 2] = 7
    prob = SmoothedPersistence(n_out=1, window=3).forecast(_maps(counts), np.array([1]))
    assert prob[0, 0, 2, 2] == pytest.approx(1 / 9)
    assert prob[0, 0, 1, 1] == pytest.approx(1 / 9)
    assert prob[0, 0, 0, 0] == 0
    assert prob.sum() == pytest.approx(1.0)


def test_lagrangian_recovers_a_blob_moving_two_pixels_per_step():
    counts = _moving_blob()
    velocity = estimate_motion(np.log1p(counts[:5].astype(float)))
    np.testing.assert_allclose(velocity, [0.0, 2.0], atol=0.05)
    ds = _maps(counts)
    prob = Lagrangian(n_in=5, n_out=2, window=1).forecast(ds, np.array([4]))
    for lead in (1, 2):  # the forecast lands where the storm went
        np.testing.assert_allclose(prob[0, lead - 1], counts[4 + lead] >= 1, atol=0.05)


def test_advect_moves_by_whole_and_fractional_pixels():
    field = np.zeros((5, 6))
    field[2, 1] = 1
    out = advect(field, np.array([[1.0, 2.0], [0.0, 0.5]]))
    assert out[0, 3, 3] == 1 and out[0].sum() == 1
    assert out[1, 2, 1] == pytest.approx(0.5) and out[1, 2, 2] == pytest.approx(0.5)


def test_climatology_of_a_constant_field_is_constant():
    counts = np.ones((40, 4, 5), dtype=np.int32)
    ds, index = _maps(counts), _index(40)
    clim = build_baseline("climatology", ds, index, EvalConfig())
    prob = clim.forecast(ds, index.inits("test"))
    assert prob.shape == (len(index.inits("test")), 2, 4, 5)
    np.testing.assert_allclose(prob, 1.0)
    empty = _maps(np.zeros_like(counts))
    np.testing.assert_allclose(
        build_baseline("climatology", empty, index, EvalConfig()).forecast(
            empty, index.inits("test")
        ),
        0.0,
    )


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_gives_probabilities_of_the_model_shape(name):
    counts = np.random.default_rng(1).poisson(0.4, (30, 6, 7))
    ds, index = _maps(counts), _index(30)
    inits = index.inits("test")
    prob = build_baseline(name, ds, index, EvalConfig()).forecast(ds, inits)
    assert prob.shape == (len(inits), 2, 6, 7) and prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1))


def test_smoothing_window_is_tuned_on_validation_or_fixed():
    counts = np.random.default_rng(2).poisson(0.3, (30, 6, 7))
    ds, index = _maps(counts), _index(30)
    tuned = build_baseline("smoothed_persistence", ds, index, EvalConfig())
    assert tuned.window in EvalConfig().smoothing_candidates
    fixed = build_baseline("smoothed_persistence", ds, index, EvalConfig(smoothing_window=3))
    assert fixed.window == 3


def test_persistence_reads_a_no_data_cell_as_the_observed_share_not_zero():
    counts = np.zeros((8, 2, 4))
    counts[-1, 1, :2] = 3  # the init step: 2 of its 7 observed cells struck
    ds = _maps(counts)
    ds["coverage"][-1, 0, 0] = 0
    init = np.array([7])
    prob = build_baseline("persistence", ds, _index(8), EvalConfig()).forecast(ds, init)
    assert prob[0, :, 0, 0].tolist() == pytest.approx([2 / 7, 2 / 7])
    assert prob[0, 0, 1, :2].tolist() == [1, 1] and prob[0, 0, 0, 1:].tolist() == [0, 0, 0]


def test_smoothing_window_is_tuned_on_observed_cells_only():
    # observed cells never strike; the 30 of 42 cells without data hold junk counts
    counts = np.zeros((30, 6, 7))
    counts[:, :, :5] = 40
    ds = _maps(counts)
    ds["coverage"][:, :, :5] = 0

    class Constant:  # window 1 forecasts 0 (right on observed cells), the others 1
        def __init__(self, n):
            self.n = n

        def forecast(self, ds, inits, n_out):
            return np.full((len(inits), n_out, 6, 7), float(self.n > 1), np.float32)

    cfg = EvalConfig(smoothing_candidates=(3, 1))
    assert _window(Constant, ds, _index(30), cfg) == 1


def test_unknown_baseline_lists_the_valid_ones():
    with pytest.raises(UserError, match="unknown baseline 'nowcast'.*persistence, smoothed"):
        build_baseline("nowcast", _maps(np.zeros((3, 2, 2))), _index(10), EvalConfig())


def test_observations_follow_time_not_position_across_a_hole():
    times = pd.DatetimeIndex(["2021-06-01", "2021-06-02", "2021-06-04", "2021-06-05"])
    counts = np.arange(4)[:, None, None] * np.ones((4, 2, 2), dtype=np.int32)
    ds = _maps(counts, times)
    assert valid_steps(ds, np.array([0, 1]), 2).tolist() == [[1, -1], [-1, 2]]
    events, observed = observations(ds, np.array([1]), 2)
    assert not observed[0, 0].any() and observed[0, 1].all() and events[0, 1].all()
