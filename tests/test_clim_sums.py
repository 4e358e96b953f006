"""Climatology sums streamed into compact integer tables and finished in latitude bands: the
same table as the whole-table float64 arithmetic, and no overflow of the narrow counters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from clim_reference import doy_sums, reference_finish

from data_prep.climatology import ClimSums, finish_climatology
from data_prep.mock import mock_maps


def _streamed(ds, use, n_hours, chunk, **finish):
    sums = ClimSums(n_hours, ds.sizes["lat"], ds.sizes["lon"])
    counts, cov, times = ds.strike_count.values, ds.coverage.values, ds.time.values
    for a in range(0, times.size, chunk):
        sums.add(
            counts[a : a + chunk], times[a : a + chunk], use[a : a + chunk], cov[a : a + chunk]
        )
    return sums, sums.finish(**finish)


@pytest.mark.parametrize(("time_step", "n_hours"), [("1D", 1), ("1h", 24)])
def test_streamed_banded_table_matches_the_whole_table_arithmetic(time_step, n_hours):
    ds = mock_maps(seed=5, n_steps=900, shape=(13, 17), time_step=time_step, cell_gaps=0.2)
    use = np.arange(ds.sizes["time"]) % 4 != 0
    hits, samples = doy_sums(
        ds.strike_count.values, ds.time.values, use, ds.coverage.values, n_hours
    )
    want = reference_finish(hits, samples)
    sums, one_band = _streamed(ds, use, n_hours, chunk=37)
    assert sums.hits.dtype == np.uint8
    np.testing.assert_array_equal(sums.hits.reshape(hits.shape), hits)  # counts: exact
    np.testing.assert_array_equal(sums.samples.reshape(samples.shape), samples)
    np.testing.assert_array_equal(one_band, want)  # one band: bit for bit
    # bands of 1..4 rows: the domain-wide prior is added band by band, so an entry may round
    # to the next float32 (on these worlds none does)
    row = 8 * hits[..., 0, :].size
    for rows in (1, 2, 4):
        banded = sums.finish(block_bytes=rows * row)
        ulps = np.abs(banded.view(np.int32).astype(np.int64) - want.view(np.int32))
        assert ulps.max() <= 1


def test_counters_widen_before_a_bin_passes_255_steps():
    # a daily record of 300 years of 1 January: bin 0 gets one step a year
    times = pd.to_datetime([f"{y}-01-01" for y in range(1700, 2000)]).values
    counts = np.ones((times.size, 2, 3), np.int32)
    use = np.ones(times.size, bool)
    sums = ClimSums(1, 2, 3)
    sums.add(counts[:255], times[:255], use[:255])
    assert sums.hits.dtype == np.uint8 and sums.hits[0].max() == 255  # full, not wrapped
    sums.add(counts[255:256], times[255:256], use[255:256])
    assert sums.hits.dtype == np.uint16 and sums.samples[0].max() == 256
    sums.add(counts[256:], times[256:], use[256:])
    assert sums.hits[0].tolist() == [[300] * 3] * 2
    assert sums.samples[0].tolist() == [[300] * 3] * 2
    hits, samples = doy_sums(counts, times, use)
    np.testing.assert_array_equal(sums.finish(), reference_finish(hits, samples))


def test_unused_steps_do_not_widen_the_counters():
    times = pd.date_range("2000-01-01", periods=3, freq="D").values
    sums = ClimSums(1, 1, 1)
    sums.add(np.ones((3, 1, 1)), times, np.zeros(3, bool))
    assert sums.hits.dtype == np.uint8 and sums.steps.sum() == 0


def test_finish_refuses_negative_windows():
    with pytest.raises(Exception, match="negative"):
        finish_climatology(np.zeros((366, 1, 1)), np.zeros((366, 1, 1)), window_days=-1)
