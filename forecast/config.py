"""Experiment config: every default in one typed tree; YAML files in configs/ state what differs.

Sections: ``synth`` (synthetic world), ``prep`` (gridding), ``data`` (windows and splits),
``model``, ``train``, ``eval``. Build one with :func:`load_experiment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_prep.config import (
    AT_LEAST_1,
    FRACTION,
    LIMITS,
    NON_NEGATIVE,
    POSITIVE,
    PrepConfig,
    Range,
    SequenceConfig,
    SynthConfig,
    load_config,
)


@dataclass
class ModelConfig:
    """Encoder -> recurrent core -> decoder (see :mod:`forecast.model.network`)."""

    cell: str = "convgru"  # convrnn | convgru | convlstm | flat
    encoder_channels: tuple[int, ...] = (16, 32)  # one strided (x2) stage per entry
    hidden_channels: tuple[int, ...] = (32,)  # one recurrent layer per entry
    kernel_size: int = 3
    flat_hidden: int = 128  # hidden size of the `flat` ablation's torch.nn RNN
    thresholds: tuple[int, ...] = (1,)  # exceedance outputs P(count >= t) per pixel
    dropout: float = 0.0
    flat_rnn: str = "gru"  # rnn | gru | lstm: the torch.nn recurrence of the `flat` ablation
    flat_pool: tuple[int, int] = (2, 3)  # `flat`: encoder grid pooled to this size, then flattened
    activation: str = "gelu"  # gelu | silu, after every GroupNorm
    norm_groups: int = 8  # GroupNorm groups (fewer where a layer's width is not divisible)
    clim_offset: bool = True  # add logit(climatology of the last input step) to every logit
    clim_channel: int = 2  # input channel holding the climatological P(count >= 1)
    clim_eps: float = 1e-3  # climatology clipped to [eps, 1 - eps] before the logit


@dataclass
class TrainConfig:
    """Optimisation and run bookkeeping (see :mod:`forecast.training.loop`)."""

    maps: str = ""  # maps netCDF written by `prep`; empty = use the run's own synthetic world
    out: str = "runs/default"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    epochs: int = 20
    max_steps: int = 0  # 0 = epochs decide
    batch_size: int = 16
    lr: float = 2e-3
    min_lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    loss: str = "bce"  # bce | focal
    pos_weight: float = 1.0
    focal_gamma: float = 2.0
    amp: str = "auto"  # auto | bf16 | fp16 | off  (auto = bf16 on CUDA, off on CPU)
    compile: bool = False  # torch.compile (after the DDP wrap); training batches drop_last
    channels_last: bool = True  # CUDA: weights and input frames channels-last (NHWC)
    tf32: bool = True  # CUDA: float32 matmuls and convolutions of training steps in TF32
    num_workers: int = 0
    lazy_maps: bool = False  # read maps from disk step by step even when they would fit in memory
    step_cache_mb: int = 512  # read and featurised map steps cached, all loader processes together
    patience: int = 5  # early stopping after this many validations without improvement
    calibration: str = "temperature"  # temperature | platt | isotonic | none
    log_every: int = 10
    progress: bool = True  # progress and validation lines on stderr; false = train --quiet
    session_steps: int = 0  # stop this session after N steps (--resume goes on); 0 = no limit
    checkpoint_every: int = 1000  # also write last.pt every N steps within an epoch; 0 = never
    threads: int = 0  # CPU torch threads; 0 = usable cores / processes (set 1 on a shared machine)
    # train on an evenly spaced share of the training blocks only (learning curves in data);
    # validation and test windows are unchanged; 1 = every training window
    train_fraction: float = 1.0


@dataclass
class EvalConfig:
    """Scoring (see :mod:`forecast.evaluation.scoring`)."""

    baselines: tuple[str, ...] = (
        "persistence",
        "smoothed_persistence",
        "climatology",
        "lagrangian",
        "mos",  # needs data.guidance; left out with a note without it
    )
    split: str = "test"
    n_bins: int = 1001
    neighbourhoods: tuple[int, ...] = (1, 3, 5, 9)  # FSS / neighbourhood CSI window sizes (pixels)
    bootstrap: int = 200  # resamples of forecast days for confidence intervals (0 = none)
    # days per block of the moving-block bootstrap: daily activity stays correlated ~10 days
    # (README, "File formats", Scores); 1 = days drawn independently
    bootstrap_block: int = 10
    seed: int = 0
    uncalibrated: bool = True  # also score the model before calibration, as `model_uncalibrated`
    reliability_bins: int = 10  # equal-width bins of the reliability table and of ECE
    reliability_min_share: float = 0.01  # populated reliability bin: >= this share of cases
    batch_inits: int = 32  # inits forecast and scored at a time (fewer on large grids)
    smoothing_window: int = 0  # smoothed persistence / lagrangian window (px); 0 = tune on val
    smoothing_candidates: tuple[int, ...] = (1, 3, 5, 7, 9, 13, 17, 25)  # windows tried (px)
    select_inits: int = 64  # validation inits used to tune the smoothing windows
    lagrangian_max_shift: int = 8  # largest storm displacement per step searched (pixels)


@dataclass
class ExperimentConfig:
    synth: SynthConfig = field(default_factory=SynthConfig)
    prep: PrepConfig = field(default_factory=PrepConfig)
    data: SequenceConfig = field(default_factory=SequenceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Allowed ranges, checked when a config is loaded (data_prep.config.check_limits names the key).
LIMITS[ModelConfig] = {
    "encoder_channels": AT_LEAST_1,
    "hidden_channels": AT_LEAST_1,
    "kernel_size": AT_LEAST_1,
    "flat_hidden": AT_LEAST_1,
    "thresholds": AT_LEAST_1,
    "dropout": Range(0, 1, open_high=True),
    "flat_pool": AT_LEAST_1,
    "norm_groups": AT_LEAST_1,
    "clim_channel": NON_NEGATIVE,
    "clim_eps": Range(0, 0.5, open_low=True, open_high=True),
}
LIMITS[TrainConfig] = {
    "epochs": AT_LEAST_1,
    "max_steps": NON_NEGATIVE,
    "batch_size": AT_LEAST_1,
    "lr": POSITIVE,
    "min_lr": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "warmup_steps": NON_NEGATIVE,
    "grad_clip": NON_NEGATIVE,
    "pos_weight": POSITIVE,
    "focal_gamma": NON_NEGATIVE,
    "num_workers": NON_NEGATIVE,
    "step_cache_mb": NON_NEGATIVE,
    "patience": NON_NEGATIVE,
    "log_every": AT_LEAST_1,
    "session_steps": NON_NEGATIVE,
    "checkpoint_every": NON_NEGATIVE,
    "threads": NON_NEGATIVE,
    "train_fraction": Range(0, 1, open_low=True),
}
LIMITS[EvalConfig] = {
    "n_bins": Range(2),
    "neighbourhoods": AT_LEAST_1,
    "bootstrap": NON_NEGATIVE,
    "reliability_bins": AT_LEAST_1,
    "reliability_min_share": FRACTION,
    "batch_inits": AT_LEAST_1,
    "smoothing_window": NON_NEGATIVE,
    "smoothing_candidates": AT_LEAST_1,
    "select_inits": AT_LEAST_1,
    "lagrangian_max_shift": NON_NEGATIVE,
}


def load_experiment(
    path: str | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Defaults, then the YAML at ``path``, then ``section.key=value`` overrides."""
    return load_config(ExperimentConfig, path, overrides)
