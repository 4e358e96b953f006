"""The command line: help with examples, one-line errors with exit code 2, and the whole pipeline."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from prep_files import QUICKSTART_TINY

from forecast.cli import main

SUBCOMMANDS = [
    "synth",
    "prep",
    "guidance",
    "train",
    "calibrate",
    "predict",
    "evaluate",
    "plot",
    "quickstart",
    "config",
]


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


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["prep", "x.parquet", "--out", "m.nc", "perp.grid=conus-0.5"],
            "'perp' is unknown section",
        ),
        (["prep", "x.parquet", "--out", "m.nc", "train.epochs=3"], "'train' is a section this"),
        (["synth", "--out", "w", "prep.grid=conus-0.5"], "synth reads synth."),
    ],
)
def test_prep_and_synth_refuse_overrides_they_would_ignore(argv, match, capsys):
    assert match in _one_line_error(argv, capsys)


def test_misspelt_yaml_section_exits_2_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("perp:\n  grid: conus-0.5\nmodel:\n  cell: convlstm\n")
    err = _one_line_error(["prep", "x.parquet", "--out", "m.nc", "--config", str(bad)], capsys)
    assert "unknown section 'perp'" in err


def test_data_prep_knows_every_section_of_the_experiment_config():
    import dataclasses

    from data_prep.config import SECTIONS
    from forecast.config import ExperimentConfig

    assert SECTIONS == tuple(f.name for f in dataclasses.fields(ExperimentConfig))


def test_missing_config_file_exits_2(tmp_path, capsys):
    err = _one_line_error(["train", "--config", str(tmp_path / "none.yaml")], capsys)
    assert "none.yaml" in err


def test_prep_of_missing_input_exits_2_naming_the_file(tmp_path, capsys):
    err = _one_line_error(
        ["prep", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "m.nc")], capsys
    )
    assert "absent.csv" in err
    assert not (tmp_path / "m.nc").exists()


def _strikes(tmp_path):
    from prep_files import strikes_frame, write_parquet

    return str(write_parquet(strikes_frame(50), tmp_path / "s.parquet"))


def test_prep_out_that_is_a_directory_exits_2_asking_for_a_nc_path(tmp_path, capsys):
    err = _one_line_error(["prep", _strikes(tmp_path), "--out", str(tmp_path)], capsys)
    assert err.startswith("strikecast prep: error: --out ") and "give the path of a .nc" in err


def test_prep_out_under_a_file_exits_2_naming_the_file(tmp_path, capsys):
    (tmp_path / "runs").write_text("a file")
    out = tmp_path / "runs" / "maps.nc"
    err = _one_line_error(["prep", _strikes(tmp_path), "--out", str(out)], capsys)
    assert "runs is a file, not a folder" in err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["data.n_in=3"], "data.n_in 3 must be between 5 and 10"),
        (["data.n_out=0"], "data.n_out 0 must be at least 1"),
        (["--workers", "0"], "--workers (prep.workers) 0 must be"),
        (["prep.workers=two"], "'prep.workers': expected int, got 'two'"),
    ],
)
def test_prep_bad_window_lengths_and_workers_exit_2(tmp_path, capsys, args, match):
    out = tmp_path / "maps.nc"
    err = _one_line_error(["prep", _strikes(tmp_path), "--out", str(out), *args], capsys)
    assert match in err and not out.exists()


def test_prep_workers_that_is_not_a_number_is_a_one_line_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["prep", _strikes(tmp_path), "--out", str(tmp_path / "m.nc"), "--workers", "two"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "argument --workers: invalid int value: 'two'" in err


def test_prep_unreachable_scheduler_exits_2_in_one_line(tmp_path, capsys, monkeypatch):
    import data_prep.gridding

    monkeypatch.setattr(data_prep.gridding, "SCHEDULER_TIMEOUT", "1s")
    argv = ["prep", _strikes(tmp_path), "--out", str(tmp_path / "m.nc")]
    err = _one_line_error([*argv, "--scheduler", "tcp://127.0.0.1:1"], capsys)
    assert "--scheduler tcp://127.0.0.1:1: cannot reach the dask scheduler" in err


def test_an_os_error_exits_2_in_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import data_prep.cli

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", "maps.nc")

    monkeypatch.setattr(data_prep.cli, "prep", disk_full)
    err = _one_line_error(["prep", _strikes(tmp_path), "--out", "maps.nc"], capsys)
    assert err == "strikecast prep: error: maps.nc: No space left on device\n"


def test_a_warning_prints_one_line_and_the_hook_is_restored(tmp_path, capsys, monkeypatch):
    import warnings

    import data_prep.cli

    def warns(*args, **kwargs):
        warnings.warn("splits ['val'] are empty;\nuse a longer record", stacklevel=2)
        return "summary"

    monkeypatch.setattr(data_prep.cli, "prep", warns)
    before = warnings.showwarning
    assert main(["prep", _strikes(tmp_path), "--out", str(tmp_path / "m.nc")]) == 0
    err = capsys.readouterr().err
    assert err == "strikecast prep: warning: splits ['val'] are empty; use a longer record\n"
    assert warnings.showwarning is before


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


TINY = QUICKSTART_TINY


@pytest.mark.slow
def test_quickstart_writes_scores_forecast_and_figures(tmp_path, capsys, recwarn):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "brier" in printed.lower() or "BSS" in printed
    # without guidance, mos is neither announced nor noted as left out
    (stage,) = [ln for ln in printed.splitlines() if ln.startswith("[5/6] evaluate")]
    assert "lagrangian" in stage and "mos" not in stage
    assert "mos" not in captured.err
    assert not [w for w in recwarn if "mos" in str(w.message)]

    scores = xr.open_dataset(out / "scores.nc")
    methods = {"model", "model_uncalibrated", "oracle", "persistence", "smoothed_persistence"}
    methods |= {"climatology", "lagrangian"}
    assert set(scores["forecast"].values) == methods
    card = (out / "scores.md").read_text()
    assert all(f"| {m} " in card for m in methods), card[:400]
    assert list(scores["lead_step"].values) == [1, 2, 3]
    assert list(scores["lead_time"].values) == [np.timedelta64(k, "D") for k in (1, 2, 3)]
    for name in ("brier_skill_score", "roc_auc", "csi"):
        assert set(scores[name].dims) >= {"forecast", "lead_time"}
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


def _stages_skipped(printed: str) -> list[str]:
    return [ln.split("]")[1].split(":")[0].strip() for ln in printed.splitlines()
            if ln.startswith("[") and "(done before, skipped)" in ln]  # fmt: skip


STAGES = ["synth", "prep", "train", "predict", "evaluate", "plot"]


def _closing_times(printed: str) -> tuple[int, dict[str, int | None]]:
    """The quickstart's last line: total seconds and each stage's (None when skipped)."""
    last = printed.strip().splitlines()[-1]
    m = re.fullmatch(r"quickstart finished in (\d+) s \((.*)\)", last)
    assert m, last
    stages = {}
    for part in m.group(2).split(", "):
        name, took = part.split(" ", 1)
        assert took == "skipped" or re.fullmatch(r"\d+ s", took), part
        stages[name] = None if took == "skipped" else int(took[:-2])
    return int(m.group(1)), stages


@pytest.mark.slow
def test_quickstart_rerun_skips_every_finished_stage_and_redoes_what_a_change_touches(
    tmp_path, capsys
):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    total, took = _closing_times(capsys.readouterr().out)
    assert list(took) == STAGES and None not in took.values()
    assert sum(took.values()) <= total + len(STAGES)  # each rounded to the second
    written = {p: p.stat().st_mtime_ns for p in (out / "forecast.nc", out / "scores.nc")}
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    skipped = _stages_skipped(printed)
    assert skipped == STAGES
    assert _closing_times(printed)[1] == dict.fromkeys(STAGES)
    assert all(p.stat().st_mtime_ns == t for p, t in written.items())
    # an eval key changes the scores and figures, not the forecast
    assert main(["quickstart", "--out", str(out), *TINY[:-1], "eval.bootstrap=5"]) == 0
    printed = capsys.readouterr().out
    assert _stages_skipped(printed) == ["synth", "prep", "train", "predict"]
    took = _closing_times(printed)[1]
    assert [n for n, t in took.items() if t is not None] == ["evaluate", "plot"]
    assert xr.open_dataset(out / "scores.nc").attrs["bootstrap"] == 5


@pytest.mark.slow
def test_quickstart_model_beats_persistence_and_climatology_and_stays_below_the_oracle(
    tmp_path, capsys
):
    """The shipped quickstart, unchanged: about 90 s on 2 idle cores."""
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "train.progress=false"]) == 0
    assert "persistence: yes, climatology: yes" in capsys.readouterr().out
    bss = xr.open_dataset(tmp_path / "qs" / "scores.nc")["brier_skill_score"]
    auc = xr.open_dataset(tmp_path / "qs" / "scores.nc")["roc_auc"]
    for score in (bss, auc):
        model = score.sel({"forecast": "model"})
        for ref in ("persistence", "climatology", "lagrangian", "smoothed_persistence"):
            assert (model > score.sel({"forecast": ref})).all(), (score.name, ref)
        assert (score.sel({"forecast": "oracle"}) > model).all(), score.name
