"""Window index: gap-aware windows, leak-free time-blocked splits, a saved index that goes stale."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from data_prep import sequences as seq
from data_prep.config import SequenceConfig
from data_prep.errors import UserError
from data_prep.io import write_netcdf_atomic
from data_prep.mock import mock_maps
from data_prep.sequences import (
    SPLITS,
    WindowIndex,
    build_index,
    forecast_inits,
    index_path,
    load_or_build_index,
    split_of_each_step,
    split_windows,
    steps_in_windows,
    time_breaks,
    usable_steps,
    window_starts,
)

SMALL = SequenceConfig(n_in=5, n_out=2, block_steps=12)


def _used_steps(starts: np.ndarray, length: int) -> set[int]:
    return {int(s) + k for s in starts for k in range(length)}


def test_window_starts_skip_windows_touching_an_unusable_step():
    usable = np.ones(10, bool)
    usable[5] = False
    starts = window_starts(usable, n_in=2, n_out=1)
    assert starts.tolist() == [0, 1, 2, 6, 7]
    assert starts.dtype == np.int64


def test_window_starts_never_span_a_time_break():
    breaks = np.zeros(8, bool)
    breaks[4] = True  # step 4 does not follow step 3
    assert window_starts(np.ones(8, bool), n_in=2, n_out=1, breaks=breaks).tolist() == [0, 1, 4, 5]


def test_window_starts_with_no_targets_reach_the_last_step():
    assert window_starts(np.ones(6, bool), n_in=5, n_out=0).tolist() == [0, 1]


def test_usable_steps_follow_the_share_of_observed_cells():
    ds = mock_maps(n_steps=4, shape=(4, 5))
    ds["coverage"][1, 0, :2] = 0  # 18 of 20 cells observed: share 0.9
    assert usable_steps(ds, 0.95).tolist() == [True, False, True, True]
    assert usable_steps(ds, 0.9).all()
    with pytest.raises(UserError, match="data.min_coverage"):
        usable_steps(ds, 1.5)


def test_coverage_gaps_are_in_no_window():
    ds = mock_maps(n_steps=120, shape=(4, 5), gaps=(30, 31, 55))
    index = build_index(ds, SMALL)
    used = set().union(*(_used_steps(index.starts[k], 7) for k in SPLITS))
    assert used.isdisjoint({30, 31, 55})
    assert len(index.starts["train"]) > 0


def test_hole_in_time_axis_gives_no_window_across_it():
    ds = mock_maps(n_steps=60, shape=(4, 5))
    ds = ds.isel(time=np.r_[0:25, 26:60])  # 2021-01-26 is missing from the file
    index = build_index(ds, SMALL)
    times = ds.time.values
    for k in SPLITS:
        s = index.starts[k]
        span = (times[s + 6] - times[s]) / np.timedelta64(1, "D")
        assert np.all(span == 6), k
    assert time_breaks(times, "1D").nonzero()[0].tolist() == [25]


def test_time_axis_out_of_order_is_rejected():
    times = pd.to_datetime(["2021-01-02", "2021-01-01"]).values
    with pytest.raises(UserError, match="not strictly increasing"):
        time_breaks(times)


@pytest.mark.parametrize("n_in", [4, 11])
def test_n_in_outside_5_to_10_is_rejected_naming_data_n_in(n_in):
    ds = mock_maps(n_steps=30, shape=(3, 3))
    with pytest.raises(UserError, match=r"data\.n_in"):
        build_index(ds, SequenceConfig(n_in=n_in))


def test_bad_split_settings_name_their_key():
    with pytest.raises(UserError, match=r"data\.split"):
        split_of_each_step(100, SequenceConfig(split="random"))
    with pytest.raises(UserError, match=r"data\.fractions"):
        split_of_each_step(100, SequenceConfig(fractions=(0.5, 0.2, 0.2)))
    with pytest.raises(UserError, match=r"data\.block_steps"):
        split_of_each_step(100, SequenceConfig(block_steps=5))


@pytest.mark.parametrize("split", ["blocks", "contiguous"])
def test_no_step_of_a_window_is_shared_between_splits(split):
    cfg = SequenceConfig(n_in=7, n_out=3, split=split, block_steps=20)
    starts = np.arange(0, 400 - 10 + 1)
    out = split_windows(starts, 400, cfg)
    used = {k: _used_steps(out[k], 10) for k in SPLITS}
    assert used["test"].isdisjoint(used["train"])
    assert used["val"].isdisjoint(used["train"])
    assert used["val"].isdisjoint(used["test"])
    assert all(len(out[k]) > 0 for k in SPLITS)


def test_windows_are_dropped_only_at_split_boundaries_and_in_the_embargo():
    cfg = SequenceConfig(n_in=5, n_out=2, split="contiguous", fractions=(0.5, 0.25, 0.25))
    out = split_windows(np.arange(0, 100 - 7 + 1), 100, cfg)
    # steps 0-49 train, 50-74 val, 75-99 test, the first n_in = 5 steps of val and test embargoed
    assert out["train"].tolist() == list(range(0, 44))
    assert out["val"].tolist() == list(range(55, 69))
    assert out["test"].tolist() == list(range(80, 94))


def _inputs_and_targets(starts: np.ndarray, n_in: int, n_out: int) -> tuple[set, set]:
    return _used_steps(starts, n_in), _used_steps(np.asarray(starts) + n_in, n_out)


@pytest.mark.parametrize("split", ["blocks", "contiguous"])
def test_no_held_out_input_lies_within_n_in_steps_of_a_training_target(split):
    n_in, n_out = 7, 3
    cfg = SequenceConfig(n_in=n_in, n_out=n_out, split=split, block_steps=20)
    out = split_windows(np.arange(0, 400 - 10 + 1), 400, cfg)
    train_in, train_target = _inputs_and_targets(out["train"], n_in, n_out)
    near_train_target = {t + d for t in train_target for d in range(-n_in, n_in + 1)}
    for held_out in ("val", "test"):
        inputs, targets = _inputs_and_targets(out[held_out], n_in, n_out)
        assert inputs.isdisjoint(train_target) and targets.isdisjoint(train_in)
        assert inputs.isdisjoint(near_train_target)  # the embargo: n_in steps between them
        assert len(out[held_out]) > 0


def test_windows_of_different_splits_are_at_least_n_in_steps_apart():
    cfg = SequenceConfig(n_in=5, n_out=2, block_steps=12)  # blocks of 12 < 2 n_in + n_out
    out = split_windows(np.arange(0, 1000 - 7 + 1), 1000, cfg)
    used = {k: np.array(sorted(_used_steps(out[k], 7))) for k in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b and used[a].size and used[b].size:
                gap = np.abs(used[a][:, None] - used[b][None, :]).min()
                assert gap > cfg.n_in, (a, b, gap)


def test_blocks_split_shares_follow_fractions_and_reach_every_season():
    n = 6 * 365
    label = split_of_each_step(n, SequenceConfig())
    shares = np.bincount(label, minlength=3) / n
    np.testing.assert_allclose(shares, [0.7, 0.15, 0.15], atol=0.02)
    season = (pd.date_range("2021-01-01", periods=n, freq="D").month.to_numpy() % 12) // 3
    for k in range(3):
        per_season = np.bincount(season[label == k], minlength=4) / np.sum(label == k)
        assert per_season.min() > 0.1, (k, per_season)


def test_blocks_pattern_is_stable_when_data_are_appended():
    cfg = SequenceConfig(block_steps=20)
    assert np.array_equal(split_of_each_step(1000, cfg)[:600], split_of_each_step(600, cfg))


def test_split_steps_marks_inputs_and_targets():
    assert steps_in_windows(np.array([1, 6]), 10, 3).nonzero()[0].tolist() == [1, 2, 3, 6, 7, 8]


def test_index_round_trips_through_its_file(tmp_path):
    ds = mock_maps(n_steps=90, shape=(4, 5), gaps=(40,))
    index = build_index(ds, SMALL)
    path = index.save(tmp_path / "maps.windows.nc")
    back = WindowIndex.load(path)
    assert (back.n_in, back.n_out, back.n_steps) == (5, 2, 90)
    assert back.fingerprint == index.fingerprint and back.config == index.config
    for k in SPLITS:
        assert np.array_equal(back.starts[k], index.starts[k])
    assert np.array_equal(back.inits("val"), index.starts["val"] + 4)


def test_index_path_is_beside_the_maps(tmp_path):
    assert index_path(tmp_path / "maps.nc") == tmp_path / "maps.windows.nc"


def test_saved_index_is_reused_until_maps_or_config_change(tmp_path, monkeypatch):
    maps = tmp_path / "maps.nc"
    ds = mock_maps(n_steps=90, shape=(4, 5))
    first = load_or_build_index(maps, ds, SMALL)
    assert index_path(maps).is_file()
    import data_prep.sequences as seq

    def no_build(*a, **k):
        raise AssertionError("index rebuilt although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(seq, "build_index", no_build)
        again = load_or_build_index(maps, ds, SMALL)
    assert np.array_equal(again.starts["train"], first.starts["train"])
    ds["coverage"][45] = 0  # a new coverage gap: the index is stale
    gapped = load_or_build_index(maps, ds, SMALL)
    assert 45 not in _used_steps(gapped.starts["train"], 7)
    assert WindowIndex.load(index_path(maps)).fingerprint == gapped.fingerprint
    longer = load_or_build_index(maps, ds, SequenceConfig(n_in=6, n_out=2, block_steps=12))
    assert longer.n_in == 6


def test_maps_too_short_for_a_training_window_raise():
    with pytest.raises(UserError, match="no training window"):
        build_index(mock_maps(n_steps=8, shape=(3, 3)), SequenceConfig())


def test_forecast_inits_include_the_last_step():
    ds = mock_maps(n_steps=20, shape=(3, 3), gaps=(10,))
    inits = forecast_inits(ds, n_in=5, min_coverage=SequenceConfig().min_coverage)
    assert inits.tolist() == [4, 5, 6, 7, 8, 9, 15, 16, 17, 18, 19]


def test_saved_fingerprint_is_reused_until_the_maps_file_is_touched_or_rewritten(
    tmp_path, monkeypatch
):
    maps = tmp_path / "maps.nc"
    write_netcdf_atomic(mock_maps(n_steps=90, shape=(4, 5)), maps)
    ds = mock_maps(n_steps=90, shape=(4, 5))
    reads = []
    count = seq.observed_cells
    monkeypatch.setattr(seq, "observed_cells", lambda d: reads.append(1) or count(d))
    load_or_build_index(maps, ds, SMALL)
    built = len(reads)
    again = load_or_build_index(maps, ds, SMALL)  # same file: no coverage read at all
    assert len(reads) == built and again.maps_identity == seq.file_identity(maps)
    st = maps.stat()
    os.utime(maps, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: fingerprint again
    load_or_build_index(maps, ds, SMALL)
    assert len(reads) == built + 1
    load_or_build_index(maps, ds, SMALL)  # the new identity was saved
    assert len(reads) == built + 1
    ds["coverage"][45] = 0
    write_netcdf_atomic(ds, maps)  # rewritten with a gap: a new inode, a rebuilt index
    gapped = load_or_build_index(maps, ds, SMALL)
    assert len(reads) > built + 1 and 45 not in _used_steps(gapped.starts["train"], 7)
