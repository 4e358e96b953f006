"""Missing data is never a zero: scores, baselines and the model see observed cells only.

The maps here have seeded patches of no-data cells (``mock_maps(cell_gaps=...)``). Every score is
checked against the same score computed independently on the observed cells alone, and against
maps whose no-data cells hold junk counts: nothing may read a cell without data.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from data_prep.mock import mock_maps
from data_prep.sequences import build_index
from forecast.config import ExperimentConfig, ModelConfig
from forecast.evaluation.baselines import build_baseline
from forecast.evaluation.scoring import evaluate
from forecast.metrics.categorical import THRESHOLDS
from forecast.model.losses import build_loss
from forecast.model.network import build_model
from forecast.predict import Forecaster
from forecast.training.data import build_data, validate
from forecast.training.distributed import setup
from forecast.training.features import N_CHANNELS, fit_stats

N_IN, N_OUT = 5, 2
BASELINES = ("persistence", "smoothed_persistence", "climatology", "lagrangian")


class Fixed:
    """Seeded probabilities that depend on the init step only, never on the maps."""

    n_out = N_OUT

    def forecast(self, ds, inits, n_out=None):
        shape = (N_OUT, ds.sizes["lat"], ds.sizes["lon"])
        return np.stack([np.random.default_rng(int(i)).random(shape) for i in inits]).astype(
            np.float32
        )


def _cfg() -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.n_in, cfg.data.n_out, cfg.data.block_steps = N_IN, N_OUT, 20
    cfg.data.min_coverage = 0.5  # steps with patches of no data still make windows
    cfg.eval.bootstrap, cfg.eval.neighbourhoods = 20, (1, 3)
    cfg.eval.smoothing_candidates, cfg.eval.select_inits = (1, 3, 5), 16
    return cfg


def _model(ds: xr.Dataset, index) -> Forecaster:
    """An untrained forecaster with random head weights, so its output depends on its inputs."""
    mcfg = ModelConfig(encoder_channels=(8,), hidden_channels=(8,), norm_groups=4)
    torch.manual_seed(0)
    net = build_model(mcfg, N_CHANNELS, N_OUT)
    torch.nn.init.normal_(net.head.weight, std=0.5)
    ckpt = {
        "model_args": {"model": asdict(mcfg), "in_channels": N_CHANNELS, "n_out": N_OUT},
        "model": net.state_dict(),
        "stats": fit_stats(ds, index).to_state(),
        "config": {"data": {"n_in": N_IN, "min_coverage": 0.5}},
    }
    return Forecaster(ckpt, Path("untrained.pt"), torch.device("cpu"))


def _scores(ds: xr.Dataset):
    cfg = _cfg()
    index = build_index(ds, cfg.data)
    methods = {"model": _model(ds, index), "fixed": Fixed()}
    methods.update({b: build_baseline(b, ds, index, cfg.eval) for b in BASELINES})
    return evaluate(cfg, ds, index, methods, "test"), methods, index


@pytest.fixture(scope="module")
def gappy() -> xr.Dataset:
    ds = mock_maps(n_steps=160, shape=(12, 16), seed=7, cell_gaps=0.6)
    assert 0.03 < float((ds.coverage == 0).mean()) < 0.2
    return ds


@pytest.fixture(scope="module")
def scored(gappy):
    return _scores(gappy)


def _cases(ds, inits, prob):
    """Independent (p, o) of the observed valid cells, per lead: lists of flat arrays."""
    valid = inits[:, None] + np.arange(1, N_OUT + 1)  # (N, L): the mock maps have no holes
    events = ds.strike_count.values[valid] >= 1
    seen = (ds.coverage.values[valid] == 1) & np.isfinite(prob)
    assert (~seen).any()  # the scored cases do include no-data cells to leave out
    return (
        [
            (prob[:, k][seen[:, k]].astype(np.float64), events[:, k][seen[:, k]])
            for k in range(N_OUT)
        ],
        events,
        seen,
    )


def _auc(p: np.ndarray, o: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half."""
    pos, neg = np.sort(p[o]), np.sort(p[~o])
    below = np.searchsorted(neg, pos, "left")
    ties = np.searchsorted(neg, pos, "right") - below
    return float((below + 0.5 * ties).sum() / (pos.size * neg.size))


@pytest.mark.parametrize("method", ["model", "fixed", *BASELINES])
def test_every_score_equals_the_score_of_the_observed_cells_alone(gappy, scored, method):
    scores, methods, index = scored
    s = scores.sel(forecast=method)
    inits = index.inits("test")
    prob = methods[method].forecast(gappy, inits)[:, :N_OUT]
    cases, events, seen = _cases(gappy, inits, prob)
    clim = methods["climatology"].forecast(gappy, inits)[:, :N_OUT]
    for k, (p, o) in enumerate(cases):
        lead = s.isel(lead_time=k)
        assert int(lead.n_cases) == p.size
        assert float(lead.base_rate) == pytest.approx(o.mean())
        brier = np.mean((p - o) ** 2)
        assert float(lead.brier_score) == pytest.approx(brier, rel=1e-9)
        brier_clim = np.mean((clim[:, k][seen[:, k]].astype(np.float64) - o) ** 2)
        assert float(lead.brier_skill_score) == pytest.approx(1 - brier / brier_clim, rel=1e-9)
        assert float(lead.roc_auc) == pytest.approx(_auc(p, o), abs=2e-3)
        yes = p[:, None] >= THRESHOLDS - 1e-9  # (n, K)
        np.testing.assert_array_equal(lead.hits, (yes & o[:, None]).sum(0))
        np.testing.assert_array_equal(lead.false_alarms, (yes & ~o[:, None]).sum(0))
        np.testing.assert_array_equal(lead.misses, (~yes & o[:, None]).sum(0))
        np.testing.assert_array_equal(lead.correct_negatives, (~yes & ~o[:, None]).sum(0))
        rel_bin = np.clip(np.floor(p * 10), 0, 9).astype(int)
        np.testing.assert_array_equal(lead.reliability_count, np.bincount(rel_bin, minlength=10))
        for n in (1, 3):  # FSS: one score of the sums over every map
            sums = [
                _fss_sums(prob[i, k], events[i, k], seen[i, k], float(lead.best_threshold), n)
                for i in range(len(inits))
            ]
            num, den = np.sum(sums, axis=0)
            assert float(lead.fss.sel(scale=n)) == pytest.approx(1 - num / den, rel=1e-9)


def _fss_sums(prob, events, seen, threshold: float, n: int) -> tuple[float, float]:
    """FSS sums over one map, fractions over the observed cells of each n x n window."""
    yes = (prob >= threshold) & seen
    num = den = 0.0
    r0, r1 = (n - 1) // 2, n // 2
    for i, j in zip(*np.nonzero(seen), strict=True):
        box = np.s_[max(i - r0, 0) : i + r1 + 1, max(j - r0, 0) : j + r1 + 1]
        m = seen[box].sum()
        ff, fo = yes[box].sum() / m, (events[box] & seen[box]).sum() / m
        num, den = num + (ff - fo) ** 2, den + ff**2 + fo**2
    return num, den


def test_scores_do_not_depend_on_what_no_data_cells_hold(gappy, scored):
    scores, _, _ = scored
    junk = gappy.copy(deep=True)
    junk["strike_count"] = gappy.strike_count.where(gappy.coverage == 1, 40)
    again, _, _ = _scores(junk)  # the model's statistics and the baselines refitted on junk
    for name, var in scores.data_vars.items():
        np.testing.assert_array_equal(again[name].values, var.values, err_msg=name)


def _validation(ds: xr.Dataset, tmp: Path) -> dict[str, float]:
    """Training's validation scores of an untrained model with a random head on ``ds``."""
    path = tmp / "maps.nc"
    ds.to_netcdf(path)
    cfg = _cfg()
    cfg.model = ModelConfig(encoder_channels=(8,), hidden_channels=(8,), norm_groups=4)
    cfg.train.maps, cfg.train.batch_size, cfg.train.device = str(path), 8, "cpu"
    dist = setup("cpu")
    data = build_data(cfg, dist)
    torch.manual_seed(0)
    net = build_model(cfg.model, data.in_channels, data.n_out)
    torch.nn.init.normal_(net.head.weight, std=0.5)
    return validate(net, data, build_loss("bce"), dist)


def test_training_validation_does_not_depend_on_what_no_data_cells_hold(gappy, tmp_path):
    junk = gappy.copy(deep=True)
    junk["strike_count"] = gappy.strike_count.where(gappy.coverage == 1, 40)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    clean, dirty = _validation(gappy, tmp_path / "a"), _validation(junk, tmp_path / "b")
    assert np.isfinite(clean["val_brier"]) and clean == dirty
