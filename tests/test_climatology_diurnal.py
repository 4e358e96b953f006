"""Climatology by day of year and hour of day: a known diurnal cycle is recovered, daily maps keep
their table to the bit."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from data_prep.climatology import (
    climatology_at,
    fit_climatology,
    steps_per_day,
)
from data_prep.mock import mock_maps

PEAK_HOUR = 15


def _p_of_hour(hour: np.ndarray) -> np.ndarray:
    """A pure diurnal cycle: 0.05 at night, 0.45 at 15 UTC, Gaussian of 3 h, around the clock."""
    d = (np.asarray(hour, dtype=np.float64) - PEAK_HOUR + 12) % 24 - 12
    return 0.05 + 0.4 * np.exp(-((d / 3.0) ** 2))


@pytest.fixture(scope="module")
def diurnal_world():
    """A year of hourly maps (6 x 6 cells) whose strike probability depends only on the hour."""
    times = pd.date_range("2021-01-01", periods=24 * 365, freq="h").values
    p = _p_of_hour(pd.DatetimeIndex(times).hour.to_numpy())  # (T,)
    rng = np.random.default_rng(0)
    counts = (rng.random((times.size, 6, 6)) < p[:, None, None]).astype(np.int32)
    return counts, times


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize(
    ("kwargs", "digest"),
    [
        ({"seed": 3}, "76bde3b6f35f22a8479fe8eec44735c1c9fdd3ad8e42bba6734b7aa553aa34c7"),
        (
            {"seed": 3, "n_steps": 400, "cell_gaps": 0.2},
            "7e5b4a10a5a8b80411573408c5bc0c02ff25f4e326210e6f5ec575a6e50267fd",
        ),
    ],
)
def test_daily_table_is_bit_identical_to_the_day_of_year_climatology(kwargs, digest):
    # digests of the (366, H, W) table made before the hour-of-day axis existed
    ds = mock_maps(**kwargs)
    use = np.arange(ds.sizes["time"]) % 3 != 0
    clim = fit_climatology(ds.strike_count.values, ds.time.values, use, observed=ds.coverage.values)
    assert clim.shape == (366, 16, 24)
    assert _digest(clim) == digest


@pytest.mark.parametrize(
    ("step", "bins"), [("1D", 1), ("2D", 1), ("1h", 24), ("3h", 8), ("30min", 24), ("7h", 24)]
)
def test_hour_bins_follow_the_time_step(step, bins):
    assert steps_per_day(step) == bins


def test_pure_diurnal_cycle_is_recovered_within_sampling_error(diurnal_world):
    counts, times = diurnal_world
    clim = fit_climatology(counts, times, np.ones(times.size, bool), n_hours=24, window_hours=0)
    assert clim.shape == (61, 24, 6, 6) and clim.dtype == np.float32
    truth = _p_of_hour(np.arange(24))
    by_hour = clim.mean(axis=(0, 2, 3), dtype=np.float64)  # (24,)
    sigma = np.sqrt(truth * (1 - truth) / (365 * 36))  # one year of 36 cells per hour
    assert np.all(np.abs(by_hour - truth) < 4 * sigma), np.abs(by_hour - truth) / sigma
    # every season bin and cell sees the cycle: night low, afternoon high
    assert clim[:, PEAK_HOUR].min() > 0.3 and clim[:, 3].max() < 0.12


def test_hour_smoothing_is_a_circular_triangle(diurnal_world):
    counts, times = diurnal_world
    clim = fit_climatology(counts, times, np.ones(times.size, bool), n_hours=24)  # +-2 h
    w = np.array([1, 2, 3, 2, 1]) / 9.0
    hours = np.arange(24)
    truth = sum(wk * _p_of_hour(hours + k) for wk, k in zip(w, range(-2, 3), strict=True))
    by_hour = clim.mean(axis=(0, 2, 3), dtype=np.float64)
    assert np.abs(by_hour - truth).max() < 4 * np.sqrt(0.25 / (365 * 36))
    assert int(np.argmax(by_hour)) == PEAK_HOUR


def test_climatology_at_reads_the_valid_hour(diurnal_world):
    counts, times = diurnal_world
    clim = fit_climatology(counts, times, np.ones(times.size, bool), n_hours=24)
    at = climatology_at(clim, np.array(["2021-07-02T03", "2021-07-02T15"], "datetime64[ns]"))
    assert at.shape == (2, 6, 6)
    np.testing.assert_array_equal(at[0], clim[182 // 6, 3])  # 2 July: day 182 of a leap year
    np.testing.assert_array_equal(at[1], clim[182 // 6, 15])


def test_fitting_on_the_training_steps_only_ignores_the_others(diurnal_world):
    counts, times = diurnal_world
    use = np.arange(times.size) < times.size // 2
    changed = counts.copy()
    changed[~use] = 1 - changed[~use]
    a = fit_climatology(counts, times, use, n_hours=24)
    b = fit_climatology(changed, times, use, n_hours=24)
    np.testing.assert_array_equal(a, b)
