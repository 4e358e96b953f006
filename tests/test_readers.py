"""Readers: real NLDN tiles and GLM granules, registry, detection, and bad input of every kind."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from prep_files import (
    corrupt_parquet,
    strikes_frame,
    write_glm,
    write_gridded,
    write_nldn,
    write_parquet,
)

from data_prep.errors import UserError
from data_prep.readers import READERS, SlowPath, detect_format, get_reader
from data_prep.records import REASONS, ReadOptions, Records, Span, Tally


def _read(path, fmt="auto", **opts):
    """Every item a reader yields; a CSV the fast path cannot convert is read again as text."""
    _, reader = get_reader(fmt, path)
    try:
        tally = Tally()
        items = list(reader.read(path, ReadOptions(**opts), tally))
    except SlowPath:
        tally = Tally()
        items = list(reader.read(path, ReadOptions(**opts, robust=True), tally))
    recs = [r for r in items if isinstance(r, Records)]
    return recs, tally, items


def _concat(recs):
    return {k: np.concatenate([getattr(r, k) for r in recs]) for k in ("time", "lat", "lon")}


def test_nldn_real_file_has_every_strike_of_the_readme(realdata):
    path = realdata / "nldn_tiles" / "nldn-tiles-202402.csv.gz"
    assert detect_format(path) == "nldn-tiles"
    recs, tally, _ = _read(path)
    assert (tally.read_records, tally.read_strikes) == (26_861, 100_476)
    assert sum(tally.rejected_records.values()) == 0
    days = pd.to_datetime(np.concatenate([r.time for r in recs]), utc=True).strftime("%d")
    per_day = pd.Series(np.concatenate([r.count for r in recs])).groupby(days).sum()
    assert per_day.tolist() == [1577, 4869, 36473, 12671, 20728, 9763, 795, 849, 1802, 10949]


def test_glm_real_granules_decode_flash_times_inside_each_granule(realdata):
    files = sorted((realdata / "glm_lcfa_20s").glob("*.nc"))
    assert len(files) == 14
    total, kept = Tally(), 0
    for f in files:
        assert detect_format(f) == "glm"
        recs, tally, items = _read(f)
        span = next(i for i in items if isinstance(i, Span))
        for r in recs:  # flashes may start shortly before the granule, never long after
            assert np.all(r.time >= span.t0 - 5 * 10**9) and np.all(r.time <= span.t1)
        total.merge(tally)
        kept += sum(len(r) for r in recs)
    assert total.read_records == 2156 == kept + sum(total.rejected_records.values())
    assert total.rejected_records["quality_flag"] > 0


def test_points_parquet_with_synthetic_columns_reads_with_zero_rejections(tmp_path):
    df = strikes_frame(3000)
    path = write_parquet(df, tmp_path / "strikes.parquet", row_group_size=1000)
    assert detect_format(path) == "points-parquet"
    recs, tally, _ = _read(path, chunk_records=700, extra=True)
    assert tally.read_records == 3000 and sum(tally.rejected_records.values()) == 0
    got = _concat(recs)
    assert np.array_equal(got["time"], df["time"].dt.as_unit("ns").array.asi8)
    assert np.array_equal(got["lat"], df["lat"].to_numpy())
    assert set(np.concatenate([r.stroke_type for r in recs]).tolist()) == {1, 2}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_repeats_in_later_chunks_of_a_time_ordered_file_are_duplicates(tmp_path, fmt, monkeypatch):
    df = strikes_frame(1000, seed=4)
    # row 299 ends the first chunk of 300; its two repeats open the second one
    df = pd.concat([df.iloc[:300], df.iloc[[299, 299]], df.iloc[300:]]).reset_index(drop=True)
    if fmt == "parquet":
        path = write_parquet(df, tmp_path / "s.parquet", row_group_size=300)
        recs, tally, _ = _read(path, chunk_records=300)
    else:
        import data_prep.readers

        path = tmp_path / "s.csv"
        df.assign(time=df["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")).to_csv(path, index=False)
        monkeypatch.setattr(data_prep.readers, "CSV_BLOCK_BYTES", 8192)
        recs, tally, _ = _read(path)
    assert len(recs) > 2  # several chunks
    assert {k: v for k, v in tally.rejected_records.items() if v} == {"duplicate": 2}
    got = pd.DataFrame(_concat(recs))
    assert not got.duplicated().any() and len(got) == 1000 == tally.read_records - 2


def test_timezone_aware_times_convert_to_utc_and_naive_times_are_utc(tmp_path):
    path = tmp_path / "tz.csv"
    path.write_text(
        "time,lat,lon\n2021-06-01T02:00:00+02:00,40,-90\n2021-06-01T00:00:00,41,-90\n"
        "2021-06-01T00:00:00Z,42,-90\n"
    )
    recs, tally, _ = _read(path)
    utc = pd.Timestamp("2021-06-01", tz="UTC").value
    assert _concat(recs)["time"].tolist() == [utc] * 3


def test_columns_mapping_names_the_user_columns(tmp_path):
    df = strikes_frame(100).rename(columns={"time": "ts", "lat": "latitude", "lon": "x"})
    path = write_parquet(df, tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"no lon column.*--columns lon="):
        _read(path)
    recs, tally, _ = _read(path, "points", columns={"time": "ts", "lon": "x"})
    assert tally.gridded_records == 0 and sum(len(r) for r in recs) == 100


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(UserError, match="unknown format 'grib'.*nldn-tiles.*glm.*gridded"):
        get_reader("grib", tmp_path / "x")
    assert {"nldn-tiles", "points-csv", "points-parquet", "glm", "gridded"} <= set(READERS)


def test_csv_with_every_kind_of_bad_row_is_accounted_row_by_row(tmp_path):
    rows = [
        "2021-06-01T00:00:00Z,40.0,-90.0",  # good
        "not-a-time,40.0,-90.0",  # unparseable time
        "2021-06-01T01:00:00Z,abc,-90.0",  # unparseable lat
        "2021-06-01T02:00:00Z,,-90.0",  # empty lat -> nan_coordinate
        "2021-06-01T03:00:00Z,NaN,-90.0",  # NaN -> nan_coordinate
        "2021-06-01T04:00:00Z,95.0,-90.0",  # lat > 90 -> out_of_range_coordinate
        "2021-06-01T05:00:00Z,40.0,-190.0",  # lon < -180 -> out_of_range_coordinate
        "2021-06-01T00:00:00Z,40.0,-90.0",  # repeat of row 1 -> duplicate
        "2021-06-01T06:00:00Z,40.0",  # truncated row -> unparseable
        "2021-06-01T07:00:00Z,41.0,-91.0",  # good
    ]
    path = tmp_path / "bad.csv"
    path.write_text("time,lat,lon\n" + "\n".join(rows) + "\n")
    recs, tally, _ = _read(path)
    assert tally.read_records == 10
    assert tally.rejected_records == {
        **dict.fromkeys(REASONS, 0),
        "unparseable": 3,
        "nan_coordinate": 2,
        "out_of_range_coordinate": 2,
        "duplicate": 1,
    }
    assert sum(len(r) for r in recs) == 2


def test_nldn_duplicate_tile_days_and_bad_counts_are_rejected(tmp_path):
    rows = [
        (20240201, -90.0, 40.0, 3),
        (20240201, -90.0, 40.0, 3),
        (20240231, -90.0, 40.0, 1),
        (20240202, -90.1, 40.0, -2),
        (20240202, -90.1, 40.1, 5),
    ]
    recs, tally, _ = _read(write_nldn(tmp_path / "n.csv.gz", rows))
    assert tally.read_records == 5
    assert tally.rejected_records["duplicate"] == 1 and tally.rejected_strikes["duplicate"] == 3
    assert tally.rejected_records["unparseable"] == 2  # 31 February and a negative count
    assert sum(r.strikes() for r in recs) == 8


def test_swapped_lat_lon_columns_raise_with_the_fix(tmp_path):
    df = strikes_frame(50)
    df["lat"], df["lon"] = df["lon"] - 10, df["lat"]  # longitudes of the western US in 'lat'
    with pytest.raises(UserError, match=r"swapped.*--columns lat=lon,lon=lat"):
        _read(write_parquet(df, tmp_path / "s.parquet"))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty CSV file"),  # the reader's view: prep counts it as an empty file
        (b"time,lat,lon\n", None),
        (b"when,lat,lon\n2021-06-01,1,2\n", r"no time column.*--columns time="),
        (b"time,lat,lon\n1622505600000,40,-90\n", r"'time' holds epoch numbers.*time=time:ms"),
        (b"PAR1garbage", "not a readable Parquet file"),
    ],
)
def test_bad_files_raise_one_line_user_errors(tmp_path, content, match):
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    if match is None:  # a header without rows: nothing to read, nothing lost
        _, tally, _ = _read(path)
        assert tally.read_records == 0
        return
    with pytest.raises(UserError, match=match) as e:
        _read(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_truncated_gzip_raises_naming_the_file(tmp_path):
    rows = [(20240201, -90.0 + k * 0.1, 40.0, 1) for k in range(3000)]
    good = write_nldn(tmp_path / "g.csv.gz", rows)
    bad = tmp_path / "t.csv.gz"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(UserError, match=r"t\.csv\.gz: cannot read.*truncated"):
        _read(bad)


def test_netcdf_without_a_count_variable_raises(tmp_path):
    import xarray as xr

    path = tmp_path / "other.nc"
    xr.Dataset({"temperature": (("x",), np.zeros(3))}).to_netcdf(path)
    with pytest.raises(UserError, match=r"other\.nc: no numeric variable with \(time, lat, lon\)"):
        _read(path)
    with pytest.raises(UserError, match=r"variable flash_lat missing"):
        _read(path, "glm")


def test_glm_quality_flags_and_fill_values_are_rejected_with_reasons(tmp_path):
    path = write_glm(
        tmp_path / "g.nc",
        "2021-06-01 00:00:00",
        [35, 36, np.nan, 37],
        [-90, -91, -92, -93],
        [1.0, -0.5, 3.0, 19.0],
        [0, 3, 0, 0],
    )
    recs, tally, _ = _read(path)
    assert (
        tally.rejected_records["quality_flag"] == 1
        and tally.rejected_records["nan_coordinate"] == 1
    )
    t0 = pd.Timestamp("2021-06-01", tz="UTC").value
    assert (_concat(recs)["time"] - t0).tolist() == pytest.approx([1e9, 19e9], abs=1e6)


def test_gridded_netcdf_yields_cell_records_and_observed_cells(tmp_path):
    v = np.array([[[1, np.nan], [0, 2]], [[3, 4], [5, 6]]])
    path = write_gridded(
        tmp_path / "grd.nc", v, ["2021-06-01", "2021-06-03"], [35.1, 35.6], [-90.1, -89.9]
    )
    recs, tally, items = _read(path)
    assert tally.read_strikes == 21 and tally.read_records == 6
    assert sum(len(i.time) for i in items if not isinstance(i, Records)) == 7  # finite cells


def test_csv_gz_points_are_detected_and_read(tmp_path):
    df = strikes_frame(200)
    path = tmp_path / "p.csv.gz"
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)
    assert detect_format(path) == "points-csv"
    _, tally, _ = _read(path)
    assert tally.read_records == 200 and tally.balanced() is False  # not gridded yet


def _file_of_kind(kind: str, path):
    """A small file of ``kind``: netCDF-4 (HDF5), classic netCDF, gzip CSV, Parquet or CSV."""
    import xarray as xr

    if kind in ("netcdf4", "netcdf3"):
        ds = xr.Dataset({"flash_count": (("time", "lat", "lon"), np.ones((1, 2, 2)))})
        ds.to_netcdf(path, format="NETCDF4" if kind == "netcdf4" else "NETCDF3_CLASSIC")
        return path
    if kind == "gzip":
        return write_nldn(path, [(20240201, -90.0, 40.0, 2)])
    if kind == "parquet":
        return write_parquet(strikes_frame(10), path)
    path.write_text("time,lat,lon\n2021-06-01,40,-90\n")
    return path


@pytest.mark.parametrize(
    ("kind", "fmt", "match"),
    [
        ("netcdf4", "points-csv", r"looks like a netCDF-4/HDF5 file, not CSV text .*points-csv"),
        ("netcdf3", "nldn-tiles", r"looks like a netCDF \(classic\) file, not CSV text"),
        ("netcdf4", "points", r"looks like a netCDF-4/HDF5 file.*: glm or gridded"),
        ("gzip", "points-parquet", r"looks like a gzip file .*, not a Parquet file"),
        ("parquet", "glm", r"looks like a Parquet file, not a netCDF-4.*: points-parquet"),
        ("csv", "gridded", r"looks like CSV text, not .*: points-csv or nldn-tiles"),
    ],
)
def test_a_wrong_format_on_a_file_says_what_the_file_looks_like(tmp_path, kind, fmt, match):
    path = _file_of_kind(kind, tmp_path / "input.dat")
    with pytest.raises(UserError, match=match) as e:
        get_reader(fmt, path)
    assert str(path) in str(e.value) and "--format auto" in str(e.value)
    assert "\n" not in str(e.value)
    assert get_reader("auto", path)[0] in ("gridded", "nldn-tiles", "points-parquet", "points-csv")


def _glm(path, **kw):
    """A good one-flash granule at 2021-06-01 00:00:00 (``kw`` as for write_glm)."""
    return write_glm(path, "2021-06-01 00:00:00", [35.0], [-90.0], [1.0], [0], **kw)


@pytest.mark.parametrize(
    ("var", "units", "match"),
    [
        (
            "product_time",
            None,
            r"g\.nc: variable product_time has no units; "
            r"expected 'seconds since 2000-01-01 12:00:00' \(GOES GLM L2 LCFA\)",
        ),
        (
            "product_time",
            "seconds since launch day",
            r"g\.nc: variable product_time has units 'seconds since launch day', whose "
            r"reference date does not parse; expected 'seconds since 2000-01-01 12:00:00'",
        ),
        (
            "flash_time_offset_of_first_event",
            None,
            r"g\.nc: variable flash_time_offset_of_first_event has no units; "
            r"expected 'seconds since <granule start>' \(GOES GLM L2 LCFA\)",
        ),
        (
            "flash_time_offset_of_first_event",
            "seconds since 2021-13-45 00:00:00",
            r"g\.nc: variable flash_time_offset_of_first_event has units "
            r"'seconds since 2021-13-45 00:00:00', whose reference date does not parse",
        ),
        (
            "flash_time_offset_of_first_event",
            "fortnights since 2021-06-01",
            r"g\.nc: variable flash_time_offset_of_first_event has units 'fortnights since",
        ),
    ],
    ids=["product_time_none", "product_time_bad_date", "offset_none", "offset_bad_date", "unit"],
)
def test_glm_time_variable_without_usable_units_is_a_one_line_error_naming_it(
    tmp_path, var, units, match
):
    path = _glm(tmp_path / "g.nc", units={var: units})
    with pytest.raises(UserError, match=match) as e:
        _read(path, "glm")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("var", ["flash_lat", "flash_lon", "flash_quality_flag", "product_time"])
def test_glm_granule_missing_a_flash_variable_is_a_user_error_naming_it(tmp_path, var):
    import netCDF4

    path = _glm(tmp_path / "g.nc")
    with netCDF4.Dataset(path, "a") as ds:
        ds.renameVariable(var, f"old_{var}")
    with pytest.raises(UserError, match=rf"g\.nc: variable {var} missing; not a GLM L2 LCFA"):
        _read(path, "glm")


@pytest.mark.parametrize("where", ["page_header", "footer_count", "footer_name"])
def test_parquet_corrupt_in_the_middle_is_a_one_line_error_naming_the_file(tmp_path, where):
    path = write_parquet(strikes_frame(3000), tmp_path / "c.parquet", row_group_size=500)
    corrupt_parquet(path, where)
    with pytest.raises(UserError, match=r"c\.parquet: .*Parquet .*re-export") as e:
        _read(path, chunk_records=400)
    assert "\n" not in str(e.value)


def test_truncated_parquet_is_a_one_line_error_naming_the_file(tmp_path):
    good = write_parquet(strikes_frame(3000), tmp_path / "g.parquet", row_group_size=500)
    path = tmp_path / "t.parquet"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match=r"t\.parquet: not a readable Parquet file") as e:
        _read(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({}, r"time coordinate 'time' holds int64 values without units"),
        ({"units": "hours"}, r"time coordinate 'time' has units 'hours', which do not decode"),
        (
            {"units": "hours since launch day"},
            r"time coordinate 'time' has units 'hours since launch day', which do not decode",
        ),
        (
            {"units": "hours since 2021-06-01", "calendar": "noleap"},
            r"time coordinate 'time' has units 'hours since 2021-06-01' on calendar 'noleap'",
        ),
    ],
    ids=["no_units", "no_reference", "bad_date", "noleap"],
)
def test_gridded_numeric_time_without_cf_units_is_refused_not_read_as_nanoseconds(
    tmp_path, attrs, match
):
    v = np.ones((2, 2, 2))
    path = write_gridded(
        tmp_path / "n.nc", v, np.array([0, 24]), [35.1, 35.6], [-90.1, -89.9], time_attrs=attrs
    )
    with pytest.raises(UserError, match=rf"n\.nc: {match}.*'hours since 1970-01-01'") as e:
        _read(path)
    assert "\n" not in str(e.value)


def test_gridded_numeric_time_with_cf_units_is_decoded(tmp_path):
    v = np.ones((2, 2, 2))
    attrs = {"units": "hours since 2021-06-01"}
    path = write_gridded(
        tmp_path / "h.nc", v, np.array([0, 24]), [35.1, 35.6], [-90.1, -89.9], time_attrs=attrs
    )
    recs, _, _ = _read(path)
    t0 = pd.Timestamp("2021-06-01", tz="UTC").value
    assert sorted(set((_concat(recs)["time"] - t0).tolist())) == [0, 24 * 3600 * 10**9]


def test_times_beyond_what_int64_nanoseconds_hold_are_unparseable_rows(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    far = [dt.datetime(2021, 6, 1), dt.datetime(2300, 1, 1), None, dt.datetime(1500, 1, 1)]
    table = pa.table(
        {"time": pa.array(far, pa.timestamp("us", tz="UTC")), "lat": [40.0] * 4, "lon": [-90.0] * 4}
    )
    pq.write_table(table, tmp_path / "far.parquet")
    csv = tmp_path / "far.csv"
    csv.write_text("time,lat,lon\n2021-06-01T00:00:00Z,40,-90\n2300-01-01T00:00:00Z,40,-90\n")
    for path, n_bad in ((tmp_path / "far.parquet", 3), (csv, 1)):
        recs, tally, _ = _read(path)
        assert tally.read_records == 1 + n_bad and tally.rejected_records["unparseable"] == n_bad
        assert _concat(recs)["time"].tolist() == [pd.Timestamp("2021-06-01", tz="UTC").value]
