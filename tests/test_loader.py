"""Maps read lazily from disk by loader workers: the same batches as in memory, each step read
and featurised once per process, a handle of each worker's own, and training from it."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from data_prep.config import SequenceConfig
from data_prep.errors import UserError
from data_prep.io import open_maps
from data_prep.mock import mock_maps
from data_prep.sequences import build_index
from forecast.config import load_experiment
from forecast.training.checkpoint import load_checkpoint
from forecast.training.dataset import WindowDataset
from forecast.training.distributed import ShardSampler
from forecast.training.features import fit_stats
from forecast.training.loader import (
    PREFETCH_BATCHES,
    PREFETCH_BYTES,
    make_loader,
    prefetch_batches,
    start_workers,
)
from forecast.training.loop import train

CFG = SequenceConfig(n_in=5, n_out=2, block_steps=15, min_coverage=0.5)


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """A maps file on disk, opened lazily, its index and training statistics."""
    path = tmp_path_factory.mktemp("maps") / "maps.nc"
    mock_maps(n_steps=120, shape=(6, 8), gaps=(40,), seed=5, cell_gaps=0.3).to_netcdf(path)
    ds = open_maps(path, lazy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty validation split: only training windows used
        index = build_index(ds, CFG)
    return path, ds, index, fit_stats(ds, index)


def windows(maps, *, in_memory: bool, **kwargs) -> WindowDataset:
    path, ds, index, stats = maps
    source = open_maps(path) if in_memory else ds
    return WindowDataset(
        source, index.starts["train"], n_in=5, n_out=2, stats=stats, in_memory=in_memory, **kwargs
    )


def batches(data, workers: int) -> list[dict]:
    sampler = ShardSampler(len(data), shuffle=True, seed=2)
    return list(make_loader(data, sampler, batch_size=6, num_workers=workers, seed=0))


def test_open_maps_lazy_keeps_a_small_file_on_disk(maps):
    path, ds, _, _ = maps
    assert not ds["strike_count"]._in_memory
    assert open_maps(path)["strike_count"]._in_memory  # the default loads a small file


@pytest.mark.parametrize("cache_bytes", [1 << 30, 1])  # every step cached; nothing kept
def test_lazy_path_with_two_workers_yields_exactly_the_in_memory_batches(maps, cache_bytes):
    memory = batches(windows(maps, in_memory=True), workers=0)
    lazy_data = windows(maps, in_memory=False, cache_bytes=cache_bytes)
    assert lazy_data.steps.lazy and not windows(maps, in_memory=True).steps.lazy
    lazy = batches(lazy_data, workers=2)
    assert len(memory) == len(lazy) > 2
    for a, b in zip(memory, lazy, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_each_step_is_read_and_featurised_once_per_process(maps):
    data = windows(maps, in_memory=False)
    for i in np.random.default_rng(0).permutation(len(data)):
        data[int(i)]
    starts = data.starts
    inputs = np.unique(starts[:, None] + np.arange(5))
    used = np.unique(starts[:, None] + np.arange(7))
    assert data.steps.featurised == inputs.size
    assert data.steps.reads == used.size
    again = data.steps.featurised
    data[0]
    assert data.steps.featurised == again  # a second look at a window featurises nothing


class _WhoRead(Dataset):
    """Which process opened the handle each item was read through."""

    def __init__(self, data: WindowDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        self.data[i]
        steps = self.data.steps
        return torch.tensor([os.getpid(), steps._pid, id(steps._handle)])


def test_each_worker_reads_through_a_handle_it_opened_itself(maps):
    data = windows(maps, in_memory=False)
    data[0]  # the parent opens its own handle before the workers fork
    parent = data.steps._handle
    loader = make_loader(_WhoRead(data), ShardSampler(len(data)), batch_size=4, num_workers=2)
    rows = torch.cat(list(loader))
    assert (rows[:, 0] == rows[:, 1]).all()  # the handle belongs to the reading process
    assert len(set(rows[:, 0].tolist())) == 2 and os.getpid() not in rows[:, 0].tolist()
    assert data.steps._handle is parent and data.steps._pid == os.getpid()


def test_a_subset_of_the_file_is_refused_rather_than_read_at_the_wrong_steps(maps):
    path, ds, index, stats = maps
    part = ds.isel(time=slice(10, None))
    data = WindowDataset(part, np.array([0]), n_in=5, n_out=2, stats=stats, in_memory=False)
    with pytest.raises(UserError, match="time axis differs"):
        data[0]


def test_two_training_steps_with_two_workers_on_the_lazy_path_match_in_memory(tmp_path):
    path = tmp_path / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=3).to_netcdf(path)
    common = [
        "model.encoder_channels=[8]",
        "model.hidden_channels=[8]",
        "model.norm_groups=4",
        "data.n_in=5",
        "data.n_out=2",
        "data.block_steps=20",
        "train.batch_size=8",
        "train.max_steps=2",
        "train.progress=false",
        "train.device=cpu",
        "train.threads=1",
        f"train.maps={path}",
    ]
    lazy = ["train.lazy_maps=true", "train.num_workers=2"]
    runs = [
        train(load_experiment(None, [*common, *extra, f"train.out={tmp_path / name}"]))
        for name, extra in (("memory", []), ("lazy", lazy))
    ]
    a, b = (load_checkpoint(run / "last.pt") for run in runs)
    assert a["state"]["step"] == b["state"]["step"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


@pytest.mark.parametrize(("workers", "each_mb"), [(0, 256), (1, 256), (2, 128), (4, 64)])
def test_every_cache_of_a_run_together_stays_within_step_cache_mb(tmp_path, workers, each_mb):
    """The training and validation loaders' workers persist side by side, so each process's
    cache gets its share of ``train.step_cache_mb``: 2 x workers caches (2 without workers)."""
    from forecast.training.data import build_data
    from forecast.training.distributed import Dist

    path = tmp_path / "maps.nc"
    mock_maps(n_steps=100, shape=(6, 8), seed=3).to_netcdf(path)
    cfg = load_experiment(
        None,
        [
            f"train.maps={path}",
            f"train.out={tmp_path}",
            "train.lazy_maps=true",
            "train.step_cache_mb=512",
            f"train.num_workers={workers}",
            "data.n_in=5",
            "data.n_out=2",
            "data.block_steps=20",
        ],
    )
    data = build_data(cfg, Dist(0, 1, torch.device("cpu")))
    budgets = [ld.dataset.steps._budget for ld in (data.train_loader, data.val_loader)]
    assert budgets == [each_mb * 2**20] * 2
    assert sum(budgets) * max(1, workers) <= 512 * 2**20


def test_a_daily_item_states_the_bytes_of_its_tensors(maps):
    data = windows(maps, in_memory=True)
    assert data.item_bytes() == sum(t.nbytes for t in data[0].values())


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_batches_held_ahead_stay_within_the_prefetch_budget(workers):
    window = 70 * 2**20  # an hourly conus-0.1 window: 8 steps of 12 channels, 3 lead planes
    for batch in (1, 2, 8):
        ahead = prefetch_batches(window, batch, workers)
        held = ahead * workers * batch * window
        assert ahead == 1 or held <= PREFETCH_BYTES  # at least one batch ahead per worker
        assert ahead == PREFETCH_BATCHES or (ahead + 1) * workers * batch * window > PREFETCH_BYTES
    assert prefetch_batches(window, 2, 2) == 1
    assert prefetch_batches(PREFETCH_BYTES // 16, 2, 2) == 4  # small windows: the full four
    assert prefetch_batches(PREFETCH_BYTES // 12, 2, 2) == 3
    assert prefetch_batches(0, 2, 2) == PREFETCH_BATCHES and prefetch_batches(1, 2, 0) is None


def test_loader_prefetches_what_the_budget_allows_for_its_dataset(maps, monkeypatch):
    data = windows(maps, in_memory=True)
    sampler = ShardSampler(len(data))
    assert make_loader(data, sampler, batch_size=4, num_workers=2).prefetch_factor == 4
    monkeypatch.setattr("forecast.training.loader.PREFETCH_BYTES", 2 * 4 * 2 * data.item_bytes())
    assert make_loader(data, sampler, batch_size=4, num_workers=2).prefetch_factor == 2


def test_workers_started_early_give_every_window_once_in_order_each_pass(maps):
    data = windows(maps, in_memory=False)
    expect = torch.from_numpy(data.starts + data.n_in - 1)  # each window's last input step
    loader = make_loader(data, ShardSampler(len(data), shuffle=False), batch_size=4, num_workers=2)
    start_workers(loader)  # its first batches are fetched now and set aside by the first pass
    for _ in range(2):
        assert torch.equal(torch.cat([b["init"] for b in loader]), expect)
