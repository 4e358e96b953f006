"""The synthetic lightning world: determinism, record format, climate statistics, oracle skill."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xarray as xr

from data_prep.config import SynthConfig
from data_prep.errors import UserError
from data_prep.schema import get_grid
from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic import generate_world, world_stats
from data_prep.synthetic.oracle import _cell_kernel, blur, location_kernels

SMALL = "34,42,-100,-88,0.5"  # 16 x 24 cells over the central plains
YEAR = SynthConfig(grid=SMALL, start="2021-01-01", days=365, seed=3, oracle_samples=8)


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """One generated year on the small grid: (config, paths, daily counts (T, H, W))."""
    out = tmp_path_factory.mktemp("world")
    paths = generate_world(YEAR, out, progress=False)
    return YEAR, paths, histogram(pq.read_table(paths["strikes"]), YEAR)


def histogram(table: pa.Table, cfg: SynthConfig) -> np.ndarray:
    """Strikes per (day, lat cell, lon cell) by plain numpy histogramming, (T, H, W)."""
    g = get_grid(cfg.grid)
    t = table.column("time").cast(pa.int64()).to_numpy()
    day = (t - pd.Timestamp(cfg.start, tz="UTC").value) / 86_400e9
    sample = np.stack([day, table.column("lat").to_numpy(), table.column("lon").to_numpy()], 1)
    edges = [
        np.arange(cfg.days + 1),
        g.lat_min + np.arange(g.nlat + 1) * g.res,
        g.lon_min + np.arange(g.nlon + 1) * g.res,
    ]
    counts, _ = np.histogramdd(sample, bins=edges)
    return counts.astype(np.int64)


def tiny(**kw) -> SynthConfig:
    return SynthConfig(
        **{"grid": SMALL, "start": "2021-06-01", "days": 12, "oracle_samples": 2, **kw}
    )


# --------------------------------------------------------------------------------------------
# determinism and format


def test_same_seed_gives_identical_records(tmp_path):
    a = generate_world(tiny(seed=5), tmp_path / "a", progress=False)
    b = generate_world(tiny(seed=5), tmp_path / "b", progress=False)
    c = generate_world(tiny(seed=6), tmp_path / "c", progress=False)
    ta, tb, tc = (pq.read_table(p["strikes"]) for p in (a, b, c))
    assert ta.num_rows > 0 and ta.equals(tb)
    assert not ta.equals(tc)
    assert np.array_equal(
        xr.open_dataset(a["oracle"]).probability, xr.open_dataset(b["oracle"]).probability
    )


def test_records_have_the_point_record_schema(tmp_path):
    table = pq.read_table(generate_world(tiny(), tmp_path, progress=False)["strikes"])
    assert table.schema.field("time").type == pa.timestamp("ns", tz="UTC")
    assert (
        table.schema.field("lat").type == pa.float64()
        and table.schema.field("lon").type == pa.float64()
    )
    assert table.schema.field("peak_current_kA").type == pa.float32()
    assert set(table.column("stroke_type").to_pylist()) == {"CG", "IC"}
    t = table.column("time").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(t) >= 0), "records are sorted by time"
    g = get_grid(SMALL)
    lat, lon = table.column("lat").to_numpy(), table.column("lon").to_numpy()
    assert (
        lat.min() >= g.lat_min
        and lat.max() < g.lat_max
        and lon.min() >= g.lon_min
        and lon.max() < g.lon_max
    )


def test_strike_times_spread_within_days(year):
    cfg, paths, _ = year
    t = pq.read_table(paths["strikes"]).column("time").to_pandas()
    hours = np.bincount(t.dt.hour, minlength=24)
    assert (hours > 0).all(), "every hour of the day has strikes"


def test_bad_config_raises_user_error(tmp_path):
    with pytest.raises(UserError, match="step_hours"):
        generate_world(tiny(step_hours=5), tmp_path, progress=False)
    with pytest.raises(UserError, match="synth.start"):
        generate_world(tiny(start="June"), tmp_path, progress=False)


# --------------------------------------------------------------------------------------------
# climate of a generated year


def test_year_base_rate_and_seasonal_cycle_in_documented_ranges(year):
    cfg, _, counts = year
    rate = (counts > 0).mean((1, 2))
    month = pd.date_range(cfg.start, periods=cfg.days).month
    summer, winter = rate[month.isin([6, 7, 8])].mean(), rate[month.isin([12, 1, 2])].mean()
    assert 0.10 <= rate.mean() <= 0.45
    assert summer > 2.5 * winter and winter < 0.2


def test_daily_totals_are_heavy_tailed_with_quiet_days(year):
    _, _, counts = year
    totals = counts.sum((1, 2))
    assert np.percentile(totals, 99) > 5 * np.median(totals)
    assert (totals < 0.05 * totals.mean()).mean() > 0.05


def test_cg_share_matches_config(year):
    cfg, paths, _ = year
    stats = world_stats(paths["strikes"], cfg.grid)
    assert abs(stats["cg_share"] - cfg.cg_fraction) < 0.01
    assert stats["negative_share_of_cg"] > 0.8


def test_activity_moves_east(year):
    """Lagged cross-correlation of the daily longitude profile peaks at an eastward shift."""
    _, _, counts = year
    prof = np.log1p(counts.sum(1).astype(float))  # (T, W)
    prof -= prof.mean(1, keepdims=True)
    shifts = np.arange(-8, 9)
    corr = [
        np.mean(
            prof[:-1, max(0, -s) : prof.shape[1] - max(0, s)]
            * prof[1:, max(0, s) : prof.shape[1] + min(0, s)]
        )
        for s in shifts
    ]
    best = shifts[int(np.argmax(corr))]
    assert best > 0, f"activity profile correlates best at shift {best} cells"


def test_world_json_holds_config_and_summary(year):
    cfg, paths, counts = year
    world = json.loads(paths["world"].read_text())
    assert world["config"]["seed"] == cfg.seed and world["config"]["grid"] == cfg.grid
    assert world["summary"]["strikes"] == int(counts.sum())


# --------------------------------------------------------------------------------------------
# oracle


def test_oracle_file_is_aligned_with_daily_maps(year):
    cfg, paths, _ = year
    ds = xr.open_dataset(paths["oracle"])
    p = ds.probability
    assert p.dims == ("init_time", "lead_time", "lat", "lon")
    assert ds.sizes["init_time"] == cfg.days - cfg.n_in + 1 - cfg.n_out
    assert pd.Timestamp(ds.init_time.values[0]) == pd.Timestamp(cfg.start) + pd.Timedelta(
        days=cfg.n_in - 1
    )
    assert list(ds.lead_step.values) == list(range(1, cfg.n_out + 1))
    assert (ds.lead_time.values == ds.lead_step.values * np.timedelta64(1, "D")).all()
    assert (ds.valid_time.values[:, 0] == ds.init_time.values + np.timedelta64(1, "D")).all()
    assert float(p.min()) >= 0 and float(p.max()) <= 1 and ds.attrs["time_step"] == "1D"


def test_oracle_beats_persistence_and_climatology(year):
    cfg, paths, counts = year
    occ = (counts > 0).astype(np.float32)
    prob = xr.open_dataset(paths["oracle"]).probability.values
    inits = np.arange(cfg.n_in - 1, cfg.days - cfg.n_out)
    month = pd.date_range(cfg.start, periods=cfg.days).month.to_numpy()
    monthly = np.stack([occ[month == m].mean(0) for m in range(1, 13)])  # (12, H, W) in-sample
    clim = monthly[month - 1]
    for lead in range(1, cfg.n_out + 1):
        obs = occ[inits + lead]
        bs_oracle = np.mean((prob[:, lead - 1] - obs) ** 2)
        bs_persist = np.mean((occ[inits] - obs) ** 2)
        bs_clim = np.mean((clim[inits + lead] - obs) ** 2)
        margin = 0.75 if lead == 1 else 0.95  # an in-sample climatology of one year is flattered
        assert bs_oracle < margin * bs_clim, (lead, bs_oracle, bs_clim)
        assert bs_oracle < bs_persist, (lead, bs_oracle, bs_persist)


def test_oracle_is_calibrated(year):
    cfg, paths, counts = year
    prob = xr.open_dataset(paths["oracle"]).probability.values[:, 0]
    inits = np.arange(cfg.n_in - 1, cfg.days - cfg.n_out)
    obs = counts[inits + 1] > 0
    for lo, hi in [(0.05, 0.3), (0.3, 0.7), (0.7, 0.95)]:
        sel = (prob >= lo) & (prob < hi)
        assert abs(obs[sel].mean() - prob[sel].mean()) < 0.06


def test_location_kernel_sums_to_one_and_blur_keeps_interior_mass():
    k = _cell_kernel(np.arange(-6, 7, dtype=float), np.array(0.8))
    assert k.sum() == pytest.approx(1.0, abs=1e-9) and k[6] == k.max() and np.allclose(k, k[::-1])
    assert _cell_kernel(np.arange(-2, 3, dtype=float), np.array(1e-4))[2] == pytest.approx(
        1.0, abs=1e-3
    )
    s = dyn.Setting.build(SynthConfig(grid=SMALL, location_error_km=40.0), get_grid(SMALL))
    kernels = location_kernels(s)
    lam = np.zeros((16, 24), np.float32)
    lam[8, 12] = 1.0
    out = blur(lam, kernels)
    assert out.sum() == pytest.approx(1.0, abs=1e-5) and out[8, 12] < 1.0 and out[8, 13] > 0


# --------------------------------------------------------------------------------------------
# command line and prep


def test_cli_synth_writes_strikes_oracle_and_world(tmp_path):
    from data_prep.cli import main

    rc = main(
        [
            "synth",
            "--grid",
            SMALL,
            "--start",
            "2021-07-01",
            "--days",
            "11",
            "--seed",
            "2",
            "--out",
            str(tmp_path),
            "synth.oracle_samples=2",
        ]
    )
    assert rc == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"strikes.parquet", "oracle.nc", "world.json"}
    assert xr.open_dataset(tmp_path / "oracle.nc").sizes["init_time"] == 11 - 7 + 1 - 3


@pytest.mark.filterwarnings("ignore:windows")
def test_records_read_back_through_prep_with_zero_rejections(tmp_path):
    prep_mod = pytest.importorskip("data_prep.prep")
    from data_prep.config import PrepConfig, SequenceConfig

    cfg = tiny(days=14, oracle_samples=0)
    strikes = generate_world(cfg, tmp_path / "w", progress=False)["strikes"]
    last = str((pd.Timestamp(cfg.start) + pd.Timedelta(days=cfg.days - 1)).date())
    prep_cfg = PrepConfig(grid=SMALL, start=cfg.start, end=last)
    summary = prep_mod.prep([str(strikes)], tmp_path / "maps.nc", prep_cfg, SequenceConfig())
    tally = summary.tally
    assert sum(tally.rejected_records.values()) == 0
    assert tally.gridded_strikes == pq.read_metadata(strikes).num_rows
    ds = xr.open_dataset(tmp_path / "maps.nc")
    assert ds.sizes["time"] == cfg.days
    assert np.array_equal(ds.strike_count.values, histogram(pq.read_table(strikes), cfg))
