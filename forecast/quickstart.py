"""The whole pipeline on the embedded synthetic world: synth -> prep -> train -> predict -> evaluate -> plot.

Each stage writes its outputs under ``out`` and is skipped when a finished output of the same
config is already there, so an interrupted quickstart resumes where it stopped (training resumes
from ``run/last.pt``). A changed config redoes the stages whose config sections changed, and the
stages after them: never are outputs of the old config kept under the new one.

``data.guidance: synthetic`` (configs/quickstart_guidance.yaml) feeds the world's own
``guidance.nc`` to the model and to the ``mos`` baseline; a changed guidance redoes training and
the stages after it, never the world or the maps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.atomic import check_output_path, check_outputs
from data_prep.config import atomic_write_text, save_config, to_dict
from data_prep.errors import UserError
from data_prep.io import open_maps
from data_prep.prep import prep
from data_prep.sequences import load_or_build_index
from data_prep.synthetic import generate_world
from forecast.config import ExperimentConfig, load_experiment
from forecast.evaluation import evaluate_to_files, format_score_table
from forecast.evaluation.mos import guided_baselines
from forecast.figures import plot_files
from forecast.metrics.suite import FORECAST
from forecast.predict import predict_to_file
from forecast.training import train

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
# data.guidance value meaning the synthetic world's own guidance.nc (OUT/world/guidance.nc)
SYNTHETIC_GUIDANCE = "synthetic"


def quickstart_config(
    config: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """The quickstart experiment: ``configs/quickstart.yaml`` (or ``config``) plus ``overrides``."""
    path = Path(config) if config else DEFAULT_CONFIG
    if not path.is_file():
        raise UserError(
            f"quickstart config {path} not found: pass --config configs/quickstart.yaml from a clone"
        )
    return load_experiment(str(path), overrides)


# keys that change no output of a stage: a rerun that differs only in them skips it
UNUSED = {"prep": ("workers", "lock_wait"), "train": ("progress", "session_steps")}
# keys of a section that one stage does not read: the maps do not depend on the guidance file
UNREAD = {"prep": {"data": ("guidance",)}}
TRAINED = ("synth", "prep", "data", "model", "train")  # what the trained weights depend on


class _Stages:
    """Numbered progress lines and a stamp per finished stage, so reruns skip finished work.

    A stage's stamp is a hash of the config sections it (and every stage before it) reads, so
    a changed key redoes the stages it touches and all after them.
    """

    def __init__(self, out: Path, cfg: ExperimentConfig, n: int):
        self.out, self.n, self.i, self.t0 = out, n, 0, time.perf_counter()
        self.stamps = out / ".stages.json"
        self.done = json.loads(self.stamps.read_text()) if self.stamps.is_file() else {}
        self.cfg = cfg
        self.ran = False  # once a stage runs, every later stage runs too (its inputs changed)
        self.took: dict[str, float | None] = {}  # seconds per stage, None when skipped
        self._open: tuple[str, float] | None = None  # the stage running now and its start

    def _close(self) -> None:
        """Record the seconds of the stage running now, if any."""
        if self._open is not None:
            name, t = self._open
            self.took[name] = time.perf_counter() - t
            self._open = None

    def key(self, stage: str, *sections: str) -> str:
        parts = [to_dict(getattr(self.cfg, s)) for s in sections]
        defaults = {s: to_dict(type(getattr(self.cfg, s))()) for s in sections}
        for s, part in zip(sections, parts, strict=True):
            for name in UNUSED.get(s, ()):
                part.pop(name, None)
            for name in UNREAD.get(stage, {}).get(s, ()):
                part[name] = defaults[s][name]  # the default: stamps of before stay valid
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def start(self, name: str, what: str, *sections: str, outputs: tuple[Path, ...] = ()) -> bool:
        """Print the stage header; True when the stage must run, False when it can be skipped."""
        self.i += 1
        finished = (
            not self.ran
            and self.done.get(name) == self.key(name, *sections)
            and all(p.exists() for p in outputs)
        )
        self.ran = self.ran or not finished
        self._close()
        if finished:
            self.took[name] = None
        else:
            self._open = (name, time.perf_counter())
        note = " (done before, skipped)" if finished else ""
        print(
            f"[{self.i}/{self.n}] {name}: {what}{note}  [{time.perf_counter() - self.t0:5.0f} s]",
            flush=True,
        )
        return not finished

    def begin(self, name: str, *sections: str) -> bool:
        """Record that ``name`` starts with this config; True when it started with the same
        config before and did not finish (an interrupted stage that can resume)."""
        key, mark = self.key(name, *sections), f"{name} (started)"
        again = self.done.get(mark) == key
        self.done[mark] = key
        atomic_write_text(self.stamps, json.dumps(self.done, indent=1))
        return again

    def finish(self, name: str, *sections: str) -> None:
        self._close()
        self.done[name] = self.key(name, *sections)
        atomic_write_text(self.stamps, json.dumps(self.done, indent=1))

    def timing(self) -> str:
        """One line: the total seconds and each stage's (``skipped`` for a stage done before)."""
        self._close()
        parts = [f"{n} {'skipped' if t is None else f'{t:.0f} s'}" for n, t in self.took.items()]
        total = time.perf_counter() - self.t0
        return f"quickstart finished in {total:.0f} s ({', '.join(parts)})"


def quickstart(
    out: Path, config: str | Path | None = None, overrides: list[str] | None = None
) -> dict[str, Path]:
    """Run every stage on the synthetic world and print the score table; returns the output paths."""
    cfg = quickstart_config(config, overrides)
    out, paths = _output_paths(out, cfg, config)
    st = _Stages(out, cfg, 6)
    oracle = paths["world"] / "oracle.nc"
    strikes = paths["world"] / "strikes.parquet"
    world = (strikes, oracle, paths["guidance"]) if "guidance" in paths else (strikes, oracle)
    _synth(st, cfg, paths, outputs=world)
    _prep(st, cfg, paths, strikes)
    best = paths["run"] / "best.pt"
    _train(st, cfg, paths, best)
    inits, last_test = _scored_inits(cfg, paths["maps"])
    _predict(st, cfg, paths, best, inits)
    scores_path, card = _evaluate(st, cfg, paths, best, oracle)
    figures = _plot(st, paths, scores_path, last_test)
    _report(scores_path, card, paths, figures, st)
    return paths | {"scorecard": card}


def _predict(
    st: _Stages, cfg: ExperimentConfig, paths: dict[str, Path], best: Path, inits: str
) -> None:
    """predict: every init from the first validation one to the last test one, from observed
    maps only, so that scoring the forecast file tunes its CSI threshold on the same validation
    inits as scoring the checkpoint does."""
    if st.start("predict", f"inits {inits}", *TRAINED, outputs=(paths["forecast"],)):
        predict_to_file(best, paths["maps"], inits, paths["forecast"], guidance=cfg.data.guidance)
        st.finish("predict", *TRAINED)


def _evaluate(
    st: _Stages, cfg: ExperimentConfig, paths: dict[str, Path], best: Path, oracle: Path
) -> tuple[Path, Path]:
    """evaluate: model, baselines and the oracle through one scoring loop."""
    scores, card = paths["scores"], paths["scores"].with_suffix(".md")
    # mos needs guidance: without it, the default list goes without mos (and without a note)
    baselines = tuple(guided_baselines(cfg))
    what = f"{cfg.eval.split} split: model, oracle, {', '.join(baselines)}"
    if st.start("evaluate", what, *TRAINED, "eval", outputs=(scores, card)):
        scored = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, baselines=baselines))
        scores, card = evaluate_to_files(
            scored, maps=paths["maps"], out=scores, checkpoint=best,
            forecasts={"oracle": oracle}, baselines=True, device=cfg.train.device,
        )  # fmt: skip
        st.finish("evaluate", *TRAINED, "eval")
    return scores, card


def _plot(st: _Stages, paths: dict[str, Path], scores: Path, init: str) -> list[Path]:
    """plot: forecast vs observed maps (at ``init``, the last test init), score diagrams,
    training curves."""
    folder = paths["figures"]
    if not st.start("plot", f"figures into {folder}", *TRAINED, "eval", outputs=(folder,)):
        return sorted(folder.glob("*.png"))
    figures = plot_files(
        out=folder, maps=paths["maps"], forecast=paths["forecast"],
        scores=scores, log=paths["run"] / "log.csv", init=init,
    )  # fmt: skip
    st.finish("plot", *TRAINED, "eval")
    return figures


def _output_paths(
    out: Path, cfg: ExperimentConfig, config: str | Path | None
) -> tuple[Path, dict[str, Path]]:
    """``out`` and the outputs under it, checked against the inputs; ``cfg`` saved there, pointing
    training at them."""
    source = [("--config", config or DEFAULT_CONFIG)]
    out = check_output_path(out, source, folder=True)
    paths = {
        "world": out / "world",
        "maps": out / "maps.nc",
        "run": out / "run",
        "forecast": out / "forecast.nc",
        "scores": out / "scores.nc",
        "figures": out / "figures",
    }
    files = [out / "config.yaml", paths["maps"], paths["forecast"], paths["scores"]]
    check_outputs(files, source)  # e.g. --config DIR/config.yaml
    out.mkdir(parents=True, exist_ok=True)
    cfg.train = dataclasses.replace(cfg.train, maps=str(paths["maps"]), out=str(paths["run"]))
    if cfg.data.guidance == SYNTHETIC_GUIDANCE:
        paths["guidance"] = _synthetic_guidance(cfg, paths["world"])
        cfg.data = dataclasses.replace(cfg.data, guidance=str(paths["guidance"]))
    save_config(cfg, out / "config.yaml")
    return out, paths


def _synthetic_guidance(cfg: ExperimentConfig, world: Path) -> Path:
    """The world's ``guidance.nc``, asked for by ``data.guidance: synthetic``; its leads must
    reach the forecast's."""
    if cfg.synth.guidance_leads < cfg.data.n_out:
        raise UserError(
            f"data.guidance={SYNTHETIC_GUIDANCE} needs synth.guidance_leads >= data.n_out "
            f"({cfg.synth.guidance_leads} < {cfg.data.n_out}); raise synth.guidance_leads"
        )
    return world / "guidance.nc"


def _synth(st: _Stages, cfg: ExperimentConfig, paths: dict, outputs: tuple[Path, ...]) -> None:
    """synth: strike records in the point-record format users bring, plus the oracle."""
    if st.start("synth", f"{cfg.synth.days} days on {cfg.synth.grid}", "synth", outputs=outputs):
        generate_world(cfg.synth, paths["world"], progress=True)
        st.finish("synth", "synth")


def _prep(st: _Stages, cfg: ExperimentConfig, paths: dict, strikes: Path) -> None:
    """prep: records -> CF netCDF maps + window index (the same path real archives take)."""
    if st.start(
        "prep",
        f"grid {strikes.name} on {cfg.prep.grid}",
        "synth",
        "prep",
        "data",
        outputs=(paths["maps"],),
    ):
        # a new world replaces, never appends to, old maps, and a run trained on them is stale
        paths["maps"].unlink(missing_ok=True)
        shutil.rmtree(paths["run"], ignore_errors=True)
        # the world observes every day it simulates, quiet first/last days included
        last = pd.Timestamp(cfg.synth.start) + pd.Timedelta(days=cfg.synth.days - 1)
        prep_cfg = dataclasses.replace(
            cfg.prep,
            start=cfg.prep.start or cfg.synth.start,
            end=cfg.prep.end or f"{last.date()}T23:59",
        )
        print(prep([str(strikes)], paths["maps"], prep_cfg, cfg.data))
        st.finish("prep", "synth", "prep", "data")


def _train(st: _Stages, cfg: ExperimentConfig, paths: dict, best: Path) -> None:
    """train: resumes from run/last.pt when an earlier quickstart of this config was
    interrupted; a run of another config is removed (resuming it would keep its weights under
    the new config)."""
    if st.start("train", f"{cfg.model.cell} on {paths['maps'].name}", *TRAINED, outputs=(best,)):
        resume = st.begin("train", *TRAINED) and (paths["run"] / "last.pt").is_file()
        if not resume:
            shutil.rmtree(paths["run"], ignore_errors=True)
        train(cfg, resume=resume)
        if not (paths["run"] / "calibration.nc").is_file():  # written once training is done
            raise UserError(
                f"training stopped after train.session_steps={cfg.train.session_steps} steps; "
                "run the quickstart again to go on from run/last.pt"
            )
        st.finish("train", *TRAINED)


def _report(scores_path: Path, card: Path, paths: dict, figures: list[Path], st: _Stages) -> None:
    """Print the score table, the verdict and where every output lies."""
    with xr.open_dataset(scores_path) as scores:
        scores = scores.load()
    print()
    print(format_score_table(scores))
    print(verdict(scores))
    print(f"\nscores: {scores_path}\nscorecard: {card}\nforecast: {paths['forecast']}")
    print("figures:\n" + "\n".join(f"  {p}" for p in figures))
    print(st.timing())


def _scored_inits(cfg: ExperimentConfig, maps: Path) -> tuple[str, str]:
    """``START/END`` (ISO 8601 interval) covering the inits of the validation and test windows
    (the test inits are scored, the validation ones choose the CSI threshold), and the last
    test init."""
    with open_maps(maps, lazy=True) as ds:  # the time labels and the index: no counts kept
        index = load_or_build_index(maps, ds, cfg.data)
        times = ds["time"].values
    if index.inits("test").size == 0:
        raise UserError(f"{maps}: the test split has no windows; make synth.days larger")
    inits = np.concatenate(
        [index.inits(split) for split in ("val", "test") if split in index.starts]
    )
    fmt = "%Y-%m-%dT%H:%M"
    last_test = _fmt(times[index.inits("test").max()], fmt)
    return f"{_fmt(times[inits.min()], fmt)}/{_fmt(times[inits.max()], fmt)}", last_test


def _fmt(t, fmt: str) -> str:
    return pd.Timestamp(t).strftime(fmt)


def verdict(scores: xr.Dataset) -> str:
    """One line: does the model beat persistence and climatology on Brier skill score at every lead?"""
    bss = scores["brier_skill_score"]
    methods = list(scores[FORECAST].values)
    if "model" not in methods:
        return "no model in the scores file"
    lines = []
    for ref in ("persistence", "climatology"):
        if ref in methods:
            ahead = bool((bss.sel({FORECAST: "model"}) > bss.sel({FORECAST: ref})).all())
            lines.append(f"{ref}: {'yes' if ahead else 'NO'}")
    return "model ahead on Brier skill score at every lead -> " + ", ".join(lines)
