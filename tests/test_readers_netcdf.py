"""Readers of netCDF inputs (GLM granules, gridded counts) and files given the wrong format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prep_files import concat_coords as _concat
from prep_files import read_items as _read
from prep_files import strikes_frame, write_glm, write_gridded, write_nldn, write_parquet

from data_prep.errors import UserError
from data_prep.readers import detect_format, get_reader
from data_prep.records import Records, Span, Tally


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
