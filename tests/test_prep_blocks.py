"""prep out of core: maps written block by block equal the in-memory maps bit for bit; an
append writes its steps in place without reading the old rows; an interrupted append rolls back."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from prep_files import strikes_frame, write_glm, write_parquet

from data_prep import maps_file, spill
from data_prep.archive import provenance
from data_prep.config import PrepConfig, SequenceConfig
from data_prep.errors import UserError
from data_prep.io import open_maps, write_netcdf_atomic
from data_prep.journal import journal_path
from data_prep.prep import grid_all, make_clock, prep, read_options
from data_prep.schema import (
    COORD_ATTRS,
    COUNT,
    COUNT_ATTRS,
    COVERAGE,
    COVERAGE_ATTRS,
    TIME,
    TIME_BOUNDS,
    get_grid,
    grid_coords,
    parse_time_step,
    time_bounds,
)

SEQ = SequenceConfig(n_in=5, n_out=1, block_steps=8)
CFG = PrepConfig(grid="plains-0.5", time_step="1h")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 16 steps and every row spilled to disk at once: many blocks, many parts."""
    monkeypatch.setattr(maps_file, "BLOCK_BYTES", 1)
    monkeypatch.setattr(spill, "SPILL_BYTES", 1)


def in_memory_maps(files, cfg: PrepConfig, out):
    """The maps as prep made them before blocks: the whole archive as one array, one write."""
    grid, step = get_grid(cfg.grid), parse_time_step(cfg.time_step)
    clock = make_clock(cfg, step, None)
    plan = [(f, fmt) for f, fmt in files]
    acc, tally, steps = grid_all(plan, grid, clock, read_options(cfg, None))
    k0, k1 = acc.step_range()
    counts, cov = acc.maps(k0, k1, cfg.min_granule_fraction)
    edges = clock.start(np.arange(k0, k1 + 2)).astype("datetime64[ns]")
    dims = (TIME, "lat", "lon")
    ds = xr.Dataset(
        {
            COUNT: (dims, counts.astype(np.int32), COUNT_ATTRS),
            COVERAGE: (dims, cov.astype(np.int8), COVERAGE_ATTRS),
            TIME_BOUNDS: time_bounds(edges),
        },
        coords={
            TIME: ((TIME,), edges[:-1], {**COORD_ATTRS[TIME], "bounds": TIME_BOUNDS}),
            **grid_coords(grid),
        },  # fmt: skip
        attrs={**provenance(plan, steps, [], cfg), **tally.to_attrs()},
    )
    chunks = {"zlib": True, "complevel": 4, "chunksizes": (min(k1 - k0 + 1, 16), *grid.shape)}
    encoding = {  # as prep wrote maps before blocks
        COUNT: {**chunks, "_FillValue": None, "dtype": "int32"},
        COVERAGE: {**chunks, "_FillValue": None, "dtype": "int8"},
        "lat": {"_FillValue": None},
        "lon": {"_FillValue": None},
    }
    write_netcdf_atomic(ds, out, encoding=encoding)
    return out


def assert_same_file_contents(a, b):
    """Every variable's values, dtype, attributes and on-disk encoding, and the global attributes."""
    with xr.open_dataset(a, decode_cf=False) as x, xr.open_dataset(b, decode_cf=False) as y:
        assert x.attrs == y.attrs
        assert set(x.variables) == set(y.variables)
        for name in x.variables:
            vx, vy = x[name], y[name]
            assert vx.dtype == vy.dtype and vx.dims == vy.dims, name
            assert np.array_equal(vx.values, vy.values), name
            assert vx.attrs.keys() == vy.attrs.keys(), name
            for key, value in vx.attrs.items():  # flag_values are arrays
                assert np.array_equal(value, vy.attrs[key]), (name, key)
            for key in ("zlib", "complevel", "chunksizes", "dtype"):
                if key != "chunksizes" or name in (COUNT, COVERAGE):  # time: unlimited, chunked
                    assert vx.encoding.get(key) == vy.encoding.get(key), (name, key)


def three_days(tmp_path):
    """Two hourly point feeds hours apart (the later given first) and a GLM granule: 72 steps,
    no data between the feeds."""
    df = strikes_frame(3000, seed=4, days=3)
    a = write_parquet(df.iloc[1700:], tmp_path / "late.parquet")
    b = write_parquet(df.iloc[:1300], tmp_path / "early.parquet")
    g = write_glm(tmp_path / "g.nc", "2021-06-03 05:00:00", [40.0], [-90.0], [1.0], [0])
    return [(a, "points-parquet"), (b, "points-parquet"), (g, "glm")]


def test_maps_written_in_blocks_equal_the_in_memory_maps_bit_for_bit(tmp_path):
    files = three_days(tmp_path)
    ref = in_memory_maps(files, CFG, tmp_path / "ref.nc")
    out = tmp_path / "blocks.nc"
    prep([str(f) for f, _ in files], out, CFG, SEQ)
    assert_same_file_contents(ref, out)
    with xr.open_dataset(out) as ds:
        assert ds.sizes[TIME] > 4 * 16 and int(ds[COUNT].sum()) > 0
        assert 0 < ds[COVERAGE].max(("lat", "lon")).sum() < ds.sizes[TIME]  # a gap
    assert not list(tmp_path.glob(".blocks.nc.rows-*"))  # the spilled rows are gone
    stale = tmp_path / ".blocks.nc.rows-killed"  # of a prep killed while gridding
    stale.mkdir()
    (stale / "part.npy").write_bytes(b"x")
    prep([str(f) for f, _ in files], out, CFG, SEQ)  # nothing new; the stale rows go
    assert not stale.exists()


def test_append_writes_its_steps_without_reading_the_old_rows(tmp_path, monkeypatch):
    df = strikes_frame(2000, seed=5, days=4)
    first = write_parquet(df.iloc[:900], tmp_path / "m1.parquet")
    second = write_parquet(df.iloc[1100:], tmp_path / "m2.parquet")  # starts hours after m1 ends
    whole = tmp_path / "whole.nc"
    prep([str(first), str(second)], whole, CFG, SEQ)
    arch = tmp_path / "arch.nc"
    prep([str(first)], arch, CFG, SEQ)
    inode = arch.stat().st_ino

    def no_old_rows(*args):
        raise AssertionError("an append after the archive's end read old rows")

    monkeypatch.setattr(maps_file, "_read_rows", no_old_rows)
    s = prep([str(first), str(second)], arch, CFG, SEQ)
    assert s.inputs == [str(second)] and arch.stat().st_ino == inode  # written in place
    assert_same_values_and_attrs(whole, arch)
    assert not journal_path(arch).exists()


def assert_same_values_and_attrs(a, b):
    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        assert x.identical(y)


def test_append_into_old_steps_and_before_the_first_step_equals_one_prep(tmp_path):
    df = strikes_frame(2000, seed=6, days=4)
    parts = [df.iloc[:700], df.iloc[700:1400], df.iloc[1400:]]
    paths = [write_parquet(p, tmp_path / f"p{k}.parquet") for k, p in enumerate(parts)]
    whole = tmp_path / "whole.nc"
    prep([str(p) for p in paths], whole, CFG, SEQ)
    arch = tmp_path / "arch.nc"
    prep([str(paths[1])], arch, CFG, SEQ)
    prep([str(paths[2])], arch, CFG, SEQ)  # after and into the archive's last hour: in place
    prep([str(paths[0])], arch, CFG, SEQ)  # before its first step: rewritten
    with xr.open_dataset(arch) as a, xr.open_dataset(whole) as w:
        assert np.array_equal(a[COUNT].values, w[COUNT].values)
        assert np.array_equal(a[COVERAGE].values, w[COVERAGE].values)
        assert np.array_equal(a[TIME_BOUNDS].values, w[TIME_BOUNDS].values)
        assert a.attrs["records_read"] == 2000


def test_an_interrupted_append_is_refused_by_readers_and_rolled_back_by_the_next_prep(
    tmp_path, monkeypatch
):
    df = strikes_frame(2000, seed=7, days=4)
    first = write_parquet(df.iloc[:1000], tmp_path / "m1.parquet")
    second = write_parquet(df.iloc[1000:], tmp_path / "m2.parquet")  # shares an hour with m1
    arch = tmp_path / "arch.nc"
    prep([str(first)], arch, CFG, SEQ)
    write_rows, calls = maps_file._write_rows, []

    def crash_on_third_block(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed halfway, rows of two blocks written
        write_rows(*args)

    monkeypatch.setattr(maps_file, "_write_rows", crash_on_third_block)
    monkeypatch.setattr(maps_file, "roll_back", lambda out: None)  # as if the process died
    with pytest.raises(KeyboardInterrupt):
        prep([str(second)], arch, CFG, SEQ)
    assert journal_path(arch).exists()
    with pytest.raises(UserError, match=r"arch\.nc: an append to it was interrupted"):
        open_maps(arch)
    monkeypatch.undo()
    monkeypatch.setattr(maps_file, "BLOCK_BYTES", 1)
    prep([str(second)], arch, CFG, SEQ)  # rolls back to the archive as it was, then appends
    assert not journal_path(arch).exists()
    whole = tmp_path / "whole.nc"
    prep([str(first), str(second)], whole, CFG, SEQ)
    assert_same_values_and_attrs(whole, arch)
