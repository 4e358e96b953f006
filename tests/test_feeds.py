"""Real point feeds as they come: each shape gives the maps and accounting of the clean ISO/UTC feed.

Every feed below holds the same strikes as ``_clean`` (ISO 8601 text in UTC, lat and lon
columns); only the way times and positions are written differs.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xarray as xr

from data_prep.cli import main
from data_prep.errors import UserError
from data_prep.geometry import wkb_points
from data_prep.progress import PLAIN_LINE
from data_prep.records import Tally

GRID = "30,34,-104,-98,0.5"  # 8 x 12 cells
N = 300


def _strikes(seed: int = 3) -> pd.DataFrame:
    """N strikes over 4 days from 2021-06-01 (UTC), sorted in time, whole milliseconds."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2021-06-01", tz="UTC").value
    ns = np.sort(rng.integers(t0, t0 + 4 * 86400 * 10**9, N)) // 10**6 * 10**6
    return pd.DataFrame(
        {
            "time": pd.to_datetime(ns, utc=True).as_unit("ns"),
            "lat": np.round(rng.uniform(30.0, 34.0, N), 4),
            "lon": np.round(rng.uniform(-104.0, -98.0, N), 4),
        }
    )


def _iso(t: pd.Series) -> pd.Series:
    return t.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"


def _prep(tmp: Path, inputs: list[Path], *extra: str, name: str = "maps.nc") -> xr.Dataset:
    out = tmp / name
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["prep", *map(str, inputs), "--grid", GRID, "--out", str(out), *extra]) == 0
    with xr.open_dataset(out) as ds:
        return ds.load()


def _clean(tmp: Path, df: pd.DataFrame, name: str = "clean.csv") -> Path:
    path = tmp / name
    pd.DataFrame({"time": _iso(df["time"]), "lat": df["lat"], "lon": df["lon"]}).to_csv(
        path, index=False
    )
    return path


def _assert_same_maps(a: xr.Dataset, b: xr.Dataset) -> None:
    np.testing.assert_array_equal(a["time"].values, b["time"].values)
    np.testing.assert_array_equal(a["strike_count"].values, b["strike_count"].values)
    np.testing.assert_array_equal(a["coverage"].values, b["coverage"].values)
    assert Tally.from_attrs(a.attrs) == Tally.from_attrs(b.attrs)


def _epoch_s(tmp, df):
    path = tmp / "epoch_s.csv"
    secs = df["time"].astype("int64") / 1e9  # float seconds with milliseconds
    pd.DataFrame({"ts": secs, "lat": df["lat"], "lon": df["lon"]}).to_csv(path, index=False)
    return path, []


def _epoch_ms(tmp, df):
    path = tmp / "epoch_ms.csv"
    ms = df["time"].astype("int64") // 10**6
    pd.DataFrame({"ts": ms, "latitude": df["lat"], "lon": df["lon"]}).to_csv(path, index=False)
    return path, ["--columns", "time=ts:ms"]


def _epoch_ms_key(tmp, df):
    path, _ = _epoch_ms(tmp, df)
    return path, ["prep.time_unit=ms"]


def _epoch_parquet(tmp, df):
    path = tmp / "epoch.parquet"
    ms = pa.array(df["time"].astype("int64").to_numpy() // 10**6)
    pq.write_table(pa.table({"timestamp": ms, "lat": df["lat"], "lon": df["lon"]}), path)
    return path, ["--columns", "time=timestamp:ms"]


def _epoch_us(tmp, df):
    path = tmp / "epoch_us.csv"
    us = df["time"].astype("int64") // 10**3
    pd.DataFrame({"ts": us, "lat": df["lat"], "lon": df["lon"]}).to_csv(path, index=False)
    return path, ["--columns", "time=ts:us"]


def _epoch_ns_key(tmp, df):
    path = tmp / "epoch_ns.csv"
    ns = df["time"].astype("int64")
    pd.DataFrame({"ts": ns, "lat": df["lat"], "lon": df["lon"]}).to_csv(path, index=False)
    return path, ["prep.time_unit=ns"]


def _wkt(tmp, df):
    path = tmp / "wkt.csv"
    forms = np.array(["POINT ({} {})", "POINT Z ({} {} 120.5)", "SRID=4326;POINT({} {})"])
    geom = [
        forms[i % 3].format(x, y) for i, (x, y) in enumerate(zip(df["lon"], df["lat"], strict=True))
    ]
    pd.DataFrame({"time": _iso(df["time"]), "geometry": geom}).to_csv(path, index=False)
    return path, []


def _wkt_named(tmp, df):
    path = tmp / "wkt_named.csv"
    geom = [f"POINT ({x} {y})" for x, y in zip(df["lon"], df["lat"], strict=True)]
    pd.DataFrame({"time": _iso(df["time"]), "lat": 0.0, "where": geom}).to_csv(path, index=False)
    return path, ["--columns", "geometry=where"]


def _wkb_parquet(tmp, df):
    path = tmp / "wkb.parquet"
    pq.write_table(pa.table({"time": pa.array(df["time"]), "geometry": _wkb(df)}), path)
    return path, []


def _geoarrow_parquet(tmp, df, layout):
    """GeoArrow points: a struct of x and y, or interleaved [x, y] lists."""
    x, y = df["lon"].to_numpy(), df["lat"].to_numpy()
    if layout == "struct":
        geom = pa.StructArray.from_arrays([pa.array(x), pa.array(y)], names=["x", "y"])
    else:
        flat = pa.array(np.column_stack([x, y]).ravel())
        geom = pa.FixedSizeListArray.from_arrays(flat, 2)
    path = tmp / f"geoarrow_{layout}.parquet"
    pq.write_table(pa.table({"time": pa.array(df["time"]), "geometry": geom}), path)
    return path, []


def _jst(tmp, df):
    path = tmp / "jst.csv"
    local = df["time"].dt.tz_convert("Asia/Tokyo").dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
    pd.DataFrame({"obstimeJST": local, "lat": df["lat"], "lon": df["lon"]}).to_csv(
        path, index=False
    )
    return path, ["--columns", "time=obstimeJST", "--timezone", "Asia/Tokyo"]


def _jst_offset(tmp, df):
    path, _ = _jst(tmp, df)
    return path, ["--columns", "time=obstimeJST", "--timezone", "+09:00"]


def _aware_with_zone(tmp, df):
    """Times with an offset keep it: --timezone changes nothing."""
    path = tmp / "aware.csv"
    local = df["time"].dt.tz_convert("Asia/Tokyo").dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    pd.DataFrame({"time": local, "lat": df["lat"], "lon": df["lon"]}).to_csv(path, index=False)
    return path, ["--timezone", "America/Chicago"]


def _wkb(df: pd.DataFrame, big_endian_every: int = 4) -> pa.Array:
    """ISO WKB points (21 bytes), every ``big_endian_every``-th in big-endian byte order."""
    out = []
    for i, (x, y) in enumerate(zip(df["lon"], df["lat"], strict=True)):
        big = i % big_endian_every == 0
        order = ">" if big else "<"
        head = bytes([0 if big else 1]) + np.array(1, f"{order}u4").tobytes()
        out.append(head + np.array([x, y], f"{order}f8").tobytes())
    return pa.array(out, pa.binary())


SHAPES = {
    "epoch-seconds-float": _epoch_s,
    "epoch-milliseconds-columns": _epoch_ms,
    "epoch-milliseconds-key": _epoch_ms_key,
    "epoch-milliseconds-parquet": _epoch_parquet,
    "epoch-microseconds-columns": _epoch_us,
    "epoch-nanoseconds-key": _epoch_ns_key,
    "wkt-detected": _wkt,
    "wkt-named": _wkt_named,
    "wkb-parquet": _wkb_parquet,
    "geoarrow-struct-parquet": lambda tmp, df: _geoarrow_parquet(tmp, df, "struct"),
    "geoarrow-interleaved-parquet": lambda tmp, df: _geoarrow_parquet(tmp, df, "interleaved"),
    "jst-naive-iana": _jst,
    "jst-naive-offset": _jst_offset,
    "offset-aware-keeps-its-offset": _aware_with_zone,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_feed_shape_gives_the_maps_and_accounting_of_the_clean_utc_feed(tmp_path, shape):
    df = _strikes()
    ref = _prep(tmp_path, [_clean(tmp_path, df)], name="ref.nc")
    path, extra = SHAPES[shape](tmp_path, df)
    got = _prep(tmp_path, [path], *extra)
    _assert_same_maps(got, ref)
    assert Tally.from_attrs(got.attrs).gridded_records == N


def test_naive_times_are_utc_unless_told_and_provenance_records_the_zone(tmp_path):
    df = _strikes()
    path, _ = _jst(tmp_path, df)
    utc = _prep(tmp_path, [path], "--columns", "time=obstimeJST", name="utc.nc")
    tokyo = _prep(tmp_path, [path], *_jst(tmp_path, df)[1], name="tokyo.nc")
    # the last strike, 2021-06-04 23:58 UTC, is 06-05 08:58 in Tokyo: read as UTC, a day late
    assert tokyo.sizes["time"] == 4 and utc.sizes["time"] == 5
    assert '"timezone": "UTC"' in utc.attrs["inputs"]
    assert '"timezone": "Asia/Tokyo"' in tokyo.attrs["inputs"]


def test_malformed_wkt_and_text_epochs_are_unparseable_rows_counted_exactly(tmp_path):
    path = tmp_path / "dirty.csv"
    path.write_text(
        "time,geometry\n"
        "2021-06-01T01:00:00Z,POINT (-102.1 31.2)\n"
        "2021-06-01T02:00:00Z,POINT (-102.1)\n"  # one coordinate
        "2021-06-01T03:00:00Z,POINT (abc 31.2)\n"  # not a number
        "2021-06-01T04:00:00Z,\n"  # empty
        "2021-06-01T05:00:00Z,POINT EMPTY\n"
        "2021-06-01T06:00:00Z,srid=4326;point(-101.3 32.3)\n"
    )
    tally = Tally.from_attrs(_prep(tmp_path, [path]).attrs)
    assert tally.read_records == 6 and tally.gridded_records == 2
    assert tally.rejected_records["unparseable"] == 4 and tally.balanced()
    epochs = tmp_path / "epochs.csv"  # one word among numbers: the robust path reads text
    epochs.write_text("ts,lat,lon\n1622509200,31.2,-102.1\nsoon,31.2,-102.1\n1622512800,32,-101\n")
    tally = Tally.from_attrs(_prep(tmp_path, [epochs], name="e.nc").attrs)
    assert tally.gridded_records == 2 and tally.rejected_records["unparseable"] == 1


def test_single_epoch_values_outside_1980_2100_are_unparseable_rows(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("ts,lat,lon\n1622509200,31.2,-102.1\n12,31.2,-102.1\n1622512800,32,-101\n")
    tally = Tally.from_attrs(_prep(tmp_path, [path]).attrs)
    assert tally.gridded_records == 2 and tally.rejected_records["unparseable"] == 1


def test_wkb_decoder_reads_ewkb_with_srid_and_point_z_in_both_byte_orders():
    rows = [
        bytes([1])
        + np.array(0x20000001, "<u4").tobytes()
        + np.array(4326, "<u4").tobytes()
        + np.array([-100.5, 33.25], "<f8").tobytes(),
        bytes([0])
        + np.array(1001, ">u4").tobytes()
        + np.array([-99.0, 31.0, 7.0], ">f8").tobytes(),
        b"\x01\x01\x00",  # truncated
        None,
    ]
    lat, lon, bad = wkb_points(Path("f.parquet"), "geometry", pa.array(rows, pa.binary()))
    np.testing.assert_array_equal(bad, [False, False, True, True])
    np.testing.assert_array_equal(lat[:2], [33.25, 31.0])
    np.testing.assert_array_equal(lon[:2], [-100.5, -99.0])


def test_wkb_polygon_column_is_refused_naming_it():
    poly = bytes([1]) + np.array(3, "<u4").tobytes() + bytes(40)
    with pytest.raises(UserError, match=r"'geometry' holds POLYGON"):
        wkb_points(Path("f.parquet"), "geometry", pa.array([poly], pa.binary()))


# --------------------------------------------------------------------------------------------
# empty and missing day files


def _day_files(tmp: Path, df: pd.DataFrame, quiet: str, missing: str) -> list[Path]:
    """One CSV per day (feed_YYYYMMDD.csv) of 2021-06-01..04; day ``quiet`` is a header-only
    file, day ``missing`` has no file; plus a 0-byte file for 2021-06-05."""
    files = []
    for day in pd.date_range("2021-06-01", periods=4, tz="UTC"):
        if day.strftime("%Y%m%d") == missing:
            continue
        part = df[(df["time"] >= day) & (df["time"] < day + pd.Timedelta(days=1))]
        if day.strftime("%Y%m%d") == quiet:
            part = part.iloc[:0]
        files.append(_clean(tmp, part, f"feed_{day:%Y%m%d}.csv"))
    files.append(tmp / "feed_20210605.csv")
    files[-1].write_bytes(b"")
    return files


def test_empty_files_are_accounted_and_observe_nothing_by_default(tmp_path):
    df = _strikes()
    files = _day_files(tmp_path, df, quiet="20210602", missing="20210603")
    ds = _prep(tmp_path, files)
    tally = Tally.from_attrs(ds.attrs)
    assert (tally.files_read, tally.files_empty) == (4, 2) and tally.balanced()
    cov = ds["coverage"].values.all(axis=(1, 2))
    days = pd.DatetimeIndex(ds["time"].values).strftime("%m%d").tolist()
    # the quiet day's span is unknown and the missing day has no file: both no data
    assert dict(zip(days, cov.tolist(), strict=True)) == {
        "0601": True,
        "0602": False,
        "0603": False,
        "0604": True,
    }


def test_with_file_days_and_empty_file_zero_a_quiet_day_is_a_true_zero(tmp_path):
    df = _strikes()
    files = _day_files(tmp_path, df, quiet="20210602", missing="20210603")
    pattern = ["--file-days", "feed_%Y%m%d.csv", "--start", "2021-05-30", "--end", "2021-06-06"]
    ds = _prep(tmp_path, files, *pattern, "prep.empty_file=zero")
    cov = ds["coverage"].values.all(axis=(1, 2))
    counts = ds["strike_count"].values.sum(axis=(1, 2))
    days = pd.DatetimeIndex(ds["time"].values).strftime("%m%d").tolist()
    assert days == ["0530", "0531", "0601", "0602", "0603", "0604", "0605", "0606"]
    # each file observes its named day only: days before, between and after the files stay
    # no data even with --start/--end; quiet days (header only, 0 bytes) are observed zeros
    assert cov.tolist() == [False, False, True, True, False, True, True, False]
    assert counts[3] == 0 and counts[6] == 0
    assert counts.sum() == df["time"].dt.day.isin([1, 4]).sum()  # days 2 and 3 gave none
    no_zero = _prep(tmp_path, files, *pattern, name="b.nc")  # default: empty files no data
    cov = no_zero["coverage"].values.all(axis=(1, 2))
    assert cov.tolist() == [False, False, True, False, False, True, False, False]


def test_file_days_name_that_does_not_match_and_zero_without_file_days_are_refused(tmp_path):
    df = _strikes()
    path = _clean(tmp_path, df, "strikes.csv")
    for extra, match in [
        (["--file-days", "feed_%Y%m%d.csv"], "strikes.csv: the name gives no day"),
        (["prep.empty_file=zero"], "prep.empty_file=zero needs --file-days"),
        (["--file-days", "feed_%Y.csv"], "lacks %Y, %m or %d"),
    ]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(
                ["prep", str(path), "--grid", GRID, "--out", str(tmp_path / "o.nc"), *extra]
            )
        lines = [ln for ln in err.getvalue().splitlines() if not PLAIN_LINE.match(ln)]
        assert code == 2 and match in err.getvalue() and len(lines) == 1  # besides progress
        assert not (tmp_path / "o.nc").exists()
