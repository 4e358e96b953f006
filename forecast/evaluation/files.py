"""Evaluation from files: the maps, a checkpoint and forecast files -> the scores netCDF and a
Markdown scorecard beside it.

:func:`evaluate_to_files` opens the files, assembles the methods (the model, forecast files,
baselines) and scores them with :func:`forecast.evaluation.scoring.evaluate`. A checkpoint or a
forecast file written by ``predict`` brings the data settings it was trained with, so both are
scored on the split training held out.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import xarray as xr

from data_prep.config import SequenceConfig, atomic_write_text, from_dict
from data_prep.errors import ConfigError, UserError
from data_prep.io import open_maps, write_netcdf_atomic
from data_prep.sequences import SPLITS, load_or_build_index
from forecast.evaluation.baselines import build_baseline
from forecast.evaluation.forecast_files import ForecastFile
from forecast.evaluation.model_pair import calibration_pair
from forecast.evaluation.mos import MOS, build_mos, guided_baselines, mos_left_out
from forecast.evaluation.scorecard import scorecard_markdown
from forecast.evaluation.scoring import all_steps_index, evaluate
from forecast.predict import load_forecaster


def evaluate_to_files(
    cfg,
    *,
    maps: Path,
    out: Path,
    checkpoint: Path | None,
    forecasts: dict[str, Path],
    baselines: bool,
    device: str = "auto",
) -> tuple[Path, Path]:
    """Score the model (``checkpoint``), forecast files and baselines on the maps; write files.

    The split is ``cfg.eval.split`` when the maps have a window index with it, else every init
    step with observations at a valid time ("all"). Returns (scores .nc, scorecard .md).
    """
    maps, out = Path(maps), Path(out)
    _check_names(forecasts, cfg, checkpoint is not None, baselines)
    model = _load_model(checkpoint, device, cfg.data.guidance)
    ds = open_maps(maps, lazy=True)  # read batch by batch: memory independent of the archive
    files: dict[str, ForecastFile] = {}
    try:
        for name, path in forecasts.items():
            files[name] = ForecastFile(path, ds, maps)
        trained = _training_windows(model, files)
        if trained is not None:
            cfg = _with_training_windows(cfg, trained, maps)
        index, split = _index_and_split(cfg, maps, ds, trained=trained is not None)
        methods = _methods(cfg, ds, index, model, files, baselines)
        scores = evaluate(cfg, ds, index, methods, split)
    finally:
        for f in files.values():
            f.close()
        ds.close()
    scores.attrs["maps"] = str(maps)
    scores.attrs.update({f"forecast_{k}": str(v) for k, v in forecasts.items()})
    write_netcdf_atomic(scores, out)
    card = out.with_suffix(".md")
    atomic_write_text(card, scorecard_markdown(scores))
    if baselines and mos_left_out(cfg):  # after the files: an error stays the only line
        warnings.warn(mos_left_out(cfg), stacklevel=2)
    return out, card


RESERVED = ("model", "model_uncalibrated")


def _check_names(forecasts: dict, cfg, model: bool, baselines: bool) -> None:
    """Method names must be unique: a forecast file never silently replaces another method."""
    taken = set(RESERVED if model else ()) | set(cfg.eval.baselines if baselines else ())
    for name, path in forecasts.items():
        if name in taken:
            raise UserError(
                f"--forecast {path}: the name {name!r} is taken by a method already scored; "
                f"name it with --forecast OTHER={path}"
            )


def _load_model(checkpoint, device: str, guidance: str = ""):
    """The model of ``checkpoint`` fed ``guidance`` (data.guidance); a model trained without
    guidance ignores the file (with a warning): other methods may use it."""
    if checkpoint is None:
        return None
    return load_forecaster(Path(checkpoint), device, guidance=guidance, unused_guidance="warn")


def _training_windows(model, files: dict) -> tuple[dict, str, str] | None:
    """(data settings, training maps, what) of the model, else of the first forecast file that
    records them (``predict`` does); None when no scored method says how it was trained."""
    if model is not None:
        return model.data_config, model.train_maps, "checkpoint"
    for f in files.values():
        text = f.ds.attrs.get("data_config")
        if text:
            try:
                data = json.loads(text)
            except (TypeError, ValueError):
                data = None
            if not isinstance(data, dict):
                raise UserError(
                    f"{f.path}: attribute data_config is not a JSON object of data settings; "
                    "remove it, or write the file again with `strikecast predict`"
                )
            return data, str(f.ds.attrs.get("training_maps", "")), f"forecast file {f.path}"
    return None


def _with_training_windows(cfg, trained: tuple[dict, str, str], maps: Path):
    """``cfg`` with the ``data`` section the scored model (checkpoint or forecast file) was
    trained with: the test windows are the ones training held out, whatever the command line
    says."""
    data, train_maps, what = trained
    # the guidance file is the one given now (the model's recorded path may be elsewhere)
    settings = from_dict(SequenceConfig, {**data, "guidance": cfg.data.guidance}, "data.")
    if settings != cfg.data:
        diff = sorted(
            k for k, v in dataclasses.asdict(settings).items() if getattr(cfg.data, k) != v
        )
        warnings.warn(
            f"scoring with the data settings the {what} was trained with, not the given "
            f"data.{', data.'.join(diff)}",
            stacklevel=3,
        )
    if cfg.eval.split == "all" and train_maps and _same_file(maps, train_maps):
        warnings.warn(
            f"{maps}: eval.split=all scores the model on the maps it was trained on "
            "(in-sample); use eval.split=test for held-out scores",
            stacklevel=3,
        )
    return dataclasses.replace(cfg, data=settings)


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _methods(cfg, ds, index, model, files, baselines: bool) -> dict:
    methods: dict[str, object] = {}
    if model is not None:
        methods["model"] = model
        if cfg.eval.uncalibrated and methods["model"].calibrator.method != "none":
            # the same model before calibration: reliability before and after, side by side,
            # from the same forward pass
            methods["model"], methods["model_uncalibrated"] = calibration_pair(model)
    methods.update(files)
    if baselines:
        for name in guided_baselines(cfg):
            if name == MOS:
                methods[name] = build_mos(ds, index, cfg.eval, cfg.data.guidance)
            else:
                methods[name] = build_baseline(name, ds, index, cfg.eval)
    if not methods:
        raise UserError(
            "evaluate: nothing to score; pass --checkpoint or --forecast, or drop --no-baselines"
        )
    return methods


def _index_and_split(cfg, maps: Path, ds: xr.Dataset, trained: bool = False):
    """(index, split): the maps' window index and cfg.eval.split, or all steps and "all".

    With a ``trained`` model to score (checkpoint or its forecast file), a split the maps lack
    is refused, and "all" keeps the inits with ``n_in`` steps of history.
    """
    split = cfg.eval.split
    if split not in (*SPLITS, "all"):
        raise ConfigError(
            f"config key 'eval.split': {split!r} is not one of {', '.join((*SPLITS, 'all'))}"
        )
    if split != "all":
        why = ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # empty splits: handled below
                index = load_or_build_index(maps, ds, cfg.data)
            if len(index.starts.get(split, ())):
                return index, split
            why = f"has no {split!r} windows"
        except UserError as e:
            why = f"has no window index ({e})"
        if trained:
            # falling back to every step would score the model on the days it was trained on
            raise UserError(
                f"{maps}: {why} under the data settings the model was trained with (data.n_in "
                f"{cfg.data.n_in}, data.n_out {cfg.data.n_out}, data.block_steps "
                f"{cfg.data.block_steps}); score the maps the model was trained on, or maps of "
                "a period it never saw with eval.split=all"
            )
    first = cfg.data.n_in - 1 if trained else 0
    return all_steps_index(ds, n_in=cfg.data.n_in, n_out=cfg.data.n_out, first=first), "all"
