"""Strike records and gridded maps -> the CF-1.8 maps file and its window index.

``prep`` expands the inputs, skips those already in the archive at ``out`` (matched by file
name, size and modification time; a known name whose file changed is refused), grids each new
input (serially, or in parallel with dask, a large input in pieces: :mod:`data_prep.gridding`;
counts are integers and add up identically in any order; rows of counts wait on disk,
:mod:`data_prep.spill`), and writes
the maps block by block with the accounting in its attributes (:mod:`data_prep.maps_file`: a new
archive atomically, an append in place under an undo journal). Memory is bounded by a block of
steps, not the archive's length. One ``prep`` at a time writes an archive: a second one into the
same ``out`` waits for the lock file ``.<name>.lock`` beside it (up to ``prep.lock_wait``
seconds), then appends to what the first wrote. What the archive holds, and the checks that keep
an append honest, are in :mod:`data_prep.archive`.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.archive import (
    check_archive_path,
    check_whole_days,
    new_inputs,
    open_archive,
    provenance,
    read_provenance,
)
from data_prep.atomic import check_output_path, output_lock
from data_prep.clock import StepClock
from data_prep.config import PrepConfig, SequenceConfig
from data_prep.errors import UserError, quote
from data_prep.feeds import check_feed_options, split_time_unit
from data_prep.grid import Accumulator
from data_prep.gridding import check_some_gridded, grid_all, grid_file  # noqa: F401
from data_prep.journal import roll_back
from data_prep.maps_file import append_in_place, write_new
from data_prep.readers import get_reader
from data_prep.records import ReadOptions, Tally
from data_prep.schema import (
    TIME,
    Grid,
    get_grid,
    parse_time_step,
)
from data_prep.sequences import check_config, index_path, load_or_build_index
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
    added (overlapping steps summed, except days of whole-day formats, which are refused).
    Returns the summary, whose ``str`` is the accounting table.
    """
    out = Path(out)
    check_config(seq)  # fail before gridding, not after writing the maps
    check_feed_options(cfg)
    if not isinstance(cfg.workers, int) or cfg.workers < 1:
        raise UserError(
            f"--workers (prep.workers) {cfg.workers!r} must be a whole number of at least 1; "
            "1 grids serially, e.g. --workers 2 uses 2 processes"
        )
    grid, step = get_grid(cfg.grid), parse_time_step(cfg.time_step)
    files = expand_inputs(inputs)
    check_archive_path(out)
    for target in (out, index_path(out)):  # never over an input, e.g. gridded maps given twice
        check_output_path(target, [("input", f) for f in files])
    formats = {f: get_reader(cfg.format, f)[0] for f in files}  # fail fast on a bad name or file
    # one writer at a time: a second prep into the same archive waits, then appends to it
    with output_lock(out, cfg.lock_wait, "another prep"):
        return _append(files, formats, out, cfg, seq, grid, step, scheduler, columns)


def _append(files, formats, out, cfg, seq, grid, step, scheduler, columns) -> PrepSummary:
    """:func:`prep` once the archive is locked: read its attributes and time axis (an append
    interrupted earlier is rolled back first), grid the new inputs, write their steps."""
    roll_back(out)
    for stale in out.parent.glob(f".{out.name}.rows-*"):  # of a killed prep: we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    old = open_archive(out, grid, step)
    entries, old_tally = read_provenance(old, out)
    fresh = new_inputs(files, entries, out)
    summary = PrepSummary(out, Tally(), grid, cfg.time_step, np.array([], "datetime64[ns]"))
    summary.skipped = [str(f) for f in files if f not in fresh]
    if old is not None and not fresh:
        summary.times = old[TIME].values
        summary.tally = old_tally
        _window_index(out, seq, summary)
        return summary
    clock = make_clock(cfg, step, old)
    opts = read_options(cfg, columns)
    plan = [(f, formats[f]) for f in fresh]
    # rows past spill.SPILL_BYTES wait on disk beside the output, not in memory
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.rows-") as scratch:
        acc, tally, steps = grid_all(
            plan, grid, clock, opts, workers=cfg.workers, scheduler=scheduler, scratch=scratch
        )
        check_whole_days(plan, steps, entries, out, int(step.value))
        attrs = {**provenance(plan, steps, entries, cfg), **old_tally.merge(tally).to_attrs()}
        summary.times = _write(acc, cfg, attrs, out, old is not None)
    summary.tally, summary.inputs = tally, [str(f) for f, _ in plan]
    summary.formats = {
        n: sum(1 for _, m in plan if m == n) for n in dict.fromkeys(m for _, m in plan)
    }
    _window_index(out, seq, summary)
    return summary


def _write(acc: Accumulator, cfg: PrepConfig, attrs: dict, out: Path, append: bool) -> np.ndarray:
    """Write the maps: a new file; an append in place; or, for an append reaching before the
    archive's first step (step 0 of the clock), a new file holding both. Returns the times."""
    frac = cfg.min_granule_fraction
    rng = acc.step_range()
    if not append:
        return write_new(acc, frac, attrs, out)
    if rng is not None and rng[0] < 0:
        return write_new(acc, frac, attrs, out, old=out)
    return append_in_place(acc, frac, attrs, out)


def read_options(cfg: PrepConfig, columns: str | None) -> ReadOptions:
    """What readers need from ``cfg`` and ``--columns`` (``time=ts:ms`` sets the epoch unit)."""
    cols, unit = split_time_unit(parse_columns(columns), cfg.time_unit)
    return ReadOptions(
        cols,
        cfg.chunk_records,
        cfg.variable,
        time_unit=unit,
        timezone=cfg.timezone,
        file_days=cfg.file_days,
        empty_file=cfg.empty_file,
        fov_radius_deg=cfg.glm_fov_radius_deg,
    )


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
            f"{key} {quote(text)} is not a date; use e.g. 2024-02-01 or 2024-02-01T06:00Z"
        ) from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


def _window_index(out: Path, seq: SequenceConfig, summary: PrepSummary) -> None:
    """Build and save the window index beside the maps; too short a record is reported, not
    fatal: the maps are written and useful on their own (e.g. a few GLM granules)."""
    try:
        with xr.open_dataset(out) as ds:  # just written: no need to check its values again
            load_or_build_index(out, ds, seq)
    except UserError as e:
        summary.windows_note = f"window index not built: {e}"
        return
    summary.windows = index_path(out)
