"""Regridding onto the maps' grid: known answers for the conservative and bilinear weights,
missing values, longitude conventions and latitude order."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.errors import UserError
from data_prep.regrid import Regridder
from data_prep.schema import GRIDS, Grid

PLAINS = GRIDS["plains-0.5"]  # 30..46 N, 104..80 W, 0.5 degree


def _centres(lo: float, hi: float, step: float) -> np.ndarray:
    return lo + step / 2 + step * np.arange(int(round((hi - lo) / step)))


def _regrid(field, src_lat, src_lon, grid: Grid = PLAINS):
    """(values, coverage) of ``field`` (..., lat, lon) on ``grid``, through the cropped read."""
    r = Regridder.build(src_lat, src_lon, grid.lat, grid.lon)
    return r(field[..., r.lat_index, :][..., r.lon_index])


def _areas(lat: np.ndarray, step_lat: float, step_lon: float) -> np.ndarray:
    """(lat,) areas of cells (sphere of radius 1) centred at ``lat``."""
    top, bottom = np.radians(lat + step_lat / 2), np.radians(lat - step_lat / 2)
    return (np.sin(top) - np.sin(bottom)) * np.radians(step_lon)


@pytest.mark.parametrize("step", [0.1, 0.25, 0.5, 1.0, 2.5], ids=lambda s: f"{s}deg")
def test_a_constant_field_stays_constant_from_finer_and_coarser_grids(step):
    lat, lon = _centres(-90, 90, step), _centres(0, 360, step)
    values, cover = _regrid(np.full((2, lat.size, lon.size), 7.5), lat, lon)
    np.testing.assert_allclose(values, 7.5, rtol=1e-12)
    np.testing.assert_allclose(cover, 1.0, rtol=1e-6)


@pytest.mark.parametrize("step", [0.1, 0.2, 0.25], ids=lambda s: f"{s}deg")
def test_conservative_regridding_keeps_the_area_mean(step):
    # the source covers exactly the maps' domain; 0.2 degree cells straddle the 0.5 edges
    lat, lon = _centres(30, 46, step), _centres(-104, -80, step)
    field = np.random.default_rng(0).gamma(0.5, 3.0, (lat.size, lon.size))
    r = Regridder.build(lat, lon, PLAINS.lat, PLAINS.lon)
    assert r.methods == ("conservative", "conservative")
    values, _ = r(field[r.lat_index][:, r.lon_index])
    src = _areas(lat, step, step)[:, None] * np.ones(lon.size)
    tgt = _areas(PLAINS.lat, 0.5, 0.5)[:, None] * np.ones(PLAINS.nlon)
    mean_src = (field * src).sum() / src.sum()
    mean_tgt = (values.astype(np.float64) * tgt).sum() / tgt.sum()
    assert mean_tgt == pytest.approx(mean_src, rel=1e-6)


def test_bilinear_of_a_linear_field_is_exact_from_a_coarser_grid():
    lat, lon = _centres(20, 60, 2.0), _centres(-120, -60, 3.0)
    field = 3.0 * lat[:, None] - 0.7 * lon[None, :] + 5.0
    r = Regridder.build(lat, lon, PLAINS.lat, PLAINS.lon)
    assert r.methods == ("bilinear", "bilinear")
    values, cover = r(field[r.lat_index][:, r.lon_index])
    expect = 3.0 * PLAINS.lat[:, None] - 0.7 * PLAINS.lon[None, :] + 5.0
    np.testing.assert_allclose(values, expect, rtol=1e-6)
    assert (cover == 1.0).all()


def test_each_axis_picks_its_own_method_finer_lat_and_coarser_lon():
    lat, lon = _centres(28, 48, 0.25), _centres(-110, -75, 1.0)
    field = np.broadcast_to(0.5 * lon[None, :] + 60.0, (lat.size, lon.size))  # linear in lon
    r = Regridder.build(lat, lon, PLAINS.lat, PLAINS.lon)
    assert r.methods == ("conservative", "bilinear")
    values, _ = r(field[r.lat_index][:, r.lon_index])
    np.testing.assert_allclose(values, np.broadcast_to(0.5 * PLAINS.lon + 60.0, PLAINS.shape))


def test_missing_values_never_become_zero():
    lat, lon = _centres(28, 48, 0.25), _centres(-106, -78, 0.25)
    field = np.full((3, lat.size, lon.size), 4.0)
    rng = np.random.default_rng(1)
    field[rng.random(field.shape) < 0.4] = np.nan  # 40 % of the source missing, at random
    field[1] = np.nan  # one step with no data at all
    values, cover = _regrid(field, lat, lon)
    seen = ~np.isnan(values)
    assert (values[seen] == 4.0).all()  # the observed parts' mean, never diluted by zeros
    assert not seen[1].any() and (cover[1] == 0).all()
    assert (cover[seen] >= 0.5).all() and (cover[~seen] < 0.5).all()
    assert 0 < seen[0].mean() < 1


def test_a_cell_half_observed_keeps_the_mean_of_its_observed_half_and_under_half_is_nan():
    # 0.25 degree source: each 0.5 degree cell holds 2 x 2 source cells
    lat, lon = _centres(30, 46, 0.25), _centres(-104, -80, 0.25)
    field = np.tile(np.array([1.0, 3.0]), (lat.size, lon.size // 2))  # columns 1, 3, 1, 3, ...
    field[:, 1::2] = np.nan  # one column of two in every cell: half observed
    values, cover = _regrid(field, lat, lon)
    np.testing.assert_allclose(cover, 0.5, rtol=1e-9)
    assert (values == 1.0).all()
    field[1::2, :] = np.nan  # and one row of two: about a quarter observed
    values, cover = _regrid(field, lat, lon)
    assert np.isnan(values).all() and (cover < 0.5).all()


@pytest.mark.parametrize(
    "grid",
    [PLAINS, Grid(-10, 10, 170, 190, 0.5, "dateline"), Grid(40, 50, -10, 20, 0.5, "greenwich")],
    ids=lambda g: g.name,
)
@pytest.mark.parametrize("step", [0.25, 2.0], ids=["finer", "coarser"])
def test_longitudes_0_360_and_minus_180_180_give_identical_results(grid, step):
    lat = _centres(-90, 90, step)
    east, west = _centres(0, 360, step), _centres(-180, 180, step)
    rng = np.random.default_rng(2)
    field_east = rng.normal(size=(lat.size, east.size))
    field_east[rng.random(field_east.shape) < 0.2] = np.nan
    # the same values, laid out from -180: the column of lon x (x < 0) is the one of x + 360
    field_west = field_east[:, np.searchsorted(east, np.mod(west, 360.0))]
    a, ca = _regrid(field_east, lat, east, grid)
    b, cb = _regrid(field_west, lat, west, grid)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ca, cb)
    assert np.isfinite(a).mean() > 0.5


def test_a_repeated_cyclic_column_counts_once():
    lat, lon = _centres(-90, 90, 1.0), _centres(0, 360, 1.0)
    grid = Grid(-10, 10, -5, 5, 0.5, "greenwich")
    field = np.random.default_rng(3).normal(size=(lat.size, lon.size))
    cyclic = np.concatenate([field, field[:, :1]], axis=1)  # 0.5 .. 359.5, then 360.5 again
    a, _ = _regrid(field, lat, lon, grid)
    b, _ = _regrid(cyclic, lat, np.append(lon, 360.5), grid)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("step", [0.25, 2.0], ids=["finer", "coarser"])
def test_descending_latitudes_give_the_same_result(step):
    lat, lon = _centres(20, 60, step), _centres(-110, -70, step)
    field = np.random.default_rng(4).normal(size=(2, lat.size, lon.size))
    a, _ = _regrid(field, lat, lon)
    b, _ = _regrid(field[:, ::-1], lat[::-1], lon)
    np.testing.assert_array_equal(a, b)


def test_an_uneven_grid_is_refused_naming_the_axis():
    lat = np.array([30.0, 31.0, 33.0, 34.0, 36.0])
    with pytest.raises(UserError, match="gfs.nc: lat is not evenly spaced.*not regular"):
        Regridder.build(lat, _centres(-104, -80, 1.0), PLAINS.lat, PLAINS.lon, "gfs.nc")


def test_a_source_outside_the_maps_covers_nothing():
    r = Regridder.build(_centres(0, 10, 1.0), _centres(0, 10, 1.0), PLAINS.lat, PLAINS.lon)
    assert not r.covers_any
