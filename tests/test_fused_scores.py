"""The fused scoring passes leave every streaming state as the states' own ``add`` do, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forecast.config import EvalConfig
from forecast.metrics import ContingencyState
from forecast.metrics.fused import scoring_kernel
from forecast.metrics.suite import MethodState

pytestmark = pytest.mark.skipif(scoring_kernel() is None, reason="numba is not installed")


def _batch(seed: int, shape=(5, 3, 17, 23), n_days: int = 4):
    """Skewed probabilities with exact 0, 1 and threshold values; events drawn from them; ~10 %
    unobserved cells, some holding NaN; init days in order."""
    rng = np.random.default_rng(seed)
    prob = rng.beta(0.3, 3.0, size=shape).astype(np.float32)
    prob[rng.random(shape) < 0.03] = 0.0
    prob[rng.random(shape) < 0.02] = 1.0
    prob[rng.random(shape) < 0.02] = np.float32(0.25)  # on a CSI and a contingency threshold
    events = rng.random(shape) < prob
    mask = rng.random(shape) > 0.1
    prob[~mask & (rng.random(shape) < 0.5)] = np.nan
    return prob, events, mask, np.sort(rng.integers(0, n_days, shape[0]))


def _arrays(state: MethodState) -> dict[str, np.ndarray]:
    out = {}
    for part in ("prob", "table", "fractions", "daily"):
        sub = getattr(state, part)
        for f in dataclasses.fields(sub):
            out[f"{part}.{f.name}"] = np.asarray(getattr(sub, f.name))
    return out


def _scored(kernel: str, scales, batches) -> dict[str, np.ndarray]:
    ecfg = dataclasses.replace(EvalConfig(), neighbourhoods=scales)
    state = MethodState.init(3, 4, ecfg, np.array([0.1, 0.25, 0.3]))
    for batch in batches:
        state.add(*batch, kernel=kernel)
    return _arrays(state)


@pytest.mark.parametrize("scales", [(1, 2, 3, 4, 5, 9), (1,), (3,), ()])
def test_fused_states_equal_numpy_states_bit_for_bit(scales):
    batches = [_batch(seed) for seed in range(3)]
    slow, fast = _scored("numpy", scales, batches), _scored("auto", scales, batches)
    for name, want in slow.items():
        assert np.array_equal(fast[name], want), name


def test_fused_scoring_of_a_map_wider_than_the_windows_and_one_init():
    batches = [_batch(7, shape=(1, 3, 4, 40), n_days=1)]
    slow, fast = _scored("numpy", (1, 9, 25), batches), _scored("auto", (1, 9, 25), batches)
    for name, want in slow.items():
        assert np.array_equal(fast[name], want), name


def test_one_pass_contingency_tables_equal_the_numpy_histograms():
    tables = {k: ContingencyState.init(3) for k in ("numpy", "auto")}
    for seed in range(3):
        prob, events, mask, _ = _batch(seed)
        for kernel, state in tables.items():
            state.add(prob, events, mask, kernel=kernel)
    assert np.array_equal(tables["auto"].table, tables["numpy"].table)
    cases = sum(_batch(seed)[2].sum(axis=(0, 2, 3)) for seed in range(3))  # (L,)
    assert np.array_equal(tables["auto"].table.sum(-1), np.repeat(cases[:, None], 19, 1))
