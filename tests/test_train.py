"""Training: exact resume, DDP gradients, NaN stop, run-directory files, the schedule."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.errors import UserError
from data_prep.mock import mock_maps
from forecast.config import load_experiment
from forecast.training.checkpoint import load_checkpoint
from forecast.training.features import N_CHANNELS
from forecast.training.loop import lr_at, train

TINY = [
    "model.encoder_channels=[8]",
    "model.hidden_channels=[8]",
    "model.norm_groups=4",
    "model.dropout=0.2",  # exercises the restored random state on resume
    "data.n_in=5",
    "data.n_out=2",
    "data.block_steps=20",
    "train.batch_size=8",
    "train.warmup_steps=2",
    "train.patience=0",
    "train.progress=false",
    "train.device=cpu",
    "train.log_every=2",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def maps_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=3).to_netcdf(path)
    return path


def tiny_cfg(maps_file, out, *overrides):
    return load_experiment(None, [*TINY, f"train.maps={maps_file}", f"train.out={out}", *overrides])


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(maps_file, tmp_path):
    steps = ["train.max_steps=9", "train.epochs=100"]
    straight = train(tiny_cfg(maps_file, tmp_path / "a", *steps))
    # interrupted mid-epoch at step 4, again at step 5, then resumed (an epoch has 6 batches)
    train(tiny_cfg(maps_file, tmp_path / "b", *steps, "train.session_steps=4"))
    assert load_checkpoint(tmp_path / "b" / "last.pt")["state"]["step"] == 4
    train(tiny_cfg(maps_file, tmp_path / "b", *steps, "train.session_steps=1"), resume=True)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["state"]["batch_in_epoch"] == 5
    resumed = train(tiny_cfg(maps_file, tmp_path / "b", *steps), resume=True)
    a, b = (load_checkpoint(d / "last.pt") for d in (straight, resumed))
    assert a["state"]["step"] == b["state"]["step"] == 9
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for name in ("best.pt",):
        wa, wb = load_checkpoint(straight / name)["model"], load_checkpoint(resumed / name)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = [_rows(d / "log.csv") for d in (straight, resumed)]
    drop = [{k: v for k, v in r.items() if k != "seconds"} for r in rows[0]]
    assert drop == [{k: v for k, v in r.items() if k != "seconds"} for r in rows[1]]


def test_sigterm_writes_last_pt_and_resume_matches_an_uninterrupted_run(
    maps_file, tmp_path, monkeypatch
):
    import signal

    from forecast.training.runlog import RunLog
    from forecast.training.signals import TrainingInterrupted

    steps = ["train.max_steps=9", "train.epochs=100"]
    straight = train(tiny_cfg(maps_file, tmp_path / "a", *steps))
    original = RunLog.train_loss

    def preempted_at_step_3(self, loss, state, *args, **kwargs):  # a scheduler's SIGTERM
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, loss, state, *args, **kwargs)

    monkeypatch.setattr(RunLog, "train_loss", preempted_at_step_3)
    handler = signal.getsignal(signal.SIGTERM)
    # one process stops after the step in which the signal came
    with pytest.raises(TrainingInterrupted, match=r"\(SIGTERM\) at step 3: .*last.pt .*--resume"):
        train(tiny_cfg(maps_file, tmp_path / "b", *steps))
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler is given back
    assert load_checkpoint(tmp_path / "b" / "last.pt")["state"]["step"] == 3
    monkeypatch.setattr(RunLog, "train_loss", original)
    resumed = train(tiny_cfg(maps_file, tmp_path / "b", *steps), resume=True)
    a, b = (load_checkpoint(d / "last.pt") for d in (straight, resumed))
    assert a["state"]["step"] == b["state"]["step"] == 9
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_sigterm_in_validation_ends_it_within_a_batch_and_resume_validates_first(
    maps_file, tmp_path, monkeypatch
):
    import signal

    import forecast.training.data as data_module
    from forecast.training.signals import TrainingInterrupted

    steps = ["train.max_steps=9", "train.epochs=100", "train.checkpoint_every=0"]
    inputs, seen = data_module.model_inputs, []

    def counted(batch, *args, **kwargs):  # the validation batches' inputs
        seen.append(int(batch["init"][0]))
        return inputs(batch, *args, **kwargs)

    monkeypatch.setattr(data_module, "model_inputs", counted)
    straight = train(tiny_cfg(maps_file, tmp_path / "a", *steps))
    per_pass = len(seen) // 3  # validations at the epoch's end (step 6), step 9, calibration
    assert per_pass >= 2 and len(seen) == 3 * per_pass

    def preempted(batch, *args, **kwargs):  # a scheduler's SIGTERM in the first validation
        if not seen:
            os.kill(os.getpid(), signal.SIGTERM)
        return counted(batch, *args, **kwargs)

    seen.clear()
    monkeypatch.setattr(data_module, "model_inputs", preempted)
    with pytest.raises(TrainingInterrupted, match=r"\(SIGTERM\) at step 6: .*--resume"):
        train(tiny_cfg(maps_file, tmp_path / "b", *steps))
    assert len(seen) == 1  # the batch in which it came, none after
    state = load_checkpoint(tmp_path / "b" / "last.pt")["state"]
    assert state["validation_due"] and (state["step"], state["epoch"]) == (6, 0)
    assert not (tmp_path / "b" / "best.pt").exists()
    resumed = train(tiny_cfg(maps_file, tmp_path / "b", *steps), resume=True)
    for name in ("last.pt", "best.pt"):
        wa, wb = load_checkpoint(straight / name)["model"], load_checkpoint(resumed / name)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    rows = [_rows(d / "log.csv") for d in (straight, resumed)]
    drop = [{k: v for k, v in r.items() if k != "seconds"} for r in rows[0]]
    assert drop == [{k: v for k, v in r.items() if k != "seconds"} for r in rows[1]]


def test_last_pt_is_written_every_checkpoint_every_steps_within_an_epoch(
    maps_file, tmp_path, monkeypatch
):
    import forecast.training.loop as training

    steps = ["train.max_steps=9", "train.epochs=100"]  # an epoch has 6 batches
    plain = train(tiny_cfg(maps_file, tmp_path / "a", *steps, "train.checkpoint_every=0"))
    saved_at, save = [], training.save_checkpoint

    def recording(state, path):
        if path.name == "last.pt":
            saved_at.append(state["state"]["step"])
        return save(state, path)

    monkeypatch.setattr(training, "save_checkpoint", recording)
    every4 = train(tiny_cfg(maps_file, tmp_path / "b", *steps, "train.checkpoint_every=4"))
    assert saved_at == [4, 6, 8, 9]  # every 4 steps, the end of epoch 1, the last step
    wa, wb = (load_checkpoint(d / "last.pt")["model"] for d in (plain, every4))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # saving does not change the run


def test_resume_refuses_a_checkpoint_of_another_model_or_other_maps(maps_file, tmp_path):
    train(tiny_cfg(maps_file, tmp_path / "r", "train.max_steps=1"))
    wider = tiny_cfg(maps_file, tmp_path / "r", "model.hidden_channels=[4]")
    with pytest.raises(UserError, match=r"belongs to another run: model.hidden_channels differ"):
        train(wider, resume=True)
    other = tmp_path / "other.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=4).to_netcdf(other)
    with pytest.raises(UserError, match=r"another run: the maps \(feature statistics\) differ"):
        train(tiny_cfg(other, tmp_path / "r"), resume=True)


def test_run_directory_holds_config_checkpoints_log_and_calibration(maps_file, tmp_path):
    run = train(tiny_cfg(maps_file, tmp_path / "run", "train.epochs=1"))
    for name in ("config.yaml", "best.pt", "last.pt", "log.csv", "calibration.nc"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    rows = _rows(run / "log.csv")
    assert list(rows[0]) == [
        "step",
        "epoch",
        "lr",
        "train_loss",
        "val_loss",
        "val_brier",
        "val_bss",
        "val_auc",
        "seconds",
        "gpu_mem_gib",
    ]
    assert {r["gpu_mem_gib"] for r in rows} == {""}  # no GPU: empty
    assert rows[-1]["val_bss"] != ""
    assert 0.0 <= float(rows[-1]["val_auc"]) <= 1.0
    best = load_checkpoint(run / "best.pt")
    assert best["calibration"]["method"] == "temperature"
    assert best["model_args"]["n_out"] == 2 and best["model_args"]["in_channels"] == N_CHANNELS


def test_nan_loss_stops_with_a_one_line_message(maps_file, tmp_path):
    cfg = tiny_cfg(
        maps_file, tmp_path / "nan", "train.lr=1.0e+30", "train.warmup_steps=0", "train.epochs=3"
    )
    with pytest.raises(
        UserError, match=r"training diverged: the loss is (nan|inf) at step \d+ \(the first non-"
    ) as e:
        train(cfg)
    assert "\n" not in str(e.value)


def test_early_stopping_ends_training_after_patience_validations(maps_file, tmp_path):
    # lr must be > 0; 1e-12 moves no float32 weight, so validation never improves
    frozen = ["train.lr=1e-12", "train.min_lr=0", "train.patience=2", "train.epochs=10"]
    run = train(tiny_cfg(maps_file, tmp_path / "stop", *frozen))
    state = load_checkpoint(run / "last.pt")["state"]
    assert state["stopped"] and state["epoch"] == 3 and state["bad_epochs"] == 2
    assert load_checkpoint(run / "best.pt")["calibration"] is not None


def test_empty_maps_path_asks_for_train_maps(tmp_path):
    cfg = load_experiment(None, [f"train.out={tmp_path}"])
    with pytest.raises(UserError, match="train.maps=PATH"):
        train(cfg)


def test_schedule_warms_up_then_decays_to_min_lr():
    lrs = [lr_at(s, lr=1.0, min_lr=0.1, warmup=10, total=100) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[100] == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------
# DistributedDataParallel on 2 CPU processes (gloo) vs one process on the whole batch


def _batch(n=4, gappy=False):
    """Inputs, targets and mask; ``gappy``: rank 0's windows (0, 2) are 90 % unobserved, rank 1's
    fully observed, so the two processes hold very different numbers of observed cells."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, 7, 16, 24, generator=g)
    x[:, :, 2] = torch.rand(n, 5, 16, 24, generator=g) * 0.5  # climatology channel in (0, 1)
    y = (torch.rand(n, 2, 1, 16, 24, generator=g) < 0.3).float()
    mask = torch.ones(n, 2, 16, 24)
    if gappy:
        mask[0::2] = (torch.rand(len(mask[0::2]), 2, 16, 24, generator=g) < 0.1).float()
    return x, y, mask


def _model():
    from forecast.model.network import build_model

    cfg = load_experiment(None, TINY[:3]).model
    torch.manual_seed(0)
    return build_model(cfg, 7, 2)


def _grads(net, model, x, y, mask, dist=None):
    """Gradients of the training loss of this process (train's process_loss)."""
    from forecast.model.losses import build_loss
    from forecast.training.distributed import Dist
    from forecast.training.loop import process_loss

    dist = dist or Dist(0, 1, torch.device("cpu"))
    process_loss(build_loss("bce"), net(x), y, mask, dist).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def _ddp_worker(rank: int, world: int, port: int, out: str, gappy: bool = False) -> None:
    from forecast.config import TrainConfig
    from forecast.training import distributed
    from forecast.training.distributed import ShardSampler
    from forecast.training.loop import _wrap

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    dist = distributed.setup("cpu")
    model = _model()
    net = _wrap(model, TrainConfig(), dist)
    x, y, mask = _batch(gappy=gappy)
    mine = ShardSampler(len(x), rank=rank, world=world, shuffle=False).indices()
    grads = _grads(net, model, x[mine], y[mine], mask[mine], dist)
    if rank == 0:
        torch.save(grads, out)
    # the DDP wrapper holds the gloo group: freed after destroy_process_group, its destructor can
    # wait forever on gloo's threads, so it goes first
    del net
    distributed.teardown(dist)


@pytest.mark.parametrize("gappy", [False, True], ids=["observed", "gaps_differ_by_rank"])
def test_ddp_on_two_processes_matches_one_process_gradients(tmp_path, gappy):
    """Also when one process's batch has far more gaps: the loss is normalised by the observed
    cells of all processes, so the gradient is that of one process on the union."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "grads.pt"
    import torch._dynamo  # noqa: F401 - DDP imports it; once here, not in each worker (~5 s)

    # fork: the workers inherit the imported modules (spawn would import torch again, ~5 s each)
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, port, str(out), gappy), nprocs=2, join=True, start_method="fork"
    )
    model = _model()
    single = _grads(model, model, *_batch(gappy=gappy))
    ddp = torch.load(out, weights_only=True)
    for k, g in single.items():
        np.testing.assert_allclose(ddp[k].numpy(), g.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)


def _on_main_worker(rank: int, world: int, port: int, folder: str) -> None:
    from forecast.training import distributed

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    dist = distributed.setup("cpu")

    def build():
        (Path(folder) / f"built_by_{rank}").touch()
        return {"built_by": rank}

    def fail():
        raise UserError(f"maps: broken (seen by rank {rank})")

    got = distributed.on_main(dist, build)
    try:
        distributed.on_main(dist, fail)
        error = ""
    except UserError as e:
        error = str(e)
    (Path(folder) / f"rank_{rank}.json").write_text(json.dumps({"got": got, "error": error}))
    distributed.teardown(dist)


def test_index_and_statistics_are_built_once_by_rank_0_and_shared_with_every_rank(tmp_path):
    """build_data's on_main: one process builds, all get its result; its error stops all."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(
        _on_main_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    assert sorted(p.name for p in tmp_path.glob("built_by_*")) == ["built_by_0"]
    for rank in (0, 1):
        out = json.loads((tmp_path / f"rank_{rank}.json").read_text())
        assert out == {"got": {"built_by": 0}, "error": "maps: broken (seen by rank 0)"}


def _ddp_train_worker(rank: int, world: int, port: int, maps: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    train(tiny_cfg(maps, out, *DDP_RUN, "train.batch_size=4"))


DDP_RUN = ("train.max_steps=4", "train.epochs=100", "model.dropout=0.0")


def test_ddp_training_on_two_processes_gives_the_weights_of_one_with_twice_the_batch(
    maps_file, tmp_path
):
    """The whole train() path under DDP: sharded batches, all-reduced gradients and validation,
    rank-0 checkpoints and calibration. Two ranks of 4 windows see exactly the 8 windows a
    single process draws per step, so the weights agree to rounding."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import torch._dynamo  # noqa: F401 - DDP imports it; once here, not in each worker (~5 s)

    ddp = tmp_path / "ddp"
    torch.multiprocessing.start_processes(
        _ddp_train_worker,
        args=(2, port, str(maps_file), str(ddp)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    single = train(tiny_cfg(maps_file, tmp_path / "single", *DDP_RUN, "train.batch_size=8"))
    a, b = load_checkpoint(ddp / "last.pt"), load_checkpoint(single / "last.pt")
    assert a["state"]["step"] == b["state"]["step"] == 4
    for k, w in b["model"].items():
        np.testing.assert_allclose(
            a["model"][k].numpy(), w.numpy(), rtol=1e-4, atol=1e-5, err_msg=k
        )
    va, vb = _rows(ddp / "log.csv")[-1], _rows(single / "log.csv")[-1]
    assert float(va["val_brier"]) == pytest.approx(float(vb["val_brier"]), rel=1e-4)
    assert (ddp / "calibration.nc").is_file() and "calibration" in load_checkpoint(ddp / "best.pt")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
