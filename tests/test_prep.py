"""prep end to end: the maps file, its accounting, no-data steps, dask, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from prep_files import PLAINS, corrupt_parquet, strikes_frame, write_glm, write_nldn, write_parquet
from prep_files import PREP_SEQ as SEQ
from prep_files import plains_config as _cfg

from data_prep.cli import main
from data_prep.config import SequenceConfig
from data_prep.errors import UserError
from data_prep.prep import prep
from data_prep.records import REASONS, Tally


def test_nldn_real_month_gives_ten_daily_maps_that_account_for_every_strike(realdata, tmp_path):
    out = tmp_path / "nldn.nc"
    s = prep(
        [str(realdata / "nldn_tiles" / "nldn-tiles-202402.csv.gz")],
        out,
        _cfg(grid="conus-0.25"),
        SEQ,
    )
    ds = xr.open_dataset(out)
    assert ds.sizes == {"time": 10, "lat": 104, "lon": 236, "nv": 2}  # nv: time_bnds
    t = Tally.from_attrs(ds.attrs)
    assert t.read_strikes == 100_476 and t.balanced() and s.tally.balanced()
    # 97,083 strikes have tile centres in [24, 50] x [-125, -66]; 3 lie on the east edge (-66.0)
    assert int(ds.strike_count.sum()) == t.gridded_strikes == 97_080
    assert t.rejected_strikes["outside_domain"] == 3_396
    assert int(ds.coverage.min()) == 1
    assert "read" in str(s) and "outside_domain" in str(s)


def test_maps_file_follows_the_cf_layout(tmp_path):
    path = write_parquet(strikes_frame(500), tmp_path / "strikes.parquet")
    out = tmp_path / "maps.nc"
    prep([str(path)], out, _cfg(time_step="6h"), SEQ)
    ds = xr.open_dataset(out)
    assert ds.strike_count.dtype == np.int32 and ds.coverage.dtype == np.int8
    assert ds.strike_count.dims == ("time", "lat", "lon")
    assert ds.lat.attrs["standard_name"] == "latitude" and ds.lon.attrs["axis"] == "X"
    assert ds.time.attrs["axis"] == "T" and ds.time.encoding["units"].startswith(
        "seconds since 1970"
    )
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["time_step_seconds"] == 6 * 3600
    assert ds.strike_count.encoding["zlib"] and ds.strike_count.encoding["chunksizes"][1:] == (
        32,
        48,
    )
    assert json.loads(ds.attrs["inputs"])[0]["format"] == "points-parquet"
    assert int(ds.strike_count.sum()) == 500 and ds.sizes["time"] == 20
    assert (out.stat().st_mode & 0o777) != 0o600
    # counts are sums over the step [time, time + 6 h), stated by cell_methods and time_bnds
    assert ds.strike_count.attrs["cell_methods"] == "time: sum"
    assert ds.time.attrs["bounds"] == "time_bnds" and ds.time.encoding["dtype"] == np.float64
    step = np.timedelta64(6, "h")
    assert (ds.time_bnds[:, 0] == ds.time).all() and (ds.time_bnds[:, 1] == ds.time + step).all()


def test_glm_steps_without_granules_are_marked_no_data(tmp_path):
    for k in range(3):  # 3 x 20 s granules fill minute 00:01; minute 00:03 has one granule
        write_glm(
            tmp_path / f"g{k}.nc", f"2021-06-01 00:01:{20 * k:02d}", [40.0], [-90.0], [1.0], [0]
        )
    write_glm(
        tmp_path / "g3.nc", "2021-06-01 00:03:00", [40.0, 41.0], [-90.0, -90.0], [1.0, 2.0], [0, 5]
    )
    out = tmp_path / "glm.nc"
    s = prep([str(tmp_path / "g*.nc")], out, _cfg(time_step="1min"), SEQ)
    ds = xr.open_dataset(out)
    assert ds.coverage.max(("lat", "lon")).values.tolist() == [1, 0, 0]
    assert ds.strike_count.sum(("lat", "lon")).values.tolist() == [3, 0, 1]
    assert s.tally.rejected_records["quality_flag"] == 1 and s.tally.balanced()


def test_days_no_nldn_file_lists_are_no_data_not_zero_strikes(tmp_path):
    # January 1-2 in one month file, January 5 in another: days 3 and 4 were never observed
    write_nldn(tmp_path / "a.csv.gz", [(20210101, -90.0, 40.0, 3), (20210102, -130.0, 40.0, 1)])
    write_nldn(tmp_path / "b.csv.gz", [(20210105, -85.0, 35.0, 2)])
    out = tmp_path / "nldn.nc"
    prep([str(tmp_path / "*.csv.gz")], out, _cfg(), SEQ)
    ds = xr.open_dataset(out)
    # day 2's only tile is outside the domain, yet the network reported that day: observed zeros
    assert ds.coverage.min(("lat", "lon")).values.tolist() == [1, 1, 0, 0, 1]
    assert ds.coverage.max(("lat", "lon")).values.tolist() == [1, 1, 0, 0, 1]
    assert ds.strike_count.sum(("lat", "lon")).values.tolist() == [3, 0, 0, 0, 2]


def test_point_feeds_observe_from_first_to_last_record_or_the_given_range(tmp_path):
    a = write_parquet(strikes_frame(50, seed=1, days=2, start="2021-06-01"), tmp_path / "a.parquet")
    b = write_parquet(strikes_frame(50, seed=2, days=2, start="2021-06-06"), tmp_path / "b.parquet")
    gap = tmp_path / "gap.nc"
    prep([str(a), str(b)], gap, _cfg(), SEQ)
    cov = xr.open_dataset(gap).coverage.max(("lat", "lon")).values.tolist()
    assert cov == [1, 1, 0, 0, 0, 1, 1]  # June 3-5 fall between the two feeds' records
    declared = tmp_path / "declared.nc"
    prep([str(a)], declared, _cfg(start="2021-05-30", end="2021-06-04T23:59"), SEQ)
    ds = xr.open_dataset(declared)
    assert ds.coverage.min(("lat", "lon")).values.tolist() == [1] * 6  # quiet days observed
    assert ds.strike_count.sum(("lat", "lon")).values.tolist()[:2] == [0, 0]


def test_start_end_extend_only_the_outer_feeds_and_days_between_feeds_stay_no_data(tmp_path):
    # feed a: June 1-2, feed b: June 6-7; --start May 30 and --end June 9 reach only the outer ends
    a = write_parquet(strikes_frame(50, seed=1, days=2, start="2021-06-01"), tmp_path / "a.parquet")
    b = write_parquet(strikes_frame(50, seed=2, days=2, start="2021-06-06"), tmp_path / "b.parquet")
    out = tmp_path / "ranged.nc"
    prep([str(a), str(b)], out, _cfg(start="2021-05-30", end="2021-06-09T23:59"), SEQ)
    ds = xr.open_dataset(out)
    assert ds.time.values[0] == np.datetime64("2021-05-30")
    # May 30-31 and June 8-9: quiet ends observed; June 3-5 between the feeds: no data
    want = [1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1]
    assert ds.coverage.min(("lat", "lon")).values.tolist() == want
    assert ds.coverage.max(("lat", "lon")).values.tolist() == want
    assert ds.strike_count.sum(("lat", "lon")).values[[0, 1, 9, 10]].tolist() == [0, 0, 0, 0]


def test_dask_local_cluster_gives_the_same_maps_as_the_serial_path(tmp_path):
    paths = [
        write_parquet(strikes_frame(300, seed=k), tmp_path / f"s{k}.parquet") for k in range(3)
    ]
    serial, par = tmp_path / "serial.nc", tmp_path / "par.nc"
    prep([str(p) for p in paths], serial, _cfg(), SEQ)
    prep([str(p) for p in paths], par, _cfg(workers=2), SEQ)
    a, b = xr.open_dataset(serial), xr.open_dataset(par)
    assert a.identical(b) and int(a.strike_count.sum()) == 900


def test_an_existing_dask_scheduler_gives_the_same_maps_as_the_serial_path(tmp_path):
    from distributed import LocalCluster

    paths = [
        write_parquet(strikes_frame(300, seed=k), tmp_path / f"s{k}.parquet") for k in range(3)
    ]
    serial, remote = tmp_path / "serial.nc", tmp_path / "remote.nc"
    prep([str(p) for p in paths], serial, _cfg(), SEQ)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        prep([str(p) for p in paths], remote, _cfg(), SEQ, scheduler=cluster.scheduler_address)
    assert xr.open_dataset(serial).identical(xr.open_dataset(remote))


def test_time_range_and_bad_inputs_never_leave_a_partial_output(tmp_path):
    good = write_nldn(
        tmp_path / "a.csv.gz", [(20240201, -90.0, 40.0, 2), (20240205, -90.0, 40.0, 1)]
    )
    bad = tmp_path / "b.csv.gz"
    bad.write_bytes(good.read_bytes()[:-12])
    out = tmp_path / "maps.nc"
    with pytest.raises(UserError, match=r"b\.csv\.gz"):
        prep([str(good), str(bad)], out, _cfg(), SEQ)
    assert not out.exists() and not list(tmp_path.glob(".maps.nc*"))
    s = prep([str(good)], out, _cfg(start="2024-02-02", end="2024-02-06"), SEQ)
    assert s.tally.rejected_strikes["outside_time_range"] == 2
    assert pd.DatetimeIndex(xr.open_dataset(out).time.values)[0] == pd.Timestamp("2024-02-02")


def test_cli_prep_writes_maps_and_windows_for_synthetic_strikes(tmp_path, capsys):
    df = strikes_frame(3000, days=40)
    path = write_parquet(df, tmp_path / "strikes.parquet")
    out = tmp_path / "maps.nc"
    rc = main(
        [
            "prep",
            str(path),
            "data.n_in=5",
            "data.n_out=1",
            "data.block_steps=8",
            "--grid",
            PLAINS,
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "gridded" in text and "3,000" in text
    assert out.exists() and out.with_name("maps.windows.nc").exists()
    assert main(["prep", str(path), "--format", "grib", "--out", str(out)]) == 2
    assert "unknown format 'grib'" in capsys.readouterr().err


def test_gridded_input_is_regridded_by_summing_and_nan_or_missing_steps_are_no_data(tmp_path):
    from prep_files import write_gridded

    v = np.full((2, 4, 4), np.nan)
    v[0] = np.arange(16).reshape(4, 4)  # 0.25-degree cells: 2 x 2 of them per 0.5-degree cell
    v[1, :2, :2] = 1.0
    lat, lon = 40.125 + 0.25 * np.arange(4), 260.125 + 0.25 * np.arange(4)  # 0..360 longitudes
    path = write_gridded(tmp_path / "g.nc", v, ["2021-06-01", "2021-06-03"], lat, lon)
    out = tmp_path / "maps.nc"
    s = prep([str(path)], out, _cfg(), SEQ)
    ds = xr.open_dataset(out).sel(lat=slice(40, 41), lon=slice(-100, -99))
    assert ds.strike_count.sum(("lat", "lon")).values.tolist() == [120, 0, 4]
    assert ds.strike_count.isel(time=0).values.tolist() == [[10, 18], [42, 50]]
    assert ds.coverage.sum(("lat", "lon")).values.tolist() == [4, 0, 1]  # day 2 absent
    assert s.tally.read_strikes == 124 and s.tally.balanced()


def test_threaded_scheduler_and_open_maps_errors(tmp_path):
    from data_prep.io import open_maps

    path = write_parquet(strikes_frame(300), tmp_path / "s.parquet")
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    prep([str(path)], a, _cfg(), SEQ)
    prep([str(path)], b, _cfg(), SEQ, scheduler="threads")
    assert a.read_bytes() == b.read_bytes()
    assert open_maps(a)["coverage"].dtype == np.int8
    with pytest.raises(UserError, match=r"missing\.nc: maps file not found"):
        open_maps(tmp_path / "missing.nc")
    xr.Dataset({"x": (("t",), np.zeros(2))}).to_netcdf(tmp_path / "other.nc")
    with pytest.raises(UserError, match=r"other\.nc: variable 'strike_count' missing"):
        open_maps(tmp_path / "other.nc")


def test_out_that_is_a_directory_asks_for_a_nc_file_path(tmp_path):
    path = write_parquet(strikes_frame(50), tmp_path / "s.parquet")
    (tmp_path / "maps").mkdir()
    with pytest.raises(UserError, match=r"--out .*maps is a directory; give the path of a \.nc"):
        prep([str(path)], tmp_path / "maps", _cfg(), SEQ)


def test_out_under_a_file_is_refused_before_gridding(tmp_path, monkeypatch):
    import data_prep.prep as prep_module

    path = write_parquet(strikes_frame(50), tmp_path / "s.parquet")
    (tmp_path / "runs").write_text("a file")
    monkeypatch.setattr(prep_module, "grid_all", None)  # gridding would fail loudly
    with pytest.raises(UserError, match=r"runs is a file, not a folder"):
        prep([str(path)], tmp_path / "runs" / "maps.nc", _cfg(), SEQ)


@pytest.mark.parametrize(
    ("seq", "match"),
    [
        (SequenceConfig(n_in=3, n_out=1), r"data\.n_in 3 must be between 5 and 10"),
        (SequenceConfig(n_in=11, n_out=1), r"data\.n_in 11 must be between 5 and 10"),
        (SequenceConfig(n_in=5, n_out=0), r"data\.n_out 0 must be at least 1"),
    ],
    ids=["n_in_3", "n_in_11", "n_out_0"],
)
def test_sequence_lengths_outside_their_range_are_refused_before_any_output(tmp_path, seq, match):
    path = write_parquet(strikes_frame(50), tmp_path / "s.parquet")
    with pytest.raises(UserError, match=match):
        prep([str(path)], tmp_path / "maps.nc", _cfg(), seq)
    assert not (tmp_path / "maps.nc").exists()


@pytest.mark.parametrize("workers", [0, -2])
def test_workers_below_one_are_refused(tmp_path, workers):
    path = write_parquet(strikes_frame(50), tmp_path / "s.parquet")
    with pytest.raises(UserError, match=rf"--workers \(prep\.workers\) {workers} must be"):
        prep([str(path)], tmp_path / "maps.nc", _cfg(workers=workers), SEQ)


def test_unreachable_scheduler_is_a_user_error_naming_the_address(tmp_path, monkeypatch):
    import data_prep.gridding as gridding

    monkeypatch.setattr(gridding, "SCHEDULER_TIMEOUT", "1s")
    path = write_parquet(strikes_frame(50), tmp_path / "s.parquet")
    with pytest.raises(UserError, match=r"--scheduler tcp://127\.0\.0\.1:1: cannot reach") as e:
        prep([str(path)], tmp_path / "maps.nc", _cfg(), SEQ, scheduler="tcp://127.0.0.1:1")
    assert "\n" not in str(e.value) and not (tmp_path / "maps.nc").exists()


# Each row of a points CSV, labelled with what must become of it on plains-0.5 (30..46 N,
# 104..80 W, 0.5 degrees) from 2021-06-01 to 2021-06-03: a good row names its (lat, lon) cell.
LABELLED_ROWS = [
    ("2021-06-01T00:10:00Z,40.2,-90.3", (40.25, -90.25)),
    ("2021-06-01T12:00:00Z,35.7,-100.9", (35.75, -100.75)),
    ("2021-06-02T06:00:00Z,40.2,-90.3", (40.25, -90.25)),
    ("2021-06-02T12:00:00Z,35.7,259.1", (35.75, -100.75)),  # 0..360 longitude
    ("2021-06-02T00:00:00Z,30.0,-104.0", (30.25, -103.75)),  # south-west corner: inside
    ("2021-06-03T23:59:59Z,45.9,-80.1", (45.75, -80.25)),
    ("not-a-time,40.0,-90.0", "unparseable"),
    ("2021-06-01T01:00:00Z,abc,-90.0", "unparseable"),
    ("2021-06-01T01:30:00Z,40.0", "unparseable"),  # a field short
    ("2021-06-01T02:00:00Z,NaN,-90.0", "nan_coordinate"),
    ("2021-06-01T02:30:00Z,40.0,", "nan_coordinate"),  # empty lon
    ("2021-06-01T03:00:00Z,95.0,-90.0", "out_of_range_coordinate"),
    ("2021-06-01T04:00:00Z,-97.5,38.2", "out_of_range_coordinate"),  # lat and lon swapped
    ("2021-06-01T05:00:00Z,50.0,-90.0", "outside_domain"),
    ("2021-06-01T05:30:00Z,40.0,-80.0", "outside_domain"),  # the east edge is outside
    ("2021-05-31T23:59:59Z,40.2,-90.3", "outside_time_range"),  # before --start
    ("2021-06-04T00:00:00Z,40.2,-90.3", "outside_time_range"),  # after the --end step
    ("2021-06-01T00:10:00Z,40.2,-90.3", "duplicate"),  # the first row again
]


def test_a_points_csv_with_every_kind_of_bad_row_is_accounted_for_row_by_row(tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text("time,lat,lon\n" + "".join(f"{row}\n" for row, _ in LABELLED_ROWS))
    out = tmp_path / "maps.nc"
    s = prep([str(path)], out, _cfg(start="2021-06-01", end="2021-06-03"), SEQ)
    ds = xr.open_dataset(out)
    t = Tally.from_attrs(ds.attrs)
    reasons = [what for _, what in LABELLED_ROWS if isinstance(what, str)]
    expected = {r: reasons.count(r) for r in REASONS}
    assert t.rejected_records == expected == t.rejected_strikes == s.tally.rejected_records
    good = [(row, cell) for row, cell in LABELLED_ROWS if not isinstance(cell, str)]
    assert t.read_records == len(LABELLED_ROWS) == t.gridded_records + sum(expected.values())
    assert t.gridded_records == len(good) == int(ds.strike_count.sum()) and t.balanced()
    want: dict = {}
    for row, (lat, lon) in good:
        key = (pd.Timestamp(row.split(",")[0]).tz_localize(None).floor("D"), lat, lon)
        want[key] = want.get(key, 0) + 1
    cells = ds.strike_count.to_series()
    assert {k: int(n) for k, n in cells[cells > 0].items()} == want
    assert len({len(line) for line in s.tally.table().splitlines()}) == 1  # columns line up


def test_a_corrupt_parquet_input_stops_prep_with_one_line_error_and_no_output(tmp_path):
    path = write_parquet(strikes_frame(3000), tmp_path / "c.parquet", row_group_size=500)
    corrupt_parquet(path, "page_header")
    out = tmp_path / "maps.nc"
    with pytest.raises(UserError, match=r"c\.parquet: cannot read Parquet data") as e:
        prep([str(path)], out, _cfg(), SEQ)
    assert "\n" not in str(e.value) and not out.exists()
