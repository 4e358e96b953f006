"""Calibration of a trained model on the validation windows: at the end of training, and again
later (``strikecast calibrate``) with another method, the weights unchanged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr

from data_prep.config import save_config
from data_prep.errors import UserError
from data_prep.io import write_netcdf_atomic
from data_prep.progress import note
from data_prep.sequences import time_step
from forecast.config import ExperimentConfig, load_experiment
from forecast.model.calibrator import check_method
from forecast.model.network import build_model
from forecast.training import distributed
from forecast.training.calibration import LogitHistogram, fit_calibration, reliability
from forecast.training.checkpoint import load_checkpoint, save_checkpoint
from forecast.training.data import build_data, validate
from forecast.training.distributed import Dist
from forecast.training.run_dir import check_run_dir, same_run


def calibrate(
    run_dir, model, net, data, dist: Dist, method: str, thresholds, best: dict | None = None
) -> None:
    """Calibrate best.pt (``best`` when already loaded) on validation; store the calibration in
    best.pt, the reliability in calibration.nc."""
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
        rel = reliability(hist, cal, tuple(thresholds), time_step(data.ds))
        write_netcdf_atomic(rel, run_dir / "calibration.nc")
        for line in reliability_lines(rel):
            note(line)
    distributed.barrier(dist)


def reliability_lines(rel: xr.Dataset) -> list[str]:
    """Reliability on validation before -> after calibration, a line per lead time and threshold:
    the expected calibration error (ECE: mean |forecast - observed| over the bins, weighted by
    their cells), the largest such gap in a bin of at least 1 % of the cells, and the log loss.

    ``rel`` is :func:`~forecast.training.calibration.reliability`'s Dataset, dims (stage,
    lead_time, strikes, bin) with stages raw and calibrated.
    """
    count = rel["count"].values  # (2, L, T, B)
    gap = np.nan_to_num(np.abs(rel["forecast_probability"] - rel["observed_frequency"]).values)
    cells = np.maximum(count.sum(-1), 1)
    ece = (count * gap).sum(-1) / cells  # (2, L, T)
    largest = np.where(count >= 0.01 * cells[..., None], gap, 0).max(-1)
    loss = rel["log_loss"].values
    thresholds = rel["count"][rel["count"].dims[2]].values
    method = rel.attrs.get("calibration_method")
    lines = [f"calibration ({method}) fitted on validation; there, before -> after (in-sample):"]
    for i, j in np.ndindex(*ece.shape[1:]):
        lines.append(
            f"  lead {i + 1}, P(count >= {thresholds[j]}): ECE {ece[0, i, j]:.4f} -> "
            f"{ece[1, i, j]:.4f}, largest gap {largest[0, i, j]:.3f} -> {largest[1, i, j]:.3f}, "
            f"log loss {loss[0, i, j]:.4f} -> {loss[1, i, j]:.4f}"
        )
    return lines


def recalibrate(cfg: ExperimentConfig) -> Path:
    """Refit the calibration of ``<train.out>/best.pt`` on validation with ``train.calibration``.

    The weights stay as trained; ``best.pt`` and ``calibration.nc`` are rewritten, and the run's
    ``config.yaml`` records the new ``train.calibration`` (nothing else of it changes). Refuses a
    ``best.pt`` of another model, window config or maps.
    """
    check_method(cfg.train.calibration)
    run_dir = check_run_dir(cfg, resume=True, writes=("best.pt", "calibration.nc", "config.yaml"))
    path = run_dir / "best.pt"
    if not path.is_file():
        raise UserError(f"{path} not found: train first, or point train.out at a run directory")
    fix = "pass the run's own config.yaml and drop overrides of those keys"
    ckpt = load_checkpoint(path, map_location="cpu")
    same_run(path, ckpt, cfg, None, train_keys=(), fix=fix)  # before the slow part
    with distributed.session(cfg.train.device, cfg.train.threads, cfg.train.tf32) as dist:
        data = build_data(cfg, dist)
        same_run(path, ckpt, cfg, data, train_keys=(), fix=fix)
        model = build_model(cfg.model, data.in_channels, data.n_out, data.guide_channels)
        model = model.to(dist.device)
        method, thresholds = cfg.train.calibration, cfg.model.thresholds
        calibrate(run_dir, model, model, data, dist, method, thresholds, best=ckpt)
        if dist.is_main:
            saved = run_dir / "config.yaml"
            run_cfg = load_experiment(str(saved)) if saved.is_file() else cfg
            run_cfg.train = replace(run_cfg.train, calibration=cfg.train.calibration)
            save_config(run_cfg, saved)
    return run_dir
