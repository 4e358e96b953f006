"""train.train_fraction: training on an evenly spaced share of the training blocks only."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.errors import UserError
from data_prep.mock import mock_maps
from data_prep.sequences import WindowIndex
from forecast.config import load_experiment
from forecast.training import distributed
from forecast.training.data import build_data, thinned_training

BLOCKS = [np.arange(b, b + 5) for b in (0, 10, 20, 30)]  # windows of four blocks of 10 steps


def _index() -> WindowIndex:
    starts = {"train": np.concatenate(BLOCKS), "val": np.array([41, 42]), "test": np.array([50])}
    return WindowIndex(n_in=3, n_out=2, starts=starts)


@pytest.mark.parametrize(
    ("fraction", "kept"), [(1.0, [0, 1, 2, 3]), (0.5, [1, 3]), (0.25, [3]), (0.1, [3])]
)
def test_train_fraction_keeps_evenly_spaced_whole_training_blocks(fraction, kept):
    out = thinned_training(_index(), fraction, 10)
    np.testing.assert_array_equal(out.starts["train"], np.concatenate([BLOCKS[k] for k in kept]))


def test_train_fraction_leaves_validation_and_test_windows_untouched():
    index = _index()
    out = thinned_training(index, 0.5, 10)
    for split in ("val", "test"):
        np.testing.assert_array_equal(out.starts[split], index.starts[split])
    np.testing.assert_array_equal(index.starts["train"], np.concatenate(BLOCKS))  # input kept


def test_training_loader_holds_a_subset_of_the_training_inits_and_all_validation_ones(tmp_path):
    path = tmp_path / "maps.nc"
    mock_maps(n_steps=200, shape=(8, 8), seed=3).to_netcdf(path)
    base = ["data.n_in=5", "data.n_out=2", "data.block_steps=12", f"train.maps={path}"]
    with distributed.session("cpu", 1) as dist:
        full = build_data(load_experiment(None, base), dist)
        half = build_data(load_experiment(None, [*base, "train.train_fraction=0.5"]), dist)
    inits = {k: d.train_loader.dataset.starts for k, d in (("full", full), ("half", half))}
    assert set(inits["half"]) < set(inits["full"])
    assert 0.3 < len(inits["half"]) / len(inits["full"]) < 0.7
    np.testing.assert_array_equal(half.val_loader.dataset.starts, full.val_loader.dataset.starts)


@pytest.mark.parametrize("value", ["0", "1.5", "-0.5"])
def test_train_fraction_outside_0_1_is_refused_naming_the_key(value):
    with pytest.raises(UserError, match="train_fraction"):
        load_experiment(None, [f"train.train_fraction={value}"])
