"""Guidance files: the no-peeking rule, known answers and refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_prep.errors import UserError
from data_prep.guidance import check_targets_seen, pick_guidance

DAY = pd.Timedelta("1D")


def _daily(n_days: int, leads: list[int], issue_hour: int = 0):
    """Map step starts, and guidance issued at the end of every day (plus ``issue_hour``) with
    leads in days; the field encodes (issue index, lead) as 10 * issue + lead."""
    times = pd.date_range("2024-02-01", periods=n_days, freq="D").values
    issued = times + np.timedelta64(1, "D") + np.timedelta64(issue_hour, "h")
    lead = np.array([np.timedelta64(k, "D") for k in leads], "timedelta64[ns]")
    field = 10.0 * np.arange(n_days)[:, None] + np.array(leads)[None, :]
    return times, issued, lead, field[:, :, None, None]


def test_targets_get_the_latest_forecast_issued_by_the_init_and_past_steps_the_analysis():
    times, issued, lead, field = _daily(12, [0, 1, 2, 3])
    picks = pick_guidance(issued, lead, times, DAY, n_in=3, n_out=2)
    rows = np.arange(2, 10)
    got = picks.gather(field, rows)[..., 0, 0]  # (inits, 5)
    for r, i in enumerate(rows):
        # past steps i-2, i-1, i: their own analysis (issued at the end of that day, lead 0)
        assert got[r, :3].tolist() == [10.0 * j for j in (i - 2, i - 1, i)]
        # target steps i+1, i+2: the forecast issued at the end of day i, leads 1 and 2
        assert got[r, 3:].tolist() == [10.0 * i + 1, 10.0 * i + 2]


def test_a_forecast_issued_after_the_init_is_never_seen():
    # issued 6 h after each day ends: at init i the newest forecast available is that of day i-1
    times, issued, lead, field = _daily(12, [0, 1, 2, 3], issue_hour=6)
    picks = pick_guidance(issued, lead, times, DAY, n_in=3, n_out=2)
    ends = times + np.timedelta64(1, "D")
    seen = picks.init >= 0
    for i in range(12):
        assert (issued[picks.init[i][seen[i]]] <= ends[i]).all()
    got = picks.gather(field, np.array([5]))[0, :, 0, 0]
    # the newest out by the end of day 5 was issued at 06 UTC of day 5 (index 4): valid 06 UTC
    # of day 6 at lead 1, of day 7 at lead 2; the one issued at 06 UTC of day 6 is not seen
    assert got[3:].tolist() == [41.0, 42.0]
    # past days: analyses valid at 06 UTC inside them
    assert got[:3].tolist() == [20.0, 30.0, 40.0]


def test_analyses_only_cannot_feed_target_steps():
    times, issued, lead, _ = _daily(12, [0])
    picks = pick_guidance(issued, lead, times, DAY, n_in=3, n_out=2)
    rows = np.arange(2, 10)
    assert picks.seen(rows)[:, :3].all() and not picks.seen(rows)[:, 3:].any()
    with pytest.raises(UserError, match="analyses only.*never the target steps"):
        check_targets_seen(picks, lead, rows, "analyses.nc")


def test_missing_values_stay_missing_never_zero():
    times, issued, lead, field = _daily(12, [0, 1, 2])
    field = field.copy()
    field[4, 1] = np.nan  # the day-4 forecast for day 5 is lost
    picks = pick_guidance(issued, lead, times, DAY, n_in=3, n_out=2)
    got = picks.gather(field, np.array([4]))[0, :, 0, 0]
    assert np.isnan(got[3]) and got[4] == 42.0
    # no forecast reaches lead 3: the second target of init 4 would need one
    picks = pick_guidance(issued, lead[:2], times, DAY, n_in=3, n_out=2)
    assert np.isnan(picks.gather(field[:, :2], np.array([4]))[0, 4, 0, 0])


def _files(tmp_path, n_days=10, leads=(0, 1, 2)):
    """Maps of ``n_days`` daily steps on a 2 x 3 grid and a guidance file issued at the end of
    each day whose field ``cape`` encodes (issue, lead, cell) and ``tp`` is NaN at lead 2."""
    import xarray as xr

    times, issued, lead, _ = _daily(n_days, list(leads))
    lat, lon = np.array([10.0, 11.0]), np.array([20.0, 21.0, 22.0])
    maps = xr.Dataset(coords={"time": times, "lat": lat, "lon": lon})
    cell = np.arange(6.0).reshape(2, 3) / 10
    cape = (100.0 * np.arange(n_days)[:, None] + np.array(leads)[None, :])[..., None, None] + cell
    tp = cape.copy()
    tp[:, list(leads).index(2)] = np.nan
    dims = ("init_time", "lead_time", "lat", "lon")
    g = xr.Dataset(
        {"cape": (dims, cape.astype("float32"), {"units": "J kg-1"}), "tp": (dims, tp)},
        coords={"init_time": issued, "lead_time": lead, "lat": lat, "lon": lon},
    )
    path = tmp_path / "guidance.nc"
    g.to_netcdf(path)
    return maps, path


def test_guidance_windows_give_each_field_at_the_picked_issue_and_lead(tmp_path):
    from data_prep.guidance import load_guidance

    maps, path = _files(tmp_path)
    g = load_guidance(path, maps, DAY, n_in=2, n_out=2, fields=["tp", "cape"])
    assert g.fields == ("tp", "cape") and g.units == ("", "J kg-1")
    w = g.window(np.array([3, 5]))  # (N, P, F, H, W)
    assert w.shape == (2, 4, 2, 2, 3)
    for r, i in enumerate([3, 5]):
        # past steps i-1, i: analyses issued at their ends; targets: issue i, leads 1 and 2
        want = [100.0 * (i - 1), 100.0 * i, 100.0 * i + 1, 100.0 * i + 2]
        np.testing.assert_allclose(w[r, :, 1, 1, 2], np.array(want) + 0.5, rtol=1e-6)
    # tp has no data at lead 2: missing, never zero
    assert np.isnan(w[:, 3, 0]).all() and np.isfinite(w[:, :3, 0]).all()
    np.testing.assert_array_equal(g.targets(np.array([3])), w[:1, 2:])


def test_guidance_without_a_field_the_model_needs_is_refused_naming_it(tmp_path):
    from data_prep.guidance import load_guidance

    maps, path = _files(tmp_path)
    with pytest.raises(UserError, match="'cin'.*holds cape, tp"):
        load_guidance(path, maps, DAY, n_in=2, n_out=2, fields=["cape", "cin"])
