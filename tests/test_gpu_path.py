"""The GPU path, checked on CPU: no host read between log steps, NaN losses still caught with
their step, input frames channels-last, one precision outside training, drop_last when compiling,
CUDA settings that leave a CPU run alone."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import forecast
import forecast.training.loop as loop
from data_prep.errors import UserError
from data_prep.mock import mock_maps
from forecast.config import load_experiment
from forecast.model.network import LightningForecaster
from forecast.predict import load_forecaster
from forecast.training.data import build_data, frames_channels_last
from forecast.training.distributed import Dist, cuda_settings, tf32_flags, tf32_mode
from forecast.training.loop import train

TINY = [
    "model.encoder_channels=[8]",
    "model.hidden_channels=[8]",
    "model.norm_groups=4",
    "data.n_in=5",
    "data.n_out=2",
    "data.block_steps=20",
    "train.batch_size=2",  # 22 steps an epoch: the steps below stay inside the first one
    "train.warmup_steps=2",
    "train.patience=0",
    "train.progress=false",
    "train.device=cpu",
    "train.threads=1",
    "train.calibration=none",
]
# tensor methods that copy a value from the device to the host (and so wait for the device)
READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")
PACKAGE = str(Path(forecast.__file__).parent)
# data loading works on host arrays by design (in loader workers on a GPU machine)
LOADING = ("dataset.py", "guided.py", "steps.py", "loader.py")


@pytest.fixture(scope="module")
def maps_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=3).to_netcdf(path)
    return path


def tiny_cfg(maps_file, out, *overrides):
    return load_experiment(None, [*TINY, f"train.maps={maps_file}", f"train.out={out}", *overrides])


def _count_reads(monkeypatch) -> tuple[dict, list]:
    """Record every host read made by the package's own code (not torch's), with the training
    step it happened in or after; returns (the current step, the reads [(step, where)])."""
    now, reads = {"step": 0}, []

    def spy(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(PACKAGE) and not caller.endswith(LOADING):
                reads.append((now["step"], f"{Path(caller).name}:{sys._getframe(1).f_lineno}"))
            return original(self, *args, **kwargs)

        return read

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, spy(name))
    step = loop._train_step

    def tagged(run, *args, **kwargs):
        now["step"] = run.state.step + 1
        return step(run, *args, **kwargs)

    monkeypatch.setattr(loop, "_train_step", tagged)
    return now, reads


def test_no_host_read_between_log_steps(maps_file, tmp_path, monkeypatch):
    _, reads = _count_reads(monkeypatch)
    train(tiny_cfg(maps_file, tmp_path / "r", "train.max_steps=8", "train.log_every=4"))
    between = [r for r in reads if r[0] in (1, 2, 3, 5, 6, 7)]
    assert between == []
    assert any(r[0] == 4 for r in reads)  # the look at the log step reads, so the count works


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_steps_make_no_cuda_sync(maps_file, tmp_path, monkeypatch):
    """On a GPU: PyTorch's own sync detector raises on any sync inside a training step."""
    step = loop._train_step

    def strict(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(loop, "_train_step", strict)
    cfg = tiny_cfg(maps_file, tmp_path / "r", "train.device=cuda", "train.max_steps=4")
    train(cfg)


def test_nan_loss_is_reported_with_the_step_it_first_appeared_at(maps_file, tmp_path, monkeypatch):
    calls, original = [], loop.process_loss

    def nan_from_step_3(*args, **kwargs):
        calls.append(1)
        loss = original(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 3 else loss

    monkeypatch.setattr(loop, "process_loss", nan_from_step_3)
    cfg = tiny_cfg(maps_file, tmp_path / "nan", "train.max_steps=8", "train.log_every=4")
    with pytest.raises(
        UserError, match=r"the loss is nan at step 3 \(the first non-finite one of steps 1-4; "
    ) as e:
        train(cfg)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "nan" / "last.pt").exists()  # found before anything was saved


def test_frames_channels_last_keep_the_values_and_give_every_frame_nhwc_layout():
    x = torch.randn(2, 3, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    y = frames_channels_last(x)
    assert torch.equal(y, x)
    assert all(f.stride()[1:] == (1, 6 * 5, 5) for f in y.unbind(1))  # channels innermost
    flat = y.reshape(6, 5, 4, 6)  # what the encoder takes: a view, still channels-last
    assert flat.data_ptr() == y.data_ptr()
    assert flat.is_contiguous(memory_format=torch.channels_last)


def test_validation_calibration_and_predict_run_in_one_precision(maps_file, tmp_path, monkeypatch):
    """Training under bf16 autocast; every forward outside it (validation, the calibration fit,
    predict) in float32 with autocast and TF32 off, so all three see the same logits."""
    seen, forward = [], LightningForecaster.forward

    def recording(self, *args, **kwargs):
        logits = forward(self, *args, **kwargs)
        seen.append((self.training, torch.is_autocast_enabled("cpu"), tf32_flags(), logits.dtype))
        return logits

    monkeypatch.setattr(LightningForecaster, "forward", recording)
    run = train(
        tiny_cfg(
            maps_file, tmp_path / "r", "train.amp=bf16", "train.max_steps=3",
            "train.calibration=temperature",
        )
    )  # fmt: skip
    fitted = len(seen)
    fc = load_forecaster(run / "best.pt", "cpu")
    with xr.open_dataset(maps_file) as ds:
        fc.forecast_all(ds, np.array([10, 11]))
    training = {s for s in seen if s[0]}
    inference = {s for s in seen if not s[0]}
    ieee = ("ieee",) * len(tf32_flags())
    assert training == {(True, True, tf32_flags(), torch.float32)}  # bf16 autocast
    assert inference == {(False, False, ieee, torch.float32)}
    assert len(seen) > fitted and not seen[-1][0]  # predict's forwards are among them
    assert tf32_flags() != ieee  # and the previous settings came back


def test_compiled_training_drops_a_ragged_last_batch_and_plain_training_keeps_it(
    maps_file, tmp_path
):
    dist = Dist(0, 1, torch.device("cpu"))
    sizes = {}
    for compiled in (False, True):
        cfg = tiny_cfg(maps_file, tmp_path, "train.batch_size=5", f"train.compile={compiled}")
        data = build_data(cfg, dist)
        n = len(data.train_sampler)
        sizes[compiled] = [len(b["x"]) for b in data.train_loader]
        assert data.steps_per_epoch == len(sizes[compiled])
    assert n % 5 != 0  # the split leaves a ragged batch
    assert sizes[False] == [5] * (n // 5) + [n % 5]
    assert sizes[True] == [5] * (n // 5)


def test_cuda_settings_leave_a_cpu_run_alone_and_tf32_mode_restores_the_flags():
    before = (torch.backends.cudnn.benchmark, tf32_flags())
    with cuda_settings(torch.device("cpu"), tf32=False):
        assert (torch.backends.cudnn.benchmark, tf32_flags()) == before
    with tf32_mode(True):
        on = tf32_flags()
        with tf32_mode(False):
            assert tf32_flags() != on
        assert tf32_flags() == on
    assert (torch.backends.cudnn.benchmark, tf32_flags()) == before
