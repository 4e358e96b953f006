"""Point feeds as they come: epoch times, local time zones, and the day a file covers.

* Epoch times: an integer or float time column counts ``prep.time_unit`` units (``s`` by
  default; ``ms``, ``us``, ``ns``; or ``--columns time=ts:ms``) since 1970-01-01 UTC. A column
  whose typical value falls outside the years 1980-2100 in that unit is refused, naming the unit
  that fits; single values outside those years are unparseable rows.
* Time zones: ``prep.timezone`` (an IANA name such as ``Asia/Tokyo``, or ``+09:00``) is the zone
  of naive times (text without an offset, Parquet timestamps without a zone). Times with an offset
  keep it; epoch numbers are UTC by definition. A local time that a daylight-saving change skips
  or repeats is unparseable.
* File days: ``prep.file_days`` (``--file-days '*_%Y%m%d.csv'``) reads from each points file's
  name the day it covers (in ``prep.timezone``), ``[00:00, next 00:00)``; the file observes that
  day, and with ``prep.empty_file = zero`` a file without records observes it too (a quiet day).
"""

from __future__ import annotations

import datetime
import functools
import re
import zoneinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.errors import UserError, quote

NS_PER = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}  # epoch units
UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
YEARS = (1980, 2100)  # epoch numbers must give a year in this range, in their unit
_NS_LIMITS = tuple(pd.Timestamp(f"{y}-01-01", tz="UTC").value for y in YEARS)
EMPTY_FILE = ("no-data", "zero")  # what a points file without records observes
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
_AWARE = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"  # text that ends in an offset


def check_feed_options(cfg) -> None:
    """Refuse a bad ``time_unit``, ``timezone``, ``empty_file`` or ``file_days`` of a
    :class:`~data_prep.config.PrepConfig`, naming the key and the fix."""
    check_time_unit(cfg.time_unit, "prep.time_unit")
    parse_timezone(cfg.timezone)
    if cfg.empty_file not in EMPTY_FILE:
        raise UserError(
            f"prep.empty_file {quote(cfg.empty_file)} is not one of {', '.join(EMPTY_FILE)}"
        )
    if cfg.empty_file == "zero" and not cfg.file_days:
        raise UserError(
            "prep.empty_file=zero needs --file-days PATTERN (e.g. '*_%Y%m%d.csv'): a file "
            "without records says nothing about which day was quiet unless its name does"
        )
    if cfg.file_days:
        file_day_regex(cfg.file_days)


def check_time_unit(unit: str, key: str) -> str:
    if unit not in NS_PER:
        raise UserError(f"{key} {quote(unit)} is not an epoch unit; use one of {', '.join(NS_PER)}")
    return unit


def split_time_unit(columns: dict[str, str], default: str) -> tuple[dict[str, str], str]:
    """``{"time": "ts:ms", ...}`` -> ``({"time": "ts", ...}, "ms")``; ``default`` otherwise."""
    name, sep, unit = columns.get("time", "").rpartition(":")
    if not sep or unit not in NS_PER:
        return columns, default
    return {**columns, "time": name}, unit


# --------------------------------------------------------------------------------------------
# epoch numbers


def epoch_ns(path: Path, name: str, arr: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer or float epoch numbers in ``unit`` -> (int64 ns UTC (N,), unparseable (N,) bool).

    Nulls, NaN and values outside the years 1980-2100 are unparseable; a column whose median is
    outside them raises :class:`UserError` suggesting the unit that fits.
    """
    bad = np.zeros(len(arr), dtype=bool) if arr.null_count == 0 else _null_mask(arr)
    if pa.types.is_integer(arr.type):
        raw = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    else:
        raw = pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        bad |= ~np.isfinite(raw)
    ok = raw[~bad] if bad.any() else raw
    if not ok.size:
        return np.zeros(len(arr), np.int64), bad
    lo, hi = (v / NS_PER[unit] for v in _NS_LIMITS)
    if ok.min() < lo or ok.max() >= hi:  # the usual column passes with two reductions
        _check_magnitude(path, name, float(np.median(ok)), unit)
        with np.errstate(invalid="ignore"):
            bad |= ~((raw >= lo) & (raw < hi))
    raw = np.where(bad, 0, raw)
    per = NS_PER[unit]
    if raw.dtype.kind == "i":
        return raw * per, bad
    whole = np.floor(raw)  # whole units exactly, then the fraction rounded to a nanosecond
    return whole.astype(np.int64) * per + np.rint((raw - whole) * per).astype(np.int64), bad


def _check_magnitude(path: Path, name: str, typical: float, unit: str) -> None:
    """Raise when ``typical`` (the column's median) is no 1980-2100 time in ``unit``."""
    fits = [u for u, per in NS_PER.items() if _NS_LIMITS[0] <= typical * per < _NS_LIMITS[1]]
    if unit in fits:
        return
    year = pd.Timestamp(0, tz="UTC").year + typical * NS_PER[unit] / 10**9 / 86400 / 365.2425
    fix = (
        f"they look like {UNIT_WORDS[fits[0]]}: use --columns time={name}:{fits[0]} "
        f"(or prep.time_unit={fits[0]})"
        if fits
        else "no unit (s, ms, us, ns) gives such a year: is it a time column? name the right "
        "one with --columns time=<column>"
    )
    raise UserError(
        f"{path}: time column {name!r} holds epoch numbers like {typical:.6g}, which as "
        f"{UNIT_WORDS[unit]} since 1970 fall in the year {year:.0f}, outside "
        f"{YEARS[0]}-{YEARS[1]}; {fix}"
    )


def text_epoch(path: Path, name: str, text: pd.Series, unit: str):
    """Numbers written as text (a CSV read as text) -> epoch times, or None when no value is
    a number."""
    values = pd.to_numeric(text, errors="coerce")
    if values.isna().all():
        return None
    return epoch_ns(path, name, pa.array(values.to_numpy(np.float64), from_pandas=True), unit)


def _null_mask(arr: pa.Array) -> np.ndarray:
    return arr.is_null().to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------------------------
# time zones


@functools.cache
def parse_timezone(text: str | None) -> datetime.tzinfo | None:
    """``prep.timezone`` -> a tzinfo (None for UTC): an IANA name or an offset ``+09:00``."""
    if text is None or str(text).strip().upper() in ("", "UTC", "Z", "+00:00"):
        return None
    m = _OFFSET.match(str(text).strip())
    if m:
        sign = 1 if m.group(1) == "+" else -1
        delta = datetime.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        if delta >= datetime.timedelta(hours=24):
            raise UserError(f"--timezone {quote(text)}: an offset is less than 24:00")
        return datetime.timezone(sign * delta)
    try:
        return zoneinfo.ZoneInfo(str(text).strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise UserError(
            f"--timezone {quote(text)} (prep.timezone) is not a time zone; use an IANA name "
            "such as Asia/Tokyo or America/Chicago, or an offset such as +09:00"
        ) from None


def localize(
    ns: np.ndarray, bad: np.ndarray, zone: datetime.tzinfo | None
) -> tuple[np.ndarray, np.ndarray]:
    """Naive wall-clock times (int64 ns) in ``zone`` -> UTC ns; times that a daylight-saving
    change skips or repeats become unparseable (``bad``)."""
    if zone is None:
        return ns, bad
    if isinstance(zone, datetime.timezone):  # a fixed offset: one subtraction
        off = int(zone.utcoffset(None).total_seconds()) * 10**9
        return np.where(bad, 0, ns - off), bad
    idx = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize(
        zone, ambiguous="NaT", nonexistent="NaT"
    )
    bad = bad | np.asarray(idx.isna())
    out = idx.asi8.copy()
    out[bad] = 0
    return out, bad


def is_aware_text(text: pd.Series) -> np.ndarray:
    """(N,) bool: the time strings that end in an offset (``Z``, ``+09:00``)."""
    return text.str.contains(_AWARE, regex=True, na=False).to_numpy()


# --------------------------------------------------------------------------------------------
# the day a file covers, from its name


@functools.cache
def file_day_regex(pattern: str) -> re.Pattern:
    """``'*_%Y%m%d.csv'`` -> a regex of file names with groups Y, m, d."""
    if not all(f"%{c}" in pattern for c in "Ymd"):
        raise UserError(
            f"--file-days {quote(pattern)} (prep.file_days) lacks %Y, %m or %d; give the file "
            "names' pattern, e.g. '*_%Y%m%d.csv'"
        )
    parts = {"%Y": r"(?P<Y>\d{4})", "%m": r"(?P<m>\d{2})", "%d": r"(?P<d>\d{2})", "*": ".*"}
    tokens = re.split(r"(%[Ymd]|\*)", pattern)
    return re.compile("".join(parts.get(t, re.escape(t)) for t in tokens))


def file_day(path: Path, pattern: str, timezone: str | None) -> tuple[int, int]:
    """``[t0, t1)`` ns UTC of the day a file covers, read from its name by ``pattern``."""
    m = file_day_regex(pattern).fullmatch(Path(path).name)
    try:
        day = pd.Timestamp(int(m["Y"]), int(m["m"]), int(m["d"])) if m else None
    except ValueError:
        day = None
    if day is None:
        raise UserError(
            f"{path}: the name gives no day by --file-days {quote(pattern)}; rename the file "
            "or fix the pattern (%Y, %m, %d: year, month, day)"
        )
    zone = parse_timezone(timezone) or datetime.UTC
    t0, t1 = (pd.Timestamp(d).tz_localize(zone) for d in (day, day + pd.Timedelta(days=1)))
    return int(t0.as_unit("ns").value), int(t1.as_unit("ns").value)
