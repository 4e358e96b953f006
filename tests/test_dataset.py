"""Input features, training-only statistics and lazily sliced windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from data_prep.climatology import climatology_at, fit_climatology
from data_prep.config import SequenceConfig
from data_prep.errors import UserError
from data_prep.mock import mock_maps
from data_prep.sequences import build_index
from forecast.training.dataset import WindowDataset
from forecast.training.features import (
    COVERAGE_CHANNEL,
    N_CHANNELS,
    FeatureStats,
    check_input_channels,
    fit_stats,
    init_features,
    input_features,
)
from forecast.training.loader import make_loader

CFG = SequenceConfig(n_in=5, n_out=2, block_steps=15, min_coverage=0.5)


@pytest.fixture(scope="module")
def maps():
    ds = mock_maps(n_steps=150, shape=(6, 8), gaps=(70,), seed=3, cell_gaps=0.3)
    index = build_index(ds, CFG)
    return ds, index, fit_stats(ds, index)


@pytest.mark.parametrize("source", ["memory", "lazy", "lazy_file"])
def test_window_equals_independent_isel(maps, source, tmp_path):
    ds, index, stats = maps
    if source == "lazy_file":
        ds.to_netcdf(tmp_path / "maps.nc")
        ds = xr.open_dataset(tmp_path / "maps.nc")  # not loaded: items read from the file
    starts = index.starts["val"]
    data = WindowDataset(
        ds, starts, n_in=5, n_out=2, stats=stats, thresholds=(1, 3), in_memory=source == "memory"
    )
    assert len(data) == len(starts)
    gaps_seen = 0
    for i in range(len(starts)):
        s = int(starts[i])
        part = ds.isel(time=slice(s, s + 7))
        counts, cov = part.strike_count.values, part.coverage.values
        gaps_seen += int((cov == 0).sum())
        item = data[i]
        assert item["x"].shape == (5, N_CHANNELS, 6, 8) and item["x"].dtype == torch.float32
        x, seen = item["x"].numpy(), cov[:5] == 1
        want = np.log1p(counts[:5]) / stats.count_scale
        np.testing.assert_allclose(x[:, 0][seen], want[seen], rtol=1e-6)
        np.testing.assert_array_equal(x[:, 1][seen], counts[:5][seen] >= 1)
        np.testing.assert_array_equal(x[:, 2], climatology_at(stats.climatology, part.time[:5]))
        np.testing.assert_array_equal(x[:, COVERAGE_CHANNEL], cov[:5])
        np.testing.assert_array_equal(item["y"].numpy()[:, 0], counts[5:] >= 1)
        np.testing.assert_array_equal(item["y"].numpy()[:, 1], counts[5:] >= 3)
        np.testing.assert_array_equal(item["mask"].numpy(), cov[5:])
        assert int(item["init"]) == s + 4
    assert gaps_seen > 0  # the windows hold no-data cells, so the mask and channel 9 are tested


def test_input_features_known_channels():
    ds = mock_maps(n_steps=2, shape=(3, 4))
    clim = np.linspace(0, 1, 366 * 12, dtype=np.float32).reshape(366, 3, 4)
    stats = FeatureStats(clim, float(np.log1p(9.0)), ds.lat.values, ds.lon.values)
    counts = np.zeros((2, 3, 4), np.int32)
    counts[0, 1, 2] = 9
    cov = np.ones((2, 3, 4), np.int8)
    x = input_features(counts, cov, ds.time.values, stats, ds.lat.values, ds.lon.values)
    assert x.shape == (2, N_CHANNELS, 3, 4) and x.dtype == np.float32
    assert x[0, 0, 1, 2] == pytest.approx(1.0) and x[0, 0].sum() == pytest.approx(1.0)
    assert x[0, 1, 1, 2] == 1 and x[0, 1].sum() == 1
    np.testing.assert_array_equal(x[1, 2], clim[1])  # 2 January
    np.testing.assert_allclose(x[0, 3, :, 0], [-1, 0, 1], atol=1e-6)  # latitude, south to north
    np.testing.assert_allclose(x[0, 4, 0, [0, -1]], [-1, 1], atol=1e-6)
    np.testing.assert_allclose(x[0, 5:7, 0, 0], [0.0, 1.0], atol=1e-6)  # 1 January: sin 0, cos 1
    # domain activity: 1 of 12 cells struck on 1 January, none on the 2nd; the same everywhere
    np.testing.assert_allclose(
        x[:, 7], np.array([1 / 12, 0.0])[:, None, None] + np.zeros((2, 3, 4))
    )
    clim_share = clim[:2].mean((1, 2))
    want = np.log((np.array([1 / 12, 0.0]) + 0.01) / (clim_share + 0.01))
    np.testing.assert_allclose(x[:, 8, 2, 3], want, rtol=1e-5)
    assert np.ptp(x[:, 8], axis=(1, 2)).max() == 0
    assert (x[:, COVERAGE_CHANNEL] == 1).all()


def _known_stats(ds) -> FeatureStats:
    clim = np.linspace(0.1, 0.9, 366 * 12, dtype=np.float32).reshape(366, 3, 4)
    return FeatureStats(clim, float(np.log1p(9.0)), ds.lat.values, ds.lon.values)


def test_a_no_data_cell_is_not_an_observed_zero_in_the_model_input():
    ds = mock_maps(n_steps=1, shape=(3, 4))
    stats = _known_stats(ds)
    counts, cov = np.zeros((1, 3, 4), np.int32), np.ones((1, 3, 4), np.int8)
    args = (ds.time.values, stats, ds.lat.values, ds.lon.values)
    observed_zero = input_features(counts, cov, *args)
    cov[0, 1, 2] = 0
    no_data = input_features(counts, cov, *args)
    p = stats.climatology[0, 1, 2]  # 1 January's climatology of the cell
    assert no_data[0, COVERAGE_CHANNEL, 1, 2] == 0 and observed_zero[0, COVERAGE_CHANNEL, 1, 2] == 1
    assert observed_zero[0, :2, 1, 2].tolist() == [0, 0]  # an observed zero reads as zero
    assert no_data[0, 1, 1, 2] == pytest.approx(p)  # no data reads as its climatology
    assert no_data[0, 0, 1, 2] == pytest.approx(p * np.log(2) / np.log1p(9.0))
    other = np.ones((3, 4), bool)
    other[1, 2] = False
    np.testing.assert_array_equal(no_data[0, :2][:, other], observed_zero[0, :2][:, other])


def test_activity_share_is_struck_over_observed_cells():
    ds = mock_maps(n_steps=2, shape=(3, 4))
    stats = _known_stats(ds)
    counts, cov = np.zeros((2, 3, 4), np.int32), np.ones((2, 3, 4), np.int8)
    counts[0, 0, :2] = 5  # 2 struck cells ...
    cov[0, 2, :] = 0  # ... among the 8 observed ones: share 2 / 8, not 2 / 12
    cov[1] = 0  # a step without any observed cell: the climatological share, log ratio 0
    x = input_features(counts, cov, ds.time.values, stats, ds.lat.values, ds.lon.values)
    clim = stats.climatology[:2]
    clim_share = clim[0, :2].mean()  # the climatology of the same 8 observed cells
    assert x[0, 7, 2, 3] == pytest.approx(2 / 8)
    assert x[0, 8, 0, 0] == pytest.approx(np.log((2 / 8 + 0.01) / (clim_share + 0.01)), rel=1e-5)
    assert x[1, 7, 0, 0] == pytest.approx(clim[1].mean()) and x[1, 8, 0, 0] == 0


def test_a_checkpoint_of_another_channel_count_is_refused_in_one_line():
    check_input_channels(N_CHANNELS, "best.pt")
    with pytest.raises(UserError, match=r"best.pt: .*trained before the coverage input; retrain"):
        check_input_channels(9, "best.pt")


def test_fit_stats_ignores_data_outside_the_training_split(maps):
    ds, index, stats = maps
    changed = ds.copy(deep=True)
    other = ~index.steps("train")
    assert other.sum() > 20
    changed["strike_count"][other] = 500
    again = fit_stats(changed, index)
    np.testing.assert_array_equal(again.climatology, stats.climatology)
    assert again.count_scale == stats.count_scale
    changed["strike_count"][index.steps("train")] += 1  # training data do move the statistics
    moved = fit_stats(changed, index)
    assert moved.climatology.mean() > stats.climatology.mean()


def test_count_scale_is_log1p_of_a_high_quantile(maps):
    ds, index, stats = maps
    counts = ds.strike_count.values[index.steps("train")]
    positive = counts[counts >= 1]
    assert np.log1p(np.quantile(positive, 0.95)) <= stats.count_scale
    assert stats.count_scale <= np.log1p(positive.max())


def test_feature_stats_state_loads_with_weights_only(maps, tmp_path):
    _, _, stats = maps
    torch.save({"stats": stats.to_state()}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)["stats"]
    back = FeatureStats.from_state(state)
    np.testing.assert_array_equal(back.climatology, stats.climatology)
    np.testing.assert_array_equal(back.lat, stats.lat)
    assert back.count_scale == stats.count_scale


def test_init_features_equal_window_inputs_and_reach_the_last_step(maps):
    ds, index, stats = maps
    data = WindowDataset(ds, index.starts["val"][:3], n_in=5, n_out=2, stats=stats)
    x = init_features(ds, index.inits("val")[:3], 5, stats)
    assert x.shape == (3, 5, N_CHANNELS, 6, 8)
    for i in range(3):
        np.testing.assert_array_equal(x[i].numpy(), data[i]["x"].numpy())
    last = init_features(ds, np.array([149]), 5, stats)
    np.testing.assert_array_equal(last[0, -1, 1].numpy(), ds.strike_count.values[149] >= 1)
    with pytest.raises(UserError, match="past steps"):
        init_features(ds, np.array([3]), 5, stats)


def test_features_on_another_grid_are_rejected(maps):
    _, _, stats = maps
    other = mock_maps(n_steps=5, shape=(4, 4))
    with pytest.raises(UserError, match="training grid"):
        init_features(other, np.array([4]), 5, stats)


def test_loader_batches_follow_the_sampler_with_or_without_worker_processes(maps):
    from forecast.training.distributed import ShardSampler

    ds, index, stats = maps
    data = WindowDataset(ds, index.starts["train"], n_in=5, n_out=2, stats=stats)
    sampler = ShardSampler(len(data), shuffle=True, seed=3)

    def batches(workers, epoch, skip=0):
        sampler.set_epoch(epoch, skip=skip)
        loader = make_loader(data, sampler, batch_size=8, num_workers=workers, seed=0)
        return list(loader)

    inline, workers = batches(0, epoch=1), batches(2, epoch=1)
    want = index.starts["train"][sampler.indices()] + 4  # init = start + n_in - 1
    assert torch.cat([b["init"] for b in inline]).tolist() == want.tolist()
    assert len(inline) == len(workers)
    for a, b in zip(inline, workers, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    resumed = batches(0, epoch=1, skip=16)  # mid-epoch resume sees the remaining windows
    assert torch.cat([b["init"] for b in resumed]).tolist() == want[16:].tolist()
    assert batches(0, epoch=2)[0]["init"].tolist() != inline[0]["init"].tolist()


def test_loader_pins_memory_only_on_cuda_and_keeps_its_workers(maps):
    from forecast.training.distributed import ShardSampler

    ds, index, stats = maps
    data = WindowDataset(ds, index.starts["train"], n_in=5, n_out=2, stats=stats)
    sampler = ShardSampler(len(data))
    loader = make_loader(data, sampler, batch_size=4, num_workers=1, device="cpu")
    assert loader.persistent_workers and not loader.pin_memory
    assert make_loader(data, sampler, batch_size=4, device="cuda").pin_memory


def test_bad_thresholds_and_starts_are_rejected(maps):
    ds, index, stats = maps
    with pytest.raises(UserError, match="thresholds"):
        WindowDataset(ds, index.starts["train"], n_in=5, n_out=2, stats=stats, thresholds=(0,))
    with pytest.raises(UserError, match="rebuild the index"):
        WindowDataset(ds, np.array([148]), n_in=5, n_out=2, stats=stats)


def test_stats_climatology_equals_fit_climatology_on_training_steps(maps):
    ds, index, stats = maps
    train = index.steps("train")
    expected = fit_climatology(
        ds.strike_count.values[train],
        ds.time.values[train],
        np.ones(train.sum(), bool),
        observed=ds.coverage.values[train] > 0,
    )
    np.testing.assert_allclose(stats.climatology, expected, rtol=1e-6, atol=1e-7)
