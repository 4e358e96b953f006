"""The command line: help with examples, one-line errors with exit code 2, and the whole pipeline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from forecast.cli import main

SUBCOMMANDS = ["synth", "prep", "train", "predict", "evaluate", "plot", "quickstart"]


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_help_has_an_example(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"strikecast {name}" in capsys.readouterr().out.split("example")[-1]


def _one_line_error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_misspelt_config_key_exits_2_naming_the_key(capsys):
    err = _one_line_error(["train", "train.epocs=3"], capsys)
    assert "train.epocs" in err


def test_missing_config_file_exits_2(tmp_path, capsys):
    err = _one_line_error(["train", "--config", str(tmp_path / "none.yaml")], capsys)
    assert "none.yaml" in err


def test_prep_of_missing_input_exits_2_naming_the_file(tmp_path, capsys):
    err = _one_line_error(
        ["prep", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "m.nc")], capsys
    )
    assert "absent.csv" in err
    assert not (tmp_path / "m.nc").exists()


def test_bad_usage_exits_2_in_one_line():
    r = subprocess.run(
        [sys.executable, "-m", "forecast", "predict"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--checkpoint" in r.stderr


def test_python_m_data_prep_reaches_its_commands():
    r = subprocess.run(
        [sys.executable, "-m", "data_prep", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "synth" in r.stdout and "prep" in r.stdout


TINY = [
    "synth.days=300",
    "synth.oracle_samples=4",
    "data.block_steps=40",
    "model.encoder_channels=[8,16]",
    "model.hidden_channels=[16]",
    "train.epochs=1",
    "train.max_steps=6",
    "train.batch_size=8",
    "train.progress=false",
    "eval.bootstrap=10",
]


@pytest.mark.slow
def test_quickstart_writes_scores_forecast_and_figures(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "brier" in printed.lower() or "BSS" in printed

    scores = xr.open_dataset(out / "scores.nc")
    assert {"model", "persistence", "climatology", "oracle"} <= set(scores["method"].values)
    assert list(scores["lead_time"].values) == [1, 2, 3]
    for name in ("brier_skill_score", "roc_auc", "csi"):
        assert set(scores[name].dims) >= {"method", "lead_time"}
    auc = scores["roc_auc"].values
    assert np.all((auc >= 0) & (auc <= 1))
    assert np.all(scores["brier_skill_score"].values <= 1)

    fc = xr.open_dataset(out / "forecast.nc")
    p = fc["probability"]
    assert p.dims[:2] == ("init_time", "lead_time") and p.shape[-2:] == (32, 48)
    assert float(p.min()) >= 0 and float(p.max()) <= 1

    maps = xr.open_dataset(out / "maps.nc")
    assert maps["strike_count"].dims == ("time", "lat", "lon") and maps.sizes["time"] == 300
    assert maps.attrs["Conventions"].startswith("CF-")
    assert sorted(p.name for p in (out / "figures").glob("*.png"))
    assert (out / "run" / "config.yaml").is_file() and (out / "config.yaml").is_file()
