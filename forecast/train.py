"""Training of the lightning forecaster: ``train(cfg)`` reads top to bottom.

Seed and run directory; data, model, optimizer and a learning-rate schedule that is a pure
function of the step; resume from ``last.pt``; one loop (schedule, forward and loss, backward and
clip, step, log); validation on the fixed validation windows after every epoch; ``best.pt`` on
improvement, ``last.pt`` after every epoch and every ``train.checkpoint_every`` steps; early
stopping; stop on a NaN loss; finally calibration (temperature, platt or isotonic) of the best
model on the validation windows. SIGTERM or Ctrl-C (a batch scheduler's preemption, a user)
finishes the step, writes ``last.pt`` and stops; ``--resume`` goes on from there exactly.

Run directory (``cfg.train.out``): ``config.yaml``, ``best.pt``, ``last.pt``, ``log.csv``,
``calibration.nc`` and TensorBoard events under ``tensorboard/``.

Several GPUs: ``torchrun --nproc_per_node N -m forecast train ...`` (:mod:`forecast.distributed`).
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from data_prep.atomic import check_output_path, check_outputs
from data_prep.config import save_config, to_dict
from data_prep.errors import Interrupted, UserError
from data_prep.sequences import index_path
from forecast import distributed
from forecast.calibration import LogitHistogram, check_method, fit_calibration, reliability
from forecast.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from forecast.config import ExperimentConfig, TrainConfig
from forecast.dataset import check_input_channels
from forecast.distributed import Dist
from forecast.runlog import RunLog
from forecast.train_data import build_data, validate


@dataclass
class TrainState:
    """Where training stands; saved in ``last.pt`` so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of ``epoch`` already trained on
    best_val: float = math.inf
    bad_epochs: int = 0  # validations in a row without improvement
    seconds: float = 0.0  # training wall time so far, over all sessions
    stopped: bool = False  # early stopping fired


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, cosine decay from ``lr`` to ``min_lr`` by ``total``.

    A pure function of the step, so a resumed run follows the same schedule.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


def train(cfg: ExperimentConfig, resume: bool = False) -> Path:
    """Train on the windows of ``cfg.train.maps``; return the run directory ``cfg.train.out``.

    Parameters
    ----------
    cfg : ExperimentConfig
        ``cfg.data`` (windows, splits), ``cfg.model`` (architecture), ``cfg.train`` (optimisation).
    resume : bool
        Continue from ``<out>/last.pt`` when present: same weights as an uninterrupted run (CPU).

    Raises
    ------
    UserError
        When ``train.maps`` is empty or unusable, or when the loss becomes NaN or infinite.
    """
    with distributed.session(cfg.train.device, cfg.train.threads) as dist:
        return train_loop(cfg, dist, resume)


def train_loop(cfg: ExperimentConfig, dist: Dist, resume: bool = False) -> Path:
    """:func:`train` inside a process session (device, threads, process group)."""
    from forecast.losses import build_loss
    from forecast.model import build_model

    tc = cfg.train
    check_method(tc.calibration)  # a typo fails now, not after the last epoch
    # seed and run directory (checked by every process before any of them writes)
    _seed(tc.seed)
    run_dir = check_run_dir(cfg, resume=resume)
    distributed.barrier(dist)
    amp = _amp_dtype(tc.amp, dist.device)
    # data, model, optimizer, schedule
    data = build_data(cfg, dist)
    model = build_model(cfg.model, data.in_channels, data.n_out).to(dist.device)
    optimizer = build_optimizer(model, tc)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=amp == torch.float16)
    net = _wrap(model, tc, dist)
    loss_fn = build_loss(tc.loss, pos_weight=tc.pos_weight, gamma=tc.focal_gamma)
    total = tc.max_steps or tc.epochs * data.steps_per_epoch
    state, restored = TrainState(), {}
    if resume and (run_dir / "last.pt").is_file():
        restored = _restore(run_dir / "last.pt", model, optimizer, scaler, cfg, data, dist)
        state = TrainState(**restored["state"])
    if dist.is_main:
        save_config(cfg, run_dir / "config.yaml")
    log = RunLog(run_dir, enabled=dist.is_main, after_step=state.step if resume else None)
    if "log" in restored:
        log.load_state_dict(restored["log"])
    session_end = state.step + tc.session_steps if tc.session_steps else math.inf
    # interruptible: SIGTERM / Ctrl-C end the pass after the current step, with last.pt written
    with Interruption() as interrupt:
        while (
            state.step < total
            and not state.stopped
            and state.step < session_end
            and not interrupt.requested
        ):
            data.train_sampler.set_epoch(state.epoch, skip=state.batch_in_epoch * tc.batch_size)
            t0 = time.perf_counter()
            net.train()
            bar = _progress(data.train_loader, tc, dist, f"epoch {state.epoch + 1}")
            for batch in bar:
                x, y, mask = (
                    batch[k].to(dist.device, non_blocking=True) for k in ("x", "y", "mask")
                )
                # schedule
                lr = lr_at(
                    state.step, lr=tc.lr, min_lr=tc.min_lr, warmup=tc.warmup_steps, total=total
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # forward and loss
                with distributed.autocast(dist.device, amp):
                    logits = net(x)
                loss = process_loss(loss_fn, logits, y, mask, dist)
                stop = _check_step(loss, state, lr, dist, interrupt)
                # backward and clip
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                if tc.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                # step
                scaler.step(optimizer)
                scaler.update()
                state.step += 1
                state.batch_in_epoch += 1
                # log
                elapsed = state.seconds + time.perf_counter() - t0
                log.train_loss(loss.detach(), state, lr, elapsed, every=tc.log_every)
                bar.set_postfix(loss=f"{log.last_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                save = tc.checkpoint_every > 0 and state.step % tc.checkpoint_every == 0
                if state.step >= total or state.step >= session_end or stop or save:
                    break
            state.seconds += time.perf_counter() - t0
            epoch_done = state.batch_in_epoch >= data.steps_per_epoch
            if epoch_done or state.step >= total:
                # validate on the fixed set; checkpoint on improvement; early stopping
                scores = validate(net, data, loss_fn, dist)
                improved = scores["val_loss"] < state.best_val
                state.best_val = min(state.best_val, scores["val_loss"])
                state.bad_epochs = 0 if improved else state.bad_epochs + 1
                state.stopped = tc.patience > 0 and state.bad_epochs >= tc.patience
                log.validation(scores, state, lr, state.seconds)
                if improved and dist.is_main:
                    best = {**_model_state(model, cfg, data, None), "trained": _trained(state)}
                    save_checkpoint(best, run_dir / "best.pt")
            if epoch_done:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            if dist.is_main:
                ckpt = _train_state(model, optimizer, scaler, state, cfg, data)
                save_checkpoint({**ckpt, "log": log.state_dict()}, run_dir / "last.pt")
            distributed.barrier(dist)

    if interrupt.requested:
        log.close()
        raise TrainingInterrupted(
            f"training interrupted ({interrupt.requested}) at step {state.step}: "
            f"{run_dir / 'last.pt'} written; continue with --resume",
            interrupt.signum,
        )

    # calibrate the best model on the validation windows
    if state.step >= total or state.stopped:
        calibrate(run_dir, model, net, data, dist, tc.calibration, cfg.model.thresholds)
    log.close()
    return run_dir


def calibrate(
    run_dir, model, net, data, dist: Dist, method: str, thresholds, best: dict | None = None
) -> None:
    """Calibrate best.pt (``best`` when already loaded) on validation; store the calibration in
    best.pt, the reliability in calibration.nc."""
    from data_prep.io import write_netcdf_atomic

    if best is None:
        best = load_checkpoint(run_dir / "best.pt", map_location="cpu")
    model.load_state_dict(best["model"])
    hist = LogitHistogram(data.n_out, len(thresholds))
    validate(net, data, None, dist, hist=hist)  # in the precision of predict
    hist.counts = distributed.all_sum(hist.counts, dist)
    cal = fit_calibration(hist, method)
    if dist.is_main:
        best["calibration"] = cal.to_state()
        best["config"]["train"]["calibration"] = method
        save_checkpoint(best, run_dir / "best.pt")
        write_netcdf_atomic(reliability(hist, cal, tuple(thresholds)), run_dir / "calibration.nc")
    distributed.barrier(dist)


def recalibrate(cfg: ExperimentConfig) -> Path:
    """Refit the calibration of ``<train.out>/best.pt`` on validation with ``train.calibration``.

    The weights stay as trained; ``best.pt`` and ``calibration.nc`` are rewritten, and the run's
    ``config.yaml`` records the new ``train.calibration`` (nothing else of it changes). Refuses a
    ``best.pt`` of another model, window config or maps.
    """
    from forecast.config import load_experiment
    from forecast.model import build_model

    check_method(cfg.train.calibration)
    run_dir = check_run_dir(cfg, resume=True, writes=("best.pt", "calibration.nc", "config.yaml"))
    path = run_dir / "best.pt"
    if not path.is_file():
        raise UserError(f"{path} not found: train first, or point train.out at a run directory")
    fix = "pass the run's own config.yaml and drop overrides of those keys"
    ckpt = load_checkpoint(path, map_location="cpu")
    _same_run(path, ckpt, cfg, None, train_keys=(), fix=fix)  # before the slow part
    with distributed.session(cfg.train.device, cfg.train.threads) as dist:
        data = build_data(cfg, dist)
        _same_run(path, ckpt, cfg, data, train_keys=(), fix=fix)
        model = build_model(cfg.model, data.in_channels, data.n_out).to(dist.device)
        method, thresholds = cfg.train.calibration, cfg.model.thresholds
        calibrate(run_dir, model, model, data, dist, method, thresholds, best=ckpt)
        if dist.is_main:
            saved = run_dir / "config.yaml"
            run_cfg = load_experiment(str(saved)) if saved.is_file() else cfg
            run_cfg.train = replace(run_cfg.train, calibration=cfg.train.calibration)
            save_config(run_cfg, saved)
    return run_dir


RUN_FILES = ("config.yaml", "best.pt", "last.pt", "log.csv", "calibration.nc")
HELD = ("best.pt", "last.pt", "log.csv")  # a folder holding one of them holds a run


def check_run_dir(
    cfg: ExperimentConfig, *, resume: bool, writes: tuple[str, ...] = RUN_FILES
) -> Path:
    """The run directory ``train.out``; refuses, before any work, one whose files ``writes``
    would replace an input (``train.maps``, its window index), or, unless ``resume``, one that
    holds a run (:data:`HELD`), which training afresh would replace. The run's own
    ``config.yaml`` is its record, rewritten on purpose (resume, calibrate)."""
    run_dir, maps = Path(cfg.train.out), cfg.train.maps
    inputs = (
        [("train.maps", maps), ("window index of train.maps", index_path(maps))] if maps else []
    )
    check_output_path(run_dir, inputs, folder=True)
    check_outputs([run_dir / name for name in writes], inputs)
    held = [name for name in HELD if (run_dir / name).exists()]
    if held and not resume:
        raise UserError(
            f"train.out {run_dir} holds a training run ({', '.join(held)}); continue it with "
            f"--resume, or give another train.out (or remove {run_dir}) to train afresh"
        )
    return run_dir


# --------------------------------------------------------------------------------------------
# building blocks


def build_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights (1-d parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": tc.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.99))


def _wrap(model: nn.Module, tc: TrainConfig, dist: Dist) -> nn.Module:
    """Channels-last memory (GPU), ``torch.compile`` when asked, DDP under torchrun."""
    if tc.channels_last and dist.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if tc.compile else model
    if dist.world > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    return net


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``auto`` -> bf16 on CUDA (fp16 where bf16 is unsupported), no autocast on CPU."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if amp not in table:
        raise UserError(f"config: train.amp {amp!r} is unknown; use auto, bf16, fp16 or off")
    if amp == "fp16" and device.type != "cuda":
        raise UserError("config: train.amp=fp16 needs a CUDA GPU; use train.amp=bf16 or off on CPU")
    return table[amp]


class TrainingInterrupted(Interrupted):
    """Training stopped on a signal after writing ``last.pt``; ``--resume`` goes on. The CLI
    exits with 130 (SIGINT) or 143 (SIGTERM), not 2: nothing was wrong with the input."""


class Interruption:
    """SIGTERM and SIGINT while training: ``requested`` names the signal, and the loop stops
    after the step it is in, writing ``last.pt``. A second signal stops at once.

    Handlers are installed only in the main thread (Python's rule) and restored on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = ""
        self._old: dict = {}

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    @property
    def signum(self) -> int:
        """The signal asked for (SIGTERM when another process of a DDP run was asked)."""
        return getattr(signal, self.requested, signal.SIGTERM)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def process_loss(loss_fn, logits: torch.Tensor, y, mask, dist: Dist) -> torch.Tensor:
    """This process's training loss: its sum over observed cells divided by the mean number of
    observed (cell, threshold) pairs per process.

    DDP averages gradients over the ``W`` processes; with ``N`` observed pairs in all, dividing
    by ``N / W`` makes that average the gradient of the masked mean over the union of the
    batches, so a process whose batch has more gaps weighs no more than another (dividing by
    its own count would make each of its observed cells weigh more). One process: the mean.
    """
    from forecast.losses import observed_pairs

    n = observed_pairs(mask, logits.shape[2]).to(torch.float32)
    count = distributed.all_sum(n, dist) / dist.world
    return loss_fn(logits.float(), y, mask, count=count)


def _check_step(
    loss: torch.Tensor, state: TrainState, lr: float, dist: Dist, interrupt: Interruption
) -> bool:
    """Raise a one-line UserError when the loss (on any process) is NaN or infinite; return
    whether any process was asked to stop (one reduction for both, so all processes agree)."""
    flags = torch.stack(
        [
            (~torch.isfinite(loss.detach())).float(),
            loss.new_tensor(float(bool(interrupt.requested))),
        ]
    )
    bad, stop = distributed.all_sum(flags, dist).tolist()
    if stop and not interrupt.requested:
        interrupt.requested = "another process"
    if bad > 0:
        raise UserError(
            f"training diverged: the loss is {loss.item()} at step {state.step + 1} (epoch "
            f"{state.epoch + 1}, lr {lr:.3g}); lower train.lr, keep train.grad_clip > 0, or check "
            "the maps for bad values"
        )
    return stop > 0


def _progress(loader, tc: TrainConfig, dist: Dist, desc: str):
    off = not (tc.progress and dist.is_main and sys.stderr.isatty())
    return tqdm(loader, desc=desc, leave=False, disable=off, dynamic_ncols=True)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - code may use the legacy global generator
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# checkpoint contents


def _model_state(model: nn.Module, cfg: ExperimentConfig, data, calibration: dict | None) -> dict:
    """What predict needs: model args and weights, config, feature statistics, calibration."""
    return {
        "model_args": {
            "model": to_dict(cfg.model),
            "in_channels": data.in_channels,
            "n_out": data.n_out,
        },
        "model": model.state_dict(),
        "config": to_dict(cfg),
        "stats": data.stats.to_state(),
        "maps": str(cfg.train.maps),
        "calibration": calibration,
    }


def _trained(state: TrainState) -> dict:
    """How far the weights of ``best.pt`` were trained, for the provenance of its forecasts."""
    return {"step": state.step, "epoch": state.epoch, "val_loss": state.best_val}


def _train_state(model, optimizer, scaler, state: TrainState, cfg, data) -> dict:
    """Everything of :func:`_model_state` plus optimizer, scaler, progress and random states."""
    return {
        **_model_state(model, cfg, data, None),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "state": asdict(state),
        "rng": rng_state(),
    }


def _restore(path: Path, model, optimizer, scaler, cfg, data, dist: Dist) -> dict:
    """Load ``last.pt`` into model, optimizer and scaler; restore random states; return it.

    Refuses a checkpoint of another model or window config, or of other maps (the feature
    statistics fitted on the training split differ): resuming it would mix two runs.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if "state" not in ckpt:
        raise UserError(f"checkpoint {path} holds no training state; remove it to start afresh")
    _same_run(path, ckpt, cfg, data)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt


def _same_run(
    path: Path,
    ckpt: dict,
    cfg: ExperimentConfig,
    data,
    *,
    train_keys: tuple[str, ...] | None = None,
    fix: str = "remove it (or pick another train.out) to train from scratch",
) -> None:
    """Raise a UserError naming what differs between ``ckpt`` and this run's config and maps.

    Compares the model and data sections, the ``train_keys`` (default: those that shape the
    optimisation) and, unless ``data`` is None, the feature statistics of the maps.
    """
    check_input_channels(ckpt["model_args"]["in_channels"], path)
    old, new = ckpt["config"], to_dict(cfg)
    keys = [
        f"{sec}.{k}"
        for sec in ("model", "data")
        for k in new[sec]
        if old[sec].get(k) != new[sec][k]
    ]
    train_keys = _RUN_KEYS if train_keys is None else train_keys
    keys += [f"train.{k}" for k in train_keys if old["train"].get(k) != new["train"][k]]
    if not keys and data is not None:
        a, b = ckpt["stats"], data.stats.to_state()
        same = a["count_scale"] == b["count_scale"] and torch.equal(
            a["climatology"], b["climatology"]
        )
        keys = [] if same else ["the maps (feature statistics)"]
    if keys:
        raise UserError(
            f"checkpoint {path} belongs to another run: {', '.join(keys)} differ; {fix}"
        )


_RUN_KEYS = ("seed", "batch_size", "lr", "min_lr", "weight_decay", "warmup_steps", "loss")
