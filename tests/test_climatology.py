"""Day-of-year lightning climatology: known answers on hand-made fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_prep.climatology import (
    climatology_at,
    doy_index,
    fit_climatology,
)
from data_prep.errors import UserError


def _days(n: int, start: str = "2021-01-01") -> np.ndarray:
    return pd.date_range(start, periods=n, freq="D").values


def _at(clim: np.ndarray, date: str) -> np.ndarray:
    return clim[doy_index(np.array([date], dtype="datetime64[ns]"))[0]]


def test_calendar_date_keeps_its_index_in_leap_and_common_years():
    dates = ["2020-02-28", "2020-02-29", "2020-03-01", "2021-03-01", "2020-12-31", "2021-12-31"]
    assert doy_index(np.array(dates, dtype="datetime64[ns]")).tolist() == [58, 59, 60, 60, 365, 365]


@pytest.mark.parametrize("value", [0, 1])
def test_constant_field_gives_exactly_its_frequency(value):
    counts = np.full((400, 4, 5), 3 * value)
    clim = fit_climatology(counts, _days(400), np.ones(400, bool))
    assert clim.shape == (366, 4, 5) and clim.dtype == np.float32
    np.testing.assert_array_equal(clim, float(value))


def test_random_field_gives_its_rate():
    rng = np.random.default_rng(0)
    counts = rng.random((1461, 6, 6)) < 0.3  # four years, strike on 30 % of days
    clim = fit_climatology(counts.astype(int), _days(1461), np.ones(1461, bool))
    assert abs(clim.mean() - 0.3) < 0.01
    assert np.abs(clim - 0.3).max() < 0.12


def test_july_only_field_is_one_in_july_and_zero_in_january():
    times = _days(731)
    counts = np.zeros((731, 4, 5), int)
    counts[pd.DatetimeIndex(times).month == 7] = 2
    clim = fit_climatology(counts, times, np.ones(731, bool), window_days=15)
    assert _at(clim, "2021-07-16").min() > 0.99
    assert _at(clim, "2021-01-15").max() < 0.01
    # the seasonal window smooths the edges of July: half way up on 1 July
    assert 0.4 < _at(clim, "2021-07-01").mean() < 0.7
    # the default +-30-day window keeps the share of July in its triangular weights: 0.75
    wide = fit_climatology(counts, times, np.ones(731, bool))
    assert _at(wide, "2021-07-16").mean() == pytest.approx(1 - 240 / 31**2, abs=0.01)


def test_seasonal_smoothing_wraps_around_new_year():
    times = _days(730)
    t = pd.DatetimeIndex(times)
    counts = ((t.month == 12) & (t.day > 20) | (t.month == 1) & (t.day <= 10)).astype(int)
    counts = np.broadcast_to(counts[:, None, None], (730, 3, 3))
    clim = fit_climatology(counts, times, np.ones(730, bool), window_days=15)
    assert _at(clim, "2021-12-31").min() > 0.6
    np.testing.assert_allclose(_at(clim, "2021-12-31"), _at(clim, "2021-01-01"), atol=0.05)


def test_unused_steps_do_not_change_the_fit():
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.3, (500, 4, 5))
    use = rng.random(500) < 0.7
    changed = counts.copy()
    changed[~use] = 50
    a = fit_climatology(counts, _days(500), use)
    b = fit_climatology(changed, _days(500), use)
    np.testing.assert_array_equal(a, b)


def test_unobserved_cells_are_left_out_not_counted_as_zero():
    counts = np.ones((400, 4, 5), int)
    observed = np.ones((400, 4, 5), np.int8)
    observed[::2, 1, 1] = 0
    counts[::2, 1, 1] = 0  # no data, not no lightning
    clim = fit_climatology(counts, _days(400), np.ones(400, bool), observed=observed)
    np.testing.assert_array_equal(clim, 1.0)


def test_thin_cell_is_shrunk_toward_the_domain_mean():
    rng = np.random.default_rng(2)
    counts = (rng.random((730, 5, 5)) < 0.1).astype(int)
    observed = np.ones((730, 5, 5), np.int8)
    observed[:, 0, 0] = 0
    observed[200:203, 0, 0] = 1  # three samples, all with strikes
    counts[200:203, 0, 0] = 1
    use = np.ones(730, bool)
    clim = fit_climatology(counts, _days(730), use, observed=observed, smooth_pixels=0)
    thin = _at(clim, "2021-07-20")[0, 0]
    assert 0.1 < thin < 0.5  # raw frequency 1.0, domain mean 0.1
    assert _at(clim, "2021-01-15")[0, 0] == pytest.approx(0.1, abs=0.03)  # no samples: the mean


def test_spatial_smoothing_is_a_binomial_kernel():
    counts = np.zeros((365, 5, 5), int)
    counts[:, 2, 2] = 1
    use = np.ones(365, bool)
    clim = fit_climatology(counts, _days(365), use, smooth_pixels=1, prior_samples=0)[100]
    # weights 1/4 at the centre, 1/8 beside it, 1/16 diagonally
    np.testing.assert_allclose(
        clim[1:4, 1:4],
        [[1 / 16, 1 / 8, 1 / 16], [1 / 8, 1 / 4, 1 / 8], [1 / 16, 1 / 8, 1 / 16]],
        rtol=1e-6,
    )
    assert clim[0, 0] == 0
    raw = fit_climatology(counts, _days(365), use, smooth_pixels=0, prior_samples=0)[100]
    assert raw[2, 2] == 1 and raw.sum() == 1


def test_climatology_at_looks_up_each_calendar_day():
    clim = np.arange(366, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    times = np.array(
        ["2021-01-01", "2020-02-29", "2021-03-01", "2021-12-31"], dtype="datetime64[ns]"
    )
    out = climatology_at(clim, times)
    assert out.shape == (4, 2, 3)
    assert out[:, 0, 0].tolist() == [0, 59, 60, 365]
    with pytest.raises(UserError, match="366"):
        climatology_at(clim[:365], times)


def test_mismatched_inputs_are_rejected():
    with pytest.raises(UserError, match="counts"):
        fit_climatology(np.zeros((10, 2, 2)), _days(9), np.ones(10, bool))
