"""Strike positions given as one geometry column: WKT text, WKB bytes or GeoArrow points.

Each decoder turns an Arrow array of N geometries into ``(lat, lon, unparseable)`` (N,) arrays,
vectorised (one RE2 regex over the column for WKT; numpy gathers over the byte buffer for WKB).
Points are ``POINT (lon lat)`` in degrees (EPSG:4326 axis order of WKT: x = longitude); ``Z`` and
``M`` values are ignored. Malformed or empty geometries are unparseable rows; a column holding
other geometry types (``POLYGON``, ``LINESTRING``, ``MULTIPOINT``, ...) or another SRID than 4326
raises :class:`UserError`: its rows are not strike points at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.errors import UserError, quote

_NUM = r"[^\s(),]+"
WKT_POINT = (
    r"(?i)^\s*(?:SRID=(?P<srid>\d+)\s*;\s*)?POINT\s*(?:ZM|Z|M)?\s*\(\s*"
    rf"(?P<x>{_NUM})\s+(?P<y>{_NUM})(?:\s+{_NUM}){{0,2}}\s*\)\s*$"
)
_KIND = r"(?i)^\s*(?:SRID=\d+\s*;\s*)?(?P<kind>[A-Z]+)"
OTHER_KINDS = {
    "MULTIPOINT",
    "LINESTRING",
    "MULTILINESTRING",
    "POLYGON",
    "MULTIPOLYGON",
    "GEOMETRYCOLLECTION",
    "CIRCULARSTRING",
    "COMPOUNDCURVE",
    "CURVEPOLYGON",
    "MULTICURVE",
    "MULTISURFACE",
    "POLYHEDRALSURFACE",
    "TIN",
    "TRIANGLE",
}
WKB_KINDS = {1: "POINT", 2: "LINESTRING", 3: "POLYGON", 4: "MULTIPOINT", 5: "MULTILINESTRING"}
WKB_KINDS |= {6: "MULTIPOLYGON", 7: "GEOMETRYCOLLECTION"}


def geometry_points(path: Path, name: str, arr: pa.Array):
    """Points of a geometry column -> ``(lat (N,) float64, lon (N,) float64, unparseable (N,))``."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return wkt_points(path, name, arr)
    if pa.types.is_dictionary(t):
        return wkt_points(path, name, arr.cast(pa.string()))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return wkb_points(path, name, arr)
    if pa.types.is_struct(t) and {"x", "y"} <= {t.field(i).name for i in range(t.num_fields)}:
        return _xy(arr, pc.struct_field(arr, "x"), pc.struct_field(arr, "y"))
    if pa.types.is_fixed_size_list(t) and t.list_size in (2, 3, 4):
        xy = arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, t.list_size)
        return _xy(arr, pa.array(xy[:, 0]), pa.array(xy[:, 1]))
    raise UserError(
        f"{path}: geometry column {name!r} holds {t} values; give WKT text (POINT (lon lat)), "
        "WKB or GeoArrow points, or lat and lon columns with --columns lat=<col>,lon=<col>"
    )


def _xy(arr: pa.Array, x: pa.Array, y: pa.Array):
    null = arr.is_null().to_numpy(zero_copy_only=False)
    lon = x.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    lat = y.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    return np.where(null, np.nan, lat), np.where(null, np.nan, lon), null


def wkt_points(path: Path, name: str, arr: pa.Array):
    """WKT ``POINT (lon lat)``, ``POINT Z (lon lat z)``, ``SRID=4326;POINT(lon lat)`` text."""
    m = pc.extract_regex(arr, WKT_POINT)  # non-matching and null rows: null
    bad = ~m.is_valid().to_numpy(zero_copy_only=False)
    if bad.any():
        _refuse_other_kinds(path, name, arr.filter(pa.array(bad)))
    srid = pc.struct_field(m, "srid")
    _check_srid(path, name, srid)
    lon, bad_x = _numbers(pc.struct_field(m, "x"))
    lat, bad_y = _numbers(pc.struct_field(m, "y"))
    bad |= bad_x | bad_y
    return np.where(bad, np.nan, lat), np.where(bad, np.nan, lon), bad


def _numbers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Number text -> (float64, unparseable); nulls are unparseable."""
    try:
        values = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # a malformed number: pandas coerces it to NaN, row by row
        values = pd.to_numeric(text.to_pandas(), errors="coerce").to_numpy(np.float64)
    return values, ~np.isfinite(values)


def _refuse_other_kinds(path: Path, name: str, text: pa.Array) -> None:
    """Raise when a row that is no WKT point is another geometry type."""
    text = text.drop_null()
    kinds = pc.utf8_upper(pc.struct_field(pc.extract_regex(text, _KIND), "kind"))
    for kind in pc.unique(kinds.drop_null()).to_pylist():
        if kind in OTHER_KINDS:
            example = text.filter(pc.fill_null(pc.equal(kinds, kind), False))[0].as_py()
            _raise_kind(path, name, kind, quote(example))


def _raise_kind(path: Path, name: str, kind: str, example: str) -> None:
    raise UserError(
        f"{path}: geometry column {name!r} holds {kind} geometries (e.g. {example}); only points "
        "can be gridded: export strikes as POINT (lon lat), or name the point column with "
        "--columns geometry=<column>"
    )


def _check_srid(path: Path, name: str, srid: pa.Array) -> None:
    given = srid.drop_null()
    if not len(given):
        return
    other = [s for s in pc.unique(given).to_pylist() if s not in ("", "4326")]  # "": none
    if other:
        raise UserError(
            f"{path}: geometry column {name!r} has SRID={other[0]}; only SRID=4326 (longitude, "
            "latitude in degrees) is read: reproject the points to EPSG:4326"
        )


def wkb_points(path: Path, name: str, arr: pa.Array):
    """WKB (ISO or EWKB, either byte order) points: numpy gathers from the bytes buffer."""
    if pa.types.is_large_binary(arr.type):
        arr = arr.cast(pa.binary())
    n = len(arr)
    off = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4)
    data = np.frombuffer(arr.buffers()[2], np.uint8) if arr.buffers()[2] else np.zeros(0, np.uint8)
    start, length = off[:-1].astype(np.int64), np.diff(off).astype(np.int64)
    bad = arr.is_null().to_numpy(zero_copy_only=False) | (length < 21)
    start = np.where(bad, 0, start)
    data = np.concatenate([data, np.zeros(64, np.uint8)])  # gathers of bad rows stay in bounds
    little = data[start] == 1
    kind = _gather_uint(data, start + 1, 4, little)
    srid = (kind & 0x20000000) != 0
    base = (kind & 0x0FFFFFFF) % 1000  # ISO Z/M codes (1001, 2001, 3001) and EWKB flags
    if (~bad & (base != 1)).any():
        k = int(base[~bad & (base != 1)][0])
        _raise_kind(path, name, WKB_KINDS.get(k, f"WKB type {k}"), "binary WKB")
    x0 = start + 5 + 4 * srid
    bad |= length < (x0 - start) + 16
    lon = _gather_float(data, x0, little)
    lat = _gather_float(data, x0 + 8, little)
    return np.where(bad, np.nan, lat), np.where(bad, np.nan, lon), bad


def _gather_uint(data: np.ndarray, at: np.ndarray, size: int, little: np.ndarray) -> np.ndarray:
    b = data[at[:, None] + np.arange(size)].astype(np.uint64)  # (N, size)
    b = np.where(little[:, None], b, b[:, ::-1])
    return (b << (8 * np.arange(size, dtype=np.uint64))).sum(axis=1).astype(np.int64)


def _gather_float(data: np.ndarray, at: np.ndarray, little: np.ndarray) -> np.ndarray:
    b = data[at[:, None] + np.arange(8)]  # (N, 8)
    b = np.where(little[:, None], b, b[:, ::-1])
    return np.ascontiguousarray(b).view("<f8")[:, 0]
