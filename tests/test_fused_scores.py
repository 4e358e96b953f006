"""The fused scoring passes leave every streaming state as the states' own ``add`` do, bit
for bit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from data_prep.mock import mock_maps
from data_prep.sequences import build_index
from forecast.config import EvalConfig, ExperimentConfig
from forecast.evaluation import evaluate
from forecast.evaluation.baselines import build_baseline
from forecast.metrics import ContingencyState, categorical, suite
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


def _numpy_logs_are_the_c_librarys(batches) -> bool:
    """Whether numpy's log and log1p give the C library's bits on these probabilities (not so
    where numpy has vector logs of its own, AVX-512): the kernels' logs are the C library's."""
    p = np.concatenate([b[0][np.isfinite(b[0])] for b in batches]).astype(np.float64)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    c_log = np.array([math.log(v) for v in p]), np.array([math.log1p(-v) for v in p])
    return np.array_equal(np.log(p), c_log[0]) and np.array_equal(np.log1p(-p), c_log[1])


def _assert_same(fast: dict, slow: dict, batches) -> None:
    exact_logs = _numpy_logs_are_the_c_librarys(batches)
    for name, want in slow.items():
        if name == "prob.log_loss_sum" and not exact_logs:
            np.testing.assert_allclose(fast[name], want, rtol=1e-13, err_msg=name)
        else:
            assert np.array_equal(fast[name], want), name


@pytest.mark.parametrize("scales", [(1, 2, 3, 4, 5, 9), (1,), (3,), ()])
def test_fused_states_equal_numpy_states_bit_for_bit(scales):
    batches = [_batch(seed) for seed in range(3)]
    _assert_same(_scored("auto", scales, batches), _scored("numpy", scales, batches), batches)


def test_fused_scoring_of_a_map_wider_than_the_windows_and_one_init():
    batches = [_batch(7, shape=(1, 3, 4, 40), n_days=1)]
    fast, slow = _scored("auto", (1, 9, 25), batches), _scored("numpy", (1, 9, 25), batches)
    _assert_same(fast, slow, batches)


def test_one_pass_contingency_tables_equal_the_numpy_histograms():
    tables = {k: ContingencyState.init(3) for k in ("numpy", "auto")}
    for seed in range(3):
        prob, events, mask, _ = _batch(seed)
        for kernel, state in tables.items():
            state.add(prob, events, mask, kernel=kernel)
    assert np.array_equal(tables["auto"].table, tables["numpy"].table)
    cases = sum(_batch(seed)[2].sum(axis=(0, 2, 3)) for seed in range(3))  # (L,)
    assert np.array_equal(tables["auto"].table.sum(-1), np.repeat(cases[:, None], 19, 1))


def test_evaluate_writes_the_same_scores_with_and_without_the_kernels(monkeypatch):
    maps = mock_maps(n_steps=200, shape=(12, 16), seed=3, cell_gaps=0.05)
    cfg = ExperimentConfig()
    cfg.data.block_steps, cfg.eval.bootstrap, cfg.eval.neighbourhoods = 28, 20, (1, 2, 3, 5)
    index = build_index(maps, cfg.data)
    names = ("persistence", "smoothed_persistence", "climatology")
    methods = {n: build_baseline(n, maps, index, cfg.eval) for n in names}
    fast = evaluate(cfg, maps, index, methods, "test")
    for module in (suite, categorical):
        monkeypatch.setattr(module, "scoring_kernel", lambda: None)
    slow = evaluate(cfg, maps, index, methods, "test")
    assert list(fast.data_vars) == list(slow.data_vars)
    probe = [(np.linspace(0, 1, 20001, dtype=np.float32)[None],)]
    exact_logs = _numpy_logs_are_the_c_librarys(probe)
    for name in slow.data_vars:  # every score, curve and interval, to the last bit
        if name == "log_loss" and not exact_logs:
            np.testing.assert_allclose(fast[name].values, slow[name].values, rtol=1e-13)
        else:
            assert np.array_equal(fast[name].values, slow[name].values, equal_nan=True), name
