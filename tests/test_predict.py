"""Predict: forecast files from the latest/given/range windows, refusals with clear messages."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from prep_files import TINY

from data_prep.config import from_dict
from data_prep.errors import UserError
from data_prep.mock import mock_maps
from forecast.cli import main
from forecast.config import ModelConfig, load_experiment
from forecast.model.network import build_model
from forecast.predict import load_forecaster, predict_to_file
from forecast.training import train
from forecast.training.checkpoint import FORMAT, load_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained tiny model (best.pt) and its maps."""
    root = tmp_path_factory.mktemp("predict")
    maps = root / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=5).to_netcdf(maps)
    extra = [f"train.maps={maps}", f"train.out={root / 'run'}", "train.calibration=platt"]
    train(load_experiment(None, [*TINY, *extra]))
    return root / "run" / "best.pt", maps


def test_latest_window_ends_at_the_last_step_and_needs_no_targets(run, tmp_path):
    ckpt, maps = run
    out = predict_to_file(ckpt, maps, None, tmp_path / "f.nc", device="cpu")
    ds, obs = xr.open_dataset(out), xr.open_dataset(maps)
    p = ds["probability"]
    assert p.dims == ("init_time", "lead_time", "lat", "lon") and p.shape == (1, 2, 16, 24)
    assert ds["init_time"].values[0] == obs["time"].values[-1]  # no map exists after it
    step = np.timedelta64(1, "D")
    assert ds["lead_step"].values.tolist() == [1, 2]
    assert list(ds["lead_time"].values) == [step, 2 * step]  # a duration: CF forecast_period
    assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
    assert (ds["valid_time"].values[0] == obs["time"].values[-1] + np.array([1, 2]) * step).all()
    assert p.dtype == np.float32 and float(p.min()) >= 0 and float(p.max()) <= 1
    np.testing.assert_array_equal(ds["lat"].values, obs["lat"].values)
    assert ds.attrs["time_step"] == "1D" and "checkpoint" in ds.attrs


def test_forecast_file_records_the_training_maps_step_and_model(run, tmp_path):
    import json

    ckpt, maps = run
    ds = xr.open_dataset(predict_to_file(ckpt, maps, None, tmp_path / "f.nc", device="cpu"))
    best = load_checkpoint(ckpt)
    assert ds.attrs["training_maps"] == str(maps)
    assert ds.attrs["training_step"] == best["trained"]["step"] > 0
    assert (
        json.loads(ds.attrs["model_config"])["model"]["cell"] == best["model_args"]["model"]["cell"]
    )
    assert ds.attrs["strikecast_version"]


def test_forecaster_matches_the_file_and_takes_batches(run, tmp_path):
    ckpt, maps = run
    span = "2021-03-01T00:00/2021-03-10T00:00"  # START/END with times of day, as quickstart passes
    out = predict_to_file(ckpt, maps, span, tmp_path / "r.nc", device="cpu")
    ds = xr.open_dataset(out)
    assert ds.sizes["init_time"] == 10
    fc = load_forecaster(ckpt, device="cpu")
    fc.batch_size = 3
    obs = xr.open_dataset(maps)
    inits = np.flatnonzero(np.isin(obs["time"].values, ds["init_time"].values))
    got = fc.forecast(obs, inits)
    assert got.shape == (10, 2, 16, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got, ds["probability"].values, atol=1e-6)


def test_init_with_a_gap_or_outside_the_file_names_date_and_valid_range(run, tmp_path):
    ckpt, _ = run
    gappy = tmp_path / "gappy.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=5, gaps=(60,)).to_netcdf(gappy)
    day60 = (pd.Timestamp("2021-01-01") + pd.Timedelta(days=62)).strftime("%Y-%m-%d")
    with pytest.raises(UserError, match=rf"--init {day60}: its window .* missing.*valid inits: "):
        predict_to_file(ckpt, gappy, day60, tmp_path / "x.nc", device="cpu")
    with pytest.raises(
        UserError, match=r"--init 2030-01-01 is not a time step .*valid inits: 2021-01-05\.\."
    ):
        predict_to_file(ckpt, gappy, "2030-01-01", tmp_path / "x.nc", device="cpu")
    with pytest.raises(UserError, match=r"--init 2021-01-02 needs 5 steps up to it, but .* starts"):
        predict_to_file(ckpt, gappy, "2021-01-02", tmp_path / "x.nc", device="cpu")
    with pytest.raises(UserError, match="not a time or an interval; use YYYY-MM-DD"):
        predict_to_file(ckpt, gappy, "yesterday-ish", tmp_path / "x.nc", device="cpu")
    last_gap = tmp_path / "last_gap.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=5, gaps=(99,)).to_netcdf(last_gap)
    with pytest.raises(UserError, match=r"the latest window \(ending 2021-04-10\) has missing"):
        predict_to_file(ckpt, last_gap, None, tmp_path / "x.nc", device="cpu")
    assert not (tmp_path / "x.nc").exists()


class Payload:  # any pickled object that is not a tensor or plain container
    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_tampered_checkpoint_is_refused(run, tmp_path):
    ckpt, maps = run
    state = load_checkpoint(ckpt)
    bad = tmp_path / "tampered.pt"
    torch.save({**state, "extra": Payload()}, bad)
    with pytest.raises(
        UserError, match=r"checkpoint .*tampered.pt is not a strikecast checkpoint .*refusing"
    ):
        load_forecaster(bad, device="cpu")
    torch.save({"format": FORMAT, "model": {}}, bad)
    with pytest.raises(UserError, match="is not a strikecast checkpoint .*missing model_args"):
        predict_to_file(bad, maps, None, tmp_path / "f.nc", device="cpu")


def test_a_checkpoint_trained_before_the_coverage_input_is_refused_in_one_line(
    run, tmp_path, capsys
):
    ckpt, maps = run
    state = load_checkpoint(ckpt)
    args = {**state["model_args"], "in_channels": 9}  # the 9 input channels of older versions
    old_net = build_model(from_dict(ModelConfig, args["model"], "model."), 9, args["n_out"])
    old = tmp_path / "old.pt"
    torch.save({**state, "model_args": args, "model": old_net.state_dict()}, old)
    argv = [
        "predict",
        "--checkpoint",
        str(old),
        "--maps",
        str(maps),
        "--out",
        str(tmp_path / "f.nc"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "trained before the coverage input; retrain" in err
    assert not (tmp_path / "f.nc").exists()


def test_grid_mismatch_is_a_clear_error(run, tmp_path):
    ckpt, _ = run
    other = tmp_path / "other.nc"
    mock_maps(n_steps=30, shape=(16, 20), seed=1).to_netcdf(other)
    with pytest.raises(UserError, match=r"grid 16x20 .* differs from the grid of checkpoint"):
        predict_to_file(ckpt, other, None, tmp_path / "f.nc", device="cpu")


def test_several_thresholds_add_a_threshold_dimension_isotonic_keeps_them_ordered(tmp_path):
    maps = tmp_path / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=2).to_netcdf(maps)
    extra = ["model.thresholds=[1, 3]", "train.calibration=isotonic"]
    cfg = load_experiment(
        None, [*TINY, *extra, f"train.maps={maps}", f"train.out={tmp_path / 'run'}"]
    )
    out = predict_to_file(train(cfg) / "best.pt", maps, None, tmp_path / "f.nc", device="cpu")
    p = xr.open_dataset(out)["probability"]
    assert p.dims == ("init_time", "lead_time", "strikes", "lat", "lon")
    assert p["strikes"].values.tolist() == [1, 3]
    assert (p.sel(strikes=3) <= p.sel(strikes=1)).all()
    assert xr.open_dataset(out).attrs["calibration"] == "isotonic"


def test_cli_predict_writes_the_file(run, tmp_path, capsys):
    ckpt, maps = run
    out = tmp_path / "cli.nc"
    argv = [
        "predict",
        "--checkpoint",
        str(ckpt),
        "--maps",
        str(maps),
        "--init",
        "2021-04-01",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert xr.open_dataset(out).sizes["init_time"] == 1
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                "--maps",
                str(maps),
                "--init",
                "1999-01-01",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "1999-01-01" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# scoring a checkpoint: held-out windows only, unique method names


TINY_DATA = [o for o in TINY if o.startswith("data.")]


def _evaluate(ckpt, maps, out, overrides=(), forecasts=None, data=TINY_DATA):
    from forecast.evaluation import evaluate_to_files

    cfg = load_experiment(None, [*data, "eval.bootstrap=0", "eval.select_inits=8", *overrides])
    return evaluate_to_files(
        cfg, maps=maps, out=out, checkpoint=ckpt, forecasts=forecasts or {},
        baselines=True, device="cpu",
    )  # fmt: skip


def test_evaluate_scores_the_test_windows_the_checkpoint_held_out(run, tmp_path):
    from data_prep.config import SequenceConfig, from_dict
    from data_prep.sequences import build_index

    ckpt, maps = run
    trained = from_dict(SequenceConfig, load_checkpoint(ckpt)["config"]["data"], "data.")
    with xr.open_dataset(maps) as ds:
        want = build_index(ds.load(), trained).inits("test")
    # the command line's data settings (defaults: 7 in, 3 out, blocks of 56) would split the
    # maps differently and put training days into "test"
    with pytest.warns(UserWarning, match="data settings the checkpoint was trained with"):
        out, _ = _evaluate(ckpt, maps, tmp_path / "s.nc", data=())
    with xr.open_dataset(out) as scores:
        assert scores.attrs["split"] == "test"
        assert scores.attrs["n_inits"] == len(want) > 0
        assert scores["lead_step"].values.tolist() == [1, 2]


def test_a_checkpoint_and_its_forecast_file_get_one_threshold_and_one_interval(run, tmp_path):
    ckpt, maps = run
    with xr.open_dataset(maps) as ds:
        first, last = (str(t)[:10] for t in ds.time.values[[4, -1]])
    path = predict_to_file(ckpt, maps, f"{first}/{last}", tmp_path / "f.nc", device="cpu")
    ways = {"model": (ckpt, {}), "f": (None, {"f": path})}
    scored = {}
    for name, (checkpoint, forecasts) in ways.items():
        # the command line's data settings (the defaults) differ from the ones training used
        with pytest.warns(UserWarning, match="data settings the .* was trained with"):
            out, _ = _evaluate(checkpoint, maps, tmp_path / f"{name}.nc", ["eval.bootstrap=20"],
                               forecasts, data=())  # fmt: skip
        with xr.open_dataset(out) as scores:
            scored[name] = scores.sel(forecast=name).load(), dict(scores.attrs)
    (model, a), (file, b) = scored["model"], scored["f"]
    for key in ("split", "n_inits", "threshold_selection", "bootstrap", "bootstrap_block"):
        assert a[key] == b[key], key
    assert a["split"] == "test" and "val inits" in a["threshold_selection"]
    np.testing.assert_array_equal(model["best_threshold"], file["best_threshold"])
    for var in ("csi", "csi_lo", "csi_hi", "roc_auc_lo", "brier_skill_score_hi"):
        np.testing.assert_allclose(model[var], file[var], atol=1e-6, err_msg=var)


def test_the_quickstart_forecast_file_is_tuned_on_the_validation_inits_of_its_checkpoint(
    run, tmp_path
):
    from forecast.quickstart import _scored_inits

    ckpt, maps = run
    inits, _ = _scored_inits(load_experiment(None, list(TINY)), maps)
    path = predict_to_file(ckpt, maps, inits, tmp_path / "f.nc", device="cpu")
    scored = {}
    for name, (checkpoint, forecasts) in {"model": (ckpt, {}), "f": (None, {"f": path})}.items():
        out, _ = _evaluate(checkpoint, maps, tmp_path / f"{name}.nc", forecasts=forecasts)
        with xr.open_dataset(out) as scores:
            scored[name] = scores.sel(forecast=name).load(), scores.attrs["threshold_selection"]
    (model, a), (file, b) = scored["model"], scored["f"]
    # the file holds every validation init the checkpoint is tuned on, so both pick one threshold
    assert a == b == "max CSI on 9 val inits", (a, b)  # not "f: ... in-sample" on test inits
    np.testing.assert_array_equal(model["best_threshold"], file["best_threshold"])
    np.testing.assert_allclose(model["csi"], file["csi"], atol=1e-6)


def test_model_on_maps_without_held_out_windows_is_refused_not_scored_in_sample(run, tmp_path):
    ckpt, maps = run
    short = tmp_path / "short.nc"
    with xr.open_dataset(maps) as ds:
        ds.isel(time=slice(0, 12)).to_netcdf(short)
    with pytest.raises(UserError, match="short.nc: has no 'test' windows.*eval.split=all"):
        _evaluate(ckpt, short, tmp_path / "s.nc")


def test_scoring_the_training_maps_with_split_all_warns_in_sample(run, tmp_path):
    ckpt, maps = run
    with pytest.warns(UserWarning, match="in-sample"):
        _evaluate(ckpt, maps, tmp_path / "s.nc", ["eval.split=all", "eval.baselines=[]"])


def test_forecast_named_like_a_scored_method_is_refused(run, tmp_path):
    ckpt, maps = run
    with pytest.raises(UserError, match="name 'model' is taken.*--forecast OTHER="):
        _evaluate(ckpt, maps, tmp_path / "s.nc", forecasts={"model": tmp_path / "f.nc"})


def test_unknown_eval_split_names_the_key_and_the_choices(run, tmp_path):
    from data_prep.errors import ConfigError

    ckpt, maps = run
    with pytest.raises(ConfigError, match="'eval.split': 'tset' is not one of train, val"):
        _evaluate(ckpt, maps, tmp_path / "s.nc", ["eval.split=tset"])


def test_cli_refuses_two_forecast_files_with_one_name(run, tmp_path, capsys):
    ckpt, maps = run
    a, b = tmp_path / "a" / "f.nc", tmp_path / "b" / "f.nc"
    rc = main(["evaluate", "--maps", str(maps), "--forecast", str(a), "--forecast", str(b),
               "--out", str(tmp_path / "s.nc")])  # fmt: skip
    assert rc == 2
    assert "name 'f' is already used" in capsys.readouterr().err


def test_predict_applies_the_stored_platt_slope_and_offset_to_the_model_logits(run, tmp_path):
    ckpt, maps = run
    cal = load_checkpoint(ckpt)["calibration"]
    temperature, offset = cal["temperature"], cal["offset"]  # (n_out, 1) each
    assert cal["method"] == "platt"
    assert not torch.allclose(temperature, torch.ones_like(temperature))
    assert not torch.allclose(offset, torch.zeros_like(offset))
    raw = load_forecaster(ckpt, device="cpu", calibrated=False)
    calibrated = load_forecaster(ckpt, device="cpu")
    with xr.open_dataset(maps) as ds:
        ds.load()
    inits = np.array([60, 80])
    p_raw = torch.from_numpy(raw.forecast_all(ds, inits)).double()
    logit = torch.log(p_raw) - torch.log1p(-p_raw)
    t, b = temperature.double().view(1, 2, 1, 1, 1), offset.double().view(1, 2, 1, 1, 1)
    want = torch.sigmoid(logit / t + b)
    got = torch.from_numpy(calibrated.forecast_all(ds, inits)).double()
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    out = predict_to_file(ckpt, maps, "2021-03-02", tmp_path / "f.nc", device="cpu")  # step 60
    file_p = xr.open_dataset(out)["probability"].isel(init_time=0).values
    np.testing.assert_allclose(file_p, got[0, :, 0].numpy(), atol=1e-6)


def test_calibrate_refits_the_run_of_its_config_folder_and_keeps_the_weights(run, tmp_path, capsys):
    ckpt, maps = run
    run_dir = tmp_path / "copied_run"  # config.yaml inside still names the original train.out
    shutil.copytree(ckpt.parent, run_dir)
    config = str(run_dir / "config.yaml")
    rc = main(["calibrate", "--config", config, "train.calibration=isotonic"])
    assert rc == 0, capsys.readouterr().err
    before, after = load_checkpoint(ckpt), load_checkpoint(run_dir / "best.pt")
    assert before["calibration"]["method"] == "platt"  # the original run is untouched
    assert after["calibration"]["method"] == after["config"]["train"]["calibration"] == "isotonic"
    assert all(torch.equal(before["model"][k], v) for k, v in after["model"].items())
    with xr.open_dataset(run_dir / "calibration.nc") as rel:
        assert rel.attrs["calibration_method"] == "isotonic"
    saved = load_experiment(config)
    assert saved.train.calibration == "isotonic" and saved.train.out == str(ckpt.parent)
    # refitting platt gives back what training stored (a pure function of the weights and the
    # validation windows); the batch size of the validation pass does not matter
    rc = main(["calibrate", "--config", config, "train.calibration=platt", "train.batch_size=3"])
    assert rc == 0, capsys.readouterr().err
    cal = load_checkpoint(run_dir / "best.pt")["calibration"]
    for key in ("temperature", "offset"):
        torch.testing.assert_close(cal[key], before["calibration"][key])


def test_calibrate_refuses_a_config_of_another_window_length(run, tmp_path, capsys):
    ckpt, _ = run
    run_dir = tmp_path / "run"
    shutil.copytree(ckpt.parent, run_dir)
    rc = main(["calibrate", "--config", str(run_dir / "config.yaml"), "data.n_in=6"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "data.n_in" in err and "pass the run's own config.yaml" in err


def test_calibrate_refuses_an_unknown_method_and_a_folder_without_best_pt(run, tmp_path, capsys):
    ckpt, _ = run
    run_dir = tmp_path / "run"
    shutil.copytree(ckpt.parent, run_dir)
    config = str(run_dir / "config.yaml")
    assert main(["calibrate", "--config", config, "train.calibration=plat"]) == 2
    assert "'plat' is unknown; use one of temperature, platt" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", "--config", config, f"train.out={empty}"]) == 2
    assert f"{empty / 'best.pt'} not found" in capsys.readouterr().err
