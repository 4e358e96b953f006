"""Memory and time of the archive pipeline against archive length, run by hand:
``python benchmarks/bench_archive.py`` (hourly conus-0.1, 1 and 3 months, about 10^8 strikes a
year) or ``--quick`` (a few days on conus-0.5, seconds); ``--repo DIR`` measures another checkout's
prep (e.g. the main branch, to compare).

Stages so far: ``prep`` (strike records in daily Parquet files -> the maps file and its window
index). Each stage of each size runs in its own process; the table gives its wall time, its
peak resident memory (``getrusage`` of that process) and the growth of the peak per cell and step
between the smallest and each larger size: flat memory in archive length reads as about 0.
Later stages (training from disk, predict, evaluate) are to come.
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

from data_prep.config import PrepConfig, SequenceConfig
from data_prep.prep import prep
from data_prep.schema import get_grid

DAY_NS = 86400 * 10**9
T0 = np.datetime64("2023-06-01", "ns").astype(np.int64)  # a UTC midnight at the season's start
REPO = Path(__file__).resolve().parents[1]


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


def run_prep(args: dict) -> dict:
    """The prep stage in this process: wall seconds and peak resident MB."""
    t = time.perf_counter()
    cfg = PrepConfig(grid=args["grid"], time_step="1h")
    prep(args["files"], Path(args["out"]), cfg, SequenceConfig())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"wall_s": time.perf_counter() - t, "peak_mb": rss}


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
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="conus-0.1")
    ap.add_argument("--days", default="30,91", help="archive lengths, days (comma-separated)")
    ap.add_argument("--strikes-per-year", type=float, default=1e8)
    ap.add_argument("--quick", action="store_true", help="2 and 6 days of conus-0.5, 10^6/year")
    ap.add_argument(
        "--repo", type=Path, default=REPO, help="checkout whose prep runs (default: this one)"
    )
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: one stage in this process
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage:
        print(json.dumps(run_prep(json.loads(a.args))))
        return
    if a.quick:
        a.grid, a.days, a.strikes_per_year = "conus-0.5", "2,6", 1e6
    cells = get_grid(a.grid).nlat * get_grid(a.grid).nlon
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for days in (int(d) for d in a.days.split(",")):
            folder = Path(tmp) / f"d{days}"
            folder.mkdir()
            files = write_days(folder, days, a.strikes_per_year)
            args = {"grid": a.grid, "files": [str(f) for f in files], "out": str(folder / "m.nc")}
            res = in_process("prep", args, a.repo)
            rows.append((days, days * 24 * cells, res, (folder / "m.nc").stat().st_size))
    print(
        f"prep of {a.repo}, hourly {a.grid} ({cells:,} cells), {a.strikes_per_year:.0e} strikes a year"
    )
    print(
        f"{'days':>6} {'cell-steps':>14} {'wall s':>8} {'peak MB':>9} {'file MB':>9} {'B/cell-step':>12}"
    )
    _, base_cs, base, _ = rows[0]
    for days, cs, res, size in rows:
        growth = (res["peak_mb"] - base["peak_mb"]) * 2**20 / (cs - base_cs) if cs > base_cs else 0
        print(
            f"{days:>6} {cs:>14,} {res['wall_s']:>8.1f} {res['peak_mb']:>9.0f} "
            f"{size / 2**20:>9.1f} {growth:>12.2f}"
        )


if __name__ == "__main__":
    main()
