"""Predict writes its forecasts batch by batch: the file equals the one written whole, bit for bit."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest
import xarray as xr
from prep_files import TINY

from data_prep.io import open_maps, write_netcdf_atomic
from data_prep.mock import mock_maps
from forecast.config import load_experiment
from forecast.predict import (
    Forecaster,
    forecast_dataset,
    forecaster,
    load_forecaster,
    predict_to_file,
    select_inits,
)
from forecast.predict.forecaster import forward_batch
from forecast.predict.output import WRITE_BYTES, write_batch
from forecast.training import train

SPAN = "2021-01-06/2021-01-18"  # 13 inits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model trained a few steps (best.pt) and its maps."""
    root = tmp_path_factory.mktemp("stream")
    maps = root / "maps.nc"
    mock_maps(n_steps=60, shape=(12, 16), seed=7).to_netcdf(maps)
    extra = [f"train.maps={maps}", f"train.out={root / 'run'}", "train.max_steps=2"]
    train(load_experiment(None, [*TINY, *extra]))
    return root / "run" / "best.pt", maps


def _whole(ckpt, maps, out, batch_size: int):
    """The file as a single pass wrote it: every forecast in memory, then one write."""
    fc = load_forecaster(ckpt, device="cpu")
    fc.batch_size = batch_size
    ds = open_maps(maps)
    inits = select_inits(ds, SPAN, n_in=fc.n_in, min_coverage=fc.min_coverage, maps=maps)
    return write_netcdf_atomic(
        forecast_dataset(ds, inits, fc.forecast_all(ds, inits), fc, maps), out
    )


def _assert_same_file(a, b):
    """Same variables, dimensions, values (bit for bit, decoded and as stored), attributes (but
    the dated history line) and encoding (but the chunks)."""
    for decode in (True, False):
        x, y = xr.open_dataset(a, decode_times=decode), xr.open_dataset(b, decode_times=decode)
        assert dict(x.sizes) == dict(y.sizes) and set(x.variables) == set(y.variables)
        for name in x.variables:
            assert x[name].dims == y[name].dims and x[name].dtype == y[name].dtype, name
            assert np.array_equal(x[name].values, y[name].values, equal_nan=True), name
            assert x[name].attrs == y[name].attrs, name
            keep = ("dtype", "units", "calendar", "_FillValue", "zlib")  # NaN: compared as text
            assert [str(x[name].encoding.get(k)) for k in keep] == [
                str(y[name].encoding.get(k)) for k in keep
            ], name
        x.attrs.pop("history"), y.attrs.pop("history")
        assert x.attrs == y.attrs


def test_batches_written_one_after_another_equal_the_file_written_whole(run, tmp_path):
    ckpt, maps = run
    streamed = predict_to_file(ckpt, maps, SPAN, tmp_path / "s.nc", device="cpu", batch_inits=4)
    whole = _whole(ckpt, maps, tmp_path / "w.nc", batch_size=4)
    assert xr.open_dataset(streamed).sizes["init_time"] == 13  # batches of 4, 4, 4 and 1
    _assert_same_file(streamed, whole)
    with netCDF4.Dataset(streamed) as nc:
        assert nc.dimensions["init_time"].isunlimited()


def test_a_single_batch_equals_the_file_written_whole(run, tmp_path):
    ckpt, maps = run
    single = predict_to_file(ckpt, maps, SPAN, tmp_path / "s.nc", device="cpu")
    _assert_same_file(single, _whole(ckpt, maps, tmp_path / "w.nc", batch_size=32))


def test_forecasts_are_held_one_batch_at_a_time(run, tmp_path, monkeypatch):
    ckpt, maps = run
    sizes, forecast_all = [], Forecaster.forecast_all

    def spy(self, ds, inits, progress=False):
        sizes.append(len(inits))
        return forecast_all(self, ds, inits, progress)

    monkeypatch.setattr(Forecaster, "forecast_all", spy)
    predict_to_file(ckpt, maps, SPAN, tmp_path / "s.nc", device="cpu", batch_inits=5)
    assert sizes == [5, 5, 3]


def test_an_interrupted_predict_leaves_the_previous_output_and_no_temporary_file(
    run, tmp_path, monkeypatch
):
    ckpt, maps = run
    out = tmp_path / "f.nc"
    out.write_bytes(b"the previous forecast")
    calls, forecast_all = [], Forecaster.forecast_all

    def interrupted(self, ds, inits, progress=False):
        calls.append(len(inits))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return forecast_all(self, ds, inits, progress)

    monkeypatch.setattr(Forecaster, "forecast_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(ckpt, maps, SPAN, out, device="cpu", batch_inits=4)
    assert out.read_bytes() == b"the previous forecast"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.nc"]


def test_default_batches_are_whole_model_batches_of_bounded_size(run):
    ckpt, maps = run
    fc = load_forecaster(ckpt, device="cpu")
    big = xr.Dataset(coords={"lat": np.zeros(1000), "lon": np.zeros(1000)})
    assert write_batch(fc, big) == fc.batch_size  # 2 leads of 1e6 cells: one model batch
    per = write_batch(fc, open_maps(maps))  # 2 leads of 12 x 16 cells: 1536 bytes an init
    assert per % fc.batch_size == 0 and per * 1536 <= WRITE_BYTES < (per + fc.batch_size) * 1536


def test_forward_batch_keeps_inputs_within_the_byte_cap():
    # hourly conus-0.1: 8 steps of 12 channels of 260 x 590 cells are 59 MB an init
    assert forward_batch(8, 12, 260, 590) == 4
    assert forward_batch(8, 12, 260, 590, limit=1) == 1  # never fewer than one
    assert forward_batch(7, 10, 12, 16) == 4993


def test_forecasts_in_capped_forward_batches_equal_those_of_one_batch(run, monkeypatch):
    ckpt, maps = run
    ds = open_maps(maps)
    whole = load_forecaster(ckpt, device="cpu")
    inits = select_inits(ds, SPAN, n_in=whole.n_in, min_coverage=whole.min_coverage, maps=maps)
    per_init = 4 * whole.n_in * whole.model_args["in_channels"] * 12 * 16
    monkeypatch.setattr(forecaster, "FORWARD_BYTES", 3 * per_init)
    capped = load_forecaster(ckpt, device="cpu")
    assert whole.batch_size == 32 and capped.batch_size == 3
    np.testing.assert_array_equal(capped.forecast_all(ds, inits), whole.forecast_all(ds, inits))
