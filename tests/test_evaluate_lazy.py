"""Evaluate reads the maps batch by batch from disk: the same scores as maps held in memory."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import forecast.evaluation.files as eval_files
from data_prep.io import open_maps
from data_prep.maps_file import maps_encoding
from data_prep.mock import mock_maps
from data_prep.schema import COUNT, cf_encoding
from data_prep.sequences import build_index
from forecast.config import ExperimentConfig
from forecast.evaluation import evaluate, evaluate_to_files
from forecast.evaluation.baselines import BASELINES, build_baseline


def _cfg() -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.block_steps = 28
    cfg.eval.bootstrap = 20
    return cfg


@pytest.fixture(scope="module")
def maps_file(tmp_path_factory):
    """Maps on disk as prep writes them: zlib chunks of a few steps, with patches of no data."""
    ds = mock_maps(n_steps=240, shape=(12, 16), seed=11, cell_gaps=0.1)
    path = tmp_path_factory.mktemp("lazy") / "maps.nc"
    ds.to_netcdf(path, encoding=cf_encoding(ds, maps_encoding(ds.sizes["time"], (12, 16))))
    return path


def _scores(ds: xr.Dataset) -> xr.Dataset:
    cfg = _cfg()
    index = build_index(ds, cfg.data)
    methods = {name: build_baseline(name, ds, index, cfg.eval) for name in BASELINES}
    return evaluate(cfg, ds, index, methods, "test")


def test_scores_of_maps_read_from_disk_equal_scores_of_maps_in_memory(maps_file):
    eager, lazy = open_maps(maps_file), open_maps(maps_file, lazy=True)
    assert not lazy[COUNT].variable._in_memory
    a, b = _scores(eager), _scores(lazy)
    lazy.close()
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name
    assert a.attrs == b.attrs


def test_evaluate_to_files_scores_maps_left_on_disk(maps_file, tmp_path, monkeypatch):
    seen = []

    def spy(cfg, ds, index, methods, split="test"):
        seen.append(ds[COUNT].variable._in_memory)
        return evaluate(cfg, ds, index, methods, split)

    monkeypatch.setattr(eval_files, "evaluate", spy)
    out, _ = evaluate_to_files(
        _cfg(), maps=maps_file, out=tmp_path / "s.nc", checkpoint=None, forecasts={},
        baselines=True,
    )  # fmt: skip
    assert seen == [False] and out.is_file()
