"""Arrow record batches -> the common strike-record table, with per-row accounting.

Numeric and timestamp columns convert without copies through numpy; text columns (a dirty CSV
read as strings) go through pandas coercion, and whatever does not parse is counted as
``unparseable``. Empty fields become NaN coordinates (``nan_coordinate``) or unparseable times.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.errors import UserError, quote
from data_prep.feeds import NS_PER, epoch_ns, is_aware_text, localize, parse_timezone, text_epoch
from data_prep.geometry import geometry_points
from data_prep.records import STROKE_CODES, Records, Tally, check_count_limit

_END = object()


def prefetched(items: Iterable) -> Iterator:
    """``items``, with the next one produced in a background thread while the caller works on
    this one: pyarrow decodes a batch without the GIL while the previous batch is gridded.

    At most two items are alive at a time; an exception of the producer is raised in the caller.
    """
    it = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
        nxt = pool.submit(next, it, _END)
        while (item := nxt.result()) is not _END:
            nxt = pool.submit(next, it, _END)
            yield item


def column_map(
    path: Path, names: list[str], user: dict[str, str], defaults: dict[str, tuple], required: tuple
) -> dict[str, str]:
    """Role -> column name: the user's names first, then the first default alias present.

    Matching of default aliases ignores case. Raises :class:`UserError` naming the file, the
    missing role and the ``--columns`` fix.
    """
    unknown = set(user) - set(defaults)
    if unknown:
        raise UserError(
            f"--columns: unknown role {quote(sorted(unknown)[0])}; roles are {', '.join(defaults)}"
        )
    lower = {n.lower(): n for n in names}
    cols = {}
    for role, aliases in defaults.items():
        if role in user:
            if user[role] not in names:
                raise UserError(
                    f"{path}: column {quote(user[role])} (for {role}) not found; columns are "
                    f"{', '.join(names)}; fix --columns {role}=<column>"
                )
            cols[role] = user[role]
            continue
        hit = next((lower[a.lower()] for a in aliases if a.lower() in lower), None)
        if hit is not None:
            cols[role] = hit
        elif role in required:
            raise UserError(
                f"{path}: no {role} column (looked for {', '.join(aliases)}; columns are "
                f"{', '.join(names)}); name it with --columns {role}=<column>"
            )
    return cols


def parse_columns(spec: str | dict | None) -> dict[str, str]:
    """``"time=ts,lat=latitude"`` -> ``{"time": "ts", "lat": "latitude"}``."""
    if spec is None or isinstance(spec, dict):
        return dict(spec or {})
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        role, eq, name = part.partition("=")
        if not eq or not role.strip() or not name.strip():
            raise UserError(
                f"--columns {quote(spec)}: {quote(part)} is not role=column; e.g. time=ts,lat=latitude"
            )
        out[role.strip()] = name.strip()
    return out


def batch_records(
    path: Path,
    batch: pa.RecordBatch,
    cols: dict[str, str],
    tally: Tally,
    time_format: str | None = None,
    *,
    unit: str = "s",
    timezone: str | None = None,
) -> Records:
    """Convert one batch; count its rows as read and the unparseable ones as rejected.

    ``unit``: of epoch-number times; ``timezone``: of naive times (see :mod:`data_prep.feeds`).
    Positions come from ``lat`` and ``lon``, or from a ``geometry`` column.
    """
    col = {role: batch.column(batch.schema.get_field_index(name)) for role, name in cols.items()}
    time, bad = to_times(path, cols["time"], col["time"], time_format, unit, timezone)
    if "geometry" in col:
        lat, lon, bad_xy = geometry_points(path, cols["geometry"], col["geometry"])
        bad = bad | bad_xy
    else:
        lat, bad_lat = to_float(col["lat"])
        lon, bad_lon = to_float(col["lon"])
        bad = bad | bad_lat | bad_lon
        _check_swapped(path, cols, lat, lon)
    count, bad_count = (None, None)
    if "count" in col:
        count, bad_count = to_count(col["count"], path, cols["count"])
    if bad_count is not None:
        bad = bad | bad_count
    rec = Records(
        time,
        lat,
        lon,
        count,
        _stroke_codes(col.get("stroke_type")),
        _current(col.get("peak_current")),
    )
    tally.read(len(rec), rec.strikes())
    if bad.any():
        tally.reject("unparseable", bad.sum(), rec.strikes_where(bad))
        rec = rec.take(~bad)
    return rec


def to_times(
    path: Path,
    name: str,
    arr: pa.Array,
    time_format: str | None,
    unit: str = "s",
    timezone: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Times -> (int64 ns UTC (N,), unparseable (N,) bool).

    Numbers are epoch times in ``unit``; naive times are in ``timezone`` (None: UTC); times with
    an offset keep it.
    """
    t = arr.type
    if time_format == "yyyymmdd" and pa.types.is_integer(t):
        return _yyyymmdd(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return epoch_ns(path, name, arr, unit)
    zone = parse_timezone(timezone)
    naive = zone is not None and getattr(t, "tz", None) is None
    if pa.types.is_timestamp(t) and t.unit == "ns" and arr.null_count == 0 and not naive:
        return arr.view(pa.int64()).to_numpy(), np.zeros(len(arr), dtype=bool)  # zero copy
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        ns, bad = _timestamps_ns(arr)
        return localize(ns, bad, zone) if naive else (ns, bad)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return _text_times(path, name, arr.to_pandas().str.strip(), time_format, unit, zone)
    raise UserError(
        f"{path}: time column {name!r} holds {t} values, not timestamps; store ISO 8601 times "
        "(e.g. 2024-02-01T13:05:00Z) or epoch numbers, or name the right column with "
        "--columns time=<column>"
    )


def _text_times(path, name, text: pd.Series, time_format, unit, zone):
    """Time text -> (int64 ns UTC, unparseable): ISO 8601 (naive in ``zone``), or epoch numbers
    when no value is ISO (a CSV of epoch numbers read as text)."""
    if time_format == "yyyymmdd":
        return _ns(pd.to_datetime(text, format="%Y%m%d", errors="coerce", utc=True))
    ns, bad = _ns(pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True))
    if bad.all():
        numbers = text_epoch(path, name, text, unit)
        if numbers is not None:
            return numbers
    if zone is None:
        return ns, bad
    naive = ~bad & ~is_aware_text(text)
    ns[naive], bad[naive] = localize(ns[naive], bad[naive], zone)
    return ns, bad


def _timestamps_ns(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps or dates -> (int64 ns UTC (N,), unparseable (N,) bool).

    Nulls and times int64 nanoseconds cannot hold (before 1677 or after 2262) are unparseable.
    """
    if pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("ms" if pa.types.is_date64(arr.type) else "s"))
    raw = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    per = NS_PER[arr.type.unit]
    lim = np.iinfo(np.int64).max // per
    bad = _nulls(arr) | (raw > lim) | (raw < -lim)
    return np.where(bad, 0, raw) * per, bad


def _yyyymmdd(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    z = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    uniq, inv = np.unique(z, return_inverse=True)  # a month file holds ~30 distinct days
    days = pd.to_datetime(pd.Series(uniq.astype(str)), format="%Y%m%d", errors="coerce", utc=True)
    ns, bad = _ns(days)
    return ns[inv], bad[inv] | _nulls(arr)


def to_float(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Numbers -> (float64 (N,), unparseable (N,) bool); empty fields become NaN, not errors."""
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        return arr.cast(pa.float64()).to_numpy(zero_copy_only=False), np.zeros(len(arr), dtype=bool)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        text = arr.to_pandas()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = (
            np.isnan(values)
            & text.notna().to_numpy()
            & ~text.str.lower().isin(["nan", ""]).to_numpy()
        )
        return values, bad
    return np.full(len(arr), np.nan), np.ones(len(arr), dtype=bool)


def to_count(arr: pa.Array, path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Strike counts -> (int64 (N,), unparseable (N,) bool); missing or negative are unparseable,
    a count above :data:`~data_prep.records.MAX_COUNT` raises :class:`UserError`."""
    values, bad = to_float(arr)
    check_count_limit(path, name, values)
    bad |= ~np.isfinite(values) | (values < 0)
    count = np.where(bad, 1, np.rint(np.nan_to_num(values))).astype(np.int64)
    return count, bad


def _ns(parsed: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """UTC datetimes -> (int64 ns (N,), unparseable (N,) bool): NaT and times int64 nanoseconds
    cannot hold (before 1677 or after 2262, which pandas parses at a coarser unit) are
    unparseable, and 0 in the times (callers drop them)."""
    lo, hi = (pd.Timestamp(t).tz_localize("UTC") for t in (pd.Timestamp.min, pd.Timestamp.max))
    bad = (parsed.isna() | (parsed < lo) | (parsed > hi)).to_numpy()
    ns = parsed.where(~bad).dt.as_unit("ns").array.asi8.copy()
    ns[bad] = 0
    return ns, bad


def _nulls(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return arr.is_null().to_numpy(zero_copy_only=False)


def _stroke_codes(arr: pa.Array | None) -> np.ndarray | None:
    if arr is None:
        return None
    if pa.types.is_integer(arr.type):
        return pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(np.int8)
    enc = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr.cast(pa.string()))
    names = [str(v).strip().upper() if v is not None else "" for v in enc.dictionary.to_pylist()]
    lut = np.array([STROKE_CODES.get(n, 0) for n in names] + [0], dtype=np.int8)
    idx = pc.fill_null(enc.indices, len(names)).to_numpy(zero_copy_only=False)
    return lut[idx]


def _current(arr: pa.Array | None) -> np.ndarray | None:
    return None if arr is None else to_float(arr)[0].astype(np.float32)


def _check_swapped(path: Path, cols: dict[str, str], lat: np.ndarray, lon: np.ndarray) -> None:
    """Raise when every latitude is beyond +-90 while every longitude would be a valid latitude."""
    if lat.size == 0 or not np.abs(lat[:1000]).min() > 90:  # cheap exit for the usual file
        return
    ok_lat, ok_lon = lat[np.isfinite(lat)], lon[np.isfinite(lon)]
    if ok_lat.size and np.all(np.abs(ok_lat) > 90) and ok_lon.size and np.all(np.abs(ok_lon) <= 90):
        raise UserError(
            f"{path}: column {cols['lat']!r} (lat) is outside [-90, 90] on every row, like "
            "longitudes; lat and lon look swapped: pass "
            f"--columns lat={cols['lon']},lon={cols['lat']}"
        )
