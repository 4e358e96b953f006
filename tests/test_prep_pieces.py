"""One large input gridded in pieces by several workers: the same maps bit for bit, the same
accounting (records read, gridded, rejected by reason) and the same coverage as one worker,
whatever the order of the records; CSV ranges cut at line starts lose and double no record."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from prep_files import PREP_SEQ, plains_config, strikes_frame, write_gridded, write_parquet

import data_prep.readers
from data_prep import gridding, pieces
from data_prep.csv_files import data_start, range_bounds
from data_prep.pieces import plan_pieces, seeds
from data_prep.prep import prep
from data_prep.records import DedupState, ReadOptions


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    """Any file is cut (into about 2 pieces per worker), CSV ranges are 4 KiB."""
    monkeypatch.setattr(pieces, "MIN_PIECE_BYTES", 1)
    monkeypatch.setattr(data_prep.readers, "CSV_BLOCK_BYTES", 4096)


@pytest.fixture
def seeded(monkeypatch):
    """The seeds given to pieces read again (a list of lists, one per file)."""
    given = []

    def spy(states):
        out = seeds(states)
        given.append(out)
        return out

    monkeypatch.setattr(gridding, "seeds", spy)
    return given


def messy_frame(n: int = 3000, seed: int = 0, shuffled: bool = False) -> pd.DataFrame:
    """Strikes at 10-minute resolution, 12 hours without any after the first ``n / 2`` (an edge
    of pieces: row group 6 of 250 rows); each 10-minute group written twice over, so a piece
    edge inside a group has repeats on both sides; some outside the domain, some with a NaN or
    out-of-range coordinate; sorted in time, or shuffled."""
    df = strikes_frame(n // 2, seed=seed, days=2)[["time", "lat", "lon"]]
    df["time"] = df["time"].dt.floor("10min")
    df.loc[df.index >= n // 4, "time"] += pd.Timedelta("12h")
    df = pd.concat([pd.concat([g, g]) for _, g in df.groupby("time", sort=True)])
    df = df.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    df.loc[rng.choice(n, 30, replace=False), "lat"] = 10.0  # outside the plains grid
    df.loc[rng.choice(n, 10, replace=False), "lon"] = np.nan
    df.loc[rng.choice(n, 10, replace=False), "lat"] = 95.0
    return df.sample(frac=1, random_state=seed) if shuffled else df


def _prep_both(tmp_path, path, **cfg) -> tuple[xr.Dataset, xr.Dataset]:
    """The maps of ``path`` from one worker and from two (dask threads, in this process)."""
    one, two = tmp_path / "one.nc", tmp_path / "two.nc"
    base = {"time_step": "1h", "chunk_records": 100, "start": "2021-06-01T06:00", **cfg}
    prep([str(path)], one, plains_config(**base), PREP_SEQ)
    prep([str(path)], two, plains_config(**base, workers=2), PREP_SEQ, scheduler="threads")
    return xr.open_dataset(one), xr.open_dataset(two)


def _assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    assert a.identical(b)  # counts, coverage, times and every accounting attribute
    assert a.attrs["records_rejected_duplicate"] > 0 and a.attrs["records_rejected_nan_coordinate"]
    assert a.attrs["records_rejected_outside_time_range"] > 0
    assert a.attrs["records_rejected_outside_domain"] > 0
    assert int(a.strike_count.sum()) == a.attrs["strikes_gridded"] > 0


def _write_csv(df: pd.DataFrame, path, extra: dict[int, str] | None = None):
    lines = df.assign(time=df["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(index=False)
    lines = lines.splitlines(keepends=True)
    for at, line in sorted((extra or {}).items(), reverse=True):
        lines.insert(at, line)
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("shuffled", [False, True], ids=["time-ordered", "shuffled"])
def test_parquet_row_groups_on_two_workers_give_the_maps_and_accounting_of_one(
    tmp_path, shuffled, seeded
):
    path = write_parquet(messy_frame(shuffled=shuffled), tmp_path / "s.parquet", row_group_size=250)
    assert len(plan_pieces([(path, "points-parquet")], 2)[0]) == 4
    one, two = _prep_both(tmp_path, path)
    _assert_same(one, two)
    # pieces whose first records share a time with the pieces before them were read again
    assert any(s is not None for s in seeded[0])
    # the hours without strikes between two pieces are observed: the file spans them
    assert one.coverage.min(("lat", "lon")).values.all()


@pytest.mark.parametrize("shuffled", [False, True], ids=["time-ordered", "shuffled"])
def test_csv_ranges_on_two_workers_give_the_maps_and_accounting_of_one(tmp_path, shuffled, seeded):
    bad = {700: "2021-06-01T12:00:00Z,40.0\n", 2100: "2021-06-01T12:00:00Z,41.0,-90,7\n"}
    path = _write_csv(messy_frame(shuffled=shuffled), tmp_path / "s.csv", bad)
    assert len(plan_pieces([(path, "points-csv")], 2)[0]) == 4
    a, b = _prep_both(tmp_path, path)
    _assert_same(a, b)
    assert a.attrs["records_rejected_unparseable"] == 2  # the rows of 2 and 4 fields
    assert any(s is not None for s in seeded[0])


def test_a_csv_value_the_fast_path_cannot_convert_rereads_every_piece_as_text(tmp_path):
    path = _write_csv(messy_frame(), tmp_path / "s.csv", {2500: "2021-06-02T01:00:00Z,abc,-90\n"})
    a, b = _prep_both(tmp_path, path)
    _assert_same(a, b)
    assert a.attrs["records_rejected_unparseable"] == 1


def test_csv_ranges_start_at_line_starts_and_hold_every_line_once(tmp_path):
    rows = [
        f"2021-06-01T00:{k % 60:02d}:00Z,{30 + k % 16}.{'5' * (k % 9)},-90\n" for k in range(300)
    ]
    path = tmp_path / "s.csv"
    path.write_text("time,lat,lon\n" + "".join(rows).rstrip("\n"))  # no newline at the end
    data, start = path.read_bytes(), data_start(path, 0)
    assert start == len("time,lat,lon\n")
    bounds = range_bounds(path, start, 97)
    mid_line = [k for k in range(start + 97, len(data), 97) if data[k - 1 : k] != b"\n"]
    assert mid_line and len(bounds) > 50  # most cuts asked for fall inside a line
    assert bounds[0] == start and bounds[-1] == len(data)
    assert all(data[b - 1 : b] == b"\n" for b in bounds[1:-1])
    ranges = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert b"".join(ranges) == data[start:]
    one, two = _prep_both(tmp_path, path, start=None)
    assert one.identical(two) and one.attrs["records_read"] == 300 == one.attrs["records_gridded"]


def test_a_gzip_csv_is_one_piece_and_grids_as_with_one_worker(tmp_path):
    text = _write_csv(messy_frame(), tmp_path / "s.csv").read_bytes()
    path = tmp_path / "s.csv.gz"
    path.write_bytes(gzip.compress(text))
    assert len(plan_pieces([(path, "points-csv")], 2)[0]) == 1
    _assert_same(*_prep_both(tmp_path, path))


def test_a_gridded_file_on_two_workers_in_chunks_of_steps_gives_the_maps_of_one(tmp_path):
    rng = np.random.default_rng(3)
    v = rng.poisson(0.5, (40, 8, 8)).astype(float)
    v[rng.random(v.shape) < 0.1] = np.nan  # cells without data
    v[[5, 6, 21]] = np.nan  # steps without data
    lat, lon = 40.125 + 0.25 * np.arange(8), -95.875 + 0.25 * np.arange(8)
    times = pd.date_range("2021-06-01", periods=40, freq="1h")
    path = write_gridded(tmp_path / "g.nc", v, times, lat, lon)
    planned = plan_pieces([(path, "gridded")], 2, ReadOptions(chunk_records=200))[0]
    assert [p.part for p in planned] == [
        (0, 3, 6, 9, 12),
        (12, 15, 18, 21),
        (21, 24, 27, 30),
        (30, 33, 36, 39, 40),
    ]
    one, two = _prep_both(tmp_path, path, start=None, chunk_records=200)
    assert one.identical(two) and int(one.strike_count.sum()) == int(np.nansum(v))
    assert one.coverage.max(("lat", "lon")).values[[5, 6, 21]].tolist() == [0, 0, 0]


def test_many_small_files_stay_one_piece_each(monkeypatch, tmp_path):
    monkeypatch.setattr(pieces, "MIN_PIECE_BYTES", 1 << 25)
    paths = [write_parquet(strikes_frame(50, seed=k), tmp_path / f"{k}.parquet") for k in range(3)]
    planned = plan_pieces([(p, "points-parquet") for p in paths], 2)
    assert [len(ps) for ps in planned] == [1, 1, 1] and planned[0][0].part is None


def _state(first, last, *lats):
    if first is None:
        return DedupState(None, None)
    t = np.full(len(lats), last, np.int64)
    return DedupState(first, (t, np.array(lats, float), np.zeros(len(lats))))


def test_seeds_are_the_records_at_the_latest_time_before_a_piece_that_reaches_back_to_it():
    states = [
        _state(10, 20, 1.0),  # the first piece: nothing before it
        _state(21, 30, 2.0),  # after 20: on its own
        _state(30, 30, 3.0),  # starts at 30: seeded with the records at 30 before it
        _state(5, 25, 4.0),  # out of order: seeded with both pieces' records at 30
        _state(None, None),  # no record
        None,  # not a points piece
        _state(31, 40, 5.0),  # after 30: on its own
    ]
    got = seeds(states)
    assert [None if s is None else s[1].tolist() for s in got] == [
        None,
        None,
        [2.0],
        [2.0, 3.0],
        None,
        None,
        None,
    ]
