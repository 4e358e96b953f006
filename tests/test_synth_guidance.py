"""Synthetic NWP guidance of the synthetic world: file format, determinism, time alignment and
errors that grow with lead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from data_prep.config import PrepConfig, SequenceConfig, SynthConfig, from_dict
from data_prep.errors import ConfigError
from data_prep.guidance import load_guidance, open_guidance
from data_prep.prep import prep
from data_prep.synthetic import generate_world
from data_prep.synthetic import guidance as gdn
from data_prep.synthetic.world import hidden_state

SMALL = "34,42,-100,-88,0.5"  # 16 x 24 cells over the central plains
CFG = SynthConfig(grid=SMALL, start="2021-06-01", days=40, seed=4, oracle_samples=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(paths, guidance Dataset, maps path) of one small summer world."""
    out = tmp_path_factory.mktemp("gworld")
    paths = generate_world(CFG, out / "w", progress=False)
    maps = out / "maps.nc"
    end = str((pd.Timestamp(CFG.start) + pd.Timedelta(days=CFG.days - 1)).date())
    prep([str(paths["strikes"])], maps, PrepConfig(grid=SMALL, start=CFG.start, end=end),
         SequenceConfig(n_in=5, n_out=3))  # fmt: skip
    with xr.open_dataset(paths["guidance"]) as g:
        return paths, g.load(), maps


def _maps(path):
    with xr.open_dataset(path) as m:
        return m.load()


def test_synth_writes_guidance_that_open_guidance_accepts_on_its_maps(world):
    paths, g, maps_path = world
    maps = _maps(maps_path)
    opened = open_guidance(paths["guidance"], maps)
    assert opened.attrs["strikecast_kind"] == "guidance"
    assert set(gdn.FIELDS) <= set(opened.data_vars)
    assert opened["cape"].dims == ("init_time", "lead_time", "lat", "lon")
    assert opened["cape"].dtype == np.float32 and opened["tp"].dtype == np.float32
    leads = opened["lead_time"].values
    assert (leads == np.arange(CFG.guidance_leads + 1) * np.timedelta64(1, "D")).all()
    assert opened["init_time"].values[0] == np.datetime64("2021-06-02T00:00", "ns")


def test_the_reader_gives_each_target_day_the_forecast_issued_at_the_end_of_the_init_day(world):
    """Through load_guidance's no-peeking rule: target k of init step i is the lead-k forecast
    issued at the end of day i (file init index i), past steps are analyses."""
    paths, g, maps_path = world
    maps = _maps(maps_path)
    guide = load_guidance(paths["guidance"], maps, pd.Timedelta("1D"), n_in=5, n_out=3)
    i = 10
    win = guide.window(np.array([i]))[0]  # (8, F, H, W)
    for k in (1, 2, 3):
        np.testing.assert_array_equal(win[4 + k, 0], g["cape"].values[i, k])
    for p in range(5):
        np.testing.assert_array_equal(win[p, 1], g["tp"].values[i - 4 + p, 0])


def test_same_seed_gives_identical_guidance_and_another_seed_differs(world, tmp_path):
    paths, g, _ = world
    again = generate_world(CFG, tmp_path / "a", progress=False)["guidance"]
    other = generate_world(
        from_dict(SynthConfig, {**CFG.__dict__, "seed": 5}), tmp_path / "b", progress=False
    )["guidance"]
    with xr.open_dataset(again) as a, xr.open_dataset(other) as b:
        assert a.load().identical(g)
        assert not np.allclose(b["tp"].values, g["tp"].values, equal_nan=True)


def test_lead_zero_is_the_analysis_of_the_day_just_ended(world):
    _, g, _ = world
    s, run, _ = hidden_state(CFG)
    truth = gdn.truth_fields(s, run)  # (2, T, H, W)
    np.testing.assert_array_equal(g["cape"].values[:, 0], truth[0])
    np.testing.assert_array_equal(g["tp"].values[:, 0], truth[1])


def test_values_are_finite_where_the_day_exists_and_nan_past_the_end(world):
    _, g, _ = world
    n = CFG.days
    d, k = np.meshgrid(np.arange(n), np.arange(CFG.guidance_leads + 1), indexing="ij")
    inside = d + k < n
    for f in gdn.FIELDS:
        v = g[f].values
        assert np.isfinite(v[inside]).all() and (v[inside] >= 0).all()
        assert np.isnan(v[~inside]).all()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.log1p(a).ravel(), np.log1p(b).ravel())[0, 1])


def test_errors_grow_with_lead(world):
    """The forecast of a day correlates less with that day's analysis the longer its lead."""
    _, g, _ = world
    analysis = g["tp"].values[:, 0]  # day d
    days = np.arange(5, CFG.days - CFG.guidance_leads)
    corr = [_corr(g["tp"].values[days - k, k], analysis[days]) for k in range(6)]
    assert corr[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(corr, corr[1:], strict=False)), corr
    assert corr[1] < 0.97 and corr[5] > 0.1, corr


def test_lead_one_describes_the_day_after_the_issue_day(world):
    """Lead-1 guidance issued at the end of day d matches map day d + 1 best (not d or d + 2)."""
    _, g, maps_path = world
    counts = _maps(maps_path)["strike_count"].values
    d = np.arange(2, CFG.days - 3)
    lead1 = g["tp"].values[d, 1]
    corr = {shift: _corr(lead1, counts[d + shift]) for shift in (0, 1, 2)}
    assert corr[1] > corr[0] and corr[1] > corr[2], corr


def test_a_forecast_uses_no_world_state_but_the_day_it_forecasts():
    """Changing the truth of day j changes exactly the forecasts valid on day j."""
    s, run, _ = hidden_state(from_dict(SynthConfig, {**CFG.__dict__, "days": 12}))
    truth = gdn.truth_fields(s, run)
    base = gdn.forecast_fields(s, truth)
    changed = truth.copy()
    changed[:, 6] *= 3.0
    changed[:, 6] += 1.0
    out = gdn.forecast_fields(s, changed)
    d, k = np.meshgrid(np.arange(12), np.arange(CFG.guidance_leads + 1), indexing="ij")
    differs = ~np.all(np.isclose(out, base, equal_nan=True), axis=(0, 3, 4))
    np.testing.assert_array_equal(differs, d + k == 6)


def test_guidance_keys_are_checked_and_zero_leads_writes_no_guidance(tmp_path):
    with pytest.raises(ConfigError, match="synth.guidance_miss"):
        from_dict(SynthConfig, {"guidance_miss": 1.5}, "synth.")
    cfg = from_dict(SynthConfig, {**CFG.__dict__, "guidance_leads": 0, "days": 5}, "synth.")
    paths = generate_world(cfg, tmp_path, progress=False)
    assert "guidance" not in paths and not (tmp_path / "guidance.nc").exists()


def test_convective_rain_follows_strikes_per_area_not_per_cell(monkeypatch):
    """Rain is a depth: with the stratiform rain off, a cell's rain squared, per
    TP_CONVECTIVE, is its expected strikes per TP_AREA_KM2, whatever the cell's area (the rows
    of this 30-62 N grid differ almost twofold in area)."""
    monkeypatch.setattr(gdn, "TP_STRATIFORM", 0.0)
    cfg = from_dict(SynthConfig, {**CFG.__dict__, "grid": "30,62,-100,-88,1.0", "days": 12})
    s, run, _ = hidden_state(cfg)
    tp = gdn.truth_fields(s, run)[1]  # (T, H, W)
    area = s.grid.cell_area_km2()[:, None]  # (H, 1)
    density = run.cohorts.sum(1) / area * gdn.TP_AREA_KM2
    assert run.cohorts.sum() > 0 and area[-1, 0] < 0.6 * area[0, 0]
    np.testing.assert_allclose((tp / gdn.TP_CONVECTIVE) ** 2, density, rtol=1e-5, atol=1e-6)
