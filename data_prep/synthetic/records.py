"""Detected strike counts -> point records, the same Parquet users bring (one row per stroke).

Each detected strike gets a time uniform within its internal step, a position uniform within its
cell plus the network's Gaussian location error, a stroke type and a signed peak current.
Strikes that the location error carries outside the domain are dropped, as a network's product
cut to a region would; the oracle accounts for that loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.atomic import atomic_output
from data_prep.synthetic.dynamics import Setting
from data_prep.synthetic.oracle import KM_PER_DEGREE
from data_prep.synthetic.simulate import Run

SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("ns", tz="UTC")),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("stroke_type", pa.string()),
        ("peak_current_kA", pa.float32()),
    ]
)


def strike_records(rng: np.random.Generator, s: Setting, run: Run) -> pa.Table:
    """One row per detected strike of ``run``, sorted by time, in :data:`SCHEMA`."""
    g, cfg = s.grid, s.cfg
    step, cell = np.repeat(run.step, run.count), np.repeat(run.cell, run.count)
    i, j = np.divmod(cell, g.nlon)
    u = rng.random((3, len(step)))
    lat = g.lat_min + (i + u[0]) * g.res
    lon = g.lon_min + (j + u[1]) * g.res
    if cfg.location_error_km > 0:
        e = rng.standard_normal((2, len(step))) * (cfg.location_error_km / KM_PER_DEGREE)
        lat, lon = lat + e[0], lon + e[1] / np.cos(np.deg2rad(lat))
    step_ns = np.int64(cfg.step_hours * 3_600_000_000_000)
    t_ns = s.start.value + step * step_ns + (u[2] * step_ns).astype(np.int64)
    inside = g.cell_index(lat, lon)[2]
    order = np.flatnonzero(inside)[np.argsort(t_ns[inside], kind="stable")]
    cg = rng.random(len(order)) < cfg.cg_fraction
    return pa.table(
        {
            "time": pa.array(t_ns[order], pa.timestamp("ns", tz="UTC")),
            "lat": lat[order],
            "lon": lon[order],
            "stroke_type": pa.array(["IC", "CG"]).take(pa.array(cg.astype(np.int8))),
            "peak_current_kA": peak_currents(rng, cg),
        },
        schema=SCHEMA,
    )


def peak_currents(rng: np.random.Generator, cg: np.ndarray) -> np.ndarray:
    """Signed peak currents (kA), float32: CG mostly negative (~90 %, median ~18 kA), positive CG
    stronger (median ~25 kA); intra-cloud weak (median ~7 kA), mostly positive, as NLDN reports."""
    n = len(cg)
    z = rng.standard_normal(n)
    positive = np.where(cg, rng.random(n) < 0.1, rng.random(n) < 0.65)
    median = np.where(cg, np.where(positive, 25.0, 18.0), 7.0)
    spread = np.where(cg & positive, 0.7, 0.55)
    mag = np.clip(median * np.exp(spread * z), 2.0, 400.0)
    return np.where(positive, mag, -mag).astype(np.float32)


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1_000_000)
    return Path(path)
