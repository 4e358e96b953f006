"""`strikecast guidance` end to end: analyses and forecasts under their usual names onto the
maps' grid, accounting, and one-line refusals."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from data_prep.guidance import open_guidance
from data_prep.mock import mock_maps
from forecast.cli import main

DAYS = pd.date_range("2021-01-01", periods=4, freq="D")


@pytest.fixture
def maps(tmp_path):
    """A maps file of 8 x 12 half-degree cells, lat 30..34 N, lon -104..-98."""
    path = tmp_path / "maps.nc"
    mock_maps(n_steps=4, shape=(8, 12)).to_netcdf(path)
    return path


def _analyses(path, *, cape=1000.0, seed=0):
    """ERA5-like analyses: (valid_time, latitude, longitude), lat descending, lon 0..360."""
    lat = np.arange(36.0, 27.9, -0.25)
    lon = np.arange(250.0, 265.1, 0.25)
    rng = np.random.default_rng(seed)
    tp = rng.gamma(1.0, 2.0, (DAYS.size, lat.size, lon.size))
    ds = xr.Dataset(
        {
            "cape": (("valid_time", "latitude", "longitude"), np.full(tp.shape, cape)),
            "tp": (("valid_time", "latitude", "longitude"), tp, {"units": "mm"}),
        },
        coords={"valid_time": DAYS, "latitude": lat, "longitude": lon},
    )
    ds["cape"].attrs["units"] = "J kg-1"
    ds.to_netcdf(path)
    return path


def _forecasts(path, *, inits=DAYS, init="forecast_reference_time", lead="forecast_period"):
    """Forecasts on a coarser 1-degree grid, lon -180..180, leads 1 and 2 days (in hours)."""
    lat, lon = np.arange(26.0, 39.0, 1.0), np.arange(-110.0, -90.0, 1.0)
    field = np.broadcast_to(2.0 * lat[:, None] + lon[None, :], (inits.size, 2, lat.size, lon.size))
    ds = xr.Dataset(
        {"cape": ((init, lead, "lat", "lon"), field.copy(), {"units": "J kg-1"})},
        coords={init: inits, lead: [24.0, 48.0], "lat": lat, "lon": lon},
    )
    ds[lead].attrs["units"] = "hours"
    ds = ds.isel({init: 0}) if inits.size == 1 else ds
    ds.to_netcdf(path)
    return path


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(["guidance", *map(str, argv)])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_analyses_become_lead_zero_on_the_maps_grid_and_open_as_guidance(tmp_path, maps, capsys):
    src = _analyses(tmp_path / "era5.nc")
    out = tmp_path / "guidance.nc"
    code, text, _ = _run([src, "--maps", maps, "--out", out], capsys)
    assert code == 0
    g = open_guidance(out, xr.open_dataset(maps))
    assert g.attrs["strikecast_kind"] == "guidance"
    assert (g["init_time"].values == DAYS.values).all()
    assert g["lead_time"].values.tolist() == [0]
    assert g["cape"].dims == ("init_time", "lead_time", "lat", "lon")
    np.testing.assert_allclose(g["cape"].values, 1000.0, rtol=1e-6)  # a constant stays constant
    assert g["cape"].attrs["units"] == "J kg-1" and g["tp"].attrs["units"] == "mm"
    assert "era5.nc: analyses, cape, tp; 4 init(s) x 1 lead(s)" in text
    assert "lat conservative, lon conservative" in text and "0 of 384 values NaN (0.0%)" in text


def test_forecasts_under_cf_names_join_analyses_along_init_time(tmp_path, maps, capsys):
    a = _analyses(tmp_path / "a.nc")
    f = _forecasts(tmp_path / "f.nc")
    out = tmp_path / "g.nc"
    code, text, _ = _run([a, f, "--maps", maps, "--out", out, "--vars", "cape"], capsys)
    assert code == 0
    g = open_guidance(out, xr.open_dataset(maps))
    assert list(g.data_vars) == ["cape"]
    leads = g["lead_time"].values / np.timedelta64(1, "D")
    assert leads.tolist() == [0.0, 1.0, 2.0]
    assert not np.isnan(g["cape"].values).any()
    # bilinear of the linear field 2 lat + lon is exact on the coarser forecast grid
    expect = 2.0 * g["lat"].values[:, None] + g["lon"].values[None, :]
    np.testing.assert_allclose(
        g["cape"].sel(lead_time=leads[1:] * np.timedelta64(1, "D")),
        np.broadcast_to(expect, (4, 2, 8, 12)),
        rtol=1e-6,
    )
    assert "lat bilinear, lon bilinear" in text and "forecasts" in text


def test_grib_style_names_and_one_init_per_file_are_concatenated(tmp_path, maps, capsys):
    for k in range(3):  # cfgrib's names; each file holds one forecast, its init a scalar
        _forecasts(tmp_path / f"f{k}.nc", inits=DAYS[k : k + 1], init="time", lead="step")
    out = tmp_path / "g.nc"
    code, text, _ = _run([tmp_path / "f*.nc", "--maps", maps, "--out", out], capsys)
    assert code == 0
    g = open_guidance(out, xr.open_dataset(maps))
    assert (g["init_time"].values == DAYS.values[:3]).all()
    assert "3 file(s) read" in text and "init_time: 3 from 2021-01-01" in text


def test_source_missing_values_stay_nan_and_uncovered_cells_are_counted(tmp_path, maps, capsys):
    src = _analyses(tmp_path / "a.nc")
    with xr.open_dataset(src) as ds:
        ds = ds.load()
    ds["cape"][:, :, ds["longitude"].values < 258.0] = np.nan  # west of 102 W: no data
    ds = ds.sel(latitude=slice(31.0, None))  # centres up to 31 N: a quarter of the next row
    ds.to_netcdf(tmp_path / "holes.nc")
    out = tmp_path / "g.nc"
    code, text, _ = _run([tmp_path / "holes.nc", "--maps", maps, "--out", out], capsys)
    assert code == 0
    g = open_guidance(out, xr.open_dataset(maps))
    cape = g["cape"].values
    west, north = g["lon"].values < -102.0, g["lat"].values > 31.0
    assert np.isnan(cape[..., west]).all() and np.isnan(cape[:, :, north]).all()
    seen = cape[:, :, ~north][..., ~west]
    assert not np.isnan(seen).any() and np.allclose(seen, 1000.0)  # never a zero
    nan = int(np.isnan(cape).sum())
    assert (
        f"cape [J kg-1]: {nan} of 384 values NaN ({100 * nan / 384:.1f}%): 0 where no file" in text
    )
    assert f"{nan} unobserved" in text


def _not_netcdf(tmp_path):
    (tmp_path / "x.nc").write_text("cape,lat,lon\n")
    return [tmp_path / "x.nc"]


def _no_latlon(tmp_path):
    xr.Dataset(
        {"cape": (("time", "y", "x"), np.ones((2, 3, 3)))}, coords={"time": DAYS[:2]}
    ).to_netcdf(tmp_path / "x.nc")
    return [tmp_path / "x.nc"]


def _no_time(tmp_path):
    ds = xr.Dataset(
        {"cape": (("lat", "lon"), np.ones((3, 3)))},
        coords={"lat": [30.0, 31, 32], "lon": [-100.0, -99, -98]},
    )
    ds.to_netcdf(tmp_path / "x.nc")
    return [tmp_path / "x.nc"]


def _irregular(tmp_path):
    lat = np.array([28.0, 29.0, 31.0, 32.5, 36.0])
    ds = xr.Dataset(
        {"cape": (("time", "lat", "lon"), np.ones((2, 5, 3)))},
        coords={"time": DAYS[:2], "lat": lat, "lon": [-104.0, -100, -96]},
    )
    ds.to_netcdf(tmp_path / "x.nc")
    return [tmp_path / "x.nc"]


def _twice(tmp_path):
    return [_analyses(tmp_path / "a.nc"), _analyses(tmp_path / "b.nc", seed=1)]


def _elsewhere(tmp_path):
    ds = xr.Dataset(
        {"cape": (("time", "lat", "lon"), np.ones((2, 3, 3)))},
        coords={"time": DAYS[:2], "lat": [0.0, 1, 2], "lon": [10.0, 11, 12]},
    )
    ds.to_netcdf(tmp_path / "x.nc")
    return [tmp_path / "x.nc"]


def _levels(tmp_path):
    ds = xr.Dataset(
        {"t": (("time", "level", "lat", "lon"), np.ones((2, 2, 3, 3)))},
        coords={
            "time": DAYS[:2],
            "level": [850, 500],
            "lat": [30.0, 31, 32],
            "lon": [-100.0, -99, -98],
        },
    )
    ds.to_netcdf(tmp_path / "x.nc")
    return [tmp_path / "x.nc"]


def _lead_without_units(tmp_path):
    path = _forecasts(tmp_path / "x.nc")
    with xr.open_dataset(path, decode_timedelta=False) as ds:
        ds = ds.load()
    del ds["forecast_period"].attrs["units"]
    ds.to_netcdf(tmp_path / "y.nc")
    return [tmp_path / "y.nc"]


def _curvilinear(tmp_path):
    lat, lon = np.meshgrid([30.0, 31, 32], [-100.0, -99, -98], indexing="ij")
    ds = xr.Dataset(
        {"cape": (("time", "y", "x"), np.ones((2, 3, 3)))},
        coords={"time": DAYS[:2], "lat": (("y", "x"), lat), "lon": (("y", "x"), lon)},
    )
    ds.to_netcdf(tmp_path / "x.nc")
    return [tmp_path / "x.nc"]


@pytest.mark.parametrize(
    "make, extra, match",
    [
        (_not_netcdf, [], "x.nc: not a readable netCDF file"),
        (_no_latlon, [], "x.nc: no latitude coordinate"),
        (_no_time, [], "x.nc: no time-like dimension"),
        (_irregular, [], "x.nc: lat is not evenly spaced"),
        (_twice, [], "b.nc: field 'cape' at init 2021-01-01 00:00:00, lead 0 is also in"),
        (_elsewhere, [], "covers none of the maps"),
        (
            _twice,
            ["--vars", "cpae"],
            "no field 'cpae' \\(present: cape, tp\\); did you mean 'cape'",
        ),
        (_levels, ["--vars", "t"], "x.nc: field 't' has extra dimension 'level'; select one level"),
        (_lead_without_units, [], "y.nc: lead time holds float64 without time units"),
        (_curvilinear, [], "x.nc: lat has dimensions \\('y', 'x'\\): the grid is not regular"),
        (_twice, ["--vars", ","], "--vars ',' names no field"),
    ],
    ids=[
        "not-netcdf",
        "no-lat-lon",
        "no-time",
        "irregular",
        "duplicate",
        "elsewhere",
        "vars",
        "level",
        "lead-units",
        "curvilinear",
        "vars-empty",
    ],
)
def test_bad_input_exits_2_in_one_line_naming_file_and_fix(
    tmp_path, maps, capsys, make, extra, match
):
    inputs = make(tmp_path)
    out = tmp_path / "g.nc"
    code, _, err = _run([*inputs, "--maps", maps, "--out", out, *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(match, err), err
    assert not out.exists()


@pytest.mark.parametrize("which", ["input", "maps"])
def test_out_over_an_input_or_the_maps_is_refused(tmp_path, maps, capsys, which):
    src = _analyses(tmp_path / "a.nc")
    out = src if which == "input" else maps
    before = out.read_bytes()
    code, _, err = _run([src, "--maps", maps, "--out", out], capsys)
    assert code == 2 and "would replace that input" in err
    assert out.read_bytes() == before
