"""Where the guided model's gap to the oracle comes from: variants on the validation split.

Given a finished world and run folder (``strikecast quickstart`` or the pipeline's output:
``maps.nc``, ``world/guidance.nc``, ``world/oracle.nc``, ``run/config.yaml``, ``run/best.pt``),
trains variants of the run's config on the same maps for a fixed number of steps (same seed,
no early stopping, no calibration; the cosine schedule ends at ``--steps``) and scores the
final weights of each on the VALIDATION split only, beside the oracle forecast on the same
inits: per-lead Brier skill score against climatology, its share of the oracle's, ROC AUC.
The test split is never read: these comparisons are choices made from the data.

Variants (``--only`` picks some, by name):

- ``full``: the config as run;
- ``no_guidance``, ``cape_only``, ``tp_only``: data.guidance empty, or a copy of the guidance
  file holding that one field;
- ``exact_guidance``: the world's guidance made again without its errors (every forecast lead
  the truth valid then: no displacement, amplitude error, missed or false systems), the world
  itself unchanged: how much of the gap the guidance's errors make;
- ``data_1/2``, ``data_1/4``: train.train_fraction, every 2nd / 4th training block;
- ``half_width`` (encoder [8, 16], hidden [16, 16]), ``wide`` (encoder [24, 48], hidden [48, 48]);
- ``run_best``: the run's own ``best.pt`` (early stopping, calibrated) scored the same way
  (its epoch was chosen on the validation loss, so its score here is slightly flattering).

Learning curves in steps come free from every run's ``log.csv``: the validation BSS and AUC
(all leads pooled) after each epoch, listed under the table for each variant and for the
world's own run.

Each scored variant leaves ``OUT/VARIANT/result.json``; a variant whose file exists is skipped,
and a training cut short resumes from its ``last.pt``, so the script can be run again until the
table is whole; a failed command stops the script. Prints one table (threads, load average, wall times) and writes it to
``OUT/gap.md`` and every row to ``OUT/gap.json``.

    python benchmarks/bench_guidance_gap.py --world runs/cg --out runs/gap/bench --steps 400
    python benchmarks/bench_guidance_gap.py --world runs/cg --out runs/gap/bench --only full,wide
    python benchmarks/bench_guidance_gap.py --quick --out /tmp/gap_quick  # 2 steps, small world
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from data_prep.atomic import atomic_output
from forecast.training.checkpoint import load_checkpoint

PY = [sys.executable, "-m", "forecast"]
FAILED = threading.Event()  # a command failed: no variant starts another


@dataclass(frozen=True)
class Variant:
    overrides: tuple[str, ...] = ()
    fields: tuple[str, ...] | None = None  # guidance fields; None: the file as is; (): none
    exact: bool = False  # the world's guidance without its errors


VARIANTS = {
    "run_best": Variant(),
    "full": Variant(),
    "no_guidance": Variant(fields=()),
    "cape_only": Variant(fields=("cape",)),
    "tp_only": Variant(fields=("tp",)),
    "exact_guidance": Variant(exact=True),
    "data_1/2": Variant(("train.train_fraction=0.5",)),
    "half_width": Variant(("model.encoder_channels=[8,16]", "model.hidden_channels=[16,16]")),
    "data_1/4": Variant(("train.train_fraction=0.25",)),
    "wide": Variant(("model.encoder_channels=[24,48]", "model.hidden_channels=[48,48]")),
}


@dataclass(frozen=True)
class Setup:
    world: Path  # the finished world / run folder
    out: Path
    steps: int
    threads: int


def guidance_for(setup: Setup, v: Variant) -> str:
    """The guidance file of a variant: the world's, none, or a copy holding some fields."""
    source = setup.world / "world" / "guidance.nc"
    if v.exact:
        return str(exact_guidance(setup.world / "world", setup.out / "guidance_exact.nc"))
    if v.fields is None:
        return str(source)
    if not v.fields:
        return ""
    path = setup.out / f"guidance_{'_'.join(v.fields)}.nc"
    if not path.exists():
        with xr.open_dataset(source) as g, atomic_output(path) as tmp:
            g[list(v.fields)].to_netcdf(tmp)
    return str(path)


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd``, its output appended to ``log``; seconds taken. Stops the script on failure."""
    if FAILED.is_set():
        raise SystemExit("stopped: another command failed")
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        FAILED.set()
        raise SystemExit(f"{cmd[3]} failed ({done.returncode}); see {log}")
    return time.perf_counter() - t0


def train_to(setup: Setup, vdir: Path, v: Variant, guidance: str) -> float:
    """Train (or resume) the variant's run to ``setup.steps`` steps; seconds taken."""
    run_dir, maps = vdir / "run", vdir / "maps.nc"
    last = run_dir / "last.pt"
    done = int(load_checkpoint(last)["state"]["step"]) if last.exists() else 0
    args = [
        *("--config", str(setup.world / "run" / "config.yaml"), "--resume", "-q"),
        f"train.maps={maps}",
        f"train.out={run_dir}",
        f"data.guidance={guidance}",
        f"train.max_steps={setup.steps}",
        *("train.seed=0", "train.patience=0", "train.calibration=none", "train.num_workers=0"),
        *("train.progress=false", f"train.threads={setup.threads}", "train.checkpoint_every=0"),
        *v.overrides,
    ]
    return run([*PY, "train", *args], vdir / "log.txt") if done < setup.steps else 0.0


def score(setup: Setup, vdir: Path, ckpt: Path, config: Path, guidance: str) -> dict:
    """Per-lead BSS and AUC of ``ckpt`` and of the oracle on the validation inits."""
    out = vdir / f"{ckpt.stem}_scores.nc"
    oracle = setup.world / "world" / "oracle.nc"
    cmd = [
        *PY,
        "evaluate",
        *("--maps", str(vdir / "maps.nc"), "--checkpoint", str(ckpt), "--out", str(out)),
        *("--forecast", f"oracle={oracle}", "--no-baselines", "--config", str(config)),
        *("--threads", str(setup.threads), "-q", "eval.split=val", "eval.bootstrap=0"),
        "eval.neighbourhoods=[1]",  # the neighbourhood scores are not read here
        *(["--guidance", guidance] if guidance else []),
    ]
    seconds = run(cmd, vdir / "log.txt")
    with xr.open_dataset(out) as s:
        methods = list(s["forecast"].values)
        model = "model_uncalibrated" if "model_uncalibrated" in methods else "model"
        row = {
            k: s[var].sel(forecast=m).values.round(4).tolist()
            for k, var, m in [
                ("bss", "brier_skill_score", model),
                ("auc", "roc_auc", model),
                ("oracle_bss", "brier_skill_score", "oracle"),
                ("oracle_auc", "roc_auc", "oracle"),
            ]
        }
        row["n_cases"] = int(s["n_cases"].sel(forecast=model).values[0])  # cells x inits
    row["share"] = (np.array(row["bss"]) / np.array(row["oracle_bss"])).round(3).tolist()
    return {**row, "eval_s": round(seconds, 1), "scored": model}


def exact_guidance(world: Path, path: Path) -> Path:
    """The guidance of the world in ``world`` made again with every error set to 0 (the world's
    run is the same: its config and seed); checked against the file's analyses, which carry no
    error."""
    if path.exists():
        return path
    from data_prep.config import SynthConfig, from_dict
    from data_prep.synthetic.world import hidden_state, write_guidance

    data = json.loads((world / "world.json").read_text())["config"]
    errors = ("displacement_deg", "amplitude_sd", "miss", "false")
    cfg = from_dict(SynthConfig, {**data, **{f"guidance_{e}": 0.0 for e in errors}}, "synth.")
    s, run, _ = hidden_state(cfg)
    write_guidance(s, run, path)
    worst = 0.0  # largest difference of the analyses relative to the field's largest value
    with xr.open_dataset(path) as new, xr.open_dataset(world / "guidance.nc") as old:
        for f in old.data_vars:
            a, b = (g[f].isel(lead_time=0).values for g in (new, old))
            if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
                worst = np.inf
                break
            worst = max(worst, float(np.nanmax(np.abs(a - b)) / max(np.nanmax(np.abs(b)), 1e-30)))
    print(f"exact guidance: analyses within {worst:.2g} of the file's (relative)", file=sys.stderr)
    if worst > 1e-5:  # sums in another order differ in the last bits, another world by far more
        path.unlink()
        raise SystemExit(f"exact guidance: its analyses differ from {world}'s; another world?")
    return path


def run_variant(setup: Setup, name: str) -> dict | None:
    """Train and score one variant (skipping what is done); its row, or None while another
    run of this script works on it."""
    vdir = setup.out / name.replace("/", "-")
    vdir.mkdir(parents=True, exist_ok=True)
    busy = vdir / "busy.pid"
    try:
        fd = os.open(busy, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if _alive(int(busy.read_text() or 0)):
            return None
        busy.unlink()  # left by a killed run
        return run_variant(setup, name)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        return _variant(setup, name, vdir)
    finally:
        busy.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid > 0


def _variant(setup: Setup, name: str, vdir: Path) -> dict:
    v = VARIANTS[name]
    if not (vdir / "maps.nc").exists():  # a private copy: its window index is built beside it
        shutil.copy2(setup.world / "maps.nc", vdir / "maps.nc")
    if name == "run_best":
        return _run_best(setup, vdir)
    result = vdir / "result.json"
    if not result.exists():
        guidance = guidance_for(setup, v)
        load = os.getloadavg()[0]
        train_s = train_to(setup, vdir, v, guidance)
        row = score(setup, vdir, vdir / "run" / "last.pt", vdir / "run" / "config.yaml", guidance)
        row.update(steps=setup.steps, train_s=round(train_s, 1), threads=setup.threads)
        row["load"] = round((load + os.getloadavg()[0]) / 2, 2)
        row["curve"] = val_curve(vdir / "run" / "log.csv")
        _write_json(result, {"variant": name, **row})
    return json.loads(result.read_text())


def val_curve(log_csv: Path) -> list[list[float]]:
    """[step, validation BSS, validation AUC] after each validation of a run (all leads)."""
    with open(log_csv) as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_bss")]
    return [[int(r["step"]), float(r["val_bss"]), float(r["val_auc"])] for r in rows]


def _run_best(setup: Setup, vdir: Path) -> dict:
    """The world's own run (``run/best.pt``) scored on the validation inits."""
    result = vdir / "result.json"
    if not result.exists():
        load = os.getloadavg()[0]
        ckpt = setup.world / "run" / "best.pt"
        config = setup.world / "run" / "config.yaml"
        row = score(setup, vdir, ckpt, config, str(setup.world / "world" / "guidance.nc"))
        trained = load_checkpoint(ckpt).get("trained", {})
        row.update(steps=int(trained.get("step", -1)), train_s=None, threads=setup.threads)
        row["load"] = round((load + os.getloadavg()[0]) / 2, 2)
        row["curve"] = val_curve(setup.world / "run" / "log.csv")
        _write_json(result, {"variant": "run_best", **row})
    return json.loads(result.read_text())


def _write_json(path: Path, obj) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))


def table(rows: list[dict]) -> str:
    """One line per scored checkpoint, the oracle's scores on the same inits first; then the
    validation after each epoch of every run."""
    leads = ("+1", "+2", "+3")
    head = ["variant", "steps", *(f"BSS{k}" for k in leads), *(f"share{k}" for k in leads)]
    head += [*(f"AUC{k}" for k in leads), "train_s", "eval_s", "thr", "load"]
    cells = [head]
    if rows:
        o = rows[0]
        cells.append(["oracle", "", *_f(o["oracle_bss"]), "", "", "", *_f(o["oracle_auc"])])
    for r in rows:
        train_s = "" if r["train_s"] is None else f"{r['train_s']:.0f}"
        cells.append(
            [r["variant"], str(r["steps"]), *_f(r["bss"]), *_f(r["share"]), *_f(r["auc"])]
            + [train_s, f"{r['eval_s']:.0f}", str(r["threads"]), f"{r['load']:.1f}"]
        )
    lines = [f"{c[0]:<12}" + "".join(f"{x:>8}" for x in c[1:]) for c in cells]
    lines.append("\nvalidation after each epoch, all leads pooled: step BSS AUC")
    for r in rows:
        points = "  ".join(f"{s} {b:.3f} {a:.3f}" for s, b, a in r.get("curve", []))
        lines.append(f"{r['variant']:<12} {points}")
    return "\n".join(lines)


def _f(xs) -> list[str]:
    return [f"{x:.3f}" for x in xs]


def quick_world(out: Path) -> Path:
    """A small finished world (the guidance quickstart on 400 days, 20 training steps), made
    once under ``out``."""
    world = out / "quickworld"
    if not (world / "run" / "best.pt").exists():
        cfg = Path(__file__).resolve().parents[1] / "configs" / "quickstart_guidance.yaml"
        out.mkdir(parents=True, exist_ok=True)
        small = [
            "synth.days=400",
            "train.max_steps=20",
            "eval.bootstrap=10",
        ]  # seconds, not minutes
        run(
            [*PY, "quickstart", "--out", str(world), "--config", str(cfg), "-q", *small],
            out / "log.txt",
        )
    return world


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", type=Path, help="finished world and run folder (e.g. runs/cg)")
    p.add_argument("--out", type=Path, required=True, help="results folder (resumed)")
    p.add_argument("--steps", type=int, default=400, help="training steps of every variant")
    p.add_argument("--only", default="", help="comma-separated variants (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    p.add_argument("--threads", type=int, default=0, help="torch threads each (0: 2 / jobs)")
    p.add_argument("--quick", action="store_true", help="2 steps on a small quickstart world")
    a = p.parse_args(argv)
    names = [n for n in a.only.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not (a.world or a.quick):
        p.error(f"unknown variants {unknown}" if unknown else "give --world or --quick")
    world = quick_world(a.out) if a.quick else a.world
    threads = a.threads or max(1, 2 // a.jobs)
    setup = Setup(world.resolve(), a.out.resolve(), 2 if a.quick else a.steps, threads)
    print(f"world {setup.world}, {setup.steps} steps, {a.jobs} job(s) x {threads} thread(s), "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)  # fmt: skip
    with ThreadPoolExecutor(a.jobs) as pool:
        futures = [pool.submit(run_variant, setup, n) for n in names]
        try:
            rows = [r for f in futures if (r := f.result()) is not None]
        except BaseException:  # a failed variant stops the others, not only the table
            pool.shutdown(cancel_futures=True)
            raise
    text = table(rows)
    print(text)
    with atomic_output(setup.out / "gap.md") as tmp:
        Path(tmp).write_text(text + "\n")
    _write_json(setup.out / "gap.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
