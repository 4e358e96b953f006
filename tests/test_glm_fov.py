"""GLM coverage in space: cells outside a granule's field of view are no data, never zeros."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from prep_files import write_glm

from data_prep.config import PrepConfig, SequenceConfig, check_limits
from data_prep.errors import ConfigError
from data_prep.fov import GLM_STATED_RADIUS_DEG
from data_prep.prep import prep

SEQ = SequenceConfig(n_in=5, n_out=1, block_steps=8)
WEST = (0.0, -137.0)  # a sub-satellite point far west of the plains-0.5 grid (30-46N, 104-80W)


def _arc_deg(lat0, lon0, lat, lon) -> float:
    """Great-circle arc in degrees by the haversine formula (written out, scalar math)."""
    p0, p1 = math.radians(lat0), math.radians(lat)
    h = (
        math.sin((p1 - p0) / 2) ** 2
        + math.cos(p0) * math.cos(p1) * math.sin(math.radians(lon - lon0) / 2) ** 2
    )
    return math.degrees(2 * math.asin(math.sqrt(h)))


def _inside(ds: xr.Dataset, centre: tuple[float, float], radius: float) -> np.ndarray:
    """(H, W) bool: cell centres within ``radius`` degrees of arc of ``centre``."""
    return np.array(
        [[_arc_deg(*centre, la, lo) <= radius for lo in ds.lon.values] for la in ds.lat.values]
    )


def _minute(tmp_path, name, fov, lat=(40.0,), lon=(-100.0,), start="2021-06-01 00:01"):
    """Three 20 s granules filling one minute, each holding flashes at ``lat``, ``lon``."""
    for k in range(3):
        write_glm(
            tmp_path / f"{name}{k}.nc",
            f"{start}:{20 * k:02d}",
            list(lat),
            list(lon),
            [1.0] * len(lat),
            [0] * len(lat),
            fov=fov,
        )


def _prep(tmp_path, **kw):
    out = tmp_path / "glm.nc"
    cfg = PrepConfig(grid="plains-0.5", time_step="1min", **kw)
    s = prep([str(tmp_path / "*.nc")], out, cfg, SEQ)
    return xr.open_dataset(out), s.tally


def test_cells_beyond_the_stated_field_of_view_are_no_data_by_the_haversine(tmp_path):
    # one flash inside the view (38N 100W is 49 deg away), one outside (44N 82W is 63 deg away)
    _minute(tmp_path, "g", (*WEST, 55.0), lat=(38.0, 44.0), lon=(-100.0, -82.0))
    ds, tally = _prep(tmp_path)
    inside = _inside(ds, WEST, 55.0)
    assert 0 < inside.sum() < inside.size  # the view's edge crosses the grid
    assert np.array_equal(ds.coverage.values[0] == 1, inside)
    # the outside flash is rejected with its reason, not counted into a no-data cell
    assert ds.strike_count.values[0][~inside].sum() == 0
    assert ds.strike_count.values.sum() == 3
    assert tally.rejected_records["outside_field_of_view"] == 3 and tally.balanced()


def test_prep_config_radius_overrides_the_extent_the_granules_state(tmp_path):
    _minute(tmp_path, "g", (*WEST, 55.0))
    ds, _ = _prep(tmp_path, glm_fov_radius_deg=50.0)
    assert np.array_equal(ds.coverage.values[0] == 1, _inside(ds, WEST, 50.0))


def test_granules_without_a_stated_extent_use_the_goes_16_to_18_extent(tmp_path):
    _minute(tmp_path, "g", (*WEST, None))
    ds, _ = _prep(tmp_path)
    inside = _inside(ds, WEST, GLM_STATED_RADIUS_DEG)
    assert 0 < inside.sum() < inside.size
    assert np.array_equal(ds.coverage.values[0] == 1, inside)


def test_granules_without_a_field_of_view_observe_the_whole_grid(tmp_path):
    _minute(tmp_path, "g", None)
    ds, _ = _prep(tmp_path)
    assert ds.coverage.values[0].all()


def test_two_satellites_add_up_only_where_their_views_overlap(tmp_path):
    # satellite A (west) fills the first 40 s of the minute, B (east) the last 20 s
    east = (0.0, -75.0, 60.0)
    for k, fov in enumerate([(*WEST, 55.0), (*WEST, 55.0), east]):
        t = f"2021-06-01 00:01:{20 * k:02d}"
        write_glm(tmp_path / f"g{k}.nc", t, [38.0], [-100.0], [1.0], [0], fov=fov)
    ds, _ = _prep(tmp_path)
    both = _inside(ds, WEST, 55.0) & _inside(ds, east[:2], 60.0)
    assert 0 < both.sum() < both.size
    assert np.array_equal(ds.coverage.values[0] == 1, both)


@pytest.mark.parametrize("radius", [0.0, -5.0, float("nan")])
def test_a_radius_that_is_not_positive_is_refused_naming_the_key(radius):
    with pytest.raises(ConfigError, match="glm_fov_radius_deg"):
        check_limits(PrepConfig(glm_fov_radius_deg=radius), "prep.")


def test_real_goes_west_granule_observes_only_its_stated_field_of_view(realdata, tmp_path):
    """A GOES-17 granule (at 137.2W): cells of the CONUS grid farther than the extent it states
    (66.56 deg) from its field-of-view centre are no data; the rest of its minute is observed
    when the granule fills it (here a 20 s step of a one-granule minute does not: no data)."""
    granule = next((realdata / "glm_lcfa_20s").glob("OR_GLM-L2-LCFA_G17_s2022154*.nc"))
    out = tmp_path / "west.nc"
    cfg = PrepConfig(grid="conus-0.25", time_step="1min", min_granule_fraction=0.3)
    prep([str(granule)], out, cfg, SEQ)
    ds = xr.open_dataset(out)
    with xr.open_dataset(granule) as g:
        centre = (float(g.lat_field_of_view), float(g.lon_field_of_view))
        extent = float(abs(g.lat_field_of_view_bounds.values - centre[0]).max())
    inside = _inside(ds, centre, extent)
    assert 0 < inside.sum() < inside.size  # the east coast is beyond GOES-West's view
    observed = ds.coverage.values.max(axis=(1, 2)) == 1
    assert observed.sum() == 1
    assert np.array_equal(ds.coverage.values[observed][0] == 1, inside)


def test_readme_glm_example_observes_its_minute_and_not_the_one_before(realdata, tmp_path):
    """The README's GLM example (three GOES-16 granules filling 2018-07-02 04:33, one-minute
    conus-0.1 maps): 04:33 is observed everywhere (CONUS lies inside GOES-East's view); 04:32
    holds flashes that began in the seconds before the first granule, but no granule observed
    it, so it is no data, not zeros."""
    files = sorted((realdata / "glm_lcfa_20s").glob("OR_GLM-L2-LCFA_G16_s2018183043*.nc"))
    assert len(files) == 3
    out = tmp_path / "glm.nc"
    prep([str(f) for f in files], out, PrepConfig(grid="conus-0.1", time_step="1min"), SEQ)
    ds = xr.open_dataset(out)
    assert [str(t)[:16] for t in ds.time.values] == ["2018-07-02T04:32", "2018-07-02T04:33"]
    assert ds.coverage.values[0].max() == 0 and ds.coverage.values[1].min() == 1
    assert ds.strike_count.values[1].sum() > 0
