"""Sub-daily maps: hour-of-day input channels, each lead's own climatology for the model's prior,
and daily maps unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_prep.climatology import climatology_at
from data_prep.config import SequenceConfig
from data_prep.io import open_maps
from data_prep.mock import mock_maps
from data_prep.sequences import build_index
from forecast.config import ModelConfig
from forecast.model.network import build_model
from forecast.training.dataset import WindowDataset
from forecast.training.features import (
    COVERAGE_CHANNEL,
    N_CHANNELS,
    FeatureStats,
    fit_stats,
    input_features,
    lead_prior,
    n_channels,
)

CFG = SequenceConfig(n_in=5, n_out=3, block_steps=24, min_coverage=0.5)
TINY = ModelConfig(encoder_channels=(8, 16), hidden_channels=(16,), flat_hidden=32)


@pytest.fixture(scope="module")
def hourly():
    ds = mock_maps(n_steps=24 * 12, shape=(6, 8), time_step="1h", seed=1)
    index = build_index(ds, CFG)
    return ds, index, fit_stats(ds, index)


def test_hourly_maps_get_a_climatology_by_hour_and_two_hour_channels(hourly):
    ds, _, stats = hourly
    assert stats.diurnal and stats.climatology.shape == (61, 24, 6, 8)
    assert n_channels(stats) == N_CHANNELS + 2


def test_an_hourly_item_states_the_bytes_of_its_tensors_clim_included(hourly):
    ds, index, stats = hourly
    data = WindowDataset(
        ds, index.starts["train"], n_in=CFG.n_in, n_out=CFG.n_out, stats=stats, thresholds=(1, 3)
    )
    item = data[0]
    assert "clim" in item and data.item_bytes() == sum(t.nbytes for t in item.values())


def test_daily_maps_keep_ten_channels_and_no_lead_climatology():
    ds = mock_maps(n_steps=120, shape=(6, 8), seed=1)
    index = build_index(ds, SequenceConfig(n_in=5, n_out=3, block_steps=15, min_coverage=0.5))
    stats = fit_stats(ds, index)
    assert not stats.diurnal and stats.climatology.shape == (366, 6, 8)
    assert n_channels(stats) == N_CHANNELS
    item = WindowDataset(ds, index.starts["train"], n_in=5, n_out=3, stats=stats)[0]
    assert item["x"].shape[1] == N_CHANNELS and "clim" not in item
    assert lead_prior(stats, ds, np.array([10]), 3) == {}  # predict keeps the last step's prior


def test_hour_channels_read_local_solar_time():
    lon = np.array([-90.0, 0.0, 90.0])
    stats = FeatureStats(np.full((61, 24, 1, 3), 0.1, np.float32), 1.0, np.zeros(1), lon)
    times = np.array(["2021-06-01T21:00"], "datetime64[ns]")
    x = input_features(np.zeros((1, 1, 3)), np.ones((1, 1, 3)), times, stats, np.zeros(1), lon)
    assert x.shape == (1, 12, 1, 3)
    local = np.array([15.0, 21.0, 3.0])  # 21 UTC at 90 W, 0 and 90 E
    angle = 2 * np.pi * local / 24
    np.testing.assert_allclose(x[0, COVERAGE_CHANNEL + 1, 0], np.sin(angle), atol=1e-6)
    np.testing.assert_allclose(x[0, COVERAGE_CHANNEL + 2, 0], np.cos(angle), atol=1e-6)


def test_each_window_carries_the_climatology_of_its_valid_hours(hourly):
    ds, index, stats = hourly
    data = WindowDataset(ds, index.starts["train"], n_in=5, n_out=3, stats=stats)
    s = int(index.starts["train"][5])
    item = data[5]
    assert item["x"].shape == (5, 12, 6, 8)
    want = climatology_at(stats.climatology, ds.time.values[s + 5 : s + 8])  # the 3 leads
    np.testing.assert_array_equal(item["clim"].numpy(), want)
    assert not np.array_equal(want[0], want[2])  # the diurnal cycle moves the prior by lead
    # predict's prior of the same init: found by time, equal to the window's
    prior = lead_prior(stats, ds, np.array([s + 4]), 3)["clim"]
    np.testing.assert_array_equal(prior[0].numpy(), item["clim"].numpy())


def test_maps_read_from_disk_give_the_hour_channels_and_lead_climatology_of_memory(
    hourly, tmp_path
):
    ds, index, stats = hourly
    path = tmp_path / "hourly.nc"
    ds.to_netcdf(path)
    starts = index.starts["train"][:20]
    kw = dict(n_in=5, n_out=3, stats=stats)
    eager = WindowDataset(open_maps(path), starts, in_memory=True, **kw)
    lazy = WindowDataset(open_maps(path, lazy=True), starts, in_memory=False, **kw)
    assert lazy.steps.lazy and not eager.steps.lazy
    for i in range(len(starts)):
        a, b = eager[i], lazy[i]
        assert a.keys() == b.keys() and "clim" in b and b["x"].shape == (5, 12, 6, 8)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert lazy.steps.featurised == len(np.unique(starts[:, None] + np.arange(5)))


@pytest.fixture
def one_thread():
    """Tiny grids gain nothing from a second thread and lose much when the cores are busy."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_untrained_model_forecasts_each_leads_climatology(one_thread):
    torch.manual_seed(0)
    x = torch.rand(2, 4, 12, 8, 8)
    clim = 0.05 + 0.5 * torch.rand(2, 3, 8, 8)
    model = build_model(TINY, 12, 3)
    p = torch.sigmoid(model(x, clim=clim))  # (B, 3, 1, H, W)
    torch.testing.assert_close(p[:, :, 0], clim)
    # without it, the last input step's climatology channel for every lead, as for daily maps
    last = torch.sigmoid(model(x))[:, :, 0]
    torch.testing.assert_close(last, x[:, -1, 2].clamp(1e-4, 1 - 1e-4)[:, None].expand_as(last))
