"""The shared mock maps: the exact prep layout, seeded, with gaps where asked."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.errors import UserError
from data_prep.io import open_maps, write_netcdf_atomic
from data_prep.mock import mock_maps
from data_prep.schema import Grid, get_grid


def test_mock_maps_follow_the_maps_layout():
    ds = mock_maps(n_steps=10, shape=(4, 6), time_step="6h")
    assert ds.strike_count.dims == ("time", "lat", "lon") and ds.strike_count.dtype == np.int32
    assert ds.coverage.dtype == np.int8 and ds.time.dtype == "datetime64[ns]"
    assert ds.attrs["time_step"] == "6h" and ds.attrs["time_step_seconds"] == 21600
    assert ds.attrs["Conventions"] == "CF-1.8"
    grid = get_grid(ds.attrs["grid"])
    assert grid.shape == (4, 6)
    np.testing.assert_allclose(Grid.from_coords(ds.lat, ds.lon).lat, ds.lat)
    assert (np.diff(ds.time.values) == np.timedelta64(6, "h")).all()


def test_mock_maps_round_trip_through_a_maps_file(tmp_path):
    ds = mock_maps(n_steps=12, shape=(3, 4), gaps=(2,))
    back = open_maps(write_netcdf_atomic(ds, tmp_path / "maps.nc"))
    np.testing.assert_array_equal(back.strike_count.values, ds.strike_count.values)
    np.testing.assert_array_equal(back.coverage.values, ds.coverage.values)


def test_gap_steps_have_no_coverage_and_no_strikes():
    ds = mock_maps(n_steps=30, gaps=(4, 5))
    assert ds.coverage.sum(("lat", "lon")).values.nonzero()[0].tolist() == [
        i for i in range(30) if i not in (4, 5)
    ]
    assert int(ds.strike_count[4:6].sum()) == 0


def test_cell_gaps_blank_patches_of_some_steps_and_leave_the_other_cells_alone():
    full = mock_maps(n_steps=40, shape=(6, 8), seed=4)
    gappy = mock_maps(n_steps=40, shape=(6, 8), seed=4, cell_gaps=0.4)
    assert gappy.identical(mock_maps(n_steps=40, shape=(6, 8), seed=4, cell_gaps=0.4))
    cov = gappy.coverage.values
    share = cov.mean((1, 2))
    partial = (share > 0) & (share < 1)
    assert 5 <= partial.sum() <= 30 and (share > 0).all()  # cells missing, never whole steps
    assert (gappy.strike_count.values[cov == 0] == 0).all()
    seen = cov == 1
    np.testing.assert_array_equal(gappy.strike_count.values[seen], full.strike_count.values[seen])
    with pytest.raises(UserError, match="cell_gaps"):
        mock_maps(n_steps=4, cell_gaps=1.5)


def test_mock_maps_are_seeded_and_not_noise():
    a, b = mock_maps(seed=1), mock_maps(seed=1)
    assert a.identical(b)
    assert not a.strike_count.equals(mock_maps(seed=2).strike_count)
    occ = (a.strike_count.values >= 1).astype(float)
    # storms persist from one step to the next: occurrence is autocorrelated
    assert np.corrcoef(occ[1:].ravel(), occ[:-1].ravel())[0, 1] > 0.3
    assert 0.03 < occ.mean() < 0.5


def test_mock_maps_reject_gaps_outside_the_record():
    with pytest.raises(UserError, match="gaps"):
        mock_maps(n_steps=5, gaps=(7,))
