"""The maps archive's record of its inputs: which files it holds (name, size, modification
time, zone, the days of whole-day inputs), the accounting of their records, and the checks that
keep an append honest (a changed file, a day given twice, another grid or step).

Point feeds may be split anywhere in time, so their overlapping steps are summed. Records of
whole-day formats (``WHOLE_DAY``: NLDN tiles, one total per tile and day) are not: an input with
strikes on days that another whole-day input of the archive or of the run already gave is
refused, since each such tile-day would count twice. The archive lists the days of each such
input (``steps`` of its entry in the ``inputs`` attribute).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import data_prep
from data_prep.config import PrepConfig
from data_prep.errors import UserError, quote
from data_prep.journal import check_no_journal
from data_prep.records import Tally, first_line
from data_prep.schema import CF_CONVENTIONS, LAT, LON, TIME, Grid, get_grid, parse_time_step

WHOLE_DAY = ("nldn-tiles",)  # formats of whole-day totals: a day given twice would count twice


def provenance(plan, steps, entries: list[dict], cfg: PrepConfig) -> dict:
    step = parse_time_step(cfg.time_step)
    listed = {e["path"] for e in entries}
    for (path, fmt), times in zip(plan, steps, strict=True):
        entry = {"path": str(path), "format": fmt, **_fingerprint(path)}
        entry["timezone"] = cfg.timezone or "UTC"  # of the input's naive times
        if fmt in WHOLE_DAY:
            entry["steps"] = _runs(times, int(step.value))
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


_DAMAGED = "the archive's provenance is damaged: prep all its inputs into a new --out"


def read_provenance(ds: xr.Dataset | None, out: Path) -> tuple[list[dict], Tally]:
    """The ``inputs`` entries and the accounting stored in the attributes of the archive ``ds``
    at ``out`` (none and an empty tally for a new archive); malformed ones raise
    :class:`UserError` naming ``out`` and the attribute."""
    if ds is None:
        return [], Tally()
    text = ds.attrs.get("inputs", "[]")
    try:
        entries = json.loads(text)
    except (ValueError, TypeError):
        raise UserError(
            f"{out}: attribute 'inputs' is not JSON ({quote(text)}); {_DAMAGED}"
        ) from None
    if not isinstance(entries, list) or not all(map(_valid_entry, entries)):
        raise UserError(
            f"{out}: attribute 'inputs' ({quote(text)}) is not a list of input entries "
            f"(path, format, size, mtime_ns, steps); {_DAMAGED}"
        )
    try:
        tally = Tally.from_attrs(ds.attrs)
    except (ValueError, TypeError):
        raise UserError(
            f"{out}: the accounting attributes (records_read, strikes_gridded, ...) are not all "
            f"whole numbers; {_DAMAGED}"
        ) from None
    return entries, tally


def _valid_entry(entry) -> bool:
    """One ``inputs`` entry as :func:`provenance` writes it."""
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(k), str) for k in ("path", "format")
    ):
        return False
    if not all(type(entry.get(k, 0)) is int for k in ("size", "mtime_ns")):
        return False
    runs = entry.get("steps", [])
    try:
        return isinstance(runs, list) and all(_ns(a) <= _ns(b) for a, b in runs)
    except (ValueError, TypeError):
        return False


def _fingerprint(path: Path) -> dict:
    st = Path(path).stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def new_inputs(files: list[Path], entries: list[dict], out: Path) -> list[Path]:
    """The files not yet in the archive. A file is known by name, size and modification time,
    so an archive survives moving its data folder; a known name whose size or modification
    time differs is an error (the strikes of the file by that name are already in the maps)."""
    seen = {(Path(e["path"]).name, e.get("size"), e.get("mtime_ns")) for e in entries}
    names = {Path(e["path"]).name for e in entries}
    fresh = []
    for f in files:
        fp = _fingerprint(f)
        if (f.name, fp["size"], fp["mtime_ns"]) in seen:
            continue
        if f.name in names:
            raise UserError(
                f"{f}: changed since it was gridded into {out} (a file named {f.name} with "
                "another size or modification time is in it); its old strikes are in the maps: "
                "prep all inputs into a new --out, or rename the file if it is another input"
            )
        fresh.append(f)
    return fresh


def check_whole_days(plan, steps, entries: list[dict], out: Path, step_ns: int) -> None:
    """Refuse an input of a whole-day format (``WHOLE_DAY``) with strikes on steps that another
    whole-day input already gave, in the archive (``entries``) or earlier in ``plan``: summed,
    each such tile-day would count twice. ``steps``: per input of ``plan``, as from grid_all."""
    seen = [
        (f"{Path(e['path']).name} in {out}", _unruns(e["steps"], step_ns))
        for e in entries
        if e.get("format") in WHOLE_DAY and "steps" in e
    ]
    for (path, fmt), times in zip(plan, steps, strict=True):
        if fmt not in WHOLE_DAY:
            continue
        for where, other in seen:
            both = np.intersect1d(times, other)
            if both.size:
                raise UserError(
                    f"{path}: strikes on {_dates(both)} are already gridded from {where}; "
                    f"{fmt} are whole-day totals, so those days would count twice: leave them "
                    "out of one of the files, or prep this file into a new --out"
                )
        seen.append((f"{path.name}, also given", times))


def _runs(times: np.ndarray, step_ns: int) -> list[list[str]]:
    """Sorted step start times -> ``[[first, last], ...]`` of runs of consecutive steps."""
    if not times.size:
        return []
    t = times.astype("datetime64[ns]").view(np.int64)
    cut = np.flatnonzero(np.diff(t) != step_ns) + 1
    first, last = np.r_[0, cut], np.r_[cut, t.size] - 1
    text = np.datetime_as_string(times.astype("datetime64[ns]"), unit="auto")  # lossless
    return [[str(text[a]), str(text[b])] for a, b in zip(first, last, strict=True)]


def _unruns(runs: list, step_ns: int) -> np.ndarray:
    """Inverse of :func:`_runs`: the step start times, datetime64[ns]."""
    ns = [np.arange(_ns(a), _ns(b) + 1, step_ns, dtype=np.int64) for a, b in runs]
    return np.concatenate([np.zeros(0, np.int64), *ns]).view("datetime64[ns]")


def _ns(text: str) -> int:
    return int(np.datetime64(text, "ns").view(np.int64))


def _dates(times: np.ndarray) -> str:
    """``2024-02-05`` or ``2024-02-05 .. 2024-02-10 (6 days)`` (minutes when not midnight)."""
    daily = bool((times.astype("datetime64[D]") == times).all())
    text = np.datetime_as_string(times, unit="D" if daily else "m")
    n = f"{text.size} {'days' if daily else 'steps'}"
    return str(text[0]) if text.size == 1 else f"{text[0]} .. {text[-1]} ({n})"


def check_archive_path(out: Path) -> None:
    """Refuse an ``out`` that is a directory, naming a maps file inside it."""
    if out.is_dir() and not out.is_symlink():
        raise UserError(
            f"--out {out} is a directory; give the path of a .nc maps file, e.g. {out / 'maps.nc'}"
        )


def open_archive(out: Path, grid: Grid, step: pd.Timedelta) -> xr.Dataset | None:
    """The attributes and coordinates of the maps file at ``out`` (no count is read), or None.

    It must share grid and step, and its steps must follow each other without a gap (as prep
    writes them): an append adds rows at the end of the time axis.
    """
    if not out.exists():
        return None
    check_no_journal(out)
    try:
        with xr.open_dataset(out) as ds:
            head = xr.Dataset(coords={k: ds[k].values for k in (TIME, LAT, LON)}, attrs=ds.attrs)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"{out}: not a readable maps file ({first_line(e)}); use another --out"
        ) from None
    have = Grid.from_coords(head[LAT].values, head[LON].values)
    same_grid = have.shape == grid.shape and np.allclose(
        [have.lat_min, have.lon_min, have.res], [grid.lat_min, grid.lon_min, grid.res]
    )
    if not same_grid:
        raise UserError(
            f"{out}: existing maps are on grid {head.attrs.get('grid', have.spec())}, "
            f"not {grid.spec()}; use another --out"
        )
    seconds = head.attrs.get("time_step_seconds", -1)
    if type(seconds) is not int and not isinstance(seconds, np.integer):
        raise UserError(
            f"{out}: attribute time_step_seconds {quote(seconds)} is not a whole number; {_DAMAGED}"
        )
    if int(seconds) != int(step.total_seconds()):
        raise UserError(
            f"{out}: existing maps have time step {head.attrs.get('time_step')}; "
            "use the same --time-step or another --out"
        )
    _check_steps(head[TIME].values, out, int(step.value))
    return head


def _check_steps(times: np.ndarray, out: Path, step_ns: int) -> None:
    """Refuse time labels that are not one step apart each (unsorted, repeated or a gap)."""
    t = times.astype("datetime64[ns]").view(np.int64)
    if t.size > 1 and not (np.diff(t) == step_ns).all():
        raise UserError(
            f"{out}: its time labels are not one time step apart each; prep writes every step "
            f"from the first to the last: {_DAMAGED}"
        )
