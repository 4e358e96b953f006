"""Init times of a forecast: the latest step, one time, or an ISO 8601 interval of them."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.errors import UserError
from data_prep.schema import TIME
from data_prep.sequences import forecast_inits


def select_inits(
    ds: xr.Dataset, init: str | None, *, n_in: int, min_coverage: float, maps: Path | str = "maps"
) -> np.ndarray:
    """The init steps asked for by ``init``: None (latest step), ``TIME`` or ``START/END``."""
    times = pd.DatetimeIndex(ds[TIME].values)
    ok = forecast_inits(ds, n_in=n_in, min_coverage=min_coverage)
    span = _span(times, ok, n_in)
    if init is None or str(init).strip() in ("", "latest"):
        if ok.size and ok[-1] == len(times) - 1:
            return ok[-1:]
        raise UserError(f"{maps}: the latest window (ending {day_label(times[-1])}) {_WHY}; {span}")
    start, end = _parse_init(str(init))
    if end is None:
        i = times.get_indexer([start])[0]
        if i < 0:
            raise UserError(f"--init {day_label(start)} is not a time step of {maps}; {span}")
        if i < n_in - 1:
            raise UserError(
                f"--init {day_label(start)} needs {n_in} steps up to it, but {maps} starts "
                f"{day_label(times[0])}; {span}"
            )
        if i not in set(ok.tolist()):
            raise UserError(f"--init {day_label(start)}: its window of {n_in} steps {_WHY}; {span}")
        return np.array([i], dtype=np.int64)
    inside = np.flatnonzero((times >= start) & (times <= end))
    chosen = np.intersect1d(inside, ok)
    if chosen.size == 0:
        raise UserError(
            f"--init {day_label(start)}/{day_label(end)} holds no usable window in {maps}; {span}"
        )
    if chosen.size < inside.size:
        warnings.warn(
            f"--init {day_label(start)}/{day_label(end)}: skipped {inside.size - chosen.size} of "
            f"{inside.size} "
            f"inits whose window {_WHY}",
            stacklevel=2,
        )
    return chosen


_WHY = "has missing, uncovered or non-consecutive steps"


def _parse_init(text: str) -> tuple[pd.Timestamp, pd.Timestamp | None]:
    """``TIME`` -> (time, None); an ISO 8601 interval -> (start, end), both included.

    Intervals: ``START/END``, ``START/DURATION`` or ``DURATION/END`` (``2024-02-01T06/P2DT12H``);
    the older ``START:END`` still works (the END begins with its year). Times may carry hours.
    """
    text = text.strip()
    parts = text.split("/") if "/" in text else re.split(r"\s*:\s*(?=\d{4}-)", text)
    try:
        ends = [_init_part(p) for p in parts]
    except (ValueError, TypeError):
        ends = []
    if len(ends) not in (1, 2) or all(isinstance(e, pd.Timedelta) for e in ends):
        raise UserError(
            f"--init {text!r} is not a time or an interval; use YYYY-MM-DD, YYYY-MM-DDTHH "
            "or START/END (e.g. 2024-02-01T06/2024-02-03T18, 2024-02-01/P3D)"
        )
    if len(ends) == 1:
        return ends[0], None
    start, end = ends
    start = end - start if isinstance(start, pd.Timedelta) else start
    end = start + end if isinstance(end, pd.Timedelta) else end
    if start > end:
        raise UserError(f"--init {text}: the start is after the end; use START/END")
    return start, end


def _init_part(text: str) -> pd.Timestamp | pd.Timedelta:
    """One end of an init interval: a time (UTC, naive) or an ISO 8601 duration ``P...``."""
    text = text.strip()
    if text.upper().startswith("P"):
        return pd.Timedelta(text)
    t = _naive(pd.Timestamp(text))
    if pd.isna(t):
        raise ValueError(text)
    return t


def _naive(t: pd.Timestamp) -> pd.Timestamp:
    """UTC and without a time zone, like the maps' time axis."""
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def day_label(t) -> str:
    """``2024-06-01``, or ``2024-06-01T06:00`` for a time that is not midnight."""
    t = pd.Timestamp(t)
    return t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%dT%H:%M")


def _span(times: pd.DatetimeIndex, ok: np.ndarray, n_in: int) -> str:
    if ok.size == 0:
        first, last = day_label(times[0]), day_label(times[-1])
        return f"no window of {n_in} usable consecutive steps in the file ({first}..{last})"
    gaps = "" if ok.size == ok[-1] - ok[0] + 1 else ", with gaps"
    return f"valid inits: {day_label(times[ok[0]])}..{day_label(times[ok[-1]])}{gaps}"


def inits_within(init_bytes: int, limit: int, most: int | None = None) -> int:
    """Inits taken at a time so that arrays of ``init_bytes`` each stay within ``limit`` bytes:
    at most ``most`` (None: no bound), at least one."""
    n = int(limit) // max(1, int(init_bytes))
    return max(1, n if most is None else min(int(most), n))
