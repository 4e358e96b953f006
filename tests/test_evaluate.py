"""evaluate(): one loop, one scores Dataset; evaluate_to_files() and the CLI on files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from data_prep.errors import UserError
from data_prep.io import write_netcdf_atomic
from data_prep.mock import mock_maps
from data_prep.sequences import build_index
from forecast.config import ExperimentConfig
from forecast.evaluation import evaluate, evaluate_to_files
from forecast.evaluation.baselines import build_baseline, observations
from forecast.evaluation.scorecard import format_score_table
from forecast.evaluation.scoring import scoring_batch

N_OUT = 3
CONTRACT_VARS = (
    "brier_score", "brier_skill_score", "roc_auc", "average_precision", "csi", "best_threshold",
    "log_loss", "ece", "brier_skill_score_lo", "brier_skill_score_hi", "roc_auc_lo", "roc_auc_hi",
    "csi_lo", "csi_hi", "fss", "csi_neighbourhood", "pod", "far", "ets", "hss", "pss",
    "frequency_bias", "sedi", "brier_skill_score_vs_persistence",
)  # fmt: skip


class Perfect:
    """A forecast that knows the future: the observed occurrence at each valid time."""

    def forecast(self, ds, inits, n_out=None):
        events, _ = observations(ds, inits, n_out or N_OUT)
        return events.astype(np.float32)


def _cfg(**eval_overrides) -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.block_steps = 28
    cfg.eval.bootstrap = 50
    for k, v in eval_overrides.items():
        setattr(cfg.eval, k, v)
    return cfg


@pytest.fixture(scope="module")
def maps() -> xr.Dataset:
    return mock_maps(n_steps=300, shape=(12, 16), seed=3)


@pytest.fixture(scope="module")
def scored(maps):
    cfg = _cfg()
    index = build_index(maps, cfg.data)
    methods = {"oracle": Perfect()}
    for name in ("persistence", "climatology"):
        methods[name] = build_baseline(name, maps, index, cfg.eval)
    return evaluate(cfg, maps, index, methods, "test"), index


def _forecast_file(ds: xr.Dataset, inits: np.ndarray, path: Path, **coords) -> Path:
    """Write the perfect forecast at ``inits`` in the forecast-file layout."""
    prob = Perfect().forecast(ds, inits)
    out = xr.Dataset(
        {"probability": (("init_time", "lead_time", "lat", "lon"), prob)},
        coords={
            "init_time": ds.time.values[inits],
            "lead_time": np.arange(1, N_OUT + 1),
            "lat": coords.get("lat", ds.lat.values),
            "lon": ds.lon.values,
        },
    )
    return write_netcdf_atomic(out, path)


def test_perfect_forecast_has_bss_auc_csi_one(scored):
    scores, _ = scored
    oracle = scores.sel({"forecast": "oracle"})
    for var in ("brier_skill_score", "roc_auc", "average_precision", "csi"):
        np.testing.assert_allclose(oracle[var].values, 1.0, err_msg=var)
    np.testing.assert_allclose(oracle["fss"].values, 1.0)
    np.testing.assert_allclose(oracle["brier_score"].values, 0.0)


def test_scores_follow_the_contract_layout(scored):
    scores, index = scored
    for var in CONTRACT_VARS:
        assert var in scores, var
    assert scores["brier_score"].dims == ("forecast", "lead_time")
    assert scores["pod"].dims == ("forecast", "lead_time", "probability_threshold")
    assert scores["fss"].dims == ("forecast", "lead_time", "scale")
    assert scores["reliability_observed"].dims == ("forecast", "lead_time", "bin")
    assert scores["lead_step"].values.tolist() == [1, 2, 3]
    np.testing.assert_allclose(scores["probability_threshold"], np.arange(1, 20) * 0.05)
    assert scores.attrs["split"] == "test"
    assert scores.attrs["n_inits"] == len(index.inits("test"))
    # climatology is its own reference; persistence beats nobody here but is a real forecast
    np.testing.assert_allclose(scores.sel({"forecast": "climatology"})["brier_skill_score"], 0.0)
    lo, hi = scores["roc_auc_lo"].values, scores["roc_auc_hi"].values
    assert np.all(lo <= scores["roc_auc"].values + 1e-12) and np.all(
        scores["roc_auc"] <= hi + 1e-12
    )


def test_batch_size_does_not_change_the_scores(maps, scored):
    cfg = _cfg(batch_inits=5)
    index = build_index(maps, cfg.data)
    methods = {
        "oracle": Perfect(),
        "persistence": build_baseline("persistence", maps, index, cfg.eval),
    }
    small = evaluate(cfg, maps, index, methods, "test")
    big = scored[0].sel({"forecast": ["oracle", "persistence"]})
    for var in ("brier_score", "roc_auc", "csi_by_threshold", "fss", "csi_lo"):
        np.testing.assert_allclose(small[var].values, big[var].values, err_msg=var)


def test_hidden_references_give_skill_without_baselines(maps):
    cfg = _cfg(bootstrap=0)
    index = build_index(maps, cfg.data)
    scores = evaluate(cfg, maps, index, {"oracle": Perfect()}, "test")
    assert scores["forecast"].values.tolist() == ["oracle"]
    np.testing.assert_allclose(scores["brier_skill_score"], 1.0)


def test_a_method_with_fewer_leads_shortens_every_method(maps):
    class TwoLeads(Perfect):
        n_out = 2

    cfg = _cfg(bootstrap=0)
    index = build_index(maps, cfg.data)
    scores = evaluate(cfg, maps, index, {"model": TwoLeads()}, "test")
    assert scores["lead_step"].values.tolist() == [1, 2]
    np.testing.assert_allclose(scores["brier_skill_score"], 1.0)


def test_format_score_table_lists_oracle_then_model_then_baselines(scored):
    scores = scored[0].assign_coords(forecast=["model", "persistence", "oracle"])
    rows = [line.split()[0] for line in format_score_table(scores).splitlines()[2:]]
    assert rows == ["oracle", "model", "persistence"]


# --------------------------------------------------------------------------------------------
# files and CLI


@pytest.fixture(scope="module")
def files(maps, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evaluate")
    write_netcdf_atomic(maps, d / "maps.nc")
    _forecast_file(maps, np.arange(6, 290), d / "oracle.nc")
    month = maps.isel(time=slice(150, 180))
    write_netcdf_atomic(month, d / "month.nc")
    _forecast_file(maps, np.arange(155, 170), d / "nwp.nc")
    return d


def test_cli_scores_a_forecast_file_beside_the_baselines(files):
    from forecast.cli import main

    out = files / "scores.nc"
    rc = main(
        ["evaluate", "--forecast", str(files / "oracle.nc"), "--maps", str(files / "maps.nc"),
         "--out", str(out), "data.block_steps=28", "eval.bootstrap=20"]
    )  # fmt: skip
    assert rc == 0 and out.is_file() and out.with_suffix(".md").is_file()
    with xr.open_dataset(out) as scores:
        assert scores["forecast"].values.tolist()[0] == "oracle"
        assert set(scores["forecast"].values) >= {"persistence", "climatology", "lagrangian"}
        np.testing.assert_allclose(scores.sel({"forecast": "oracle"})["csi"], 1.0)
        assert scores.attrs["split"] == "test" and scores.attrs["maps"].endswith("maps.nc")
    assert "| oracle | 1.000" in out.with_suffix(".md").read_text()


class SplitShifted:
    """Perfect discrimination, but sure (0.6 vs 0.4) on validation inits and timid (0.3 vs
    0.1) elsewhere: the CSI-best threshold is 0.45 on validation, any of 0.15..0.30 on test."""

    def __init__(self, val_inits):
        self.val = set(np.asarray(val_inits).tolist())

    def forecast(self, ds, inits, n_out=None):
        events, _ = observations(ds, inits, n_out or N_OUT)
        on_val = np.isin(inits, list(self.val))[:, None, None, None]
        return np.where(on_val, 0.4 + 0.2 * events, 0.1 + 0.2 * events).astype(np.float32)


def test_csi_threshold_is_chosen_on_validation_and_applied_on_test(maps):
    cfg = _cfg(bootstrap=0)
    index = build_index(maps, cfg.data)
    methods = {"shifted": SplitShifted(index.inits("val"))}
    for name in ("persistence", "climatology"):
        methods[name] = build_baseline(name, maps, index, cfg.eval)
    scores = evaluate(cfg, maps, index, methods, "test").sel({"forecast": "shifted"})
    np.testing.assert_allclose(scores["best_threshold"], 0.45)  # from validation ...
    np.testing.assert_allclose(scores["csi"], 0.0)  # ... so nothing reaches it on test
    np.testing.assert_allclose(scores["csi_by_threshold"].sel(probability_threshold=0.15), 1.0)


class Subtle:
    """Perfect discrimination within one hundredth of probability: 0.505 on events, 0.5 else."""

    def forecast(self, ds, inits, n_out=None):
        events, _ = observations(ds, inits, n_out or N_OUT)
        return (0.5 + 0.005 * events).astype(np.float32)


def test_auc_interval_comes_from_the_bins_of_its_estimate(maps):
    # 0.5 and 0.505 share a bin of 101 but not of 1001 (eval.n_bins): one binning for both
    cfg = _cfg(bootstrap=20)
    index = build_index(maps, cfg.data)
    scores = evaluate(cfg, maps, index, {"subtle": Subtle()}, "test").sel({"forecast": "subtle"})
    for var in ("roc_auc", "roc_auc_lo", "roc_auc_hi"):
        np.testing.assert_allclose(scores[var], 1.0, err_msg=var)


def test_scores_record_the_blocks_and_the_scorecard_flags_fewer_than_ten(scored):
    from forecast.evaluation.scorecard import scorecard_markdown

    scores, _ = scored
    a = scores.attrs
    assert a["bootstrap_block"] == 10 and "moving-block" in a["bootstrap_scheme"]
    assert a["bootstrap_blocks"] == a["n_days"] // 10 < 10
    card = scorecard_markdown(scores)
    assert f"rest on {a['bootstrap_blocks']} < 10 independent blocks of 10 days" in card
    assert "| oracle | 1.000 [1.000, 1.000]\\*" in card
    many = scores.copy()
    many.attrs.update(bootstrap_block=1, bootstrap_blocks=a["n_days"])
    card = scorecard_markdown(many)
    assert "few blocks" not in card and f"{a['n_days']} independent blocks" in card


class OnlySome(Perfect):
    """A forecast file holding only the given inits."""

    def __init__(self, inits):
        self.inits = np.asarray(inits)

    def covers(self, ds, inits):
        return np.isin(inits, self.inits)


def test_a_forecast_without_validation_inits_is_tuned_in_sample_and_says_so(maps):
    cfg = _cfg(bootstrap=0)
    index = build_index(maps, cfg.data)
    base = {n: build_baseline(n, maps, index, cfg.eval) for n in ("persistence", "climatology")}
    alone = evaluate(cfg, maps, index, base, "test")
    with pytest.warns(UserWarning, match="CSI threshold of nwp: max CSI on the scored 'test'"):
        both = evaluate(cfg, maps, index, {"nwp": OnlySome(index.inits("test")), **base}, "test")
    n_val = len(index.inits("val"))
    note = both.attrs["threshold_selection"]
    assert f"max CSI on {n_val} val inits (persistence, climatology)" in note
    assert "nwp: max CSI on the scored 'test' inits" in note and "in-sample" in note
    for name in base:  # the baselines are still tuned on every validation init
        np.testing.assert_array_equal(
            both.sel({"forecast": name})["best_threshold"],
            alone.sel({"forecast": name})["best_threshold"],
        )


def test_short_maps_score_every_init_the_forecast_covers(files):
    cfg = _cfg()
    out, card = evaluate_to_files(
        cfg, maps=files / "month.nc", out=files / "month_scores.nc", checkpoint=None,
        forecasts={"nwp": files / "nwp.nc"}, baselines=True, device="cpu",
    )  # fmt: skip
    with xr.open_dataset(out) as scores:
        assert scores.attrs["split"] == "all"
        assert scores.attrs["n_inits"] == 15
        assert "scored on the intersection" in scores.attrs["cases"]
        np.testing.assert_allclose(scores.sel({"forecast": "nwp"})["roc_auc"], 1.0)


def test_forecast_file_on_another_grid_is_a_user_error(files, maps):
    path = _forecast_file(maps, np.arange(6, 20), files / "shifted.nc", lat=maps.lat.values + 1)
    with pytest.raises(UserError, match="shifted.nc: grid .* regrid"):
        evaluate_to_files(
            _cfg(), maps=files / "maps.nc", out=files / "x.nc", checkpoint=None,
            forecasts={"shifted": path}, baselines=False, device="cpu",
        )  # fmt: skip


def test_forecast_file_without_probability_is_a_user_error(files):
    path = files / "empty.nc"
    write_netcdf_atomic(xr.Dataset({"p": ("x", np.zeros(2))}), path)
    with pytest.raises(UserError, match="empty.nc: no variable 'probability'"):
        evaluate_to_files(
            _cfg(), maps=files / "maps.nc", out=files / "x.nc", checkpoint=None,
            forecasts={"empty": path}, baselines=False, device="cpu",
        )  # fmt: skip


def test_forecast_file_outside_the_split_is_a_user_error(files, maps):
    path = _forecast_file(maps, np.arange(6, 9), files / "early.nc")
    with pytest.raises(UserError, match="early.nc: covers none of the 12 inits.*eval.split=all"):
        evaluate_to_files(
            _cfg(), maps=files / "maps.nc", out=files / "x.nc", checkpoint=None,
            forecasts={"early": path}, baselines=False, device="cpu",
        )  # fmt: skip


def test_forecast_file_with_count_thresholds_scores_threshold_one(files, maps):
    path = _forecast_file(maps, np.arange(150, 160), files / "thr.nc")
    with xr.open_dataset(path) as fc:
        one = fc["probability"].load()
    two = xr.zeros_like(one)
    prob = xr.concat([two, one], dim="strikes").assign_coords(strikes=[2, 1])
    prob = prob.transpose("init_time", "lead_time", "strikes", "lat", "lon")
    write_netcdf_atomic(prob.to_dataset(name="probability"), files / "thr2.nc")
    out, _ = evaluate_to_files(
        _cfg(split="all"), maps=files / "maps.nc", out=files / "thr_scores.nc", checkpoint=None,
        forecasts={"thr": files / "thr2.nc"}, baselines=False, device="cpu",
    )  # fmt: skip
    with xr.open_dataset(out) as scores:
        np.testing.assert_allclose(scores["csi"], 1.0)
        assert scores.attrs["n_inits"] == 10
    high = prob.assign_coords(strikes=[2, 10])  # no P(count >= 1) to score
    write_netcdf_atomic(high.to_dataset(name="probability"), files / "thr10.nc")
    with pytest.raises(UserError, match=r"thr10.nc: probability has strikes \[2, 10\] but no 1"):
        evaluate_to_files(
            _cfg(split="all"), maps=files / "maps.nc", out=files / "x.nc", checkpoint=None,
            forecasts={"thr": files / "thr10.nc"}, baselines=False, device="cpu",
        )  # fmt: skip


def test_forecast_file_outside_zero_one_is_a_user_error(files, maps):
    path = _forecast_file(maps, np.arange(150, 160), files / "pct.nc")
    with xr.open_dataset(path) as fc:
        pct = (fc * 100).load()
    write_netcdf_atomic(pct, files / "pct100.nc")
    with pytest.raises(UserError, match=r"pct100.nc: probability has values outside \[0, 1\]"):
        evaluate_to_files(
            _cfg(split="all"), maps=files / "maps.nc", out=files / "x.nc", checkpoint=None,
            forecasts={"pct": files / "pct100.nc"}, baselines=False, device="cpu",
        )  # fmt: skip


@pytest.mark.filterwarnings("ignore:windows .* are empty")
def test_a_real_month_of_nldn_maps_scores_a_forecast_file(realdata, tmp_path):
    from data_prep.config import PrepConfig
    from data_prep.prep import prep
    from forecast.evaluation.baselines import Persistence

    maps = tmp_path / "nldn.nc"
    cfg = _cfg(baselines=("persistence", "lagrangian"), bootstrap=20)
    prep([str(realdata / "nldn_tiles" / "nldn-tiles-202402.csv.gz")], maps,
         PrepConfig(grid="conus-0.25"), cfg.data)  # fmt: skip
    with xr.open_dataset(maps) as ds:
        ds.load()
    inits = np.arange(ds.sizes["time"] - 1)
    prob = Persistence(n_out=2).forecast(ds, inits)  # a user's forecast with two lead times
    fc = xr.Dataset(
        {"probability": (("init_time", "lead_time", "lat", "lon"), prob)},
        coords={"init_time": ds.time.values[inits], "lead_time": [1, 2], "lat": ds.lat,
                "lon": ds.lon},
    )  # fmt: skip
    write_netcdf_atomic(fc, tmp_path / "mine.nc")
    out, _ = evaluate_to_files(
        cfg, maps=maps, out=tmp_path / "s.nc", checkpoint=None,
        forecasts={"mine": tmp_path / "mine.nc"}, baselines=True, device="cpu",
    )  # fmt: skip
    with xr.open_dataset(out) as scores:
        assert scores.attrs["split"] == "all" and scores.attrs["n_inits"] == len(inits)
        assert scores["lead_step"].values.tolist() == [1, 2]
        mine, pers = (scores.sel({"forecast": m}) for m in ("mine", "persistence"))
        np.testing.assert_allclose(mine["brier_score"], pers["brier_score"])
        assert np.all(np.isfinite(scores["roc_auc"].values))


def test_nothing_to_score_is_a_user_error(files):
    with pytest.raises(UserError, match="nothing to score"):
        evaluate_to_files(
            _cfg(), maps=files / "maps.nc", out=files / "x.nc", checkpoint=None,
            forecasts={}, baselines=False, device="cpu",
        )  # fmt: skip


def test_scoring_batch_keeps_one_methods_forecasts_within_the_byte_cap():
    assert scoring_batch(32, 6, 260, 590) == 9  # hourly conus-0.1: 3.7 MB an init
    assert scoring_batch(32, 3, 16, 24) == 32  # small grids keep eval.batch_inits
    assert scoring_batch(32, 6, 260, 590, limit=1) == 1
