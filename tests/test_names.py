"""Names that don't trap: the scores' ``forecast`` dimension, distinct threshold names, lead_time
as a CF forecast_period duration beside ``lead_step``, ISO 8601 init intervals, and scores files
written under the older names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from data_prep.errors import UserError
from data_prep.io import write_netcdf_atomic
from data_prep.mock import mock_maps
from data_prep.schema import by_lead_step, lead_coords
from data_prep.sequences import build_index
from forecast.config import ExperimentConfig
from forecast.evaluation import evaluate, evaluate_to_files
from forecast.evaluation.baselines import build_baseline, observations
from forecast.figures import plot_files
from forecast.metrics.suite import upgrade_scores
from forecast.predict import select_inits

N_OUT = 2


class Perfect:
    """The observed occurrence at each valid time."""

    def forecast(self, ds, inits, n_out=None):
        return observations(ds, inits, n_out or N_OUT)[0].astype(np.float32)


def _cfg() -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.block_steps, cfg.data.n_in, cfg.data.n_out = 28, 5, N_OUT
    cfg.eval.bootstrap = 20
    return cfg


@pytest.fixture(scope="module")
def maps() -> xr.Dataset:
    return mock_maps(n_steps=200, shape=(8, 12), seed=4)


@pytest.fixture(scope="module")
def scores(maps) -> xr.Dataset:
    cfg = _cfg()
    index = build_index(maps, cfg.data)
    methods = {"oracle": Perfect()}
    for name in ("persistence", "climatology"):
        methods[name] = build_baseline(name, maps, index, cfg.eval)
    return evaluate(cfg, maps, index, methods, "test")


def test_sel_by_forecast_keyword_returns_one_method(scores):
    one = scores.sel(forecast="oracle")
    assert "forecast" not in one.dims
    np.testing.assert_allclose(one["roc_auc"], 1.0)
    np.testing.assert_array_equal(one["brier_score"], scores["brier_score"].isel(forecast=0))
    # the old name: xarray reads method= as its own argument and silently returns every method
    old = scores.rename(forecast="method")
    assert old.sel(method="oracle").sizes["method"] == 3


def test_probability_thresholds_and_lead_times_have_distinct_self_describing_names(scores):
    assert scores["pod"].dims == ("forecast", "lead_time", "probability_threshold")
    assert scores["roc_pod"].dims == ("forecast", "lead_time", "curve_threshold")
    assert scores["lead_time"].dtype.kind == "m"  # a duration, as xarray decodes it
    assert scores["lead_time"].attrs["standard_name"] == "forecast_period"
    assert scores["lead_step"].values.tolist() == [1, 2]
    a = scores.sel(lead_time="2D")["brier_score"]
    b = by_lead_step(scores).sel(lead_step=2)["brier_score"]
    np.testing.assert_array_equal(a, b)
    for name in ("probability_threshold", "curve_threshold", "lead_step"):
        assert scores[name].attrs["long_name"] and scores[name].attrs["units"] == "1"


def _old_layout(scores: xr.Dataset) -> xr.Dataset:
    """``scores`` as evaluate wrote them before: method, threshold, prob_threshold, integer
    lead_time counting steps."""
    old = by_lead_step(scores).drop_vars("lead_time").rename(lead_step="lead_time")
    return old.rename(
        forecast="method", probability_threshold="threshold", curve_threshold="prob_threshold"
    )


def test_old_scores_file_is_renamed_on_open_and_plots(scores, tmp_path):
    write_netcdf_atomic(scores, tmp_path / "new.nc")
    write_netcdf_atomic(_old_layout(scores), tmp_path / "old.nc")
    with xr.open_dataset(tmp_path / "new.nc") as new, xr.open_dataset(tmp_path / "old.nc") as old:
        xr.testing.assert_identical(upgrade_scores(old).drop_attrs(), new.drop_attrs())
    paths = plot_files(out=tmp_path / "figs", scores=tmp_path / "old.nc")
    assert {p.name for p in paths} >= {"reliability.png", "roc.png", "scores_by_lead.png"}


def _perfect_file(maps: xr.Dataset, path: Path, lead: dict) -> Path:
    inits = np.arange(10, 190)
    prob = Perfect().forecast(maps, inits)
    fc = xr.Dataset(
        {"probability": (("init_time", "lead_time", "lat", "lon"), prob)},
        coords={"init_time": maps.time.values[inits], **lead, "lat": maps.lat, "lon": maps.lon},
    )
    return write_netcdf_atomic(fc, path)


def test_forecast_file_lead_times_as_durations_or_step_counts_score_alike(maps, tmp_path):
    write_netcdf_atomic(maps, tmp_path / "maps.nc")
    ways = {
        "duration": {**lead_coords(N_OUT, np.timedelta64(1, "D"))},
        "steps": {"lead_time": np.arange(1, N_OUT + 1)},  # older files, forecasts from elsewhere
    }
    csi = {}
    for name, lead in ways.items():
        path = _perfect_file(maps, tmp_path / f"{name}.nc", lead)
        out, _ = evaluate_to_files(
            _cfg(), maps=tmp_path / "maps.nc", out=tmp_path / f"s_{name}.nc", checkpoint=None,
            forecasts={"f": path}, baselines=False, device="cpu",
        )  # fmt: skip
        with xr.open_dataset(out) as s:
            csi[name] = s["csi"].sel(forecast="f").values
    np.testing.assert_array_equal(csi["duration"], csi["steps"])
    np.testing.assert_allclose(csi["duration"], 1.0)


def test_forecast_file_lead_time_off_the_maps_step_is_a_user_error(maps, tmp_path):
    write_netcdf_atomic(maps, tmp_path / "maps.nc")
    half = {"lead_time": np.array([12, 36], "timedelta64[h]").astype("timedelta64[ns]")}
    path = _perfect_file(maps, tmp_path / "half.nc", half)
    with pytest.raises(UserError, match=r"half.nc: lead_time .* not a whole number of map steps"):
        evaluate_to_files(
            _cfg(), maps=tmp_path / "maps.nc", out=tmp_path / "x.nc", checkpoint=None,
            forecasts={"f": path}, baselines=False, device="cpu",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("init", "first", "last"),
    [
        ("2021-01-02T06/2021-01-03T12", "2021-01-02T06", "2021-01-03T12"),  # hours: ISO 8601
        ("2021-01-02T06/P1DT6H", "2021-01-02T06", "2021-01-03T12"),  # START/DURATION
        ("PT18H/2021-01-03", "2021-01-02T06", "2021-01-03T00"),  # DURATION/END
        ("2021-01-02:2021-01-03", "2021-01-02T00", "2021-01-03T00"),  # START:END, dates only
        ("2021-01-03T06", "2021-01-03T06", "2021-01-03T06"),  # one init with its hour
    ],
)
def test_init_intervals_are_iso8601_with_hours(init, first, last):
    maps = mock_maps(n_steps=40, shape=(4, 4), time_step="6h")
    got = maps.time.values[select_inits(maps, init, n_in=3, min_coverage=0.5)]
    want = pd.date_range(first, last, freq="6h").values
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("init", ["2021-01-03/2021-01-02", "P1D/P2D", "2021-01-02/2021-01-03/P1D"])
def test_a_wrong_init_interval_is_one_user_error(init):
    maps = mock_maps(n_steps=40, shape=(4, 4), time_step="6h")
    with pytest.raises(UserError, match=r"^--init .*(start is after the end|use YYYY-MM-DD)"):
        select_inits(maps, init, n_in=3, min_coverage=0.5)


def test_durations_without_lead_step_are_counted_in_the_files_time_step():
    hours = np.array([6, 12], "timedelta64[h]").astype("timedelta64[ns]")
    fc = xr.Dataset({"p": ("lead_time", [0.1, 0.2])}, coords={"lead_time": hours})
    assert by_lead_step(fc.assign_attrs(time_step="6h")).sel(lead_step=2)["p"] == 0.2
    with pytest.raises(UserError, match="neither a lead_step coordinate nor a time_step"):
        by_lead_step(fc)
