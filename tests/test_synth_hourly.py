"""The hourly synthetic world: a land-sea diurnal cycle by local solar time, storms living hours,
and an hourly oracle that beats the diurnal climatology; daily worlds unchanged."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import xarray as xr

from data_prep.climatology import climatology_at, fit_climatology
from data_prep.config import SUB_DAILY_DEFAULTS, SynthConfig
from data_prep.errors import UserError
from data_prep.schema import get_grid
from data_prep.synthetic import fields, generate_world
from data_prep.synthetic.stats import grid_counts

GULF = "26,34,-96,-84,0.5"  # 16 x 24 cells: the Gulf coast, land to the north, sea to the south
HOURLY = SynthConfig(
    **{**SUB_DAILY_DEFAULTS, "storm_life_days": (0.1, 0.35), "oracle_samples": 12},
    grid=GULF,
    start="2021-06-20",
    days=20,
    seed=3,
    time_step="1h",
)


@pytest.fixture(scope="module")
def hourly(tmp_path_factory):
    """Twenty days of the hourly world: (hourly counts (T, H, W), hour labels, oracle (I, L, H, W))."""
    paths = generate_world(HOURLY, tmp_path_factory.mktemp("hourly"), progress=False)
    table = pq.read_table(paths["strikes"])
    counts, times = grid_counts(table, GULF, start=HOURLY.start, days=HOURLY.days, step="1h")
    oracle = xr.open_dataset(paths["oracle"])
    return counts, times, oracle.probability.values, oracle, paths


def _by_local_hour(occ: np.ndarray, times, cells: np.ndarray) -> np.ndarray:
    """Frequency of occurrence by local solar hour (24,) over the cells where ``cells`` (H, W)."""
    lon = get_grid(GULF).lon
    hour = np.floor((times.hour.to_numpy()[:, None] + lon[None, :] / 15.0) % 24).astype(int)
    hour = np.broadcast_to(hour[:, None, :], occ.shape)[:, cells]  # (T, n)
    sel = occ[:, cells]
    return np.array([sel[hour == h].mean() for h in range(24)])


def test_oracle_file_is_hourly(hourly):
    _, _, prob, oracle, _ = hourly
    assert oracle.attrs["time_step"] == "1h" and oracle.attrs["time_step_seconds"] == 3600
    assert (oracle.lead_time.values == np.arange(1, 7) * np.timedelta64(1, "h")).all()
    assert oracle.sizes["init_time"] == 20 * 24 - 8 + 1 - 6
    assert (np.diff(oracle.init_time.values) == np.timedelta64(1, "h")).all()
    assert prob.min() >= 0 and prob.max() <= 1


def test_hourly_oracle_beats_the_diurnal_climatology(hourly):
    counts, times, prob, _, _ = hourly
    occ = counts > 0
    train = np.arange(len(times)) < len(times) // 2  # fitted on the first ten days only
    table = fit_climatology(occ.astype(np.int32), times.values, train, n_hours=24)
    clim = climatology_at(table, times.values)
    inits = np.arange(HOURLY.n_in - 1, len(times) - HOURLY.n_out)
    test = inits >= len(times) // 2
    for lead in range(1, HOURLY.n_out + 1):
        obs = occ[inits[test] + lead]
        bs_oracle = np.mean((prob[test, lead - 1] - obs) ** 2)
        bs_clim = np.mean((clim[inits[test] + lead] - obs) ** 2)
        assert 1 - bs_oracle / bs_clim > 0.02, (lead, bs_oracle, bs_clim)


def test_diurnal_peak_lands_in_the_local_afternoon_over_land(hourly):
    counts, times, *_ = hourly
    g = get_grid(GULF)
    land = fields.land_share(g.lat[:, None], g.lon[None, :]) > 0.9
    freq = _by_local_hour(counts > 0, times, land)
    assert 13 <= int(np.argmax(freq)) <= 19, freq.round(3)
    assert freq[0:7].mean() < 0.25 * freq[13:19].mean()  # weak at night


def test_sea_has_less_lightning_and_a_weaker_cycle(hourly):
    counts, times, *_ = hourly
    g = get_grid(GULF)
    share = fields.land_share(g.lat[:, None], g.lon[None, :])
    land = _by_local_hour(counts > 0, times, share > 0.9)
    sea = _by_local_hour(counts > 0, times, share < 0.1)
    assert sea.mean() < 0.5 * land.mean()
    # afternoon over night: a strong cycle on land, a weak one over the sea
    ratio = {k: v[13:19].mean() / v[0:7].mean() for k, v in (("land", land), ("sea", sea))}
    assert ratio["land"] > 5 and ratio["sea"] < 0.3 * ratio["land"], ratio


def test_storms_live_hours_so_occurrence_forgets_within_a_day(hourly):
    counts, *_ = hourly
    occ = (counts > 0).reshape(len(counts), -1).astype(float)

    def corr(lag: int) -> float:
        a, b = occ[:-lag].ravel(), occ[lag:].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    assert corr(1) > 0.25  # an hour on, most storms still live
    assert corr(6) < 0.25 * corr(1) and corr(12) < 0.25 * corr(1)  # hours on, they have died


@pytest.mark.parametrize(
    ("change", "key"),
    [({"time_step": "90min"}, "synth.time_step"), ({"guidance_leads": 3}, "synth.guidance_leads")],
)
def test_bad_hourly_config_names_the_key(tmp_path, change, key):
    cfg = SynthConfig(**{**vars(HOURLY), "days": 2, **change})
    with pytest.raises(UserError, match=key):
        generate_world(cfg, tmp_path, progress=False)


def test_daily_world_is_unchanged(tmp_path):
    # digests of a daily world made before the hourly world existed
    cfg = SynthConfig(grid="34,42,-100,-88,0.5", start="2021-06-01", days=12, oracle_samples=2)
    cfg = SynthConfig(**{**vars(cfg), "seed": 3})
    paths = generate_world(cfg, tmp_path, progress=False)
    table = pq.read_table(paths["strikes"])
    text = b"".join(str(table.column(c).to_pylist()).encode() for c in table.column_names)
    assert hashlib.sha256(text).hexdigest()[:16] == "38e29d00e0912bd0"
    # the oracle's probabilities: sums, not a digest of their bits, since numpy's exp and log
    # differ in the last bit between CPUs (its own AVX-512 routines against the C library's)
    prob = xr.open_dataset(paths["oracle"]).probability.values.astype(np.float64)
    weights = (np.arange(prob.size) % 7).reshape(prob.shape)  # a moved value changes this sum
    assert prob.shape == (3, 3, 16, 24)
    sums = [prob.sum(), (prob**2).sum(), (prob * weights).sum()]
    assert sums == pytest.approx(
        [2458.3672964953244, 2118.1332022647525, 7371.426681286361], rel=1e-6
    )


def test_cli_time_step_1h_makes_the_hourly_world_overrides_win(tmp_path):
    from data_prep.cli import main

    args = ["synth", "--grid", GULF, "--start", "2021-07-01", "--days", "2", "--seed", "2"]
    rc = main([*args, "--time-step", "1h", "--out", str(tmp_path), "synth.oracle_samples=2"])
    assert rc == 0
    config = json.loads((tmp_path / "world.json").read_text())["config"]
    assert config["time_step"] == "1h" and config["step_hours"] == 1
    assert config["storm_life_days"] == [0.1, 0.35] and config["guidance_leads"] == 0
    assert config["oracle_samples"] == 2  # the override beats the hourly default
    oracle = xr.open_dataset(tmp_path / "oracle.nc")
    assert oracle.sizes["lead_time"] == 6 and oracle.sizes["init_time"] == 48 - 8 + 1 - 6
    assert not (tmp_path / "guidance.nc").exists()
