"""Gridding kernel: cell-edge convention, exact counts against numpy, time steps, coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_prep.clock import StepClock, span_fraction
from data_prep.grid import Accumulator, cell_index, numba_kernel
from data_prep.records import Records, Tally
from data_prep.schema import EARTH_RADIUS_KM, Grid, get_grid

DAY = 86400 * 10**9


def _grid_points(
    time,
    lat,
    lon,
    *,
    grid="plains-0.5",
    step=DAY,
    count=None,
    origin=0,
    kernel="auto",
    lo=None,
    hi=None,
):
    g = get_grid(grid)
    acc, tally = Accumulator(g, StepClock(origin, step, lo, hi), kernel=kernel), Tally()
    rec = Records(np.asarray(time, np.int64), np.asarray(lat, float), np.asarray(lon, float), count)
    tally.read(len(rec), rec.strikes())
    acc.add(rec, tally)
    return acc, tally


def test_point_on_south_west_cell_edge_goes_into_that_cell():
    g = get_grid("plains-0.5")
    i = cell_index(np.array([30.5, 30.0, 45.5]), np.array([-103.5, -104.0, -80.5]), g)
    assert i.tolist() == [1 * g.nlon + 1, 0, 31 * g.nlon + 47]


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_points_on_decimal_edges_of_a_tenth_degree_grid_go_into_the_cell_they_start(kernel):
    # (25.7 - 24) / 0.1 is 16.999999999999993 in float64: a bare floor would put 25.7 in cell 16
    if kernel == "numba" and numba_kernel() is None:
        pytest.skip("numba not installed")
    g = get_grid("conus-0.1")
    i = np.arange(g.nlat)
    j = np.arange(g.nlon)
    lat = np.round(24.0 + i / 10, 10)  # the decimal edges 24.0, 24.1, ..., 49.9
    lon = np.round(-125.0 + j[: g.nlat] / 10, 10)
    want = i * g.nlon + j[: g.nlat]
    assert np.array_equal(cell_index(lat, lon, g), want)
    gi, gj, inside = g.cell_index(lat, lon)
    assert inside.all() and np.array_equal(gi * g.nlon + gj, want)
    acc, tally = _grid_points(np.zeros(g.nlat, np.int64), lat, lon, grid="conus-0.1", kernel=kernel)
    assert tally.gridded_records == g.nlat
    assert np.flatnonzero(acc.counts[0]).tolist() == want.tolist()


def test_point_on_north_or_east_domain_edge_is_rejected_outside_domain():
    acc, tally = _grid_points([0, 0, 0], [46.0, 40.0, 40.0], [-90.0, -80.0, -80.0000001])
    assert tally.rejected_records["outside_domain"] == 2
    assert tally.gridded_records == 1 and tally.balanced()


def test_cell_index_matches_schema_cell_index_bit_for_bit():
    g = get_grid("conus-0.1")
    rng = np.random.default_rng(0)
    lat = np.round(rng.uniform(20, 55, 100_000), 1)  # many points exactly on 0.1-degree edges
    lon = np.round(rng.uniform(-130, -60, 100_000), 1)
    i, j, inside = g.cell_index(lat, lon)
    flat = cell_index(lat, lon, g)
    assert np.array_equal(flat == g.nlat * g.nlon, ~inside)
    assert np.array_equal(flat[inside], (i * g.nlon + j)[inside])


@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_counts_equal_numpy_histogramdd(sort, weighted):
    g = get_grid("plains-0.5")
    rng = np.random.default_rng(1)
    n = 300_000
    t = rng.integers(0, 6 * DAY, n)
    t = np.sort(t) if sort else t
    lat, lon = rng.uniform(29, 47, n), rng.uniform(-105, -79, n)
    w = rng.integers(1, 5, n) if weighted else None
    acc, tally = _grid_points(t, lat, lon, count=w)
    counts, _ = acc.maps(0, 5, 1.0)
    edges = [
        np.arange(7) * DAY,
        np.linspace(g.lat_min, g.lat_max, g.nlat + 1),
        np.linspace(g.lon_min, g.lon_max, g.nlon + 1),
    ]
    ref, _ = np.histogramdd(np.c_[t, lat, lon], bins=edges, weights=w)
    assert np.array_equal(counts, ref.astype(np.int64))
    assert tally.balanced()


def test_slices_spanning_many_steps_use_the_sparse_path_with_the_same_result():
    rng = np.random.default_rng(2)
    n = 50_000
    t = rng.integers(0, 20_000 * 60 * 10**9, n)  # 20 000 one-minute steps, unsorted
    lat, lon = rng.uniform(30, 46, n), rng.uniform(-104, -80, n)
    acc, _ = _grid_points(t, lat, lon, step=60 * 10**9)
    k = t // (60 * 10**9)
    i, j, inside = get_grid("plains-0.5").cell_index(lat, lon)
    got = sum(
        int(acc.counts[int(kk)].reshape(32, 48)[ii, jj]) > 0
        for kk, ii, jj in zip(k[inside][:200], i[inside][:200], j[inside][:200], strict=True)
    )
    assert got == 200
    assert sum(int(r.sum()) for r in acc.counts.values()) == int(inside.sum())


@pytest.mark.parametrize("step", ["6h", "15min", "1D"])
def test_steps_of_hours_and_minutes_start_at_the_origin(step):
    td = pd.Timedelta(step).value
    t = np.array([0, td - 1, td, 3 * td + 5])
    acc, _ = _grid_points(t, [40.0] * 4, [-90.0] * 4, step=td)
    counts, _ = acc.maps(0, 3, 1.0)
    assert counts.sum(axis=(1, 2)).tolist() == [2, 1, 0, 1]


def test_time_bounds_reject_outside_time_range():
    g = get_grid("plains-0.5")
    acc, tally = Accumulator(g, StepClock(0, DAY, lo=1, hi=2)), Tally()
    rec = Records(
        np.array([0, DAY, 2 * DAY, 3 * DAY]),
        np.full(4, 40.0),
        np.full(4, -90.0),
        np.array([1, 2, 3, 4]),
    )
    tally.read(4, 10)
    acc.add(rec, tally)
    assert tally.rejected_strikes["outside_time_range"] == 5 and tally.gridded_strikes == 5
    assert acc.step_range() == (1, 2)


def test_granule_spans_cover_a_step_only_when_they_fill_it():
    clock = StepClock(0, 60 * 10**9)
    s = 10**9
    spans = [(0, 20 * s), (20 * s, 40 * s), (40 * s, 60 * s), (60 * s, 80 * s)]
    assert span_fraction(spans, clock, 0, 2).tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def test_longitudes_0_to_360_land_on_a_grid_west_of_greenwich():
    acc, tally = _grid_points([0, 0], [40.0, 40.0], [270.0, -90.0])
    counts, _ = acc.maps(0, 0, 1.0)
    assert tally.gridded_records == 2 and counts.max() == 2


@pytest.mark.parametrize("grid", ["plains-0.5", "30,46,254,282,0.5"])  # lon west / east of 180
@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_numba_and_numpy_kernels_agree(sort, weighted, grid):
    if numba_kernel() is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(3)
    n = 200_000
    t = rng.integers(-DAY, 9 * DAY, n)  # steps -1 .. 8; steps 0 .. 6 kept
    t = np.sort(t) if sort else t
    lat = np.round(rng.uniform(28, 48, n), 1)  # many points exactly on cell edges, some outside
    lon = np.round(rng.uniform(-106, -78, n), 1)
    lon[::7] += 360  # longitudes in [0, 360) too
    w = rng.integers(0, 5, n) if weighted else None
    got = [
        _grid_points(t, lat, lon, grid=grid, count=w, kernel=k, origin=DAY // 3, lo=0, hi=6)
        for k in ("numba", "numpy")
    ]
    (a, ta), (b, tb) = got
    assert sorted(a.counts) == sorted(b.counts)
    assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)
    assert ta == tb and ta.balanced()
    assert (
        ta.rejected_records["outside_time_range"] > 0 and ta.rejected_records["outside_domain"] > 0
    )


def test_unknown_kernel_is_rejected_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown kernel 'cuda'; valid: auto, numba, numpy"):
        Accumulator(get_grid("plains-0.5"), StepClock(0, DAY), kernel="cuda")


def test_cell_areas_of_a_whole_globe_sum_to_the_sphere_and_one_equator_degree_is_known():
    globe = Grid(-90.0, 90.0, -180.0, 180.0, 2.0)
    area = globe.cell_area_km2()  # (90,)
    total = area.sum() * globe.nlon
    assert total == pytest.approx(4 * np.pi * EARTH_RADIUS_KM**2, rel=1e-12)
    equator = Grid(-0.5, 0.5, 0.0, 1.0, 1.0).cell_area_km2()
    assert equator[0] == pytest.approx(12364.15, abs=0.01)  # R^2 * (pi / 180) * 2 sin(0.5 deg)
    np.testing.assert_allclose(area, area[::-1])  # north and south alike
