"""Sub-daily climatology tables travel in checkpoints packed: every entry within the tolerance, a
tenth of the float32 size on a fitted diurnal table, daily tables and old checkpoints unchanged."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from data_prep.climatology import climatology_at, fit_climatology
from data_prep.io import open_maps
from data_prep.mock import mock_maps
from data_prep.sequences import load_or_build_index
from forecast.config import load_experiment
from forecast.training.checkpoint import load_checkpoint
from forecast.training.clim_codec import (
    STEP,
    TOLERANCE,
    check_packed,
    pack_table,
    packed_nbytes,
    same_table,
    unpack_table,
)
from forecast.training.features import FeatureStats, fit_stats, pack_climatology
from forecast.training.loop import train

GRID = (20, 30)
TINY = [
    "model.encoder_channels=[8]",
    "model.hidden_channels=[8]",
    "model.norm_groups=4",
    "data.n_in=5",
    "data.n_out=2",
    "data.block_steps=24",
    "train.batch_size=4",
    "train.patience=0",
    "train.progress=false",
    "train.device=cpu",
    "train.threads=1",
]


def _stats(table: np.ndarray) -> FeatureStats:
    h, w = table.shape[-2:]
    return FeatureStats(table, 1.5, np.linspace(30, 40, h), np.linspace(-100, -90, w))


@pytest.fixture(scope="module")
def diurnal_table():
    """A year of hourly Bernoulli maps (20 x 30 cells): an afternoon peak moving with longitude
    and a summer season, fitted like the training split's table (61, 24, 20, 30)."""
    times = pd.date_range("2021-01-01", periods=24 * 365, freq="h")
    hour = times.hour.to_numpy()[:, None] + np.linspace(-2, 2, GRID[1])[None, :]  # (T, W)
    peak = np.exp(-(((((hour - 21) + 12) % 24 - 12) / 3.0) ** 2))
    season = 0.5 - 0.5 * np.cos(2 * np.pi * times.day_of_year.to_numpy() / 365.25)  # (T,)
    p = 0.002 + 0.1 * season[:, None, None] * peak[:, None, :] * np.ones(GRID)[None]
    counts = (np.random.default_rng(0).random(p.shape) < p).astype(np.int32)
    return fit_climatology(counts, times.values, np.ones(len(times), bool), n_hours=24)


def test_known_answers_of_the_quantiser():
    table = np.array([0.0, 1.0, 0.5, np.sin(100 * STEP) ** 2], np.float32).reshape(1, 4, 1, 1)
    out = unpack_table(pack_table(table)).ravel()
    assert out[0] == 0.0 and abs(out[1] - 1.0) < 1e-6
    # arcsin(sqrt(0.5)) / 0.002 = 392.70 -> 393 -> sin(0.786) ** 2
    assert out[2] == np.float32(np.sin(393 * STEP) ** 2) and abs(out[2] - 0.5006) < 1e-4
    assert out[3] == np.float32(np.sin(100 * STEP) ** 2)  # on the grid: exact


def test_packed_diurnal_table_is_within_tolerance(diurnal_table):
    out = unpack_table(pack_table(diurnal_table))
    assert out.shape == diurnal_table.shape and out.dtype == np.float32
    err = np.abs(out.astype(np.float64) - diurnal_table)
    assert err.max() <= TOLERANCE + 1e-7
    assert err.max() > TOLERANCE / 4  # it quantises: the test would catch a changed step


def test_packing_a_packed_table_changes_nothing(diurnal_table):
    once = unpack_table(pack_table(diurnal_table))
    np.testing.assert_array_equal(unpack_table(pack_table(once)), once)


def test_checkpoint_of_a_diurnal_table_is_a_tenth_of_float32(diurnal_table):
    state = pack_climatology(_stats(diurnal_table)).to_state()
    assert "climatology" not in state
    buf = io.BytesIO()
    torch.save({"stats": state}, buf)
    coded = packed_nbytes(state["climatology_packed"])
    positions = 8 * (sum(GRID) + 1)  # lat, lon and the count scale as doubles
    assert buf.tell() <= coded + positions + 4096  # names and headers: a few kB
    assert coded <= diurnal_table.nbytes / 10


def test_fitted_stats_read_back_bit_identical(diurnal_table):
    stats = pack_climatology(_stats(diurnal_table))
    assert np.abs(stats.climatology - diurnal_table).max() <= TOLERANCE + 1e-7
    buf = io.BytesIO()
    torch.save(stats.to_state(), buf)
    buf.seek(0)
    back = FeatureStats.from_state(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(back.climatology, stats.climatology)


def test_daily_table_is_stored_as_float32_bit_for_bit():
    table = np.random.default_rng(1).random((366, 4, 5)).astype(np.float32)
    stats = pack_climatology(_stats(table))
    assert stats.climatology is table
    state = stats.to_state()
    assert state["climatology"].dtype == torch.float32 and "climatology_packed" not in state
    np.testing.assert_array_equal(FeatureStats.from_state(state).climatology, table)


def test_old_float32_sub_daily_state_still_loads():
    table = np.random.default_rng(2).random((61, 24, 3, 4)).astype(np.float32)
    old = {"climatology": torch.from_numpy(table), "count_scale": 2.0, "lat": [0, 1, 2]}
    old["lon"] = [0, 1, 2, 3]
    np.testing.assert_array_equal(FeatureStats.from_state(old).climatology, table)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda s: s.update(codec="other"), "codec"),
        (lambda s: s.update(data=s["data"][: len(s["data"]) // 2]), "end in season bin"),
        (lambda s: s.update(data=torch.zeros(40, dtype=torch.uint8)), "damaged"),
        (lambda s: s.update(step=0.01), "out of range"),  # levels past pi / 2
    ],
)
def test_damaged_packed_table_is_refused(damage, match):
    state = pack_table(np.random.default_rng(3).random((61, 24, 4, 4)))
    assert check_packed(state) == (61, 24, 4, 4)
    damage(state)
    with pytest.raises(ValueError, match=match):
        unpack_table(state)
    with pytest.raises(ValueError, match=match):  # checked season by season, the same refusal
        check_packed(state)


def test_float32_table_read_back_without_a_copy():
    table = np.random.default_rng(4).random((366, 3, 4)).astype(np.float32)
    state = _stats(table).to_state()
    back = FeatureStats.from_state(state).climatology
    assert np.shares_memory(back, state["climatology"].numpy())


def test_hourly_run_checkpoint_holds_the_table_training_read_and_resumes(tmp_path):
    path, out = tmp_path / "hourly.nc", tmp_path / "run"
    mock_maps(n_steps=24 * 10, shape=(8, 12), time_step="1h", seed=1).to_netcdf(path)
    run = [*TINY, f"train.maps={path}", f"train.out={out}"]
    cfg = load_experiment(None, [*run, "train.max_steps=2"])
    train(cfg)
    ckpt = load_checkpoint(out / "last.pt")
    assert "climatology_packed" in ckpt["stats"] and "climatology" not in ckpt["stats"]
    ds = open_maps(path)
    fitted = fit_stats(ds, load_or_build_index(path, ds, cfg.data)).climatology
    np.testing.assert_array_equal(FeatureStats.from_state(ckpt["stats"]).climatology, fitted)
    train(load_experiment(None, [*run, "train.max_steps=3"]), resume=True)  # same statistics
    assert load_checkpoint(out / "last.pt")["state"]["step"] == 3
    # a last.pt written before tables were packed: the float32 table as fitted, resumed too
    index = load_or_build_index(path, ds, cfg.data)
    use = index.steps("train", ds.sizes["time"])
    counts, cov = ds.strike_count.values, ds.coverage.values
    table = fit_climatology(counts, ds.time.values, use, observed=cov, n_hours=24)
    assert 0 < np.abs(table - fitted).max() <= TOLERANCE + 1e-7
    old = torch.load(out / "last.pt", weights_only=True)
    del old["stats"]["climatology_packed"]
    old["stats"]["climatology"] = torch.from_numpy(table)
    torch.save(old, out / "last.pt")
    train(load_experiment(None, [*run, "train.max_steps=4"]), resume=True)
    assert load_checkpoint(out / "last.pt")["state"]["step"] == 4


def test_a_packed_table_is_held_in_half_the_bytes_and_reads_as_unpacked_bit_for_bit(
    diurnal_table,
):
    stats = pack_climatology(_stats(diurnal_table))
    table = stats.climatology
    assert table.codes.dtype == np.uint16 and table.nbytes < diurnal_table.nbytes / 2 + 4096
    unpacked = unpack_table(stats.packed)
    np.testing.assert_array_equal(np.asarray(table), unpacked)
    times = pd.date_range("2021-03-01", periods=50, freq="7h").values
    assert np.array_equal(climatology_at(table, times), climatology_at(unpacked, times))
    assert climatology_at(table, times).dtype == np.float32
    np.testing.assert_array_equal(table[3, 5], unpacked[3, 5])
    assert same_table(table, pack_climatology(_stats(diurnal_table)).climatology)
    other = pack_climatology(_stats(np.clip(diurnal_table + 0.01, 0, 1))).climatology
    assert not same_table(table, other)
