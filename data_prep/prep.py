"""Strike records and gridded maps -> the CF-1.8 maps file and its window index.

``prep`` expands the inputs, skips those already in the archive at ``out`` (matched by file
name, size and modification time), grids each new input on its own (serially, or in parallel
with dask: the per-input counts are integers and add up identically in any order), merges them
with the archive, and writes the result atomically with the accounting in its attributes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import data_prep
from data_prep.config import PrepConfig, SequenceConfig
from data_prep.errors import UserError
from data_prep.grid import Accumulator, StepClock
from data_prep.io import open_maps, write_netcdf_atomic
from data_prep.readers import SlowPath, get_reader
from data_prep.records import Cells, ReadOptions, Records, Span, Tally
from data_prep.schema import (
    CF_CONVENTIONS,
    COORD_ATTRS,
    COUNT,
    COUNT_ATTRS,
    COVERAGE,
    COVERAGE_ATTRS,
    TIME,
    Grid,
    get_grid,
    grid_coords,
    parse_time_step,
)
from data_prep.sequences import index_path, load_or_build_index
from data_prep.tables import parse_columns


@dataclass
class PrepSummary:
    """What ``prep`` did; ``str()`` is the accounting table printed by the CLI."""

    out: Path
    tally: Tally
    grid: Grid
    time_step: str
    times: np.ndarray  # (T,) datetime64[ns] of the whole archive
    inputs: list[str] = field(default_factory=list)  # gridded in this run
    skipped: list[str] = field(default_factory=list)  # already in the archive
    formats: dict[str, int] = field(default_factory=dict)  # reader name -> inputs
    windows: Path | None = None
    windows_note: str = ""

    def __str__(self) -> str:
        fmt = ", ".join(f"{n} x{k}" for n, k in self.formats.items()) or "none"
        span = (
            f"{pd.Timestamp(self.times[0])} .. {pd.Timestamp(self.times[-1])}"
            if self.times.size
            else "-"
        )
        lines = [
            f"prep: {len(self.inputs)} new input(s) ({fmt}), "
            f"{len(self.skipped)} already in the archive",
            f"maps: {self.out}  grid {self.grid.spec()} ({self.grid.nlat} x {self.grid.nlon}), "
            f"step {self.time_step}, {self.times.size} steps {span}",
            self.tally.table(),
        ]
        if self.windows is not None:
            lines.append(f"windows: {self.windows}")
        if self.windows_note:
            lines.append(self.windows_note)
        return "\n".join(lines)


def prep(
    inputs: list[str],
    out: Path,
    cfg: PrepConfig,
    seq: SequenceConfig,
    *,
    scheduler: str | None = None,
    columns: str | None = None,
) -> PrepSummary:
    """Grid ``inputs`` (files or glob patterns) into the maps file ``out``; save its window index.

    An existing ``out`` is appended to: inputs already listed in it are skipped, new ones are
    added (overlapping steps summed). Returns the summary, whose ``str`` is the accounting table.
    """
    out = Path(out)
    grid, step = get_grid(cfg.grid), parse_time_step(cfg.time_step)
    files = expand_inputs(inputs)
    formats = {f: get_reader(cfg.format, f)[0] for f in files}  # fail fast on a bad name or file
    old = _open_archive(out, grid, step)
    entries = json.loads(old.attrs.get("inputs", "[]")) if old is not None else []
    fresh = new_inputs(files, entries, out)
    summary = PrepSummary(out, Tally(), grid, cfg.time_step, np.array([], "datetime64[ns]"))
    summary.skipped = [str(f) for f in files if f not in fresh]
    if old is not None and not fresh:
        summary.times = old[TIME].values
        summary.tally = Tally.from_attrs(old.attrs)
        _window_index(out, old, seq, summary)
        return summary
    clock = make_clock(cfg, step, old)
    opts = ReadOptions(parse_columns(columns), cfg.chunk_records, cfg.variable)
    plan = [(f, formats[f]) for f in fresh]
    acc, tally = grid_all(plan, grid, clock, opts, workers=cfg.workers, scheduler=scheduler)
    ds = build_maps(acc, grid, clock, cfg, old)
    ds.attrs.update(_provenance(plan, tally, old, cfg))
    ds.attrs.update(Tally.from_attrs(old.attrs if old is not None else {}).merge(tally).to_attrs())
    write_netcdf_atomic(ds, out, encoding=maps_encoding(ds))
    summary.tally, summary.inputs, summary.times = tally, [str(f) for f, _ in plan], ds[TIME].values
    summary.formats = {
        n: sum(1 for _, m in plan if m == n) for n in dict.fromkeys(m for _, m in plan)
    }
    _window_index(out, ds, seq, summary)
    return summary


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files named or matched by glob patterns, absolute, each once, in the order given."""
    files: list[Path] = []
    for item in inputs:
        matches = sorted(glob.glob(os.path.expanduser(item))) if glob.has_magic(item) else [item]
        if not matches:
            raise UserError(
                f"input pattern {item!r} matches no file; check the path and quote the glob"
            )
        for m in matches:
            p = Path(m).expanduser().absolute()
            if not p.is_file():
                raise UserError(f"input {m}: file not found; check the path")
            if p not in files:
                files.append(p)
    if not files:
        raise UserError("no input files given; pass files or glob patterns of strike records")
    return files


def make_clock(cfg: PrepConfig, step: pd.Timedelta, old: xr.Dataset | None) -> StepClock:
    """Step numbering: from the archive's first step, else from ``cfg.start``, else 1970-01-01."""
    start = _utc_ns(cfg.start, "prep.start") if cfg.start else None
    end = _utc_ns(cfg.end, "prep.end") if cfg.end else None
    if old is not None:
        origin = int(old[TIME].values[0].astype("datetime64[ns]").view(np.int64))
    else:
        origin = start if start is not None else 0
    probe = StepClock(origin, int(step.value))
    lo = None if start is None else int(probe.index(np.int64(start)))
    hi = None if end is None else int(probe.index(np.int64(end)))
    if lo is not None and hi is not None and hi < lo:
        raise UserError(f"prep.end {cfg.end!r} is before prep.start {cfg.start!r}; swap them")
    return StepClock(origin, int(step.value), lo, hi)


def _utc_ns(text: str, key: str) -> int:
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise UserError(
            f"{key} {text!r} is not a date; use e.g. 2024-02-01 or 2024-02-01T06:00Z"
        ) from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


def grid_file(
    path: Path, fmt: str, grid: Grid, clock: StepClock, opts: ReadOptions
) -> tuple[Accumulator, Tally]:
    """Read and grid one input; a CSV the fast path cannot convert is read again as text."""
    _, reader = get_reader(fmt, path)
    for robust in (False, True):
        acc, tally = Accumulator(grid, clock), Tally()
        acc.full = reader.coverage == "full"
        run_opts = dataclasses.replace(opts, robust=robust)
        try:
            for item in reader.read(path, run_opts, tally):
                if isinstance(item, Records):
                    acc.add(item, tally)
                elif isinstance(item, Span):
                    acc.spans.append((item.t0, item.t1))
                elif isinstance(item, Cells):
                    acc.cover_cells(item.time, item.lat, item.lon)
            return acc, tally
        except SlowPath:
            continue
        except (EOFError, OSError) as e:
            raise UserError(
                f"{path}: cannot read ({str(e).splitlines()[0]}); the file may be truncated"
            ) from None
    raise AssertionError("unreachable")


def grid_all(plan, grid, clock, opts, *, workers: int = 1, scheduler: str | None = None):
    """Grid every (path, format) of ``plan``; serially, or with dask when asked.

    ``scheduler``: None (a local dask cluster of ``workers`` processes when ``workers > 1``),
    ``"threads"`` or ``"sync"`` (dask's in-process schedulers), or a scheduler address.
    """
    if scheduler is None and workers <= 1:
        results = [grid_file(p, f, grid, clock, opts) for p, f in plan]
    else:
        results = _grid_dask(plan, grid, clock, opts, workers, scheduler)
    acc, tally = Accumulator(grid, clock), Tally()
    for a, t in results:
        acc.merge(a)
        tally.merge(t)
    return acc, tally


def _grid_dask(plan, grid, clock, opts, workers, scheduler):
    import dask

    tasks = [dask.delayed(grid_file, pure=False)(p, f, grid, clock, opts) for p, f in plan]
    if scheduler in ("threads", "sync", "synchronous", "processes"):
        return list(dask.compute(*tasks, scheduler=scheduler))
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            return list(client.gather(client.compute(tasks)))
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as lc:
        with Client(lc) as client:
            return list(client.gather(client.compute(tasks)))


# --------------------------------------------------------------------------------------------
# the archive: maps, attributes, fingerprints of inputs


def build_maps(
    acc: Accumulator, grid: Grid, clock: StepClock, cfg: PrepConfig, old: xr.Dataset | None
) -> xr.Dataset:
    """The maps Dataset over all steps of the archive and the new inputs (counts summed)."""
    rng = acc.step_range()
    if old is not None:
        k_old = clock.index(old[TIME].values.astype("datetime64[ns]").view(np.int64))
        ks = [int(k_old[0]), int(k_old[-1])] + (list(rng) if rng else [])
        rng = (min(ks), max(ks))
    if rng is None:
        raise UserError(
            "no strike records inside the grid and time range, and no observed steps: nothing to "
            f"write; check --grid ({grid.spec()}), --start/--end and the inputs"
        )
    k0, k1 = rng
    counts, cov = acc.maps(k0, k1, cfg.min_granule_fraction)
    if old is not None:
        rows = k_old - k0
        counts[rows] += old[COUNT].values
        cov[rows] = np.maximum(cov[rows], old[COVERAGE].values.astype(np.int8))
    if counts.size and counts.max() > np.iinfo(np.int32).max:
        raise UserError(
            f"a cell holds more than {np.iinfo(np.int32).max} strikes in one step; "
            "use a shorter --time-step"
        )
    times = clock.start(np.arange(k0, k1 + 1)).astype("datetime64[ns]")
    coords = {TIME: ((TIME,), times, COORD_ATTRS[TIME]), **grid_coords(grid)}
    dims = (TIME, "lat", "lon")
    return xr.Dataset(
        {
            COUNT: (dims, counts.astype(np.int32), COUNT_ATTRS),
            COVERAGE: (dims, cov.astype(np.int8), COVERAGE_ATTRS),
        },
        coords=coords,
    )


def maps_encoding(ds: xr.Dataset) -> dict:
    """zlib compression, chunks of whole maps a few steps long, integer seconds for time."""
    t, h, w = ds[COUNT].shape
    chunks = (max(1, min(t, 16)), h, w)
    var = {"zlib": True, "complevel": 4, "chunksizes": chunks, "_FillValue": None}
    return {
        COUNT: {**var, "dtype": "int32"},
        COVERAGE: {**var, "dtype": "int8"},
        TIME: {
            "units": "seconds since 1970-01-01 00:00:00",
            "calendar": "proleptic_gregorian",
            "dtype": "int64",
        },
        "lat": {"_FillValue": None},
        "lon": {"_FillValue": None},
    }


def _provenance(plan, tally: Tally, old: xr.Dataset | None, cfg: PrepConfig) -> dict:
    step = parse_time_step(cfg.time_step)
    entries = json.loads(old.attrs.get("inputs", "[]")) if old is not None else []
    listed = {e["path"] for e in entries}
    for path, fmt in plan:
        entry = {"path": str(path), "format": fmt, **_fingerprint(path)}
        entries = [e for e in entries if e["path"] != str(path)] if str(path) in listed else entries
        entries.append(entry)
    readers = sorted({e["format"] for e in entries})
    return {
        "Conventions": CF_CONVENTIONS,
        "title": "gridded lightning strike counts",
        "source": "strikecast data_prep.prep",
        "strikecast_version": data_prep.__version__,
        "grid": get_grid(cfg.grid).spec(),
        "time_step": cfg.time_step,
        "time_step_seconds": int(step.total_seconds()),
        "readers": ",".join(readers),
        "inputs": json.dumps(entries),
        "n_inputs": len(entries),
    }


def _fingerprint(path: Path) -> dict:
    st = Path(path).stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def new_inputs(files: list[Path], entries: list[dict], out: Path) -> list[Path]:
    """The files not yet in the archive. A file is known by name, size and modification time,
    so an archive survives moving its data folder; a known path whose file changed is an error
    (its old strikes are already summed into the maps)."""
    seen = {(Path(e["path"]).name, e.get("size"), e.get("mtime_ns")) for e in entries}
    paths = {e["path"] for e in entries}
    fresh = []
    for f in files:
        fp = _fingerprint(f)
        if (f.name, fp["size"], fp["mtime_ns"]) in seen:
            continue
        if str(f) in paths:
            raise UserError(
                f"{f}: changed since it was gridded into {out}; prep all inputs into a new --out"
            )
        fresh.append(f)
    return fresh


def _open_archive(out: Path, grid: Grid, step: pd.Timedelta) -> xr.Dataset | None:
    """The existing maps file at ``out`` (loaded), or None; it must share grid and step."""
    if not out.exists():
        return None
    ds = open_maps(out)
    have = Grid.from_coords(ds["lat"].values, ds["lon"].values)
    same_grid = have.shape == grid.shape and np.allclose(
        [have.lat_min, have.lon_min, have.res], [grid.lat_min, grid.lon_min, grid.res]
    )
    if not same_grid:
        raise UserError(
            f"{out}: existing maps are on grid {ds.attrs.get('grid', have.spec())}, "
            f"not {grid.spec()}; use another --out"
        )
    if int(ds.attrs.get("time_step_seconds", -1)) != int(step.total_seconds()):
        raise UserError(
            f"{out}: existing maps have time step {ds.attrs.get('time_step')}; "
            "use the same --time-step or another --out"
        )
    return ds


def _window_index(out: Path, ds: xr.Dataset, seq: SequenceConfig, summary: PrepSummary) -> None:
    """Build and save the window index beside the maps; too short a record is reported, not
    fatal: the maps are written and useful on their own (e.g. a few GLM granules)."""
    try:
        load_or_build_index(out, ds, seq)
    except UserError as e:
        summary.windows_note = f"window index not built: {e}"
        return
    summary.windows = index_path(out)
