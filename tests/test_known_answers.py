"""Scores of imperfect forecasts counted by hand, through the real scoring loop, and a
climatology that never sees the days it is scored on."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.mock import mock_maps
from data_prep.schema import COUNT, COVERAGE
from data_prep.sequences import build_index
from forecast.config import ExperimentConfig
from forecast.evaluation.baselines import build_baseline, training_steps
from forecast.evaluation.scoring import stream
from forecast.metrics import ProbabilityState
from forecast.metrics.categorical import THRESHOLDS, ContingencyState

# 3 cells in a row, 4 daily steps; cell 2 of step 2 is unobserved
COUNTS = [[0, 0, 0], [2, 0, 1], [0, 3, 0], [1, 1, 0]]
COVER = [[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 1]]
# forecasts made at steps 0 and 1 for leads 1 and 2: PROB[init][lead - 1][cell]
PROB = [[[0.9, 0.6, 0.2], [0.3, 0.8, 0.9]], [[0.1, 0.4, 0.7], [0.6, 0.2, 0.5]]]


class Fixed:
    """A forecast method that returns the given probabilities (N, L, H, W) for inits 0, 1."""

    def __init__(self, prob: np.ndarray):
        self.prob = prob

    def forecast(self, ds, inits, n_out=None):
        return self.prob[np.asarray(inits)]


def _tiny_maps():
    ds = mock_maps(n_steps=4, shape=(1, 3), seed=0)
    ds[COUNT].values[:] = np.array(COUNTS, dtype=ds[COUNT].dtype)[:, None, :]
    ds[COVERAGE].values[:] = np.array(COVER, dtype=ds[COVERAGE].dtype)[:, None, :]
    return ds


def test_hand_counted_hits_misses_false_alarms_and_brier_of_an_imperfect_forecast():
    """Yes where p >= 0.5. Lead 1 (valid steps 1, 2): init 0 has events [1, 0, 1] for p
    [.9, .6, .2] -> hit, false alarm, miss; init 1 has events [0, 1, -] for p [.1, .4, (.7)] ->
    correct negative, miss, unobserved. Lead 2 (valid steps 2, 3): init 0 has [0, 1, -] for
    [.3, .8, (.9)] -> correct negative, hit; init 1 has [1, 1, 0] for [.6, .2, .5] -> hit, miss,
    false alarm. Brier: lead 1 (.01 + .36 + .64 + .01 + .36) / 5, lead 2 (.09 + .04 + .16 + .64
    + .25) / 5."""
    ds = _tiny_maps()
    prob = np.array(PROB, dtype=np.float32)[:, :, None, :]  # (N=2, L=2, H=1, W=3)
    table, probs = ContingencyState.init(2, THRESHOLDS), ProbabilityState.init(2, n_bins=101)

    def add(name, rows, p, events, mask):
        table.add(p, events, mask)
        probs.add(p, events, mask)

    stream(ds, np.array([0, 1]), {"fixed": Fixed(prob)}, 2, 1, add)
    half = int(np.flatnonzero(np.isclose(THRESHOLDS, 0.5))[0])
    hits, false_alarms, misses, negatives = np.moveaxis(table.table[:, half], -1, 0)
    assert hits.tolist() == [1, 2] and false_alarms.tolist() == [1, 1]
    assert misses.tolist() == [2, 1] and negatives.tolist() == [1, 1]
    brier = probs.compute()["brier_score"]
    np.testing.assert_allclose(brier, [1.38 / 5, 1.18 / 5], rtol=1e-6)
    assert table.compute()["csi"][:, half] == pytest.approx([1 / 4, 2 / 4])


def test_climatology_baseline_never_sees_the_test_days():
    """Training days without a strike, every other day (validation, test) a strike in every
    cell: a climatology fitted on training days only forecasts 0 on the test days."""
    cfg = ExperimentConfig()
    cfg.data.block_steps = 28
    ds = mock_maps(n_steps=3 * 365, shape=(2, 3), seed=1)
    ds[COVERAGE].values[:] = 1
    index = build_index(ds, cfg.data)
    train_days = training_steps(ds, index)
    assert 0 < train_days.sum() < train_days.size
    ds[COUNT].values[:] = np.where(train_days, 0, 1)[:, None, None]
    climatology = build_baseline("climatology", ds, index, cfg.eval)
    test_inits = index.inits("test")
    assert test_inits.size > 0
    assert float(climatology.forecast(ds, test_inits).max()) < 1e-6
