"""Checkpoints of the lightning forecaster: plain tensors and containers, safe to load.

A checkpoint is a dict that ``torch.load(..., weights_only=True)`` can read (tensors, numbers,
strings, lists, dicts; no pickled objects)::

    format       "strikecast-checkpoint-1"
    model_args   {"model": ModelConfig as dict, "in_channels": int, "n_out": int}
                 (+ "guide_channels": int when trained with guidance)
    model        model state dict
    optimizer, scaler     state dicts (absent in an inference-only checkpoint)
    step, epoch, batch_in_epoch, best_val, bad_epochs     where training stood
    rng          torch / numpy / python / cuda random states
    config       the resolved ExperimentConfig as a dict
    stats        FeatureStats.to_state() (a sub-daily climatology packed to ~1/10 of float32,
                 forecast.training.clim_codec; a daily one float32)
    guidance     GuidanceStats.to_state() (only when trained with guidance)
    calibration  Calibrator.to_state() or None

Files are written to a temporary file beside the target, then renamed into place.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_prep.atomic import atomic_output
from data_prep.config import from_dict, to_dict
from data_prep.errors import UserError
from forecast.config import ExperimentConfig, ModelConfig
from forecast.model.network import build_model
from forecast.training.clim_codec import check_packed
from forecast.training.distributed import Dist
from forecast.training.guided import GuidanceStats
from forecast.training.run_dir import same_run

FORMAT = "strikecast-checkpoint-1"
REQUIRED = ("format", "model_args", "model", "config", "stats")


def save_checkpoint(state: dict, path: Path) -> Path:
    """Write ``state`` (see the module docstring) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return Path(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; refuse anything that is not one of ours.

    Raises
    ------
    UserError
        When the file is missing, holds pickled objects other than tensors and plain containers,
        lacks the keys listed in :data:`REQUIRED`, or holds weights or feature statistics that do
        not fit its ``model_args`` (see :func:`check_contents`).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} not found; pass the best.pt written by `strikecast train`"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        raise UserError(
            f"checkpoint {path} is not a strikecast checkpoint ({_why(e)}); refusing to load it"
        ) from None
    missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
    if missing or state.get("format") != FORMAT:
        raise UserError(
            f"checkpoint {path} is not a strikecast checkpoint (missing "
            f"{', '.join(missing) or 'format'}); refusing to load it"
        )
    check_contents(state, path)
    return state


def check_contents(state: dict, path: Path) -> None:
    """Raise :class:`UserError` naming ``path`` unless ``model_args`` rebuild a network whose
    weights are exactly ``state["model"]``, and the feature statistics are complete: a
    ``climatology`` (..., H, W) on the ``lat`` (H,) / ``lon`` (W,) grid, a finite positive
    ``count_scale``."""
    try:
        args = state["model_args"]
        mcfg = from_dict(ModelConfig, args["model"], "model.")
        guide = int(args.get("guide_channels", 0))
        net = build_model(mcfg, int(args["in_channels"]), int(args["n_out"]), guide)
        net.load_state_dict(state["model"])
        shape, lat, lon, scale = _stats_shape(state["stats"])
        gstats = GuidanceStats.from_state(state.get("guidance"))
        if (gstats.channels if gstats else 0) != guide:
            raise ValueError(f"{guide} guidance channels, guidance statistics of other fields")
    except (UserError, KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise UserError(
            f"checkpoint {path} does not fit its own model_args and statistics ({_why(e)}); "
            "it is damaged or not from strikecast: use the best.pt of a finished training run"
        ) from None
    grid = (lat.size, lon.size)
    if shape[-2:] != grid or not (np.isfinite(scale) and scale > 0):
        raise UserError(
            f"checkpoint {path}: feature statistics are inconsistent (climatology "
            f"{shape} on a {grid[0]}x{grid[1]} grid, count scale {scale}); "
            "use the best.pt of a finished training run"
        )


def _stats_shape(state: dict) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, float]:
    """(climatology shape, lat, lon, count scale) of the feature statistics ``state``, a packed
    table decoded season by season to check it, never whole (a loading process keeps no
    second copy of an hourly table)."""
    packed = state.get("climatology_packed")
    if packed is not None:
        shape = check_packed(packed)
    else:
        shape = tuple(np.shape(state["climatology"]))
    lat = np.asarray(state["lat"], dtype=np.float64)
    lon = np.asarray(state["lon"], dtype=np.float64)
    return shape, lat, lon, float(state["count_scale"])


def _why(e: BaseException) -> str:
    """An exception as a short one-line reason: its type and the start of its message."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


# --------------------------------------------------------------------------------------------
# random states as tensors and lists (weights_only-safe)


def rng_state() -> dict:
    """The torch, numpy, python (and CUDA) random states as tensors, lists and numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - legacy global state
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - legacy global state
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --------------------------------------------------------------------------------------------
# what a run's checkpoints hold


def model_state(model: nn.Module, cfg: ExperimentConfig, data, calibration: dict | None) -> dict:
    """What predict needs: model args and weights, config, feature statistics (and guidance
    normalisation), calibration."""
    args = {"model": to_dict(cfg.model), "in_channels": data.in_channels, "n_out": data.n_out}
    state = {
        "model_args": args,
        "model": model.state_dict(),
        "config": to_dict(cfg),
        "stats": data.stats.to_state(),
        "maps": str(cfg.train.maps),
        "calibration": calibration,
    }
    if getattr(data, "guidance", None) is not None:
        args["guide_channels"] = data.guide_channels
        state["guidance"] = data.guidance.to_state()
    return state


def trained_record(state) -> dict:
    """How far the weights of ``best.pt`` were trained, for the provenance of its forecasts."""
    return {"step": state.step, "epoch": state.epoch, "val_loss": state.best_val}


def train_state(model, optimizer, scaler, state, cfg, data) -> dict:
    """Everything of :func:`_model_state` plus optimizer, scaler, progress and random states."""
    return {
        **model_state(model, cfg, data, None),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "state": asdict(state),
        "rng": rng_state(),
    }


def restore(path: Path, model, optimizer, scaler, cfg, data, dist: Dist) -> dict:
    """Load ``last.pt`` into model, optimizer and scaler; restore random states; return it.

    Refuses a checkpoint of another model or window config, or of other maps (the feature
    statistics fitted on the training split differ): resuming it would mix two runs.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if "state" not in ckpt:
        raise UserError(f"checkpoint {path} holds no training state; remove it to start afresh")
    same_run(path, ckpt, cfg, data)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt
