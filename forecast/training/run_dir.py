"""The run directory of training and the runs it holds: refused before any work when its files
would replace an input, when it holds another run (unless resumed), or when a checkpoint belongs
to another model, window config or maps."""

from __future__ import annotations

from pathlib import Path

from data_prep.atomic import check_output_path, check_outputs
from data_prep.config import to_dict
from data_prep.errors import UserError
from data_prep.sequences import index_path
from forecast.config import ExperimentConfig
from forecast.training.clim_codec import same_table
from forecast.training.features import FeatureStats, check_input_channels, pack_climatology
from forecast.training.guided import GuidanceStats, check_guidance_given

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


def same_run(
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
    args = ckpt["model_args"]
    stats = FeatureStats.from_state(ckpt["stats"])
    check_input_channels(args["in_channels"] - int(args.get("guide_channels", 0)), path, stats)
    check_guidance_given(path, GuidanceStats.from_state(ckpt.get("guidance")), cfg.data.guidance)
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
        # a sub-daily table stored as float32 (before tables were packed) is packed as
        # fit_stats packs it
        same = stats.count_scale == data.stats.count_scale and same_table(
            pack_climatology(stats).climatology, data.stats.climatology
        )
        keys = [] if same else ["the maps (feature statistics)"]
    if keys:
        raise UserError(
            f"checkpoint {path} belongs to another run: {', '.join(keys)} differ; {fix}"
        )


_RUN_KEYS = ("seed", "batch_size", "lr", "min_lr", "weight_decay", "warmup_steps", "loss")
