"""Readers of point feeds (NLDN tiles, CSV, Parquet): registry, detection, bad rows and files."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from prep_files import concat_coords as _concat
from prep_files import corrupt_parquet, strikes_frame, write_nldn, write_parquet
from prep_files import read_items as _read

from data_prep.errors import UserError
from data_prep.readers import READERS, detect_format, get_reader
from data_prep.records import REASONS


def test_nldn_real_file_has_every_strike_of_the_readme(realdata):
    path = realdata / "nldn_tiles" / "nldn-tiles-202402.csv.gz"
    assert detect_format(path) == "nldn-tiles"
    recs, tally, _ = _read(path)
    assert (tally.read_records, tally.read_strikes) == (26_861, 100_476)
    assert sum(tally.rejected_records.values()) == 0
    days = pd.to_datetime(np.concatenate([r.time for r in recs]), utc=True).strftime("%d")
    per_day = pd.Series(np.concatenate([r.count for r in recs])).groupby(days).sum()
    assert per_day.tolist() == [1577, 4869, 36473, 12671, 20728, 9763, 795, 849, 1802, 10949]


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


def test_csv_gz_points_are_detected_and_read(tmp_path):
    df = strikes_frame(200)
    path = tmp_path / "p.csv.gz"
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)
    assert detect_format(path) == "points-csv"
    _, tally, _ = _read(path)
    assert tally.read_records == 200 and tally.balanced() is False  # not gridded yet


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
