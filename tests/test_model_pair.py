"""``model`` and ``model_uncalibrated`` from one forward pass: the forecasts of two forecasters."""

from __future__ import annotations

import numpy as np
import pytest
from prep_files import TINY

from data_prep.io import open_maps
from data_prep.mock import mock_maps
from forecast.config import load_experiment
from forecast.evaluation.model_pair import calibration_pair
from forecast.predict import load_forecaster
from forecast.training import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained tiny model with platt calibration (best.pt) and its maps."""
    root = tmp_path_factory.mktemp("pair")
    maps = root / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=5).to_netcdf(maps)
    extra = [f"train.maps={maps}", f"train.out={root / 'run'}", "train.calibration=platt"]
    train(load_experiment(None, [*TINY, *extra]))
    return root / "run" / "best.pt", maps


def test_pair_forecasts_equal_two_separately_loaded_forecasters_bit_for_bit(run):
    ckpt, maps = run
    ds = open_maps(maps)
    calibrated, raw = calibration_pair(load_forecaster(ckpt, "cpu"))
    one, two = load_forecaster(ckpt, "cpu"), load_forecaster(ckpt, "cpu", calibrated=False)
    for inits in (np.arange(20, 26), np.arange(40, 44)):  # as evaluate asks: model first
        got_cal, got_raw = calibrated.forecast(ds, inits), raw.forecast(ds, inits)
        assert np.array_equal(got_cal, one.forecast(ds, inits))
        assert np.array_equal(got_raw, two.forecast(ds, inits))
        assert not np.array_equal(got_cal, got_raw)  # platt calibration changed something
    assert raw.source.endswith("(uncalibrated)") and not calibrated.source.endswith(")")


def test_the_network_runs_once_per_batch_of_inits_for_both(run):
    ckpt, maps = run
    ds = open_maps(maps)
    calibrated, raw = calibration_pair(load_forecaster(ckpt, "cpu"))
    calls = []
    calibrated.model.register_forward_hook(lambda *a: calls.append(1))
    for inits in (np.arange(20, 26), np.arange(40, 44)):
        raw.forecast(ds, inits)  # either may ask first
        calibrated.forecast(ds, inits)
    assert len(calls) == 2
    calibrated.forecast(ds, np.arange(20, 26))  # taken back once: asked again, it runs again
    assert len(calls) == 3
