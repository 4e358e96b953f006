"""Torch thread counts come from the usable cores and the configuration, never from the load."""

from __future__ import annotations

import os

import pytest
import torch

from data_prep.cores import usable_cores
from data_prep.errors import UserError
from forecast import cli
from forecast.training.distributed import cpu_threads, torch_threads


@pytest.fixture
def three_cores_under_heavy_load(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))


def test_thread_count_follows_the_affinity_mask_not_the_load(three_cores_under_heavy_load):
    assert usable_cores() == 3
    assert cpu_threads(1) == 3 and cpu_threads(2) == 1 and cpu_threads(8) == 1


def test_torch_threads_sets_the_count_on_cpu_and_restores_it(three_cores_under_heavy_load):
    before = torch.get_num_threads()
    with torch_threads(torch.device("cpu"), 1) as n:
        assert n == torch.get_num_threads() == 1
    with torch_threads(torch.device("cpu")) as n:
        assert n == 3
    assert torch.get_num_threads() == before
    with pytest.raises(UserError, match="threads -1"):
        with torch_threads(torch.device("cpu"), -1):
            pass


def test_predict_runs_with_the_threads_asked_for(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(
        cli, "predict_to_file", lambda *a, **k: seen.append(torch.get_num_threads())
    )
    for name in ("best.pt", "maps.nc"):
        (tmp_path / name).write_bytes(b"")
    before = torch.get_num_threads()
    args = [
        "predict",
        "--checkpoint",
        str(tmp_path / "best.pt"),
        "--maps",
        str(tmp_path / "maps.nc"),
    ]
    torch.set_num_threads(2)  # not what is asked for, so the test tells the two apart
    try:
        cli.main([*args, "--out", str(tmp_path / "f.nc"), "--device", "cpu", "--threads", "1"])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
