"""Memory and time of the archive pipeline against archive length, run by hand:
``python benchmarks/bench_archive.py`` (hourly conus-0.1, 1 and 3 months, about 10^8 strikes a
year; ``--days 30,91,365`` adds a year) or ``--quick`` (days of conus-0.5, a minute);
``--repo DIR`` measures another checkout (e.g. the main branch, to compare).

Stages, each of each size in its own process. Of each: its wall time; the process's own peak
resident memory (``VmHWM``, :mod:`peak_memory`: ``getrusage`` would report this script's peak
for a smaller stage); the peak sum of proportional set sizes over the stage and its loader
workers, sampled every 0.5 s (each shared page counted once: the memory the stage holds); and
for training the largest loader worker's resident size (shared pages included):

- ``prep``: strike records in daily Parquet files -> the maps file and its window index;
- ``train``: 20 steps, batch 2, maps read from disk by 2 loader workers (``train.lazy_maps``),
  with ``configs/conus_hourly.yaml``'s windows and model; the climatology and count scale fitted
  first on every training step, and at the end validation and the calibration fit (two passes
  over the validation windows, which grow with the archive);
- ``predict``: forecasts of the last ``--span-days`` (default 30, a month) of inits, written;
- ``evaluate``: the model and the baselines scored on the same span (a maps file of that span,
  ``eval.split=all``; its climatology baseline is fitted on the span).

The table gives each stage's wall time, peaks, and the growth from the smallest size of its
larger peak (own or tree):
flat memory in archive length reads as about 0 %. The last lines extrapolate each stage's peak
and wall time linearly in days to ten years.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from peak_memory import TreePeak, own_peak_mb

from data_prep.config import PrepConfig, SequenceConfig
from data_prep.schema import get_grid

DAY_NS = 86400 * 10**9
T0 = np.datetime64("2023-06-01", "ns").astype(np.int64)  # a UTC midnight at the season's start
REPO = Path(__file__).resolve().parents[1]
# windows (8 h in, 6 h out, weekly blocks) and model of every stage
CONFIG = str(REPO / "configs" / "conus_hourly.yaml")
STAGES = ("prep", "train", "predict", "evaluate")
TEN_YEARS = 3652


def write_days(folder: Path, days: int, per_year: float, seed: int = 0) -> list[Path]:
    """One Parquet file of point strikes per day (time-sorted, uniform over CONUS)."""
    rng = np.random.default_rng(seed)
    n = int(per_year / 365.25)
    files = []
    for d in range(days):
        t = np.sort(rng.integers(T0 + d * DAY_NS, T0 + (d + 1) * DAY_NS, n))
        table = pa.table(
            {
                "time": pa.array(t.astype("datetime64[ns]"), pa.timestamp("ns", tz="UTC")),
                "lat": rng.uniform(24.0, 50.0, n),
                "lon": rng.uniform(-125.0, -66.0, n),
            }
        )
        path = folder / f"strikes-{d:04d}.parquet"
        pq.write_table(table, path)
        files.append(path)
    return files


def data_config(block_steps: int) -> SequenceConfig:
    """The windows of ``CONFIG`` (``block_steps`` shorter for ``--quick``)."""
    from forecast.config import load_experiment

    return load_experiment(CONFIG, [f"data.block_steps={block_steps}"]).data


def overrides(args: dict) -> list[str]:
    """The experiment settings of the train and evaluate stages, over ``CONFIG``."""
    return [
        f"prep.grid={args['grid']}",
        f"data.block_steps={args['block_steps']}",
        f"train.maps={args['maps']}",
        f"train.out={args['run']}",
        f"train.max_steps={args['steps']}",
        "train.batch_size=2",
        "train.num_workers=2",
        "train.lazy_maps=true",
        "train.device=cpu",
        "train.progress=false",
        "eval.split=all",
        "eval.bootstrap=20",
    ]


def run_stage(stage: str, args: dict) -> dict:
    """``stage`` in this process: wall seconds and peak MB (:mod:`peak_memory`): this process's
    own, the PSS sum over it and its loader workers, and the largest worker's resident size."""
    t = time.perf_counter()
    with TreePeak() as tree:
        stage_work(stage, args)
    return {
        "wall_s": time.perf_counter() - t,
        "peak_mb": own_peak_mb(),
        "tree_mb": tree.peak_mb,
        "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def stage_work(stage: str, args: dict) -> None:
    """The work of ``stage``."""
    if stage == "prep":
        from data_prep.prep import prep

        cfg = PrepConfig(grid=args["grid"], time_step="1h")
        prep(args["files"], Path(args["maps"]), cfg, data_config(args["block_steps"]))
    elif stage == "train":
        from forecast.config import load_experiment
        from forecast.training import train

        train(load_experiment(CONFIG, overrides(args)))
    elif stage == "predict":
        from forecast.predict import predict_to_file

        run = Path(args["run"])
        predict_to_file(run / "best.pt", Path(args["maps"]), args["init"], run / "pred.nc", "cpu")
    else:
        from forecast.config import load_experiment
        from forecast.evaluation.files import evaluate_to_files

        run = Path(args["run"])
        evaluate_to_files(
            load_experiment(CONFIG, overrides(args)),
            maps=Path(args["span"]),
            out=run / "scores.nc",
            checkpoint=run / "best.pt",
            forecasts={},
            baselines=True,
            device="cpu",
        )


def cut_span(maps: Path, out: Path, span_steps: int, n_in: int) -> str:
    """The last ``span_steps`` steps of ``maps`` (and the ``n_in - 1`` before them) as maps file
    ``out``; returns the init interval of that span, ``START/END``."""
    import xarray as xr

    with xr.open_dataset(maps) as ds:
        n = ds.sizes["time"]
        first = max(n - span_steps - (n_in - 1), 0)
        ds.isel(time=slice(first, n)).to_netcdf(out)
        times = ds["time"].values
    start = times[max(n - span_steps, n_in - 1)]
    return f"{np.datetime_as_string(start, 'm')}/{np.datetime_as_string(times[-1], 'm')}"


def in_process(stage: str, args: dict, repo: Path) -> dict:
    """Run ``stage`` in a fresh interpreter importing the packages of ``repo``, so each peak
    is that stage's own."""
    cmd = [sys.executable, __file__, "--stage", stage, json.dumps(args)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{stage} failed:\n{done.stderr[-2000:]}")
    res = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"{stage} of {args['maps']}: {res['wall_s']:.1f} s, own {res['peak_mb']:.0f} MB, "
        f"tree PSS {res['tree_mb'] or 0:.0f} MB",
        file=sys.stderr,
    )
    return res


def measure(a, days: int, folder: Path) -> dict[str, dict]:
    """Every stage of one archive length, each in its own process."""
    files = write_days(folder, days, a.strikes_per_year)
    args = {
        "grid": a.grid,
        "block_steps": a.block_steps,
        "steps": a.steps,
        "maps": str(folder / "maps.nc"),
        "run": str(folder / "run"),
        "span": str(folder / "span.nc"),
        "files": [str(f) for f in files],
    }
    out = {"prep": in_process("prep", args, a.repo)}
    for f in files:
        f.unlink()
    args["files"] = []
    if "train" in a.stages:
        out["train"] = in_process("train", args, a.repo)
    if {"predict", "evaluate"} & set(a.stages):
        span = min(a.span_days, days) * 24
        n_in = data_config(a.block_steps).n_in
        args["init"] = cut_span(Path(args["maps"]), Path(args["span"]), span, n_in)
    for stage in ("predict", "evaluate"):
        if stage in a.stages:
            out[stage] = in_process(stage, args, a.repo)
    out["prep"]["file_mb"] = Path(args["maps"]).stat().st_size / 2**20
    return out


def held_mb(r: dict) -> float:
    """A stage's memory: the larger of its own peak and its tree's PSS peak."""
    return max(r["peak_mb"], r.get("tree_mb") or 0.0)


def table(rows: dict[int, dict[str, dict]]) -> list[str]:
    """One line per stage and size (the growth of its held memory from the smallest size),
    then the extrapolation to ten years."""
    sizes = sorted(rows)
    lines = [
        f"{'stage':<9} {'days':>5} {'wall s':>8} {'own MB':>7} {'tree PSS MB':>11} "
        f"{'worker RSS MB':>13} {'growth':>7}"
    ]
    stages = [st for st in STAGES if st in rows[sizes[0]]]
    for stage in stages:
        base = held_mb(rows[sizes[0]][stage])
        for days in sizes:
            r = rows[days][stage]
            tree = f"{r['tree_mb']:>11.0f}" if r.get("tree_mb") is not None else f"{'-':>11}"
            workers = f"{r['child_mb']:>13.0f}" if stage == "train" else f"{'':>13}"
            growth = 100 * (held_mb(r) - base) / base
            lines.append(
                f"{stage:<9} {days:>5} {r['wall_s']:>8.1f} {r['peak_mb']:>7.0f} {tree} {workers} "
                f"{growth:>+6.1f}%"
            )
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        lines.append(
            f"ten years ({TEN_YEARS} days), linear in days through {lo} and {hi} days "
            "(a fall read as flat):"
        )
        for stage in stages:
            a, b = rows[lo][stage], rows[hi][stage]
            peak, wall = (
                fa + max(fb - fa, 0.0) * (TEN_YEARS - lo) / (hi - lo)
                for fa, fb in ((held_mb(a), held_mb(b)), (a["wall_s"], b["wall_s"]))
            )
            lines.append(f"  {stage:<9} held {peak:>7.0f} MB, wall {wall:>8.0f} s")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="conus-0.1")
    ap.add_argument("--days", default="30,91", help="archive lengths, days (comma-separated)")
    ap.add_argument("--span-days", type=int, default=30, help="days of inits predicted and scored")
    ap.add_argument("--strikes-per-year", type=float, default=1e8)
    ap.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="stages to measure after prep, which always runs (e.g. prep,train)",
    )
    ap.add_argument("--quick", action="store_true", help="9 and 18 days of conus-0.5, 10^6/year")
    ap.add_argument(
        "--repo", type=Path, default=REPO, help="checkout whose stages run (default: this one)"
    )
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: one stage in this process
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage:
        print(json.dumps(run_stage(a.stage, json.loads(a.args))))
        return
    a.block_steps, a.steps = 168, 20
    a.stages = [st for st in STAGES if st in a.stages.split(",")]
    if a.quick:
        a.grid, a.days, a.strikes_per_year = "conus-0.5", "9,18", 1e6
        a.span_days, a.block_steps, a.steps = 1, 24, 2
    grid = get_grid(a.grid)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for days in sorted(int(d) for d in a.days.split(",")):
            folder = Path(tmp) / f"d{days}"
            folder.mkdir()
            rows[days] = measure(a, days, folder)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    spanned = " and ".join(st for st in ("predict", "evaluate") if st in a.stages)
    print(
        f"archive pipeline of {a.repo}, hourly {a.grid} ({grid.nlat} x {grid.nlon} cells), "
        f"{a.strikes_per_year:.0e} strikes a year; stages {','.join(dict.fromkeys(['prep', *a.stages]))}; "
        + (f"train {a.steps} steps, batch 2, 2 workers; " if "train" in a.stages else "")
        + (f"{spanned} {a.span_days} days; " if spanned else "")
        + f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load} at the end"
    )
    print("\n".join(table(rows)))
    print("maps file MB: " + ", ".join(f"{d} days {rows[d]['prep']['file_mb']:.0f}" for d in rows))


if __name__ == "__main__":
    main()
