"""One large input on 1 and on N workers, run by hand:
``python benchmarks/bench_workers.py [--points 10000000] [--workers 2] [--format parquet]``.

Writes one time-ordered Parquet (row groups of 2**20 records) or plain CSV file of strikes over
CONUS and grids it with ``grid_all``: serially, and on a local dask cluster of ``--workers``
processes (its start included: it is what ``prep --workers`` pays), which cuts the file into
pieces (:mod:`data_prep.pieces`); and on a cluster already started ("warm": the gridding of
the pieces alone). Rounds are interleaved and each keeps its fastest of ``--repeats``; the load
average is printed before and after, since other jobs on the cores slow the parallel rounds
most. The results are checked to be the same counts and accounting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from bench_prep import points

from data_prep.config import PrepConfig
from data_prep.gridding import _grid_pieces, dask_runner, grid_all
from data_prep.pieces import plan_pieces
from data_prep.prep import make_clock, read_options
from data_prep.schema import get_grid, parse_time_step


def write_file(folder: Path, n: int, fmt: str) -> Path:
    t, lat, lon = points(n)
    table = pa.table({"time": pa.array(t, pa.timestamp("ns", tz="UTC")), "lat": lat, "lon": lon})
    if fmt == "csv":
        pacsv.write_csv(table, folder / "strikes.csv")
        return folder / "strikes.csv"
    pq.write_table(table, folder / "strikes.parquet", row_group_size=1 << 20)
    return folder / "strikes.parquet"


def run(path: Path, fmt: str, workers: int, scratch: str, warm=None) -> tuple[float, tuple]:
    """Seconds to grid ``path`` and what came out; ``warm``: a started cluster's runner."""
    cfg = PrepConfig(grid="conus-0.25", time_step="1h", workers=workers)
    clock = make_clock(cfg, parse_time_step(cfg.time_step), None)
    grid, opts = get_grid(cfg.grid), read_options(cfg, None)
    w = time.perf_counter()
    if warm is None:
        acc, tally, _ = grid_all([(path, fmt)], grid, clock, opts, workers=workers, scratch=scratch)
    else:
        ((acc, tally),) = _grid_pieces([(path, fmt)], grid, clock, opts, warm, scratch)
    wall = time.perf_counter() - w
    k0, k1 = acc.step_range()
    return wall, (tally.to_attrs(), acc.maps(k0, k1, 0.95)[0].sum(axis=(1, 2)).tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=float, default=10e6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    fmt = "points-parquet" if args.format == "parquet" else "points-csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = write_file(Path(tmp), int(args.points), args.format)
        pieces = plan_pieces([(path, fmt)], args.workers)[0]
        print(f"{path.name}: {int(args.points):,} records, {path.stat().st_size / 2**20:.0f} MiB, "
              f"{len(pieces)} pieces on {args.workers} workers")  # fmt: skip
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        best, results, n = {}, {}, args.workers
        rows = (("1", 1, False), (f"{n} cold", n, False), (f"{n} warm", n, True))
        with dask_runner(n, None) as warm:
            for _ in range(args.repeats):
                for label, w, use_warm in rows:
                    wall, results[label] = run(path, fmt, w, tmp, warm if use_warm else None)
                    best[label] = min(best.get(label, np.inf), wall)
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    first = results["1"]
    assert all(r == first for r in results.values()), "the pieces do not add up to the file"
    for label, s in best.items():
        rate = args.points / s / 1e6
        print(f"workers {label}: {s:.2f} s (fastest of {args.repeats}), {rate:.2f} M records/s")
    for label in (f"{n} cold", f"{n} warm"):
        print(f"speed-up {label}: {best['1'] / best[label]:.2f}x")


if __name__ == "__main__":
    main()
