"""prep on an existing maps file: appending new inputs, skipping known ones, refusing changed ones."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr
from prep_files import PREP_SEQ as SEQ
from prep_files import plains_config as _cfg
from prep_files import strikes_frame, write_nldn, write_parquet

from data_prep.errors import UserError
from data_prep.prep import prep
from data_prep.records import Tally


def test_reprep_of_the_same_inputs_gives_identical_files(tmp_path):
    path = write_parquet(strikes_frame(500), tmp_path / "strikes.parquet")
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    prep([str(path)], a, _cfg(), SEQ)
    prep([str(path)], b, _cfg(), SEQ)
    before = a.read_bytes()
    s = prep([str(path)], a, _cfg(), SEQ)  # already in the archive: skipped, file untouched
    assert s.skipped == [str(path)] and a.read_bytes() == before
    assert a.read_bytes() == b.read_bytes()


def test_append_reads_only_new_inputs_and_sums_overlapping_steps(tmp_path):
    df = strikes_frame(900, days=6)
    first, second = df.iloc[:500], df.iloc[500:]  # the day at the cut is split across files
    p1 = write_parquet(first, tmp_path / "m1.parquet")
    p2 = write_parquet(second, tmp_path / "m2.parquet")
    whole = tmp_path / "whole.nc"
    prep([str(p1), str(p2)], whole, _cfg(), SEQ)
    arch = tmp_path / "arch.nc"
    prep([str(p1)], arch, _cfg(), SEQ)
    s = prep([str(tmp_path / "m*.parquet")], arch, _cfg(), SEQ)
    assert s.inputs == [str(p2)] and s.skipped == [str(p1)]
    a, w = xr.open_dataset(arch), xr.open_dataset(whole)
    assert np.array_equal(a.strike_count.values, w.strike_count.values)
    assert np.array_equal(a.coverage.values, w.coverage.values)
    assert Tally.from_attrs(a.attrs).read_records == 900
    write_parquet(first.iloc[:10], p1)  # an input changed after it was gridded
    with pytest.raises(UserError, match=r"m1\.parquet: changed since it was gridded"):
        prep([str(p1)], arch, _cfg(), SEQ)


def test_a_changed_file_with_a_known_name_is_refused_even_from_another_folder(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    p1 = write_parquet(strikes_frame(300), tmp_path / "a" / "feed.parquet")
    arch = tmp_path / "arch.nc"
    prep([str(p1)], arch, _cfg(), SEQ)
    before = arch.read_bytes()
    moved = tmp_path / "b" / "feed.parquet"
    moved.write_bytes(p1.read_bytes())
    os.utime(moved, ns=(p1.stat().st_atime_ns, p1.stat().st_mtime_ns))
    assert prep([str(moved)], arch, _cfg(), SEQ).skipped == [str(moved)]  # moved: still known
    other = write_parquet(strikes_frame(400, seed=3), tmp_path / "b" / "feed.parquet")
    with pytest.raises(
        UserError, match=r"b/feed\.parquet: changed since it was gridded .*new --out"
    ):
        prep([str(other)], arch, _cfg(), SEQ)
    assert arch.read_bytes() == before


def test_nldn_days_already_in_the_archive_are_refused_not_counted_twice(tmp_path):
    a = write_nldn(tmp_path / "a.csv.gz", [(20240201, -90.0, 40.0, 2), (20240202, -90.0, 40.0, 3)])
    b = write_nldn(tmp_path / "b.csv.gz", [(20240202, -90.0, 40.0, 3), (20240203, -90.0, 40.0, 4)])
    c = write_nldn(tmp_path / "c.csv.gz", [(20240204, -91.0, 41.0, 5)])
    arch = tmp_path / "arch.nc"
    prep([str(a)], arch, _cfg(), SEQ)
    before = arch.read_bytes()
    with pytest.raises(
        UserError,
        match=r"b\.csv\.gz: strikes on 2024-02-02 are already gridded "
        r"from a\.csv\.gz in .*arch\.nc; nldn-tiles are whole-day",
    ):
        prep([str(b)], arch, _cfg(), SEQ)
    assert arch.read_bytes() == before
    with pytest.raises(UserError, match=r"b\.csv\.gz: .* from a\.csv\.gz, also given"):
        prep([str(a), str(b)], tmp_path / "new.nc", _cfg(), SEQ)
    assert not (tmp_path / "new.nc").exists()
    s = prep([str(a), str(c)], arch, _cfg(), SEQ)  # a is skipped, c's day is new
    assert s.inputs == [str(c)] and s.skipped == [str(a)]
    ds = xr.open_dataset(arch)
    assert ds.strike_count.sum(("lat", "lon")).values.tolist() == [2, 3, 0, 5]
    assert Tally.from_attrs(ds.attrs).gridded_strikes == 10
    entries = {e["path"]: e for e in json.loads(ds.attrs["inputs"])}
    assert entries[str(a)]["steps"] == [["2024-02-01", "2024-02-02"]]
