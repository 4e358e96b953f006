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

Several GPUs: ``torchrun --nproc_per_node N -m forecast train ...`` (:mod:`forecast.training.distributed`).
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_prep.config import save_config
from data_prep.errors import UserError
from data_prep.progress import Bar, bar, duration, note, quiet
from forecast.config import ExperimentConfig, TrainConfig
from forecast.model.calibrator import check_method
from forecast.model.losses import build_loss, observed_pairs
from forecast.model.network import build_model
from forecast.training import distributed
from forecast.training.checkpoint import (
    model_state,
    restore,
    save_checkpoint,
    train_state,
    trained_record,
)
from forecast.training.data import TrainData, build_data, model_inputs, validate
from forecast.training.distributed import Dist
from forecast.training.guard import StepGuard
from forecast.training.recalibrate import calibrate
from forecast.training.run_dir import check_run_dir
from forecast.training.runlog import RunLog, validation_line
from forecast.training.signals import Interruption, TrainingInterrupted


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
    validation_due: bool = False  # a validation a signal cut short: done first on resume


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
    with distributed.session(cfg.train.device, cfg.train.threads, cfg.train.tf32) as dist:
        # the main process reports; train.progress=false silences it as --quiet does
        with quiet(not (cfg.train.progress and dist.is_main)):
            return train_loop(cfg, dist, resume)


@dataclass
class _Session:
    """What one training session works with, built by :func:`_start`."""

    data: TrainData
    model: nn.Module  # the weights; ``net`` wraps them (compile, DDP) for the forward pass
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: Callable
    amp: torch.dtype | None
    total: int  # steps of the whole run
    session_end: float  # step at which this session stops (train.session_steps)
    state: TrainState
    log: RunLog
    steps: Bar  # progress bar over the steps of the run
    guard: StepGuard  # NaN losses and stop requests, looked at every train.log_every steps

    def going(self, interrupt: Interruption) -> bool:
        """Whether another pass over the training windows is due."""
        s = self.state
        return (
            (s.validation_due or (s.step < self.total and s.step < self.session_end))
            and not s.stopped
            and not self.guard.halted(interrupt)
        )


def train_loop(cfg: ExperimentConfig, dist: Dist, resume: bool = False) -> Path:
    """:func:`train` inside a process session (device, threads, process group)."""
    tc = cfg.train
    check_method(tc.calibration)  # a typo fails now, not after the last epoch
    # seed and run directory (checked by every process before any of them writes)
    _seed(tc.seed)
    run_dir = check_run_dir(cfg, resume=resume)
    distributed.barrier(dist)
    run = _start(cfg, dist, run_dir, resume)
    # interruptible: SIGTERM / Ctrl-C end the pass after the current step, with last.pt written
    with Interruption() as interrupt, run.steps:
        while run.going(interrupt):
            lr = _train_pass(run, tc, dist, interrupt)
            _end_pass(run, cfg, dist, run_dir, lr, interrupt)
    if run.guard.halted(interrupt):
        run.log.close()
        raise TrainingInterrupted(
            f"training interrupted ({interrupt.requested}) at step {run.state.step}: "
            f"{run_dir / 'last.pt'} written; continue with --resume",
            interrupt.signum,
        )
    note(_stop_line(run))
    # calibrate the best model on the validation windows
    if run.state.step >= run.total or run.state.stopped:
        calibrate(run_dir, run.model, run.net, run.data, dist, tc.calibration, cfg.model.thresholds)
    run.log.close()
    return run_dir


def _start(cfg: ExperimentConfig, dist: Dist, run_dir: Path, resume: bool) -> _Session:
    """Data, model, optimizer and schedule; the state of ``last.pt`` when resuming."""
    tc = cfg.train
    amp = _amp_dtype(tc.amp, dist.device)
    data = build_data(cfg, dist)
    model = build_model(cfg.model, data.in_channels, data.n_out, data.guide_channels)
    model = model.to(dist.device)
    optimizer = build_optimizer(model, tc)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=amp == torch.float16)
    net = _wrap(model, tc, dist)
    loss_fn = build_loss(tc.loss, pos_weight=tc.pos_weight, gamma=tc.focal_gamma)
    total = tc.max_steps or tc.epochs * data.steps_per_epoch
    state, restored = TrainState(), {}
    if resume and (run_dir / "last.pt").is_file():
        restored = restore(run_dir / "last.pt", model, optimizer, scaler, cfg, data, dist)
        state = TrainState(**restored["state"])
    if resume:
        note(_resume_line(run_dir / "last.pt", state, total, found=bool(restored)))
    if dist.is_main:
        save_config(cfg, run_dir / "config.yaml")
    log = RunLog(
        run_dir, enabled=dist.is_main, after_step=state.step if resume else None, device=dist.device
    )
    if "log" in restored:
        log.load_state_dict(restored["log"])
    session_end = state.step + tc.session_steps if tc.session_steps else math.inf
    steps = bar(desc="train", total=total, initial=state.step, unit="step")
    guard = StepGuard(dist, state.step)
    return _Session(
        data, model, net, optimizer, scaler, loss_fn, amp, total, session_end, state, log, steps,
        guard,
    )  # fmt: skip


def _train_pass(run: _Session, tc: TrainConfig, dist: Dist, interrupt: Interruption) -> float:
    """Train on the rest of this epoch, or up to the next checkpoint or stop; return the last lr.

    No host sync between log steps (:mod:`forecast.training.guard`): the losses are looked at
    every ``train.log_every`` steps and when the pass ends, before validation or a checkpoint.
    """
    state = run.state
    run.data.train_sampler.set_epoch(state.epoch, skip=state.batch_in_epoch * tc.batch_size)
    t0 = time.perf_counter()
    run.net.train()
    if state.validation_due:  # the validation an interrupted session left comes first
        last = max(state.step - 1, 0)  # its row logs the rate of the last step, as it would have
        return lr_at(last, lr=tc.lr, min_lr=tc.min_lr, warmup=tc.warmup_steps, total=run.total)
    lr = lr_at(state.step, lr=tc.lr, min_lr=tc.min_lr, warmup=tc.warmup_steps, total=run.total)
    for batch in run.data.train_loader:
        lr, loss = _train_step(run, batch, tc, dist)
        # log
        elapsed = state.seconds + time.perf_counter() - t0
        run.log.train_loss(loss.detach(), state, lr, elapsed, every=tc.log_every)
        shown = {"loss": f"{run.log.last_loss:.4f}"} if math.isfinite(run.log.last_loss) else {}
        run.steps.set_postfix(shown, lr=f"{lr:.2e}", refresh=False)
        run.steps.update(1)
        save = tc.checkpoint_every > 0 and state.step % tc.checkpoint_every == 0
        if state.step >= run.total or state.step >= run.session_end or save:
            break
        # look at the losses (and agree on a stop) every log_every steps
        if state.step % tc.log_every == 0:
            _look(run, tc, interrupt)
        if run.guard.halted(interrupt):
            break
    _look(run, tc, interrupt)  # the pass ends: nothing is saved from a diverged run
    state.seconds += time.perf_counter() - t0
    return lr


def _look(run: _Session, tc: TrainConfig, interrupt: Interruption) -> None:
    """:meth:`StepGuard.look` at the current step."""
    s = run.state
    run.guard.look(
        s.step,
        interrupt,
        epoch=s.epoch,
        lr_at=lambda k: lr_at(
            k, lr=tc.lr, min_lr=tc.min_lr, warmup=tc.warmup_steps, total=run.total
        ),
    )


def _train_step(
    run: _Session, batch: dict, tc: TrainConfig, dist: Dist
) -> tuple[float, torch.Tensor]:
    """One optimisation step on ``batch``; returns (lr, loss). Reads nothing back to the host."""
    state = run.state
    y, mask = (batch[k].to(dist.device, non_blocking=True) for k in ("y", "mask"))
    inputs = model_inputs(batch, dist.device, run.data.channels_last)  # x (and guide, clim)
    # schedule
    lr = lr_at(state.step, lr=tc.lr, min_lr=tc.min_lr, warmup=tc.warmup_steps, total=run.total)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    # forward and loss
    with distributed.autocast(dist.device, run.amp):
        logits = run.net(**inputs)
    loss = process_loss(run.loss_fn, logits, y, mask, dist)
    run.guard.add(loss, state.step + 1)
    # backward and clip
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    if tc.grad_clip > 0:
        nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
    # step
    run.scaler.step(run.optimizer)
    run.scaler.update()
    state.step += 1
    state.batch_in_epoch += 1
    return lr, loss


def _end_pass(
    run: _Session, cfg: ExperimentConfig, dist: Dist, run_dir: Path, lr: float, interrupt
) -> None:
    """After an epoch (or the last step): validate, ``best.pt`` on improvement, early stopping;
    after every pass: ``last.pt``. A signal during validation abandons it (a long one would
    outlast a batch scheduler's grace time): ``last.pt`` then records it as due, and
    ``--resume`` validates before it trains on."""
    state, tc = run.state, cfg.train
    epoch_done = state.batch_in_epoch >= run.data.steps_per_epoch
    scores = None
    if epoch_done or state.step >= run.total or state.validation_due:
        # validate on the fixed set; checkpoint on improvement; early stopping
        stop = functools.partial(run.guard.stop_agreed, interrupt)
        scores = validate(run.net, run.data, run.loss_fn, dist, stop=stop)
        state.validation_due = scores is None  # cut short by a signal: done again on resume
    if scores is not None:
        improved = scores["val_loss"] < state.best_val
        state.best_val = min(state.best_val, scores["val_loss"])
        state.bad_epochs = 0 if improved else state.bad_epochs + 1
        state.stopped = tc.patience > 0 and state.bad_epochs >= tc.patience
        row = run.log.validation(scores, state, lr, state.seconds)
        if improved and dist.is_main:
            best = {**model_state(run.model, cfg, run.data, None), "trained": trained_record(state)}
            save_checkpoint(best, run_dir / "best.pt")
        note(validation_line(row, run.total, "; best.pt written" if improved else ""))
    if epoch_done and not state.validation_due:
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    if dist.is_main:
        ckpt = train_state(run.model, run.optimizer, run.scaler, state, cfg, run.data)
        save_checkpoint({**ckpt, "log": run.log.state_dict()}, run_dir / "last.pt")
    distributed.barrier(dist)


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
    """Channels-last weights (GPU), DDP under torchrun, then ``torch.compile`` when asked.

    Compiling the DDP wrapper (not DDP around a compiled model) lets the compiler split the graph
    at DDP's gradient buckets, so the all-reduce of one bucket overlaps the backward of the next.
    """
    if tc.channels_last and dist.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    net = model
    if dist.world > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    return torch.compile(net) if tc.compile else net


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


def process_loss(loss_fn, logits: torch.Tensor, y, mask, dist: Dist) -> torch.Tensor:
    """This process's training loss: its sum over observed cells divided by the mean number of
    observed (cell, threshold) pairs per process.

    DDP averages gradients over the ``W`` processes; with ``N`` observed pairs in all, dividing
    by ``N / W`` makes that average the gradient of the masked mean over the union of the
    batches, so a process whose batch has more gaps weighs no more than another (dividing by
    its own count would make each of its observed cells weigh more). One process: the mean.
    """
    n = observed_pairs(mask, logits.shape[2]).to(torch.float32)
    count = distributed.all_sum(n, dist) / dist.world
    return loss_fn(logits.float(), y, mask, count=count)


def _stop_line(run: _Session) -> str:
    """Why training stopped: the last step, early stopping or the end of a session."""
    s = run.state
    where = f"train: stopped at step {s.step}/{run.total} after {duration(s.seconds)}"
    if s.stopped:
        return f"{where}: {s.bad_epochs} validations without improvement (train.patience)"
    if s.step < run.total:
        return f"{where}: end of this session (train.session_steps); go on with --resume"
    return f"{where}: the last step; best validation loss {s.best_val:.4f}"


def _resume_line(path: Path, state: TrainState, total: int, *, found: bool) -> str:
    """Where a resumed run goes on from (or that it starts afresh)."""
    if not found:
        return f"train: no {path} to resume from; starting at step 0"
    return (
        f"train: resumed from {path} at step {state.step}/{total}, epoch {state.epoch + 1} "
        f"(batch {state.batch_in_epoch} of it), after {duration(state.seconds)} of training"
    )


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - code may use the legacy global generator
    torch.manual_seed(seed)
