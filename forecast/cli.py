"""Entry point of the ``strikecast`` console script and of ``python -m forecast``.

Only this module (and :mod:`data_prep.cli`) parses the command line; library functions take config
objects. Bad usage or bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from data_prep import cli as prep_cli
from data_prep.atomic import check_output_path, check_outputs
from data_prep.cli import _Parser, add_config_args, config_input, run_parser
from data_prep.describe import describe_config
from data_prep.errors import UserError
from data_prep.sequences import index_path
from forecast.config import load_experiment
from forecast.evaluation import evaluate_to_files
from forecast.figures import plot_files
from forecast.predict import predict_to_file
from forecast.quickstart import SYNTHETIC_GUIDANCE, quickstart
from forecast.training import recalibrate, train
from forecast.training.distributed import resolve_device, torch_threads


def _experiment(args):
    overrides = list(args.overrides)
    if getattr(args, "guidance", None):  # --guidance FILE is data.guidance=FILE, applied last
        overrides.append(f"data.guidance={args.guidance}")
    return load_experiment(args.config, overrides)


def _run_experiment(args):
    """The experiment of a command that reads its files: ``data.guidance: synthetic`` names a
    file only inside the quickstart."""
    cfg = _experiment(args)
    if cfg.data.guidance == SYNTHETIC_GUIDANCE and not Path(SYNTHETIC_GUIDANCE).exists():
        raise UserError(
            f"data.guidance={SYNTHETIC_GUIDANCE} is the synthetic world's guidance inside "
            "`strikecast quickstart` only; give the file: --guidance WORLD/guidance.nc"
        )
    return cfg


def _add_guidance(p, what: str) -> None:
    p.add_argument(
        "--guidance",
        metavar="FILE",
        help=f"guidance netCDF (NWP or reanalysis fields on the maps' grid, written by "
        f"`strikecast guidance` or `synth`) {what}; sets data.guidance",
    )


def _add_device(p) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    why = "CPU torch threads (0: the usable cores; 1 is often fastest on a shared machine)"
    p.add_argument("--threads", type=int, default=0, help=why)


def _maps_inputs(maps: str | None) -> list[tuple[str, str | Path | None]]:
    """``--maps`` and its window index, inputs no output may replace."""
    return [("--maps", maps), ("window index of --maps", index_path(maps) if maps else None)]


def _parser(sub, name: str, help: str, example: str, description: str | None = None):
    return sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=f"example{'s' if chr(10) in example else ''}:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --------------------------------------------------------------------------------------------
# train


def _add_train(sub) -> None:
    p = _parser(
        sub,
        "train",
        "train the forecaster on prepared maps (GPU when present)",
        "strikecast train --config configs/conus_daily.yaml train.maps=maps.nc train.out=runs/conus",
        "Train encoder -> ConvRNN -> decoder on the windows of a maps file. Writes config.yaml, "
        "best.pt, last.pt, log.csv and TensorBoard events into train.out. With --resume, continues "
        "from last.pt exactly where it stopped.",
    )
    add_config_args(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from train.out/last.pt if present (without it, a train.out that holds "
        "a run is refused)",
    )
    _add_guidance(p, "fed to the model beside past lightning; the checkpoint then needs it")
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    cfg = _run_experiment(args)  # bad config fails before the heavy imports

    run_dir = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"run directory: {run_dir}")
        print(f"wrote: {', '.join(str(p) for p in _run_files(run_dir))}")
    return 0


def _run_files(run_dir: Path) -> list[Path]:
    """What a training run writes, those of it that exist."""
    names = ("best.pt", "last.pt", "calibration.nc", "log.csv", "config.yaml", "tensorboard")
    return [run_dir / n for n in names if (run_dir / n).exists()]


def _add_calibrate(sub) -> None:
    p = _parser(
        sub,
        "calibrate",
        "refit the calibration of a trained model on validation, weights unchanged",
        "strikecast calibrate --config runs/conus/config.yaml train.calibration=isotonic",
        "Refit train.calibration (temperature, platt, isotonic, none) of train.out/best.pt on the "
        "validation windows of train.maps, and rewrite best.pt and calibration.nc; the run's "
        "config.yaml records the new method. Pass the run's own config.yaml: its folder is the "
        "run (unless train.out=... is given), and its model, windows and maps must match best.pt.",
    )
    add_config_args(p)
    _add_guidance(p, "the model was trained with (default: the run's data.guidance)")
    p.set_defaults(run=run_calibrate)


def run_calibrate(args) -> int:
    # the run is the folder of its config.yaml (wherever it was copied), unless train.out is given
    here = Path(args.config).parent if args.config else None
    if here and (here / "best.pt").is_file():
        if not any(o.split("=", 1)[0].strip() == "train.out" for o in args.overrides):
            args.overrides = [*args.overrides, f"train.out={here}"]
    cfg = _run_experiment(args)

    run_dir = recalibrate(cfg)
    if os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(
            f"calibrated ({cfg.train.calibration}): {run_dir / 'best.pt'}, "
            f"{run_dir / 'calibration.nc'}"
        )
    return 0


# --------------------------------------------------------------------------------------------
# predict


def _add_predict(sub) -> None:
    p = _parser(
        sub,
        "predict",
        "forecast strike probability from the latest (or given) window of observed maps",
        "strikecast predict --checkpoint runs/conus/best.pt --maps maps.nc --out forecast.nc\n"
        "  strikecast predict --checkpoint best.pt --maps maps.nc --init 2024-02-01/2024-02-10 --out f.nc",
        "Write probability(init_time, lead_time, lat, lon): init_time is the last observed step, "
        "lead_time the time ahead (CF forecast_period; lead_step counts map steps, 1 = next "
        "step). No ground truth is needed.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train (best.pt)")
    p.add_argument("--maps", required=True, help="observed maps netCDF written by prep")
    p.add_argument(
        "--init",
        help="init time (2024-02-01, 2024-02-01T06) or ISO 8601 interval START/END, e.g. "
        "2024-02-01T06/2024-02-03T18 or 2024-02-01/P3D (default: the latest possible)",
    )
    p.add_argument("--out", required=True, help="output forecast netCDF")
    _add_device(p)
    _add_guidance(p, "a checkpoint trained with guidance needs (refused by one trained without)")
    p.set_defaults(run=run_predict)


def run_predict(args) -> int:
    inputs = [("--checkpoint", args.checkpoint), *_maps_inputs(args.maps)]
    check_output_path(args.out, [*inputs, ("--guidance", args.guidance)])

    with torch_threads(resolve_device(args.device), args.threads):
        path = predict_to_file(
            Path(args.checkpoint),
            Path(args.maps),
            args.init,
            Path(args.out),
            device=args.device,
            guidance=args.guidance or "",
        )
    print(f"forecast: {path}")
    return 0


# --------------------------------------------------------------------------------------------
# evaluate


def _add_evaluate(sub) -> None:
    p = _parser(
        sub,
        "evaluate",
        "score forecasts and baselines on observed maps -> scores netCDF + Markdown scorecard",
        "strikecast evaluate --checkpoint runs/q/best.pt --maps runs/q/maps.nc --out runs/q/scores.nc\n"
        "  strikecast evaluate --forecast nwp.nc --maps maps.nc --out nwp_scores.nc",
    )
    p.add_argument("--maps", required=True, help="observed maps netCDF written by prep")
    p.add_argument("--checkpoint", help="score this trained model (method 'model')")
    p.add_argument(
        "--forecast",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="score a forecast file with probability(init_time, lead_time, lat, lon); repeatable",
    )
    p.add_argument(
        "--out", required=True, help="output scores netCDF (a .md scorecard is written beside it)"
    )
    p.add_argument("--no-baselines", action="store_true", help="do not add the baseline methods")
    _add_device(p)
    _add_guidance(
        p, "for a model trained with guidance (one trained without ignores it, with a warning)"
    )
    add_config_args(p)
    p.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    cfg = _run_experiment(args)
    forecasts: dict[str, Path] = {}
    for item in args.forecast:
        name, _, path = item.rpartition("=")
        name = name or Path(path).stem
        if name in forecasts:
            raise UserError(
                f"--forecast {path}: the name {name!r} is already used by {forecasts[name]}; "
                f"name each file with --forecast NAME={path}"
            )
        forecasts[name] = Path(path)
    _check_evaluate_outputs(args, forecasts)

    with torch_threads(resolve_device(args.device), args.threads):
        scores_path, card_path = evaluate_to_files(
            cfg,
            maps=Path(args.maps),
            out=Path(args.out),
            checkpoint=Path(args.checkpoint) if args.checkpoint else None,
            forecasts=forecasts,
            baselines=not args.no_baselines,
            device=args.device,
        )
    print(card_path.read_text())
    print(f"scores: {scores_path}\nscorecard: {card_path}")
    return 0


def _check_evaluate_outputs(args, forecasts: dict[str, Path]) -> None:
    """The scores file and the .md scorecard beside it replace no input and not each other."""
    out = Path(args.out)
    if out.suffix == ".md":
        raise UserError(
            f"--out {out}: the scorecard is written beside the scores as {out.name}; "
            f"give a .nc path, e.g. {out.with_suffix('.nc')}"
        )
    inputs = [("--checkpoint", args.checkpoint), *_maps_inputs(args.maps), *config_input(args)]
    inputs += [(f"--forecast {name}", path) for name, path in forecasts.items()]
    inputs += [("--guidance", args.guidance)]
    check_outputs([out, out.with_suffix(".md")], inputs)


# --------------------------------------------------------------------------------------------
# plot


def _add_plot(sub) -> None:
    p = _parser(
        sub,
        "plot",
        "draw forecast-vs-observed maps and score diagrams from files on disk",
        "strikecast plot --forecast runs/q/forecast.nc --maps runs/q/maps.nc --scores runs/q/scores.nc --out runs/q/figures",
    )
    p.add_argument(
        "--maps", help="observed maps netCDF (observed-strikes panel and climate figure)"
    )
    p.add_argument("--forecast", help="forecast netCDF written by predict")
    p.add_argument("--scores", help="scores netCDF written by evaluate")
    p.add_argument("--log", help="training log.csv for training curves")
    p.add_argument(
        "--init",
        help="init time to draw, e.g. 2024-02-01T06 (default: the last one in the forecast file)",
    )
    p.add_argument("--out", required=True, help="output directory for PNG figures")
    p.set_defaults(run=run_plot)


def run_plot(args) -> int:
    inputs = [("--maps", args.maps), ("--forecast", args.forecast), ("--scores", args.scores)]
    check_output_path(args.out, [*inputs, ("--log", args.log)], folder=True)

    paths = plot_files(
        out=Path(args.out),
        maps=Path(args.maps) if args.maps else None,
        forecast=Path(args.forecast) if args.forecast else None,
        scores=Path(args.scores) if args.scores else None,
        log=Path(args.log) if args.log else None,
        init=args.init,
    )
    for path in paths:
        print(path)
    return 0


# --------------------------------------------------------------------------------------------
# quickstart


def _add_quickstart(sub) -> None:
    p = _parser(
        sub,
        "quickstart",
        "synth -> prep -> train -> predict -> evaluate -> plot on a small synthetic world",
        "strikecast quickstart --out runs/quickstart",
        "Run the whole pipeline on the embedded synthetic lightning world (about 90 s on 2 idle CPU "
        "cores) and print the scores of the model against persistence, climatology and the oracle.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--config",
        default=None,
        help="YAML config (default: configs/quickstart.yaml of this clone)",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config overrides, applied last"
    )
    p.set_defaults(run=run_quickstart)


def run_quickstart(args) -> int:
    quickstart(Path(args.out), config=args.config, overrides=args.overrides)
    return 0


# --------------------------------------------------------------------------------------------
# config


def _add_config(sub) -> None:
    p = _parser(
        sub,
        "config",
        "print the resolved config: every key, its value, its meaning and its default",
        "strikecast config show --config configs/conus_daily.yaml train.lr=0.001",
        "Print the experiment config that --config and the overrides resolve to, as YAML with "
        "every key of every section; a comment says what each key means and, where the value "
        "differs, its default. Without --config: the defaults.",
    )
    p.add_argument("action", choices=["show"], help="what to do: show")
    add_config_args(p)
    p.set_defaults(run=run_config)


def run_config(args) -> int:
    print(describe_config(_experiment(args)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="strikecast",
        description="Forecast where lightning will strike: strike archives -> gridded maps -> "
        "ConvRNN probability forecasts, scored against baselines.",
        epilog="start here:\n  strikecast quickstart --out runs/quickstart",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prep_cli.add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    prep_cli.add_commands(sub)
    for add in (
        _add_train,
        _add_calibrate,
        _add_predict,
        _add_evaluate,
        _add_plot,
        _add_quickstart,
        _add_config,
    ):
        add(sub)
    prep_cli.add_quiet(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_parser(build_parser(), argv)
