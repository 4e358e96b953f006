"""Feedback: prep, train, predict and evaluate show plain progress lines when stderr is not a
terminal, a bar when it is, nothing under --quiet; every command ends with what it wrote."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest
import xarray as xr
from prep_files import PLAINS, strikes_frame, write_parquet
from prep_files import TINY as TINY_RUN
from tqdm import tqdm

from data_prep import progress
from data_prep.mock import mock_maps
from forecast.cli import main
from forecast.training.recalibrate import reliability_lines

# the shared tiny run, two epochs, with its progress shown
TINY = [o for o in TINY_RUN if not o.startswith(("train.epochs", "train.progress"))]
TINY += ["train.epochs=2"]
VALIDATION = re.compile(
    r"^train: epoch (\d+), step (\d+)/6: loss \d\.\d{4}, val loss \d\.\d{4}, "
    r"val BSS -?\d\.\d{3}, val AUC \d\.\d{3}, \d+ s(; best\.pt written)?$"
)


def _run(argv: list[str]) -> tuple[str, str]:
    """``strikecast argv`` with stdout and stderr captured (not a terminal): (out, err)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert code == 0, err.getvalue()
    return out.getvalue(), err.getvalue()


def _progress_lines(err: str, desc: str) -> list[str]:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{desc}: ") and "%)" in ln]
    assert all(progress.PLAIN_LINE.match(ln) for ln in lines)
    return lines


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Maps; a run trained in two sessions (3 steps, then --resume); a forecast; scores."""
    root = tmp_path_factory.mktemp("progress")
    maps = root / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=5).to_netcdf(maps)
    train = ["train", *TINY, f"train.maps={maps}", f"train.out={root / 'run'}"]
    logs = {"first": _run([*train, "train.session_steps=3"])}
    logs["resumed"] = _run([*train, "--resume"])
    ckpt = root / "run" / "best.pt"
    init = ["--init", "2021-01-05:2021-04-10"]  # every possible init of the maps: 96
    predict = ["predict", "--checkpoint", ckpt, "--maps", maps, *init, "--device", "cpu"]
    logs["predict"] = _run([*predict, "--out", root / "forecast.nc"])
    evaluate = ["evaluate", "--checkpoint", ckpt, "--maps", maps, "--device", "cpu"]
    logs["evaluate"] = _run([*evaluate, "--out", root / "scores.nc", "eval.bootstrap=5"])
    return root, logs


def test_plain_lines_come_every_tenth_not_every_update(capsys):
    with progress.bar(total=1000, desc="stage", unit="item") as done:
        for _ in range(1000):
            done.update()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert lines[0] == "stage: 0/1,000 items (0%), 0 s"
    assert [ln.split(" items")[0] for ln in lines[1:]] == [
        f"stage: {k * 100:,}/1,000" for k in range(1, 11)
    ]
    assert lines[-1].startswith("stage: 1,000/1,000 items (100%), ") and "eta" not in lines[-1]
    assert all(progress.PLAIN_LINE.match(ln) for ln in lines)
    assert not progress.PLAIN_LINE.match("strikecast prep: error: maps.nc: No space left")


def test_a_stage_cut_short_ends_with_a_line_at_its_last_count(capsys):
    with progress.bar(total=100, desc="stage") as done:
        done.update(5)
    assert capsys.readouterr().err.splitlines()[-1].startswith("stage: 5/100 steps (5%)")


def test_a_terminal_gets_a_tqdm_bar_and_quiet_gets_nothing(monkeypatch, capsys):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    shown = progress.bar(total=3, desc="stage")
    assert isinstance(shown, tqdm) and not shown.disable
    shown.close()
    with progress.quiet():
        silent = progress.bar(total=3, desc="stage")
        progress.note("a note")
    assert silent.disable and not progress.is_quiet()
    assert "a note" not in capsys.readouterr().err


def test_prep_shows_files_gridded_and_ends_naming_the_maps(tmp_path):
    files = [write_parquet(strikes_frame(40, seed=s), tmp_path / f"s{s}.parquet") for s in (1, 2)]
    argv = ["prep", *files, "--grid", PLAINS, "--out"]
    out, err = _run([*argv, tmp_path / "maps.nc"])
    lines = _progress_lines(err, "prep: gridding")
    assert lines[0].startswith("prep: gridding: 0/2 files (0%)")
    assert lines[-1].startswith("prep: gridding: 2/2 files (100%)")
    assert f"maps: {tmp_path / 'maps.nc'}" in out
    out, err = _run([*argv, tmp_path / "quiet.nc", "--quiet"])
    assert err == "" and f"maps: {tmp_path / 'quiet.nc'}" in out


def test_train_shows_steps_a_line_per_validation_and_calibration(pipeline):
    root, logs = pipeline
    out, err = logs["first"]
    steps = _progress_lines(err, "train")
    assert steps[0].startswith("train: 0/6 steps (0%)") and steps[-1].startswith("train: 3/6")
    assert [VALIDATION.match(ln).group(1, 2) for ln in err.splitlines() if "val loss" in ln] == [
        ("1", "3")
    ]
    assert err.splitlines()[-1].startswith("train: stopped at step 3/6 after ")
    assert err.splitlines()[-1].endswith(
        ": end of this session (train.session_steps); go on with --resume"
    )
    assert "calibration" not in err  # the session stopped before the end: nothing calibrated
    assert f"wrote: {root / 'run' / 'best.pt'}, {root / 'run' / 'last.pt'}" in out


def test_resumed_train_says_where_it_goes_on_from(pipeline):
    root, logs = pipeline
    out, err = logs["resumed"]
    lines = err.splitlines()
    assert lines[0] == (
        f"train: resumed from {root / 'run' / 'last.pt'} at step 3/6, epoch 2 (batch 0 of it), "
        "after 0 s of training"
    )
    assert _progress_lines(err, "train")[0].startswith("train: 3/6 steps (50%)")
    assert [VALIDATION.match(ln).group(1, 2) for ln in lines if "val loss" in ln] == [("2", "6")]
    assert re.match(r"train: stopped at step 6/6 after \d+ s: the last step; best", lines[-4])
    i = lines.index(
        "calibration (temperature) fitted on validation; there, before -> after (in-sample):"
    )
    assert re.match(r"  lead 1, P\(count >= 1\): ECE \d\.\d{4} -> \d\.\d{4}, ", lines[i + 1])
    assert lines[i + 2].startswith("  lead 2, ")
    assert f"{root / 'run' / 'calibration.nc'}" in out.splitlines()[-1]


def test_predict_shows_inits_and_ends_naming_the_forecast(pipeline):
    root, logs = pipeline
    out, err = logs["predict"]
    lines = _progress_lines(err, "predict")
    assert lines[0].startswith("predict: 0/96 inits (0%)")
    assert lines[-1].startswith("predict: 96/96 inits (100%)")
    assert len(lines) <= 12
    assert out.splitlines()[-1] == f"forecast: {root / 'forecast.nc'}"


def test_evaluate_shows_init_by_method_forecasts_and_ends_naming_its_files(pipeline):
    root, logs = pipeline
    out, err = logs["evaluate"]
    inits = xr.open_dataset(root / "scores.nc").attrs["n_inits"]
    scoring = _progress_lines(err, "evaluate: scoring test")
    total = int(scoring[-1].split("/")[1].split()[0])
    assert total % inits == 0 and total // inits >= 2  # each init by the model and baselines
    assert scoring[-1].startswith(f"evaluate: scoring test: {total}/{total} forecasts (100%)")
    assert _progress_lines(err, "evaluate: thresholds")[-1].split(" (")[1].startswith("100%")
    assert out.splitlines()[-2:] == [
        f"scores: {root / 'scores.nc'}",
        f"scorecard: {root / 'scores.md'}",
    ]


def test_calibrate_prints_reliability_before_and_after_and_the_files_it_rewrote(pipeline):
    root, _ = pipeline
    out, err = _run(
        ["calibrate", "--config", root / "run" / "config.yaml", "train.calibration=platt"]
    )
    lines = err.splitlines()
    assert lines[0].startswith("calibration (platt) fitted on validation")
    assert [ln.split(",")[0] for ln in lines[1:]] == ["  lead 1", "  lead 2"]
    run = root / "run"
    assert out == f"calibrated (platt): {run / 'best.pt'}, {run / 'calibration.nc'}\n"


@pytest.mark.parametrize("quiet", [["--quiet"], ["train.progress=false"]])
def test_quiet_and_train_progress_false_silence_train(tmp_path, quiet):
    maps = tmp_path / "maps.nc"
    mock_maps(n_steps=100, shape=(8, 8), seed=1).to_netcdf(maps)
    argv = ["train", *TINY, f"train.maps={maps}", f"train.out={tmp_path / 'run'}"]
    out, err = _run([*argv, "train.max_steps=1", *quiet])
    assert err == "" and "wrote: " in out


def test_quiet_silences_predict_and_evaluate(pipeline, tmp_path):
    root, _ = pipeline
    common = ["--checkpoint", root / "run" / "best.pt", "--maps", root / "maps.nc", "-q"]
    _, err = _run(["predict", *common, "--out", tmp_path / "f.nc", "--device", "cpu"])
    assert err == ""
    _, err = _run(["evaluate", *common, "--out", tmp_path / "s.nc", "eval.bootstrap=5"])
    assert not [ln for ln in err.splitlines() if "%)" in ln]


def test_reliability_lines_give_the_cell_weighted_gap_before_and_after():
    """Raw: bins (0.1 forecast, 0.2 observed) and (0.5, 0.5) with 100 cells each: ECE 0.05,
    largest gap 0.1; calibrated: every bin exact, 0."""
    fp = np.array([[[[0.1, 0.5]]], [[[0.2, 0.5]]]])  # (stage, lead_time, strikes, bin)
    of = np.array([[[[0.2, 0.5]]], [[[0.2, 0.5]]]])
    dims = ("stage", "lead_time", "strikes", "bin")
    rel = xr.Dataset(
        {
            "forecast_probability": (dims, fp),
            "observed_frequency": (dims, of),
            "count": (dims, np.full(fp.shape, 100.0)),
            "log_loss": (dims[:3], np.array([[[0.3]], [[0.25]]])),
        },
        coords={"stage": ["raw", "calibrated"], "lead_time": [1], "strikes": [1]},
        attrs={"calibration_method": "platt"},
    )
    assert reliability_lines(rel) == [
        "calibration (platt) fitted on validation; there, before -> after (in-sample):",
        "  lead 1, P(count >= 1): ECE 0.0500 -> 0.0000, largest gap 0.100 -> 0.000, "
        "log loss 0.3000 -> 0.2500",
    ]
